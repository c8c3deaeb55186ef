package handlers_test

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sigil-matrix/sigil/handlers"
	"github.com/sigil-matrix/sigil/handlers/apitest"
)

// NewHTTP composes its middleware once (composeOnce); the order must stay
// what Echo's Use gave: a panic in a handler is recovered inside the
// access log (so the request is logged, as a 500) and the response still
// carries the CORS headers and the request id.
func TestPanicIsLoggedWithCORS(t *testing.T) {
	var lines bytes.Buffer
	// No identity service: the key look-up dereferences nil and panics.
	e, err := handlers.NewHTTP(handlers.New(nil, slog.New(slog.NewTextHandler(io.Discard, nil))),
		handlers.HTTPOptions{AccessLog: &handlers.AccessLog{W: &lines}})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, httptest.NewRequest("GET", v2+"/pubkey/ed25519:0", nil))
	if rec.Code != 500 || !strings.Contains(rec.Body.String(), "M_UNKNOWN") {
		t.Errorf("got %d %s, want 500 M_UNKNOWN", rec.Code, rec.Body)
	}
	if rec.Header().Get("Access-Control-Allow-Origin") != "*" || rec.Header().Get("X-Request-Id") == "" {
		t.Errorf("CORS or request id header missing: %v", rec.Header())
	}
	if l := lines.String(); !strings.Contains(l, "op=GetPubKeyV2") || !strings.Contains(l, "status=500") {
		t.Errorf("access log %q, want the operation with status 500", l)
	}
}

// refuseAmbiguousFraming runs after routing since composeOnce (it was Echo
// Pre middleware): its answer stays JSON on a route whose errors are HTML
// pages (GET submitToken).
func TestAmbiguousFramingAnswersJSONOnPageRoutes(t *testing.T) {
	env := apitest.New(t)
	chunked := fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", 2, "{}")
	req := "GET " + v2 + "/validate/email/submitToken?sid=1&client_secret=a&token=b HTTP/1.1\r\nHost: x\r\n" +
		"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked
	resp, closed := rawRequest(t, env, req)
	ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if resp.StatusCode != http.StatusBadRequest || ct != "application/json" || !closed {
		t.Errorf("got %d %q (closed %v), want 400 application/json and the connection closed", resp.StatusCode, ct, closed)
	}
}
