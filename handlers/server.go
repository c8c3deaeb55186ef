// Package handlers is the HTTP adapter of the identity operations: it
// implements the generated strict server interface with thin methods that
// take typed, already-validated requests, call one operation of
// handlers/identity and map its result to the generated response (errors
// are *matrixerr.Error values, turned into responses in one place).
package handlers

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/sigil-matrix/sigil/gen"
	"github.com/sigil-matrix/sigil/handlers/identity"
	"github.com/sigil-matrix/sigil/spec/validate"
)

var _ gen.StrictServerInterface = (*Server)(nil)

// Server implements gen.StrictServerInterface over the identity operations.
type Server struct {
	id    *identity.Service
	log   *slog.Logger
	pages *Pages
	// v1Disabled: the v1 API is off (NewHTTP's DisableV1), so /versions
	// lists no r0 release.
	v1Disabled bool
	// accessLines is NewHTTP's AccessLog (nil: through log).
	accessLines *AccessLog
	// validator is NewHTTP's, for the operation of a request's route.
	validator *validate.Validator
}

// New builds the adapter for svc; errors are logged to log.
func New(svc *identity.Service, log *slog.Logger) *Server {
	if log == nil {
		log = slog.Default()
	}
	return &Server{id: svc, log: log, pages: mustDefaultPages()}
}

type ctxKey int

const (
	clientIPKey ctxKey = iota
	httpRequestKey
	userKey
)

// httpRequest is the request being handled, for the few handlers that need
// more than the typed input (the X-Matrix signature covers the raw URI and
// body). Its GetBody returns the body bytes as received.
func httpRequest(ctx context.Context) *http.Request {
	r, _ := ctx.Value(httpRequestKey).(*http.Request)
	return r
}

// clientIP is the caller's address, for the limits on mail and SMS.
func clientIP(ctx context.Context) string {
	ip, _ := ctx.Value(clientIPKey).(string)
	return ip
}

// userID is the authenticated user of a v2 request.
func userID(ctx context.Context) string {
	u, _ := ctx.Value(userKey).(string)
	return u
}
