package handlers

import (
	"context"
	"net/http"

	"github.com/sigil-matrix/sigil/handlers/matrixerr"

	"github.com/sigil-matrix/sigil/gen"
)

var errNotImplemented = matrixerr.New(http.StatusNotImplemented, "M_UNRECOGNIZED", "Not implemented yet")

// UnbindV1 stubs POST /_matrix/identity/api/v1/3pid/unbind.
func (s *Server) UnbindV1(ctx context.Context, req gen.UnbindV1RequestObject) (gen.UnbindV1ResponseObject, error) {
	return nil, errNotImplemented
}

// UnbindV2 stubs POST /_matrix/identity/v2/3pid/unbind.
func (s *Server) UnbindV2(ctx context.Context, req gen.UnbindV2RequestObject) (gen.UnbindV2ResponseObject, error) {
	return nil, errNotImplemented
}
