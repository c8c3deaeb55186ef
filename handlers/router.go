package handlers

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/labstack/echo/v4"

	"github.com/sigil-matrix/sigil/gen"
	"github.com/sigil-matrix/sigil/handlers/identity"
	"github.com/sigil-matrix/sigil/spec/matrixerr"
	"github.com/sigil-matrix/sigil/spec/validate"
)

// HTTPOptions tune the HTTP stack.
type HTTPOptions struct {
	MaxBodyBytes int64
	// DisableV1 answers every legacy v1 route with 404 M_UNRECOGNIZED.
	DisableV1 bool
	// TrustForwardedFor takes the client IP (for rate limits) from
	// X-Forwarded-For, for deployments behind a reverse proxy. Off, the
	// header is ignored: anyone could forge it.
	TrustForwardedFor bool
	// Observer, if set, is told about every request (metrics).
	Observer Observer
	// Pages are the GET submitToken result pages (default: built-in).
	Pages *Pages
	// Docs serves the OpenAPI document and its interactive page
	// (docs.go); off, both paths answer 404.
	Docs bool
	// AccessLog, if set, takes the access log's lines in the layout of
	// the server's slog handler, bypassing slog (accessline.go); nil
	// logs them through the server's logger.
	AccessLog *AccessLog
}

// NewHTTP assembles the whole stack: CORS, the spec validator (body limit
// and form decoding included) and the generated strict router.
func NewHTTP(s *Server, opts HTTPOptions) (*echo.Echo, error) {
	doc, err := gen.GetSwagger()
	if err != nil {
		return nil, fmt.Errorf("load embedded spec: %w", err)
	}
	v, err := validate.New(doc, opts.MaxBodyBytes)
	if err != nil {
		return nil, err
	}
	// The hand decoders of the two big lookups read the schema walk's
	// tokens (lookupdecode.go).
	if err := v.Tokenize("BulkLookup", "LookupV2"); err != nil {
		return nil, err
	}
	s.pages = opts.Pages
	s.accessLines = opts.AccessLog
	s.validator = v
	if s.pages == nil {
		s.pages = mustDefaultPages()
	}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.handleError
	e.JSONSerializer = sonicJSON{}
	e.IPExtractor = echo.ExtractIPDirect()
	if opts.TrustForwardedFor {
		e.IPExtractor = echo.ExtractIPFromXFFHeader()
	}
	if ol, ok := opts.Observer.(operationLister); ok {
		var ids []string
		for _, item := range doc.Paths.Map() {
			for _, op := range item.Operations() {
				if op.OperationID != "" {
					ids = append(ids, op.OperationID)
				}
			}
		}
		ol.Operations(ids)
	}
	// Outermost first. drainBody and refuseAmbiguousFraming were Echo Pre
	// middleware; they only read the request and the connection, so
	// running them after routing changes nothing (refuseAmbiguousFraming
	// clears the matched route for that).
	mw := []echo.MiddlewareFunc{drainBody, refuseAmbiguousFraming,
		s.accessLog(opts.Observer, v), s.recoverPanics, cors}
	if opts.DisableV1 {
		mw = append(mw, disableV1)
		s.v1Disabled = true
	}
	mw = append(mw, exactSegments, s.authenticate(v), v.Middleware())
	e.Use(composeOnce(mw...))
	if opts.Docs {
		routes, err := registerDocs(e, doc)
		if err == nil {
			err = v.Outside(routes...)
		}
		if err != nil {
			return nil, err
		}
	}
	strict := gen.NewStrictHandler(s, []gen.StrictMiddlewareFunc{withRequestInfo})
	gen.RegisterHandlers(e, strict)
	// Health checks are no API operations: declared to the validator.
	if err := v.Outside(registerHealth(e, s)...); err != nil {
		return nil, err
	}
	// The validator takes its routes from the generated router. A route
	// that serves no operation of the document is a build defect: refuse
	// to start (one added later is refused per request, 500).
	if unbound := v.Bind(e.Routes()); len(unbound) > 0 {
		return nil, fmt.Errorf("routes serving no operation of the API description: %s", strings.Join(unbound, ", "))
	}
	return e, nil
}

