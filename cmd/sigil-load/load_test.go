package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sigil-matrix/sigil/handlers/signing"
)

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	for p, want := range map[float64]time.Duration{1: 1, 50: 50, 90: 90, 99: 99, 99.5: 100, 100: 100, 0: 1} {
		if got := percentile(d, p); got != want*time.Millisecond {
			t.Errorf("p%v of 1..100 ms = %v, want %v ms", p, got, want)
		}
	}
	ten := d[:10] // 1..10 ms: nearest rank rounds up
	if got := percentile(ten, 50); got != 5*time.Millisecond {
		t.Errorf("p50 of 1..10 = %v", got)
	}
	if got := percentile(ten, 99); got != 10*time.Millisecond {
		t.Errorf("p99 of 1..10 = %v", got)
	}
	if got := percentile(d[:1], 99); got != time.Millisecond {
		t.Errorf("p99 of one value = %v", got)
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("p50 of nothing = %v", got)
	}
}

func TestParseStatTicks(t *testing.T) {
	// A command name with spaces and parentheses; utime 250, stime 75.
	line := "4242 (sig il) (x)) S 1 4242 4242 0 -1 4194560 1523 0 0 0 250 75 3 4 20 0 9 0 123456 1234567 2345 18446744073709551615\n"
	got, err := parseStatTicks(line)
	if err != nil || got != 325 {
		t.Fatalf("parseStatTicks = %d, %v; want 325", got, err)
	}
	for _, bad := range []string{"", "4242 sigil S 1 2", "4242 (sigil) S 1 2 3", "4242 (sigil) S 1 4242 4242 0 -1 4194560 1523 0 0 0 x 75 3"} {
		if _, err := parseStatTicks(bad); err == nil {
			t.Errorf("parseStatTicks(%q) accepted", bad)
		}
	}
	// And the real thing.
	if n, err := selfCPUTicks(); err != nil || n < 0 {
		t.Errorf("selfCPUTicks = %d, %v", n, err)
	}
}

func TestParseStatusKB(t *testing.T) {
	status := "Name:\tsigil\nState:\tS (sleeping)\nVmPeak:\t 1300000 kB\nVmHWM:\t   81234 kB\nVmRSS:\t   60000 kB\nThreads:\t9\n"
	for field, want := range map[string]int64{"VmHWM": 81234, "VmRSS": 60000, "VmPeak": 1300000} {
		if got, err := parseStatusKB(status, field); err != nil || got != want {
			t.Errorf("%s = %d, %v; want %d", field, got, err, want)
		}
	}
	if _, err := parseStatusKB(status, "VmSwap"); err == nil {
		t.Error("missing field accepted")
	}
	if _, err := parseStatusKB("VmHWM:\t12 MB\n", "VmHWM"); err == nil {
		t.Error("wrong unit accepted")
	}
}

func TestParseMachineTicks(t *testing.T) {
	stat := "cpu  100 5 50 1000 20 1 2 3 7 0\ncpu0 50 2 25 500 10 0 1 1 0 0\n"
	busy, total, err := parseMachineTicks(stat)
	if err != nil || busy != 161 || total != 1181 {
		t.Fatalf("parseMachineTicks = %d, %d, %v; want 161, 1181", busy, total, err)
	}
	if _, _, err := parseMachineTicks("intr 1 2 3\n"); err == nil {
		t.Error("bad /proc/stat accepted")
	}
}

func TestHalfBound(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, c := range []struct{ n, size int }{{10000, 1000}, {200, 100}, {3, 10}} {
		picks := halfBound(c.n, c.size, rng)
		bound, seen := 0, map[int]bool{}
		for _, i := range picks {
			if i < 0 || i >= 2*c.n {
				t.Fatalf("n=%d: pick %d out of range", c.n, i)
			}
			if i < c.n {
				bound++
			}
			seen[i] = true
		}
		if len(picks) != c.size || bound != c.size/2 {
			t.Errorf("n=%d size=%d: %d picks, %d bound", c.n, c.size, len(picks), bound)
		}
		if c.size/2 <= c.n && len(seen) != c.size {
			t.Errorf("n=%d size=%d: %d distinct picks", c.n, c.size, len(seen))
		}
	}
}

