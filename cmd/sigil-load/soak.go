package main

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// soakOptions configure `sigil-load -soak` (make soak, make soak-quick).
type soakOptions struct {
	duration    time.Duration
	n           int
	interval    time.Duration
	clients     int // client addresses the mixed load comes from
	concurrency int
	maxRSSMB    float64
	flatPct     float64
	legacy      bool // the server predates retention settings (a "before" run)
	lifetime    time.Duration
}

// soakConfig is the server's configuration for a soak: client addresses
// from X-Forwarded-For, the default mail limits (the flood must be
// refused), short session lifetimes and retention so that the purge's
// effect shows within minutes.
func soakConfig(o soakOptions, dsn, keyPath string, debugPort int) func(int) string {
	return func(port int) string {
		cfg := fmt.Sprintf(`server_name: %s
public_base_url: http://127.0.0.1:%d
listen: 127.0.0.1:%d
debug_listen: 127.0.0.1:%d
database: %q
signing_key: %q
log_level: warn
federation:
  trust_forwarded_for: true
sessions:
  token_lifetime: %s
  session_lifetime: %s
`, serverName, port, port, debugPort, dsn, keyPath, o.lifetime, o.lifetime)
		if !o.legacy {
			cfg += fmt.Sprintf("retention:\n  expired_sessions: 1s\n  invites: %s\n  onbind_deliveries: %s\n  purge_every: %s\n",
				o.lifetime, o.lifetime, o.lifetime/4)
		}
		return cfg
	}
}

// downgradeForLegacy removes what the seeder's newer schema has and an
// older server does not know (it refuses a database with a migration it
// lacks): the imported ephemeral keys of migration 0006 and the purge
// indexes of migration 0007.
func downgradeForLegacy(path string) error {
	db, err := sql.Open("sqlite3", path) // registered by the store's driver
	if err != nil {
		return err
	}
	defer db.Close()
	for _, q := range []string{
		"DROP INDEX IF EXISTS idx_invites_created_at",
		"DROP INDEX IF EXISTS idx_onbind_deliveries_delivered_at",
		"DROP INDEX IF EXISTS idx_onbind_deliveries_failed_at",
		"DELETE FROM schema_migrations WHERE id = '0007_purge_indexes'",
		"DROP TABLE IF EXISTS imported_ephemeral_keys",
		"DELETE FROM schema_migrations WHERE id = '0006_imported_ephemeral_keys'",
	} {
		if _, err := db.Exec(q); err != nil {
			return fmt.Errorf("legacy schema: %s: %w", q, err)
		}
	}
	return nil
}

// soakSample is one line of the soak's report.
type soakSample struct {
	at         time.Duration
	rssMB      float64
	heapMB     float64
	goroutines int
	dbMB       float64
	requests   int64
	refused    int64 // 429 answers to the flooding client
	errors     int64 // 5xx and transport failures of the mixed load
}