// composeOnce composes mw (outermost first) once, at start-up, into one
// middleware that returns the same chain for every request. Echo applies
// middleware per request: (*Echo).ServeHTTP calls every MiddlewareFunc
// again, one closure allocation each, and one more for routing when
// there is Pre middleware (nine of a status check's 37 allocations).
// The chain's innermost step calls the handler the router found for the
// request (the route's, or Echo's 404 or 405 handler): the next that Echo
// passes. Middleware added to the Echo after this one would be skipped:
// NewHTTP adds none, and its callers must not.
func composeOnce(mw ...echo.MiddlewareFunc) echo.MiddlewareFunc {
	chain := func(c echo.Context) error { return c.Handler()(c) }
	for i := len(mw) - 1; i >= 0; i-- {
		chain = mw[i](chain)
	}
	return func(echo.HandlerFunc) echo.HandlerFunc { return chain }
}

// jsonContentType is shared by every response that sets it with setJSON.
var jsonContentType = []string{"application/json"}

// setJSON sets Content-Type: application/json without the allocation of
// Header.Set (net/http only reads the value; Set and Add replace or copy
// the slice, never write into it).
func setJSON(h http.Header) { h["Content-Type"] = jsonContentType }

var (
	corsOrigin  = []string{"*"}
	corsMethods = []string{"GET, POST, PUT, DELETE, OPTIONS"}
	corsHeaders = []string{"Origin, X-Requested-With, Content-Type, Accept, Authorization"}
)

// cors sets the headers the spec recommends on every response, errors
// included, and answers every pre-flight, known route or not.
func cors(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		// Canonical keys and shared values: no canonicalisation and no
		// allocation per request (net/http only reads them).
		h := c.Response().Header()
		h["Access-Control-Allow-Origin"] = corsOrigin
		h["Access-Control-Allow-Methods"] = corsMethods
		h["Access-Control-Allow-Headers"] = corsHeaders
		if c.Request().Method == http.MethodOptions {
			return c.JSON(http.StatusOK, struct{}{})
		}
		return next(c)
	}
}

// withRequestInfo hands the handlers what they may need from the HTTP
// request (the client IP for rate limits) through the context, except
// those of withoutRequestInfo.
func withRequestInfo(f gen.StrictHandlerFunc, operation string) gen.StrictHandlerFunc {
	if withoutRequestInfo[operation] {
		return f
	}
	return func(c echo.Context, req any) (any, error) {
		r := c.Request()
		ctx := context.WithValue(r.Context(), clientIPKey, c.RealIP())
		ctx = context.WithValue(ctx, httpRequestKey, r)
		c.SetRequest(r.WithContext(ctx))
		return f(c, req)
	}
}

// withoutRequestInfo are the operations whose handlers use neither
// clientIP nor httpRequest: the status checks and lookups, the most
// frequent requests, are spared the two context values and the copy of
// the request (three allocations, 1 % of a status check's CPU).
// TestHandlersWithoutRequestInfo keeps the list honest.
var withoutRequestInfo = map[string]bool{
	"GetPingV1": true, "GetPingV2": true, "LookupV1": true, "BulkLookup": true,
	"LookupV2": true, "GetHashDetails": true,
}

// exactSegments refuses a path with more (or fewer) segments than the route
// Echo matched: Echo lets a trailing path parameter swallow the rest of the
// path (pubkey/ed25519:0/extra would look up the key "ed25519:0/extra").
// An encoded slash (%2F) stays inside its segment.
func exactSegments(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if route := c.Path(); route != "" && len(c.ParamNames()) > 0 &&
			strings.Count(c.Request().URL.EscapedPath(), "/") != strings.Count(route, "/") {
			return matrixerr.Unrecognized(http.StatusNotFound, "Unrecognized request")
		}
		return next(c)
	}
}

