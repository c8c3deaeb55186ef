package validate_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/sigil-matrix/sigil/gen"
	"github.com/sigil-matrix/sigil/spec/validate"
)

// Every route the generated router registers serves an operation of the
// document, and every operation has its route (issue 10: the validator's
// route table is the generated router's).
func TestEveryRegisteredRouteHasItsOperation(t *testing.T) {
	v := newValidator(t)
	e := echo.New()
	gen.RegisterHandlers(e, gen.NewStrictHandler(nil, nil))
	if unbound := v.Bind(e.Routes()); len(unbound) != 0 {
		t.Errorf("routes without an operation: %v", unbound)
	}
	doc, err := gen.GetSwagger()
	if err != nil {
		t.Fatal(err)
	}
	ops := 0
	for _, item := range doc.Paths.Map() {
		ops += len(item.Operations())
	}
	if n := len(e.Routes()); n != ops {
		t.Errorf("%d routes for %d operations", n, ops)
	}
	// A hand-registered handler is bound to nothing, even on an
	// operation's method and path.
	e.POST("/_matrix/identity/v2/lookup", func(echo.Context) error { return nil })
	if unbound := v.Bind(e.Routes()); len(unbound) != 1 {
		t.Errorf("hand-registered route bound: %v", unbound)
	}
}

// Routes outside the API (documentation, health checks) are declared one by
// one and pass through; nothing under /_matrix can be declared so.
func TestOutsideRoutesAreDeclaredAndNeverUnderMatrix(t *testing.T) {
	v := newValidator(t)
	e := echo.New()
	e.Use(v.Middleware())
	ok := func(c echo.Context) error { return c.NoContent(http.StatusNoContent) }
	page := e.GET("/docs/", ok)
	e.GET("/undeclared", ok)
	if err := v.Outside(page); err != nil {
		t.Fatal(err)
	}
	if unbound := v.Bind(e.Routes()); len(unbound) != 1 || !strings.HasPrefix(unbound[0], "GET /undeclared ") {
		t.Errorf("unbound %v, want only GET /undeclared", unbound)
	}
	for path, want := range map[string]int{"/docs/": http.StatusNoContent, "/undeclared": http.StatusInternalServerError} {
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if rec.Code != want {
			t.Errorf("GET %s: %d, want %d", path, rec.Code, want)
		}
	}
	for _, p := range []string{"/_matrix", "/_matrix/identity/v2/anything"} {
		if err := v.Outside(e.GET(p, ok)); err == nil {
			t.Errorf("%s declared outside the API", p)
		}
	}
}

// newValidator is the validator of the embedded document, with no body
// limit of its own.
func newValidator(tb testing.TB) *validate.Validator {
	tb.Helper()
	doc, err := gen.GetSwagger()
	if err != nil {
		tb.Fatal(err)
	}
	v, err := validate.New(doc, 0)
	if err != nil {
		tb.Fatal(err)
	}
	return v
}
