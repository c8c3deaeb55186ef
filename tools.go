//go:build tools

// Package tools pins the code generators the build runs, so `go run` uses the
// version recorded in go.mod rather than whatever is on a machine's PATH.
package tools

import (
	_ "github.com/oapi-codegen/oapi-codegen/v2/cmd/oapi-codegen"
)