func disableV1(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if p, v1 := c.Request().URL.Path, string(identity.V1); p == v1 || strings.HasPrefix(p, v1+"/") {
			return matrixerr.Unrecognized(http.StatusNotFound, "The v1 API is disabled on this server")
		}
		return next(c)
	}
}

// recoverPanics turns a panic into M_UNKNOWN; the cause is logged.
func (s *Server) recoverPanics(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = matrixerr.Unknown(fmt.Errorf("panic: %v", r))
			}
		}()
		return next(c)
	}
}

// retryAfterSeconds is the Retry-After of a 503 during a database outage.
const retryAfterSeconds = "5"

// handleError is the one place errors become responses. Matrix errors keep
// their status and body; Echo's routing errors become M_UNRECOGNIZED; any
// other error is a 500 M_UNKNOWN whose cause is logged, never shown.
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	me := s.toMatrix(err)
	if me.Status == http.StatusInternalServerError && identity.Unavailable(me.Cause) {
		// An outage, not a bug: say when to come back. Nothing was
		// acknowledged, so the client's retry loses nothing.
		me = matrixerr.New(http.StatusServiceUnavailable, "M_UNKNOWN",
			"The database is unavailable; try again shortly").WithCause(me.Cause)
		c.Response().Header().Set("Retry-After", retryAfterSeconds)
	}
	// Client errors are the client's business (debug); only what this
	// server failed at is an error worth an operator's attention.
	if me.Status >= 500 {
		s.log.Error("request failed", "request_id", requestIDOf(c), "method", c.Request().Method,
			"path", c.Request().URL.Path, "errcode", me.Code, "status", me.Status, "err", err)
	} else {
		s.log.Debug("request refused", "request_id", requestIDOf(c), "path", c.Request().URL.Path,
			"errcode", me.Code, "status", me.Status, "err", err)
	}
	if route := s.validator.Route(c); route != nil && htmlOnly(route.Operation.Responses) {
		medium := "email"
		if strings.Contains(route.Path, "/msisdn/") {
			medium = "msisdn"
		}
		body := s.pages.errorPage(medium, me.Message, me.Code)
		_ = c.HTMLBlob(me.Status, body)
		return
	}
	if c.Request().Method == http.MethodHead {
		_ = c.NoContent(me.Status)
		return
	}
	_ = c.JSON(me.Status, me.Body())
}

func (s *Server) toMatrix(err error) *matrixerr.Error {
	if me, ok := matrixerr.As(err); ok {
		return me
	}
	var he *echo.HTTPError
	if errors.As(err, &he) {
		switch he.Code {
		case http.StatusNotFound:
			return matrixerr.Unrecognized(http.StatusNotFound, "Unrecognized request")
		case http.StatusMethodNotAllowed:
			return matrixerr.Unrecognized(http.StatusMethodNotAllowed, "Unrecognized request: method not allowed")
		case http.StatusRequestEntityTooLarge:
			return matrixerr.TooLarge("Request body too large")
		case http.StatusUnsupportedMediaType:
			return matrixerr.NotJSON("The request body must be JSON")
		case http.StatusBadRequest:
			return matrixerr.BadJSON("Malformed request").WithCause(err)
		}
	}
	return matrixerr.Unknown(err)
}

// htmlOnly reports whether an operation answers only in HTML (the GET
// submitToken pages), so its errors are pages too.
func htmlOnly(responses *openapi3.Responses) bool {
	html := false
	for _, r := range responses.Map() {
		if r.Value == nil {
			continue
		}
		for ct := range r.Value.Content {
			if strings.HasPrefix(ct, "application/json") {
				return false
			}
			html = html || strings.HasPrefix(ct, "text/html")
		}
	}
	return html
}
