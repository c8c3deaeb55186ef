package handlers_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/sigil-matrix/sigil/handlers"
	"github.com/sigil-matrix/sigil/handlers/apitest"
	"github.com/sigil-matrix/sigil/handlers/identity"
	"github.com/sigil-matrix/sigil/handlers/metrics"
	"github.com/sigil-matrix/sigil/handlers/signing"
	"github.com/sigil-matrix/sigil/store"
)

// benchEnv seeds n bindings straight into the store and returns the HTTP
// stack in-process, so profiles show the server and not the network.
func benchEnv(b *testing.B, n int) (*echo.Echo, string, string) {
	env := apitest.New(b)
	ctx := b.Context()
	pepper := "benchpepper"
	if err := env.Store.SetSetting(ctx, identity.PepperKey, pepper); err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	as := make([]store.Association, n)
	for i := range as {
		addr := fmt.Sprintf("user%d@load.test", i)
		as[i] = store.Association{Medium: "email", Address: addr, MXID: fmt.Sprintf("@user%d:load.test", i),
			TS: now.UnixMilli(), NotBefore: now.UnixMilli(), NotAfter: now.Add(time.Hour).UnixMilli(),
			Signed: []byte(`{"address":"` + addr + `"}`), LookupHash: signing.LookupHash(addr, "email", pepper)}
	}
	if err := env.Store.InsertAssociations(ctx, as); err != nil {
		b.Fatal(err)
	}
	tok := "benchtoken"
	if err := env.Store.CreateAccount(ctx, "@bench:load.test", identity.AccessTokenHash(tok), now); err != nil {
		b.Fatal(err)
	}
	// As shipped: metrics, and the access log at info in slog's text
	// layout through the fast path (to a writer that drops it, as
	// cmd/sigil's logBuffer takes it without a system call).
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	e, err := handlers.NewHTTP(handlers.New(env.Identity, log), handlers.HTTPOptions{
		Observer: metrics.New(), AccessLog: &handlers.AccessLog{W: io.Discard},
	})
	if err != nil {
		b.Fatal(err)
	}
	return e, pepper, tok
}

func BenchmarkStack(b *testing.B) {
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
	cases := []struct {
		name, method, path string
		body               []byte
	}{
		{"status", "GET", "/_matrix/identity/v2", nil},
		{"lookup_v1", "GET", "/_matrix/identity/api/v1/lookup?medium=email&address=user42%40load.test", nil},
		{"bulk_lookup_1000", "POST", "/_matrix/identity/api/v1/bulk_lookup", bulk},
		{"lookup_v2_1000", "POST", "/_matrix/identity/v2/lookup", v2},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			defer reportCPU(b)()
			for i := 0; i < b.N; i++ {
				req := httptest.NewRequest(c.method, c.path, bytes.NewReader(c.body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+tok)
				rec := httptest.NewRecorder()
				e.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("%d %s", rec.Code, rec.Body)
				}
			}
		})
	}
}

// reportCPU reports the process's CPU time per operation (user and system,
// all threads: the GC's too) beside ns/op, which is wall time: on a
// machine shared with other work the CPU time is the steadier figure.
func reportCPU(b *testing.B) func() {
	start := cpuTime()
	b.ResetTimer()
	return func() {
		b.StopTimer()
		b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
