package main

import (
	"context"
	"flag"
)

func cmdImportSydent(c *cli, fs *flag.FlagSet) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		return usagef("not yet")
	}
}