// runSoak seeds o.n bindings, starts the server and runs a mixed load from
// many client addresses plus one flooding client for o.duration, printing
// a sample every o.interval. It fails when a target is missed: peak RSS
// under o.maxRSSMB; the last minute's mean RSS within o.flatPct % of the
// first minute's; the database no larger at the end than o.flatPct % over
// its size at a third of the run (the retention windows are shorter).
func runSoak(ctx context.Context, o options, so soakOptions) error {
	work, err := os.MkdirTemp("", "sigil-soak-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	bin := o.sigilBin
	if bin == "" {
		if bin, err = buildSigil(ctx, o.srcDir, work); err != nil {
			return err
		}
	}
	dsn := sqlitePath(work)
	fmt.Printf("== soak: SQLite, N=%d, %s, %d client addresses + 1 flooding client, %d workers\n", so.n, so.duration, so.clients, so.concurrency)
	fx, err := seedDatabase(ctx, dsn, work, so.n, false, os.Stderr)
	if err != nil {
		return err
	}
	fmt.Printf("seeded %d bindings in %s\n", so.n, fx.SeedTime.Round(time.Second))
	if so.legacy {
		if err := downgradeForLegacy(dsn); err != nil {
			return err
		}
	}
	dport, err := freePort()
	if err != nil {
		return err
	}
	srv, err := startServerWith(ctx, bin, work, soakConfig(so, dsn, fx.KeyPath, dport), false, "")
	if err != nil {
		return err
	}
	defer srv.stop()
	debug := fmt.Sprintf("http://127.0.0.1:%d", dport)

	var stats soakCounters
	loadCtx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	pools := newPools(so.n, fx, 64, 100, 7)
	for w := range so.concurrency {
		wg.Go(func() { soakWorker(loadCtx, srv.base, pools, so, uint64(w), &stats) })
	}
	wg.Go(func() { floodWorker(loadCtx, srv.base, &stats) })

	start := time.Now()
	var samples []soakSample
	fmt.Printf("%8s %9s %9s %10s %9s %10s %10s %8s\n", "time", "RSS MB", "heap MB", "goroutines", "DB MB", "requests", "refused", "errors")
	tick := time.NewTicker(so.interval)
	defer tick.Stop()
	for time.Since(start) < so.duration {
		select {
		case <-ctx.Done():
			stopLoad()
			wg.Wait()
			return ctx.Err()
		case <-tick.C:
		}
		if err := srv.alive(); err != nil {
			stopLoad()
			wg.Wait()
			return err
		}
		s := soakSample{at: time.Since(start).Round(time.Second), rssMB: srv.memMB("VmRSS"), dbMB: dbSizeMB(dsn),
			requests: stats.requests.Load(), refused: stats.refused.Load(), errors: stats.errors.Load()}
		s.heapMB, s.goroutines = runtimeStats(debug)
		samples = append(samples, s)
		fmt.Printf("%8s %9.1f %9.1f %10d %9.1f %10d %10d %8d\n", s.at, s.rssMB, s.heapMB, s.goroutines, s.dbMB, s.requests, s.refused, s.errors)
	}
	stopLoad()
	wg.Wait()
	peak := srv.memMB("VmHWM")
	return judgeSoak(so, samples, peak, stats.firstErr())
}

// judgeSoak prints the verdict and returns an error naming every target
// missed.
func judgeSoak(so soakOptions, samples []soakSample, peakMB float64, firstErr string) error {
	if len(samples) < 2 {
		return errors.New("soak: too few samples")
	}
	end := samples[len(samples)-1].at
	minute := time.Minute
	if end < 3*time.Minute {
		minute = end / 3 // the short version: thirds instead of minutes
	}
	// The reference is the RSS once the first minute is over (start-up
	// and the index load are behind), against the last minute's mean.
	var firstRSS float64
	var last []float64
	for _, s := range samples {
		if s.at <= minute {
			firstRSS = s.rssMB
		}
		if s.at >= end-minute {
			last = append(last, s.rssMB)
		}
	}
	lastRSS := mean(last)
	var dbThird float64
	for _, s := range samples {
		if s.at <= end/3 {
			dbThird = s.dbMB
		}
	}
	dbEnd := samples[len(samples)-1].dbMB
	growth := 100 * (lastRSS - firstRSS) / firstRSS
	dbGrowth := 100 * (dbEnd - dbThird) / max(dbThird, 0.001)
	fmt.Printf("peak RSS %.1f MB (target < %.0f); RSS after %s %.1f MB, mean of the last %s %.1f MB (%+.1f %%, target within %.0f %%); DB %.1f MB at a third, %.1f MB at the end (%+.1f %%, target within %.0f %%)\n",
		peakMB, so.maxRSSMB, minute, firstRSS, minute, lastRSS, growth, so.flatPct, dbThird, dbEnd, dbGrowth, so.flatPct)
	var missed []string
	if peakMB >= so.maxRSSMB {
		missed = append(missed, fmt.Sprintf("peak RSS %.1f MB >= %.0f MB", peakMB, so.maxRSSMB))
	}
	if growth > so.flatPct || growth < -so.flatPct {
		missed = append(missed, fmt.Sprintf("RSS moved %+.1f %% between the first and the last %s", growth, minute))
	}
	if dbGrowth > so.flatPct {
		missed = append(missed, fmt.Sprintf("database grew %+.1f %% after the first third", dbGrowth))
	}
	if s := samples[len(samples)-1]; s.errors > 0 {
		missed = append(missed, fmt.Sprintf("%d errors (5xx or transport) in the mixed load; first: %s", s.errors, firstErr))
	}
	if len(missed) > 0 {
		return fmt.Errorf("soak targets missed: %s", strings.Join(missed, "; "))
	}
	fmt.Println("soak: every target met")
	return nil
}

func mean(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	var t float64
	for _, x := range xs {
		t += x
	}
	return t / float64(len(xs))
}

type soakCounters struct {
	requests, refused, errors atomic.Int64
	mu                        sync.Mutex
	first                     string
}

func (c *soakCounters) fail(msg string) {
	c.errors.Add(1)
	c.mu.Lock()
	if c.first == "" {
		c.first = msg
	}
	c.mu.Unlock()
}

func (c *soakCounters) firstErr() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.first
}