// TestSeededServer seeds 200 bindings, starts the real sigil binary on them
// and checks that the benchmark's requests find exactly what was seeded,
// then runs every workload briefly and expects no errors.
func TestSeededServer(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts the sigil binary")
	}
	ctx := context.Background()
	dir := t.TempDir()
	bin, err := buildSigil(ctx, ".", dir)
	if err != nil {
		t.Fatal(err)
	}
	const n = 200
	dsn := sqlitePath(dir)
	fx, err := seedDatabase(ctx, dsn, dir, n, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := startServer(ctx, bin, dir, dsn, fx.KeyPath, true, "")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.stop()
	client := newClient(4)
	p := newPools(n, fx, 4, 100, 7)

	do := func(wl string, rng *rand.Rand, out any) {
		t.Helper()
		req := p.workload(wl).req(rng).http(srv.base)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: HTTP %d %s", wl, resp.StatusCode, b)
		}
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s: %v in %s", wl, err, b)
		}
	}
	get := func(path string, out any) {
		t.Helper()
		resp, err := client.Get(srv.base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET %s: HTTP %d, %v", path, resp.StatusCode, err)
		}
	}

	// The server signs with the key the seeder used.
	var pub struct {
		PublicKey string `json:"public_key"`
	}
	get(v2Prefix+"/pubkey/"+fx.Key.ID, &pub)
	if pub.PublicKey != fx.Key.PublicBase64() {
		t.Fatalf("server public key %q, seeded with %q", pub.PublicKey, fx.Key.PublicBase64())
	}

	// v1 lookup: a bound address answers its signed association.
	var signed map[string]any
	get(v1Prefix+"/lookup?medium=email&address="+email(137), &signed)
	if signed["mxid"] != mxid(137) || signed["address"] != email(137) {
		t.Fatalf("lookup of %s = %v", email(137), signed)
	}
	if err := signing.VerifyJSON(signed, serverName, map[string]ed25519.PublicKey{fx.Key.ID: fx.Key.Public()}); err != nil {
		t.Fatalf("signature of the seeded association: %v", err)
	}
	var empty map[string]any
	get(v1Prefix+"/lookup?medium=email&address="+email(n+5), &empty)
	if len(empty) != 0 {
		t.Fatalf("lookup of an unbound address = %v", empty)
	}
	// The workload's own random lookups: bound ones answer their mxid.
	rng := rand.New(rand.NewPCG(3, 4))
	hits := 0
	for range 40 {
		var got map[string]any
		do(wlLookupV1, rng, &got)
		if len(got) > 0 {
			hits++
			addr, _ := got["address"].(string)
			if want := "@" + strings.TrimSuffix(addr, "@load.test") + ":load.test"; got["mxid"] != want {
				t.Errorf("lookup %s → %v", addr, got["mxid"])
			}
		}
	}
	if hits == 0 || hits == 40 {
		t.Errorf("%d of 40 random v1 lookups bound; want about half", hits)
	}

	// bulk_lookup of a pool body: exactly its bound half.
	var bulk struct {
		Threepids [][]string `json:"threepids"`
	}
	one := rand.New(&fixedSource{}) // IntN(len(pool)) == 0: the first body
	do(wlBulkLookupV1, one, &bulk)
	want := map[string]string{}
	for _, i := range p.bulk[0].picks {
		if i < n {
			want[email(i)] = mxid(i)
		}
	}
	if len(bulk.Threepids) != len(want) || len(want) != 50 {
		t.Fatalf("bulk_lookup found %d, want %d (of 100)", len(bulk.Threepids), len(want))
	}
	for _, tp := range bulk.Threepids {
		if len(tp) != 3 || tp[0] != "email" || want[tp[1]] != tp[2] {
			t.Fatalf("bulk_lookup answered %v", tp)
		}
	}

	// v2 lookup of a pool body: exactly the hashes of its bound half.
	var v2 struct {
		Mappings map[string]string `json:"mappings"`
	}
	do(wlLookupV2, one, &v2)
	wantHashes := map[string]string{}
	for _, i := range p.hashed[0].picks {
		if i < n {
			wantHashes[signing.LookupHash(email(i), "email", fx.Pepper)] = mxid(i)
		}
	}
	if len(v2.Mappings) != 50 || len(v2.Mappings) != len(wantHashes) {
		t.Fatalf("v2 lookup mapped %d, want %d", len(v2.Mappings), len(wantHashes))
	}
	for h, m := range wantHashes {
		if v2.Mappings[h] != m {
			t.Fatalf("v2 lookup: %s → %q, want %q", h, v2.Mappings[h], m)
		}
	}

	// Every workload runs without errors through the measuring path; the
	// first is also profiled through the server's debug listener.
	for i, name := range workloadNames() {
		var profiled <-chan error
		profPath := filepath.Join(dir, "prof", name+".pprof")
		if i == 0 {
			profiled = srv.profile(ctx, 0, time.Second, profPath)
		}
		r, err := measure(ctx, srv, p.workload(name), 4, 0, 250*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if profiled != nil {
			if err := <-profiled; err != nil {
				t.Fatalf("profile: %v", err)
			}
			// A CPU profile is a gzipped protobuf.
			if b, err := os.ReadFile(profPath); err != nil || len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
				t.Errorf("profile of %s: %v, %d bytes", name, err, len(b))
			}
		}
		if r.Requests == 0 || r.Errors != 0 || r.P99MS < r.P50MS || r.ServerCPUMS < 0 {
			t.Errorf("%s: %d requests, %d errors (%s), p50 %.2f p99 %.2f", name, r.Requests, r.Errors, r.FirstErr, r.P50MS, r.P99MS)
		}
	}
	if rss := srv.memMB("VmHWM"); rss <= 0 {
		t.Errorf("peak RSS %v MB", rss)
	}
}

// fixedSource always returns 0, so rng.IntN(k) picks the first element.
type fixedSource struct{}

func (*fixedSource) Uint64() uint64 { return 0 }

func TestCPUCount(t *testing.T) {
	for list, want := range map[string]int{"0": 1, "0,1": 2, "0-3": 4, "0-3,6": 5, "1-2,4-5": 4, "": 1, "x": 1} {
		if got := cpuCount(list); got != want {
			t.Errorf("cpuCount(%q) = %d, want %d", list, got, want)
		}
	}
}
