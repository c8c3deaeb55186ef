package validate_test

import (
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/sigil-matrix/sigil/gen"
	"github.com/sigil-matrix/sigil/spec/validate"
)

// Every route the generated router registers serves an operation of the
// document, and every operation has its route (issue 10: the validator's
// route table is the generated router's).
func TestEveryRegisteredRouteHasItsOperation(t *testing.T) {
	doc, err := gen.GetSwagger()
	if err != nil {
		t.Fatal(err)
	}
	v, err := validate.New(doc, 0)
	if err != nil {
		t.Fatal(err)
	}
	e := echo.New()
	gen.RegisterHandlers(e, gen.NewStrictHandler(nil, nil))
	if unbound := v.Bind(e.Routes()); len(unbound) != 0 {
		t.Errorf("routes without an operation: %v", unbound)
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
