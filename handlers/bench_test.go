package handlers_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
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
	pepper, tok := "benchpepper", "benchtoken"
	seedBindings(b, env, n, "load.test", pepper, tok)
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

// seedBindings binds user<i>@domain to @user<i>:domain for i < n, valid
// for an hour, with lookup hashes under pepper (made the current one),
// and registers the access token tok.
func seedBindings(tb testing.TB, env *apitest.Env, n int, domain, pepper, tok string) {
	ctx := tb.Context()
	if err := env.Store.SetSetting(ctx, identity.PepperKey, pepper); err != nil {
		tb.Fatal(err)
	}
	now := time.Now()
	as := make([]store.Association, n)
	for i := range as {
		addr := fmt.Sprintf("user%d@%s", i, domain)
		as[i] = store.Association{Medium: "email", Address: addr, MXID: fmt.Sprintf("@user%d:%s", i, domain),
			TS: now.UnixMilli(), NotBefore: now.UnixMilli(), NotAfter: now.Add(time.Hour).UnixMilli(),
			Signed: []byte(`{"address":"` + addr + `"}`), LookupHash: signing.LookupHash(addr, "email", pepper)}
	}
	if err := env.Store.InsertAssociations(ctx, as); err != nil {
		tb.Fatal(err)
	}
	if err := env.Store.CreateAccount(ctx, "@bench:"+domain, identity.AccessTokenHash(tok), now); err != nil {
		tb.Fatal(err)
	}
}

// stackCase is one request of the stack benchmarks.
type stackCase struct {
	name, method, path string
	body               []byte
}

// stackCases seeds 100,000 bindings and returns the stack with the
// benchmarks' requests: the status check, a v1 lookup of a bound address,
// and 1,000-address bulk and v2 lookups (half bound).
func stackCases(b *testing.B) (*echo.Echo, string, []stackCase) {
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
	return e, tok, []stackCase{
		{"status", "GET", "/_matrix/identity/v2", nil},
		{"lookup_v1", "GET", "/_matrix/identity/api/v1/lookup?medium=email&address=user42%40load.test", nil},
		{"bulk_lookup_1000", "POST", "/_matrix/identity/api/v1/bulk_lookup", bulk},
		{"lookup_v2_1000", "POST", "/_matrix/identity/v2/lookup", v2},
	}
}

// serve sends c's request through the stack and reports whether it was
// answered 200 (an error otherwise: b.Errorf, as RunParallel's goroutines
// may not call Fatal).
func (c stackCase) serve(b *testing.B, e *echo.Echo, tok string) bool {
	req := httptest.NewRequest(c.method, c.path, bytes.NewReader(c.body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+tok)
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		b.Errorf("%s: %d %s", c.name, rec.Code, rec.Body)
		return false
	}
	return true
}

func BenchmarkStack(b *testing.B) {
	e, tok, cases := stackCases(b)
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			defer reportCPU(b)()
			for i := 0; i < b.N; i++ {
				if !c.serve(b, e, tok) {
					b.FailNow()
				}
			}
		})
	}
}

// BenchmarkStackParallel is the server's own scaling, without a network
// or a load generator sharing the cores: with -cpu 1,2, ns/op at one
// core over ns/op at two is the speed-up two cores give (2.0 is perfect).
// On a 2-core machine the load command cannot show this, as its generator
// needs one of the cores.
func BenchmarkStackParallel(b *testing.B) {
	e, tok, cases := stackCases(b)
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			defer reportCPU(b)()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() && c.serve(b, e, tok) {
				}
			})
		})
	}
}

// reportCPU reports the process's CPU time per operation (user and system,
// all threads: the GC's too) beside ns/op, which is wall time: on a
// machine shared with other work the CPU time is the steadier figure.
func reportCPU(b *testing.B) func() {
	start := handlers.CPUNanos()
	b.ResetTimer()
	return func() {
		b.StopTimer()
		b.ReportMetric(float64(handlers.CPUNanos()-start)/float64(b.N), "cpu-ns/op")
	}
}