// soakWorker sends the mixed load: lookups (v1, bulk, v2), requestToken
// and store-invite for random new addresses, each from a random client
// address among so.clients. 429s are expected (the limits work); 5xx and
// transport failures are errors.
func soakWorker(ctx context.Context, base string, p *pools, so soakOptions, seed uint64, c *soakCounters) {
	client := newClient(1)
	defer client.CloseIdleConnections()
	rng := rand.New(rand.NewPCG(seed, uint64(time.Now().UnixNano())))
	lookupV1, bulk, v2 := p.workload(wlLookupV1), p.workload(wlBulkLookupV1), p.workload(wlLookupV2)
	for ctx.Err() == nil {
		var req *http.Request
		switch k := rng.IntN(100); {
		case k < 40:
			req = lookupV1.req(rng).http(base)
		case k < 50:
			req = bulk.req(rng).http(base)
		case k < 60:
			req = v2.req(rng).http(base)
		case k < 90:
			req = post(base+v1Prefix+"/validate/email/requestToken", fmt.Appendf(nil,
				`{"client_secret":"soak%d","email":"soak%d@load.test","send_attempt":1}`, rng.Uint64(), rng.Uint64()))
		default:
			req = post(base+v1Prefix+"/store-invite", fmt.Appendf(nil,
				`{"medium":"email","address":"inv%d@load.test","room_id":"!soak:load.test","sender":"@soak:load.test","room_name":"Soak"}`, rng.Uint64()))
		}
		req.Header.Set("X-Forwarded-For", clientAddr(rng.IntN(so.clients)))
		send(ctx, client, req, c, false)
	}
}

// floodWorker is one client sending requestToken for random addresses as
// fast as it can: after its burst every answer must be a 429.
func floodWorker(ctx context.Context, base string, c *soakCounters) {
	client := newClient(1)
	defer client.CloseIdleConnections()
	var k uint64
	for ctx.Err() == nil {
		k++
		req := post(base+v1Prefix+"/validate/email/requestToken", fmt.Appendf(nil,
			`{"client_secret":"flood%d","email":"flood%d@load.test","send_attempt":1}`, k, k))
		req.Header.Set("X-Forwarded-For", "198.51.100.66")
		send(ctx, client, req, c, true)
	}
}

func send(ctx context.Context, client *http.Client, req *http.Request, c *soakCounters, flood bool) {
	resp, err := client.Do(req.WithContext(ctx))
	if err != nil {
		if ctx.Err() == nil {
			c.fail(err.Error())
		}
		return
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	c.requests.Add(1)
	switch {
	case resp.StatusCode == http.StatusTooManyRequests && flood:
		c.refused.Add(1)
	case resp.StatusCode >= 500:
		c.fail(fmt.Sprintf("%s %s: HTTP %d", req.Method, req.URL.Path, resp.StatusCode))
	}
}

// clientAddr is the i-th client address: only written into
// X-Forwarded-For, never contacted.
func clientAddr(i int) string {
	return fmt.Sprintf("10.%d.%d.%d", (i>>16)&255, (i>>8)&255, i&255)
}

// dbSizeMB is the SQLite database with its WAL and shared memory.
func dbSizeMB(path string) float64 {
	var total int64
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if st, err := os.Stat(path + suffix); err == nil {
			total += st.Size()
		}
	}
	return float64(total) / (1 << 20)
}

// runtimeStats reads the server's heap in use and goroutine count from
// its debug listener (net/http/pprof's text forms).
func runtimeStats(debug string) (heapMB float64, goroutines int) {
	client := &http.Client{Timeout: 10 * time.Second}
	if resp, err := client.Get(debug + "/debug/pprof/heap?debug=1"); err == nil {
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "# HeapAlloc = "); ok {
				n, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
				heapMB = n / (1 << 20)
			}
		}
		resp.Body.Close()
	}
	if resp, err := client.Get(debug + "/debug/pprof/goroutine?debug=1"); err == nil {
		line, _ := bufio.NewReader(resp.Body).ReadString('\n')
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "goroutine profile: total "); ok {
			goroutines, _ = strconv.Atoi(v)
		}
		resp.Body.Close()
	}
	return heapMB, goroutines
}
