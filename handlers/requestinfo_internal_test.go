package handlers

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/sigil-matrix/sigil/gen"
)

// The operations spared withRequestInfo must not read what it provides:
// their handlers (read from this package's source) call neither clientIP
// nor httpRequest, and each is an operation of the generated interface.
func TestHandlersWithoutRequestInfo(t *testing.T) {
	iface := reflect.TypeFor[gen.StrictServerInterface]()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	bodies := map[string]*ast.BlockStmt{}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			if fn, ok := d.(*ast.FuncDecl); ok && fn.Recv != nil && fn.Body != nil {
				bodies[fn.Name.Name] = fn.Body
			}
		}
	}
	for op := range withoutRequestInfo {
		if _, ok := iface.MethodByName(op); !ok {
			t.Errorf("%s is no operation of gen.StrictServerInterface", op)
			continue
		}
		body := bodies[op]
		if body == nil {
			t.Errorf("no handler %s found in the package's source", op)
			continue
		}
		ast.Inspect(body, func(n ast.Node) bool {
			if id, ok := n.(*ast.Ident); ok && (id.Name == "clientIP" || id.Name == "httpRequest") {
				t.Errorf("%s calls %s, but withRequestInfo skips it (withoutRequestInfo)", op, id.Name)
			}
			return true
		})
	}
}
