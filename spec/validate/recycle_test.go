package validate_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/sigil-matrix/sigil/spec/matrixerr"
	"github.com/sigil-matrix/sigil/spec/validate"
)

type recycler struct{ n int }

func (r *recycler) Recycle() { r.n++ }

// TestRecycledBodyBuffer: a body's buffer is reused only when its decoder
// lent it (RecycleAfter) and the handler answered without error; then the
// decoder's memory is handed back too.
func TestRecycledBodyBuffer(t *testing.T) {
	v := newValidator(t)
	const path = "/_matrix/identity/api/v1/bulk_lookup"
	e := echo.New()
	e.Use(v.Middleware())
	var (
		lend, fail bool
		r          recycler
		seen       []*byte
	)
	e.POST(path, func(c echo.Context) error {
		b := c.Request().Body.(*validate.Body)
		seen = append(seen, &b.Bytes()[0])
		if lend {
			b.RecycleAfter(&r)
		}
		if fail {
			return matrixerr.InvalidParam("no")
		}
		return c.NoContent(http.StatusNoContent)
	})
	v.Bind([]*echo.Route{{Method: "POST", Path: path, Name: "gen.(*ServerInterfaceWrapper).BulkLookup-fm"}})
	// Large enough for the pooled sizes (4 KiB and up).
	pairs := make([]string, 200)
	for i := range pairs {
		pairs[i] = fmt.Sprintf(`["email","user%d@example.org"]`, i)
	}
	body := `{"threepids":[` + strings.Join(pairs, ",") + `]}`
	send := func(t *testing.T) {
		t.Helper()
		req := httptest.NewRequest("POST", path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		if want := map[bool]int{false: 204, true: 500}[fail]; rec.Code != want {
			t.Fatalf("%d %s", rec.Code, rec.Body)
		}
	}
	tests := []struct {
		name       string
		lend, fail bool
		recycled   bool
	}{
		{"not lent", false, false, false},
		{"lent, handler failed", true, true, false},
		{"lent, answered", true, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lend, fail, r.n, seen = tt.lend, tt.fail, 0, nil
			send(t)
			if got := r.n == 1; got != tt.recycled {
				t.Errorf("decoder's memory recycled: %v, want %v", got, tt.recycled)
			}
			if !tt.recycled {
				return
			}
			// sync.Pool may drop what it holds at any time (a GC):
			// the buffer must come back on most tries, not all.
			reused := 0
			for range 20 {
				seen = seen[:1]
				lend, fail = false, false
				send(t)
				if seen[1] == seen[0] {
					reused++
				}
				lend = true
				send(t) // lends seen[2]'s buffer for the next round
				seen[0] = seen[2]
			}
			if reused < 10 {
				t.Errorf("recycled buffer reused %d times in 20", reused)
			}
		})
	}
}
