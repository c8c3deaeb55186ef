package handlers

import (
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/sigil-matrix/sigil/spec/validate"
)

// Observer is told about every request once it is answered; the metrics
// (cmd/sigil wires handlers/metrics) implement it.
type Observer interface {
	// Request reports one answered request: its operation id (or
	// "unrouted"), status, Matrix errcode ("" on success) and duration.
	Request(operation string, status int, errcode string, d time.Duration)
}

// operationLister is an Observer that wants every operation id upfront, to
// create its series at 0 (the metrics).
type operationLister interface {
	Operations(ids []string)
}

// requestIDHeader carries the request id: taken from a reverse proxy that
// sets it (nginx: proxy_set_header X-Request-Id $request_id), else made
// here, and always returned, so an operator can match a complaint to a line.
const requestIDHeader = "X-Request-Id"

// unrouted is the operation of requests no operation of the document
// matched (404s, pre-flights): one label, so a scan cannot blow up the
// metrics' cardinality.
const unrouted = "unrouted"

// accessLog writes one line per request and tells the observer. The
// duration is duration_ms, milliseconds to the microsecond: a unit in the
// key reads the same in the text and the JSON format (slog's own duration
// is "1.2ms" in text but bare nanoseconds in JSON). The line
// holds the operation id and the route's template, never the URL: query
// strings and paths carry tokens, client secrets and 3PID addresses.
func (s *Server) accessLog(obs Observer, v *validate.Validator) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			start := time.Now()
			id := requestID(c.Request().Header.Get(requestIDHeader))
			// The response header is also where requestIDOf finds it:
			// echo's context store would cost a map a request.
			c.Response().Header()[requestIDHeader] = []string{id}
			var errcode string
			if err := next(c); err != nil {
				errcode = s.toMatrix(err).Code
				c.Error(err)
			}
			d := time.Since(start)
			op, path := unrouted, ""
			if route := v.Route(c); route != nil {
				op, path = route.Operation.OperationID, route.Path
			} else if named, _ := c.Get(operationKey).(string); named != "" {
				op, path = named, c.Path()
			}
			status := c.Response().Status
			if obs != nil {
				obs.Request(op, status, errcode, d)
			}
			if ctx := c.Request().Context(); s.log.Enabled(ctx, slog.LevelInfo) {
				l := accessLine{at: start.Add(d), id: id, op: op, method: c.Request().Method, route: path,
					status: status, errcode: errcode, durationMS: float64(d.Microseconds()) / 1000}
				if s.accessLines == nil || !s.accessLines.write(&l) {
					s.log.LogAttrs(ctx, slog.LevelInfo, "request",
						slog.String("request_id", l.id), slog.String("op", l.op), slog.String("method", l.method),
						slog.String("route", l.route), slog.Int("status", l.status), slog.String("errcode", l.errcode),
						slog.Float64("duration_ms", l.durationMS))
				}
			}
			return nil
		}
	}
}

const (
	// operationKey names the operation of a route outside the document
	// (the docs), for the log and the metrics.
	operationKey = "sigil.operation"
)

// requestID keeps a proxy's id when it is a plain token (so a forged
// header cannot inject into the log) and otherwise makes one.
func requestID(given string) string {
	if n := len(given); n > 0 && n <= 64 && plainToken(given) {
		return given
	}
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func plainToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// requestIDOf is the id accessLog gave the request ("" outside it).
func requestIDOf(c echo.Context) string {
	if v := c.Response().Header()[requestIDHeader]; len(v) > 0 {
		return v[0]
	}
	return ""
}
