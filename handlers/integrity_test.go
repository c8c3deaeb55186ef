package handlers_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/sigil-matrix/sigil/handlers"
	"github.com/sigil-matrix/sigil/handlers/apitest"
)

// Regression (issue 10): JSON keys are case-sensitive. A key differing
// from "threepids" only in case used to reach the handler in its place
// (sonic, like encoding/json, matched keys case-insensitively): a
// one-item tuple panicked the handler (500), an empty list replaced the
// validated one.
func TestBulkLookupDecodesTheValidatedKeyOnly(t *testing.T) {
	env := apitest.New(t)
	bindEmail(t, env, "nia@example.org", "@nia:example.org")
	want := fmt.Sprint([][]string{{"email", "nia@example.org", "@nia:example.org"}})
	for _, body := range []string{
		`{"threepids":[["email","nia@example.org"]],"Threepids":[["email"]]}`,
		`{"threepids":[["email","nia@example.org"]],"THREEPIDS":[]}`,
		`{"THREEPIDS":[],"threepids":[["email","nia@example.org"]]}`,
	} {
		r := env.Post(v1+"/bulk_lookup", body)
		if r.Status != 200 {
			t.Errorf("%s: %d %s", body, r.Status, r.Body)
			continue
		}
		if got := fmt.Sprint(r.JSON()["threepids"]); got != want {
			t.Errorf("%s: threepids %s, want the validated list's %s", body, got, want)
		}
	}
	// Only the exact key is the field: "Threepids" alone is not it.
	if r := env.Post(v1+"/bulk_lookup", `{"Threepids":[["email","nia@example.org"]]}`); r.Status != 400 || r.Errcode() != "M_MISSING_PARAMS" {
		t.Errorf("case-variant key alone: %d %s", r.Status, r.Body)
	}
}

// Regression (issue 10): with a repeated key the validator saw one value
// and the decoder kept another; such bodies are refused.
func TestDuplicateKeysAreRefused(t *testing.T) {
	env := apitest.New(t)
	for _, c := range []struct{ path, body string }{
		{v1 + "/bulk_lookup", `{"threepids":[["email","a@b.c"]],"threepids":[["email"]]}`},
		{v1 + "/bulk_lookup", `{"threepids":[["email","a@b.c"]],"threepids":[]}`},
		{v1 + "/validate/email/requestToken", `{"client_secret":"abc","email":"a@example.org","email":"b@example.org"}`},
		// Nested, and with an escaped spelling of the same key.
		{v1 + "/store-invite", `{"medium":"email","address":"a@example.org","room_id":"!r:x","sender":"@s:x","room_name":"a","room_n\u0061me":"b"}`},
	} {
		r := env.Post(c.path, c.body)
		if r.Status != 400 || r.Errcode() != "M_BAD_JSON" {
			t.Errorf("%s %s: %d %s", c.path, c.body, r.Status, r.Body)
		}
	}
}

// Regression (issue 10): a route Echo serves that is bound to no operation
// of the API description used to pass the validator (and the auth
// middleware) untouched; it is refused with a 500 and its handler never runs.
func TestRouteWithoutOperationIsRefused(t *testing.T) {
	env := apitest.New(t)
	var logged bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logged, nil))
	e, err := handlers.NewHTTP(handlers.New(env.Identity, log), handlers.HTTPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	called := false
	h := func(c echo.Context) error { called = true; return c.String(http.StatusOK, "served") }
	e.GET("/_matrix/identity/v2/extra", h)
	e.PUT("/_matrix/identity/v2/lookup", h)           // an operation's path, another method
	e.GET("/_matrix/identity/v2/account/logout/x", h) // beside an authenticated operation
	for _, r := range []struct{ method, path string }{
		{"GET", "/_matrix/identity/v2/extra"},
		{"PUT", "/_matrix/identity/v2/lookup"},
		{"GET", "/_matrix/identity/v2/account/logout/x"},
	} {
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, httptest.NewRequest(r.method, r.path, strings.NewReader("{}")))
		if rec.Code != 500 || !strings.Contains(rec.Body.String(), "M_UNKNOWN") {
			t.Errorf("%s %s: %d %s", r.method, r.path, rec.Code, rec.Body)
		}
	}
	if called {
		t.Error("a route without an operation was served")
	}
	if !strings.Contains(logged.String(), "route GET /_matrix/identity/v2/extra serves no operation") {
		t.Errorf("refusal not logged: %s", logged.String())
	}
	// Unrouted requests still get Echo's 404/405, as Matrix errors.
	for _, r := range []struct {
		method, path string
		code         int
	}{{"GET", "/_matrix/identity/v2/nothing", 404}, {"DELETE", "/_matrix/identity/v2/lookup", 405}} {
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, httptest.NewRequest(r.method, r.path, nil))
		if rec.Code != r.code || !strings.Contains(rec.Body.String(), "M_UNRECOGNIZED") {
			t.Errorf("%s %s: %d %s", r.method, r.path, rec.Code, rec.Body)
		}
	}
}
