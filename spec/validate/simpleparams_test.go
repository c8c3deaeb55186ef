package validate

import (
	"testing"

	"github.com/sigil-matrix/sigil/gen"
)

// The fast path covers the small GET operations (a v1 lookup, the status,
// the public keys) and no operation with a constrained parameter.
func TestSimpleParamsCoverage(t *testing.T) {
	doc, err := gen.GetSwagger()
	if err != nil {
		t.Fatal(err)
	}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			sp, ok := compileSimpleParams(item, op)
			switch op.OperationID {
			case "lookupV1", "getPingV2", "getPubKey":
				if !ok {
					t.Errorf("%s %s (%s) is not on the fast path", method, path, op.OperationID)
				}
			}
			for _, p := range sp {
				if p.name == "" {
					t.Errorf("%s: unnamed parameter", op.OperationID)
				}
			}
		}
	}
}
