package validate_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/sigil-matrix/sigil/spec/validate"
)

// TestBodyBufferIsTheRequests holds Body.Bytes to its contract: the
// buffer belongs to one request and is never written nor reused, so
// decoders may keep strings that point into it (the lookup decoders in
// handlers do). Pooling or recycling it would change the addresses one
// request decoded while it is being answered.
func TestBodyBufferIsTheRequests(t *testing.T) {
	v := newValidator(t)
	const path = "/_matrix/identity/api/v1/bulk_lookup"
	e := echo.New()
	e.Use(v.Middleware())
	var seen [][]byte
	e.POST(path, func(c echo.Context) error {
		b, ok := c.Request().Body.(*validate.Body)
		if !ok {
			t.Fatalf("body is a %T", c.Request().Body)
		}
		seen = append(seen, b.Bytes())
		return c.NoContent(http.StatusNoContent)
	})
	v.Bind([]*echo.Route{{Method: "POST", Path: path, Name: "gen.(*ServerInterfaceWrapper).BulkLookup-fm"}})

	bodies := []string{
		`{"threepids":[["email","a@example.org"]]}`,
		`{"threepids":[["email","b@example.org"]]}`, // the same length
		`{"threepids":[["email","c@example.org"]]}`,
	}
	for _, body := range bodies {
		req := httptest.NewRequest("POST", path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		if rec.Code != http.StatusNoContent {
			t.Fatalf("%s: %d %s", body, rec.Code, rec.Body)
		}
	}
	for i, b := range seen {
		if string(b) != bodies[i] {
			t.Errorf("request %d's body became %s", i, b)
		}
		for j := range i {
			if &seen[j][0] == &b[0] || bytes.Equal(seen[j], b) {
				t.Errorf("requests %d and %d share a body buffer", j, i)
			}
		}
	}
}
