// Command specgen converts the Swagger 2.0 files of a directory into the one
// OpenAPI 3 document the server is generated from. `make generate` runs it.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"

	"github.com/sigil-matrix/sigil/spec/convert"
)

func main() {
	in := flag.String("in", "spec", "directory of Swagger 2.0 files")
	out := flag.String("out", "gen/openapi.json", "OpenAPI 3 document to write")
	verbose := flag.Bool("v", false, "print every fix-up applied")
	flag.Parse()
	if err := run(*in, *out, *verbose); err != nil {
		fmt.Fprintln(os.Stderr, "specgen:", err)
		os.Exit(1)
	}
}

func run(in, out string, verbose bool) error {
	srcs, err := convert.ReadDir(in)
	if err != nil {
		return err
	}
	res, err := convert.Convert(context.Background(), srcs, convert.DocumentInfo)
	if err != nil {
		return err
	}
	if verbose {
		for _, c := range res.Changes {
			slog.Info("fixup", "change", c)
		}
	}
	data, err := convert.Marshal(res.Doc)
	if err != nil {
		return err
	}
	return os.WriteFile(out, data, 0o644)
}
