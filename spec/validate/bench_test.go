package validate_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/labstack/echo/v4"
)

// bulkBody is a bulk_lookup of n threepids, the largest body on a hot path.
func bulkBody(n int) []byte {
	tp := make([][]string, n)
	for i := range tp {
		tp[i] = []string{"email", fmt.Sprintf("user%d@example.org", i)}
	}
	b, _ := json.Marshal(map[string]any{"threepids": tp})
	return b
}

func hashBody(n int) []byte {
	a := make([]string, n)
	for i := range a {
		a[i] = fmt.Sprintf("%043d", i)
	}
	b, _ := json.Marshal(map[string]any{"algorithm": "sha256", "pepper": "p", "addresses": a})
	return b
}

// BenchmarkMiddleware measures validating a 1,000-item body, routing and
// body handling included; the handler behind it does nothing.
func BenchmarkMiddleware(b *testing.B) {
	v := newValidator(b)
	e := echo.New()
	e.Use(v.Middleware())
	ok := func(c echo.Context) error { return c.NoContent(http.StatusNoContent) }
	e.POST("/_matrix/identity/api/v1/bulk_lookup", ok)
	e.POST("/_matrix/identity/v2/lookup", ok)
	// Bind these routes as the generated router's handlers would be.
	v.Bind([]*echo.Route{
		{Method: "POST", Path: "/_matrix/identity/api/v1/bulk_lookup", Name: "gen.(*ServerInterfaceWrapper).BulkLookup-fm"},
		{Method: "POST", Path: "/_matrix/identity/v2/lookup", Name: "gen.(*ServerInterfaceWrapper).LookupV2-fm"},
	})
	for _, tc := range []struct {
		name, path string
		body       []byte
	}{
		{"bulk_lookup_1000", "/_matrix/identity/api/v1/bulk_lookup", bulkBody(1000)},
		{"v2_lookup_1000", "/_matrix/identity/v2/lookup", hashBody(1000)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(tc.body)))
			for i := 0; i < b.N; i++ {
				req := httptest.NewRequest("POST", tc.path, bytes.NewReader(tc.body))
				req.Header.Set("Content-Type", "application/json")
				rec := httptest.NewRecorder()
				e.ServeHTTP(rec, req)
				if rec.Code != http.StatusNoContent {
					b.Fatalf("status %d: %s", rec.Code, rec.Body)
				}
			}
		})
	}
}
