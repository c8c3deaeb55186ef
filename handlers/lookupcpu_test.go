//go:build unix

package handlers_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"

	"github.com/sigil-matrix/sigil/handlers/signing"
)

// BenchmarkLookupCPU is BenchmarkStack's two 1,000-item lookups with the
// process's CPU time per request ("cpu-ns/op", the GC's included) beside
// the wall time: on a shared machine the wall time says more about the
// neighbours than about the code.
func BenchmarkLookupCPU(b *testing.B) {
	const n = 100000
	e, pepper, tok := benchEnv(b, n)
	tp := make([][]string, 1000)
	hashes := make([]string, 1000)
	for i := range tp {
		addr := fmt.Sprintf("user%d@load.test", i*2*n/1000) // half bound
		tp[i] = []string{"email", addr}
		hashes[i] = signing.LookupHash(addr, "email", pepper)
	}
	bulk, _ := json.Marshal(map[string]any{"threepids": tp})
	v2, _ := json.Marshal(map[string]any{"algorithm": "sha256", "pepper": pepper, "addresses": hashes})
	for _, c := range []struct {
		name, path string
		body       []byte
	}{
		{"bulk_lookup_1000", "/_matrix/identity/api/v1/bulk_lookup", bulk},
		{"lookup_v2_1000", "/_matrix/identity/v2/lookup", v2},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			before := processCPU()
			for b.Loop() {
				req := httptest.NewRequest("POST", c.path, bytes.NewReader(c.body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+tok)
				rec := httptest.NewRecorder()
				e.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("%d %s", rec.Code, rec.Body)
				}
			}
			b.ReportMetric(float64(processCPU()-before)/float64(b.N), "cpu-ns/op")
		})
	}
}

// processCPU is the user and system CPU time of the process, in ns.
func processCPU() int64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
