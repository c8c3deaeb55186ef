// Command sigil-load is Sigil's load benchmark: it seeds a database with N
// bindings through the store's bulk path, starts the real sigil binary on a
// loopback port and drives it with a closed-loop generator at a fixed
// concurrency, one workload at a time. For each workload it reports
// requests/s, p50 and p99 latency, the server's CPU time per request and
// the errors; for each (database, N) the seeding time, the time to first
// answer and the server's peak RSS.
//
//	go run ./cmd/sigil-load                                  # the full matrix (make load)
//	go run ./cmd/sigil-load -n 10000 -db sqlite -duration 3s # a quick check (make load-quick)
//
// All traffic goes to 127.0.0.1. Every run starts from an empty data
// directory (and, for PostgreSQL, a new database that is dropped at the
// end) unless -keep is given.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type options struct {
	sizes       []int
	dbs         []string
	workloads   []string
	duration    time.Duration
	warmup      time.Duration
	concurrency int
	out         string
	keep        bool
	analyze     bool
	postgresURL string
	sigilBin    string
	srcDir      string
	profileDir  string
	// serverCPUs pins Sigil and the baseline, genCPUs this generator,
	// scaleCPUs the second Sigil of the scaling rows ("" for any).
	serverCPUs, genCPUs, scaleCPUs string
	bare                           bool
	rounds                         int
	scaleWorkloads                 []string
	// The Sydent comparison (-sydent): a checkout, the python to run it
	// with, the generator's concurrency and the workloads.
	sydentDir, sydentPython string
	sydentConcurrency       int
	sydentWorkloads         []string
	sydentVersion           string
}

func main() {
	var (
		o                       options
		sizes, dbs, workloadsIn string
	)
	flag.StringVar(&sizes, "n", "10000,1000000", "comma list of binding counts to seed")
	flag.StringVar(&dbs, "db", "sqlite,postgres", "comma list of databases: sqlite, postgres")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "measured time per workload")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "unmeasured load before each workload")
	flag.IntVar(&o.concurrency, "concurrency", 16, "concurrent closed-loop clients")
	flag.StringVar(&workloadsIn, "workloads", strings.Join(workloadNames(), ","), "comma list of workloads")
	flag.StringVar(&o.out, "out", "", "also write the results here (.json: JSON, otherwise markdown)")
	flag.BoolVar(&o.analyze, "analyze", true, "run ANALYZE on PostgreSQL after seeding (what autovacuum does soon after a bulk load)")
	flag.BoolVar(&o.keep, "keep", false, "keep the data directory and the PostgreSQL database")
	flag.StringVar(&o.postgresURL, "postgres", envOr("SIGIL_LOAD_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"),
		"PostgreSQL URL of an existing database used to create and drop the benchmark's own (env SIGIL_LOAD_POSTGRES_URL)")
	flag.StringVar(&o.sigilBin, "sigil", "", "a prebuilt sigil binary (default: go build ./cmd/sigil)")
	flag.StringVar(&o.srcDir, "src", ".", "directory inside the Sigil module, for go build")
	flag.StringVar(&o.profileDir, "profile", "", "write the server's CPU profile of each measured workload into this directory")
	serverCPUs, genCPUs, allCPUs := cpuPlan(runtime.NumCPU())
	flag.StringVar(&o.serverCPUs, "server-cpus", serverCPUs, "cores (taskset list) for Sigil and the net/http baseline; \"\" for any")
	flag.StringVar(&o.genCPUs, "generator-cpus", genCPUs, "cores (taskset list) for this load generator; \"\" for any")
	flag.StringVar(&o.scaleCPUs, "scale-cpus", allCPUs, "cores for the scaling rows (Sigil on all of them vs on -server-cpus); \"\" skips them")
	flag.BoolVar(&o.bare, "baseline", true, "measure a bare net/http server answering {} beside Sigil, on the same cores, after each workload")
	flag.IntVar(&o.rounds, "rounds", 3, "Sigil and the baseline take turns this many times per workload (-duration is shared out)")
	var scaleIn string
	flag.StringVar(&scaleIn, "scale-workloads", wlStatus+","+wlBulkLookupV1+","+wlLookupV2, "workloads of the scaling rows")
	flag.StringVar(&o.sydentDir, "sydent", "", "a Sydent source checkout (matrix-org/sydent at a37d60b, 2.6.1): also run the -sydent-workloads against Sydent with the same bindings (SQLite runs only); \"\" skips it")
	flag.StringVar(&o.sydentPython, "sydent-python", "/usr/bin/python3", "the python3 with Sydent's dependencies (Debian's python3-* packages: make load-sydent)")
	flag.IntVar(&o.sydentConcurrency, "sydent-concurrency", 4, "concurrent clients against Sydent (single-threaded)")
	var sydentIn string
	flag.StringVar(&sydentIn, "sydent-workloads", wlBulkLookupV1+","+wlLookupV2, "workloads run against Sydent (of "+strings.Join(sydentWorkloads, ", ")+")")
	bareAddr := flag.String("bare-serve", "", "internal: serve the net/http baseline on this address")
	var so soakOptions
	flag.DurationVar(&so.duration, "soak", 0, "instead of the benchmark, a soak of this length (make soak): mixed load plus a flooding client, targets checked")
	flag.IntVar(&so.n, "soak-n", 1000000, "bindings seeded for the soak")
	flag.DurationVar(&so.interval, "soak-interval", 30*time.Second, "how often the soak prints RSS, heap, goroutines and database size")
	flag.IntVar(&so.clients, "soak-clients", 5000, "client addresses (X-Forwarded-For) of the soak's mixed load")
	flag.Float64Var(&so.maxRSSMB, "soak-max-rss", 200, "soak target: peak server RSS below this many MB")
	flag.Float64Var(&so.flatPct, "soak-flat", 10, "soak target: RSS (last vs first minute) and database size (end vs a third in) within this many percent")
	flag.DurationVar(&so.lifetime, "soak-lifetime", time.Minute, "token and session lifetime, and invite and onbind retention, of the soak's server")
	flag.BoolVar(&so.legacy, "soak-legacy", false, "the server binary predates the retention settings (a before/after comparison)")
	flag.Parse()
	if *bareAddr != "" {
		if err := serveBare(*bareAddr); err != nil {
			fmt.Fprintln(os.Stderr, "sigil-load -bare-serve:", err)
			os.Exit(1)
		}
		return
	}
	if so.duration > 0 {
		so.concurrency = 16
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		o.srcDir = "."
		if err := runSoak(ctx, o, so); err != nil {
			fmt.Fprintln(os.Stderr, "sigil-load:", err)
			os.Exit(1)
		}
		return
	}

	var err error
	if o.sizes, err = parseSizes(sizes); err == nil {
		o.dbs, err = parseChoices("db", dbs, []string{"sqlite", "postgres"})
	}
	if err == nil {
		o.workloads, err = parseChoices("workload", workloadsIn, workloadNames())
	}
	if err == nil && o.scaleCPUs != "" {
		o.scaleWorkloads, err = parseChoices("workload", scaleIn, workloadNames())
	}
	if err == nil && o.sydentDir != "" {
		o.sydentWorkloads, err = parseChoices("Sydent workload", sydentIn, sydentWorkloads)
		if err == nil && !slices.Contains(o.dbs, "sqlite") {
			err = fmt.Errorf("-sydent runs beside the SQLite runs: add sqlite to -db")
		}
		if err == nil && o.sydentConcurrency < 1 {
			err = fmt.Errorf("-sydent-concurrency must be positive")
		}
		if err == nil {
			o.sydentVersion, err = checkSydent(o.sydentDir, o.sydentPython)
		}
	}
	if err == nil && (o.concurrency < 1 || o.duration <= 0 || o.warmup < 0) {
		err = fmt.Errorf("-concurrency and -duration must be positive, -warmup not negative")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sigil-load:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "sigil-load:", err)
		os.Exit(1)
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func parseSizes(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(strings.ReplaceAll(f, "_", ""))
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("-n: %q is not a positive count", f)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("-n: no sizes")
	}
	return out, nil
}

func parseChoices(what, s string, allowed []string) ([]string, error) {
	var out []string
	for _, f := range strings.Split(s, ",") {
		f = strings.ToLower(strings.TrimSpace(f))
		if f == "" {
			continue
		}
		ok := false
		for _, a := range allowed {
			ok = ok || a == f
		}
		if !ok {
			return nil, fmt.Errorf("unknown %s %q (choose from %s)", what, f, strings.Join(allowed, ", "))
		}
		out = append(out, f)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no %s given", what)
	}
	return out, nil
}

// run builds the server once, then measures every (database, N).
func run(ctx context.Context, o options) error {
	started := time.Now()
	work, err := os.MkdirTemp("", "sigil-load-")
	if err != nil {
		return err
	}
	if o.keep {
		fmt.Fprintf(os.Stderr, "keeping data under %s\n", work)
	} else {
		defer os.RemoveAll(work)
	}
	if o.genCPUs != "" && !pinSelf(o.genCPUs) {
		fmt.Fprintln(os.Stderr, "sigil-load: could not pin the generator (taskset); running unpinned")
		o.serverCPUs, o.genCPUs = "", ""
	}
	bin := o.sigilBin
	if bin == "" {
		t := time.Now()
		if bin, err = buildSigil(ctx, o.srcDir, work); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "built sigil in %s\n", time.Since(t).Round(time.Millisecond))
	}
	rep := report{
		Date: time.Now().UTC().Format("2006-01-02"), GoVersion: runtime.Version(), CPU: cpuModel(),
		Cores: runtime.NumCPU(), Concurrency: o.concurrency, Duration: o.duration.String(), Warmup: o.warmup.String(),
		Command: strings.TrimSpace("go run ./cmd/sigil-load " + strings.Join(os.Args[1:], " ")), LoadAvg: loadAvg(),
		ServerCPUs: o.serverCPUs, GeneratorCPUs: o.genCPUs, ScaleCPUs: o.scaleCPUs,
	}
	for _, db := range o.dbs {
		for _, n := range o.sizes {
			res, err := runOne(ctx, o, bin, work, db, n)
			if err != nil {
				return fmt.Errorf("%s N=%d: %w", db, n, err)
			}
			rep.Runs = append(rep.Runs, res)
			fmt.Println(res.markdown())
		}
	}
	rep.Total = time.Since(started).Round(time.Second).String()
	fmt.Print(rep.sizes())
	fmt.Printf("total time: %s\n", rep.Total)
	if o.out != "" {
		if err := rep.write(o.out); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "results written to %s\n", o.out)
	}
	return nil
}

// runOne seeds one database, starts a server on it and runs the workloads.
func runOne(ctx context.Context, o options, bin, work, db string, n int) (runResult, error) {
	res := runResult{DB: db, N: n, Concurrency: o.concurrency}
	dir, err := os.MkdirTemp(work, fmt.Sprintf("%s-%d-", db, n))
	if err != nil {
		return res, err
	}
	dsn := sqlitePath(dir)
	if db == "postgres" {
		var drop func()
		dsn, drop, err = createPostgresDB(ctx, o.postgresURL)
		if err != nil {
			return res, err
		}
		if o.keep {
			fmt.Fprintf(os.Stderr, "keeping PostgreSQL database %s\n", dsn)
		} else {
			defer drop()
		}
	}
	fmt.Fprintf(os.Stderr, "== %s, N=%d: seeding\n", db, n)
	fx, err := seedDatabase(ctx, dsn, dir, n, o.analyze, os.Stderr)
	if err != nil {
		return res, err
	}
	res.SeedSeconds, res.AnalyzeSeconds = fx.SeedTime.Seconds(), fx.AnalyzeTime.Seconds()
	fmt.Fprintf(os.Stderr, "seeded %d bindings in %s (%.0f rows/s)\n", n, fx.SeedTime.Round(time.Millisecond), float64(n)/fx.SeedTime.Seconds())
	if fx.AnalyzeTime > 0 {
		fmt.Fprintf(os.Stderr, "ANALYZE took %s\n", fx.AnalyzeTime.Round(time.Millisecond))
	}

	srv, err := startServer(ctx, bin, dir, dsn, fx.KeyPath, o.profileDir != "", o.serverCPUs)
	if err != nil {
		return res, err
	}
	defer srv.stop()
	res.ReadyMS = float64(srv.ready.Microseconds()) / 1000
	res.StartRSSMB = srv.memMB("VmRSS")
	fmt.Fprintf(os.Stderr, "server ready in %s, RSS %.1f MB\n", srv.ready.Round(time.Millisecond), res.StartRSSMB)
	// Measure on the loaded index (until then lookups go to the database).
	if b, by, err := srv.indexLoaded(ctx, 5*time.Minute); err != nil {
		fmt.Fprintf(os.Stderr, "lookup index: %v\n", err)
	} else if b > 0 {
		res.IndexBytesPerBinding = float64(by) / float64(b)
		fmt.Fprintf(os.Stderr, "lookup index: %d bindings, %.1f MB, %.1f bytes a binding\n", b, float64(by)/1e6, res.IndexBytesPerBinding)
	}
	var bare *server
	if o.bare {
		if bare, err = startBare(ctx, dir, o.serverCPUs); err != nil {
			return res, err
		}
		defer bare.stop()
	}

	// Sydent (-sydent, SQLite runs): on the same cores, its own database
	// with the same bindings, the same request bodies.
	var (
		syd      *server
		sydPools *pools
	)
	if o.sydentDir != "" && db == "sqlite" {
		if syd, sydPools, err = startSydentRun(ctx, o, work, n, &res); err != nil {
			return res, fmt.Errorf("Sydent: %w", err)
		}
		defer syd.stop()
	}

	pools := benchPools(n, fx)
	for _, name := range o.workloads {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		wl := pools.workload(name)
		var profiled <-chan error
		if o.profileDir != "" {
			path := filepath.Join(o.profileDir, fmt.Sprintf("%s-%d-%s.pprof", db, n, name))
			profiled = srv.profile(ctx, o.warmup, o.duration, path)
		}
		// Sigil, the baseline and Sydent take turns, o.rounds times each,
		// so that a change in the machine's other load (builds, other
		// benchmarks) falls on all alike.
		withSydent := syd != nil && slices.Contains(o.sydentWorkloads, name)
		rounds := 1
		if bare != nil || withSydent {
			rounds = max(1, o.rounds)
		}
		slice := max(time.Second, o.duration/time.Duration(rounds))
		var mine, base, theirs []workloadResult
		for k := range rounds {
			warm := o.warmup
			if k > 0 {
				warm = 0
			}
			r, err := measure(ctx, srv, wl, o.concurrency, warm, slice)
			if err != nil {
				return res, fmt.Errorf("%s: %w", name, err)
			}
			mine = append(mine, r)
			if bare != nil {
				b, err := measure(ctx, bare, wl, o.concurrency, warm, slice)
				if err != nil {
					return res, fmt.Errorf("%s, net/http baseline: %w", name, err)
				}
				base = append(base, b)
			}
			if withSydent {
				s, err := measure(ctx, syd, sydPools.workload(name), o.sydentConcurrency, warm, slice)
				if err != nil {
					return res, fmt.Errorf("%s, Sydent: %w", name, err)
				}
				theirs = append(theirs, s)
			}
		}
		if profiled != nil {
			if perr := <-profiled; perr != nil {
				return res, fmt.Errorf("%s: profile: %w", name, perr)
			}
		}
		r := combine(mine)
		if bare != nil {
			b := combine(base)
			r.BareRPS, r.BareCPUMS = b.RPS, b.ServerCPUMS
			if b.RPS > 0 {
				r.VsBare = r.RPS / b.RPS
			}
			if r.ServerCPUMS > 0 {
				r.VsBareCPU = b.ServerCPUMS / r.ServerCPUMS
			}
		}
		fmt.Fprintf(os.Stderr, "  %-14s %8.0f req/s  p50 %.2f ms  p99 %.2f ms  errors %d  net/http %8.0f req/s  ratio %.2f, per core %.2f\n",
			name, r.RPS, r.P50MS, r.P99MS, r.Errors, r.BareRPS, r.VsBare, r.VsBareCPU)
		res.Workloads = append(res.Workloads, r)
		if withSydent {
			sr, err := sydentRow(syd, combine(theirs), &r)
			res.Sydent = append(res.Sydent, sr)
			if err != nil {
				return res, err
			}
		}
	}
	if syd != nil {
		// Sydent's workloads that Sigil did not run, alone.
		for _, name := range o.sydentWorkloads {
			if slices.Contains(o.workloads, name) {
				continue
			}
			s, err := measure(ctx, syd, sydPools.workload(name), o.sydentConcurrency, o.warmup, o.duration)
			if err != nil {
				return res, fmt.Errorf("%s, Sydent: %w", name, err)
			}
			sr, err := sydentRow(syd, s, nil)
			res.Sydent = append(res.Sydent, sr)
			if err != nil {
				return res, err
			}
		}
		res.SydentPeakRSSMB = syd.memMB("VmHWM")
		if err := syd.alive(); err != nil {
			return res, err
		}
		syd.stop()
	}
	res.PeakRSSMB = srv.memMB("VmHWM")
	if err := srv.alive(); err != nil {
		return res, err
	}
	if o.scaleCPUs == "" || o.scaleCPUs == o.serverCPUs || len(o.scaleWorkloads) == 0 {
		return res, nil
	}
	// Scaling: the same database served by a Sigil on every core (the
	// generator shares them), against the one-core figures above.
	srv.stop()
	if bare != nil {
		bare.stop()
	}
	if o.genCPUs != "" {
		pinSelf(o.scaleCPUs)
		defer pinSelf(o.genCPUs)
	}
	all, err := startServer(ctx, bin, dir, dsn, fx.KeyPath, false, o.scaleCPUs)
	if err != nil {
		return res, err
	}
	defer all.stop()
	if _, _, err := all.indexLoaded(ctx, 5*time.Minute); err != nil {
		return res, fmt.Errorf("cores %s: %w", o.scaleCPUs, err)
	}
	for _, name := range o.scaleWorkloads {
		one := -1
		for i, w := range res.Workloads {
			if w.Name == name {
				one = i
			}
		}
		if one < 0 {
			continue
		}
		r, err := measure(ctx, all, pools.workload(name), o.concurrency, o.warmup, o.duration)
		if err != nil {
			return res, fmt.Errorf("%s on cores %s: %w", name, o.scaleCPUs, err)
		}
		sc := scaleResult{Name: name, CPUs: o.scaleCPUs, OneRPS: res.Workloads[one].RPS, AllRPS: r.RPS,
			OneCPUMS: res.Workloads[one].ServerCPUMS, AllCPUMS: r.ServerCPUMS}
		if sc.OneRPS > 0 {
			sc.Ratio = sc.AllRPS / sc.OneRPS
		}
		if sc.AllCPUMS > 0 {
			sc.CPURatio = float64(cpuCount(o.scaleCPUs)) * sc.OneCPUMS / sc.AllCPUMS
		}
		fmt.Fprintf(os.Stderr, "  %-14s cores %s: %8.0f req/s, %.2f× one core (by CPU per request %.2f×)\n", name, o.scaleCPUs, r.RPS, sc.Ratio, sc.CPURatio)
		res.Scaling = append(res.Scaling, sc)
	}
	return res, nil
}

// benchPools are the request bodies of a benchmark run: the same for a
// given N and pepper, so Sigil and Sydent get the same requests.
func benchPools(n int, fx fixture) *pools { return newPools(n, fx, 64, 1000, 1) }

// cpuCount is the number of cores in a taskset list ("0,1", "0-3,6").
func cpuCount(list string) int {
	n := 0
	for _, part := range strings.Split(list, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, errA := strconv.Atoi(lo)
		if !isRange {
			if errA == nil {
				n++
			}
			continue
		}
		if b, errB := strconv.Atoi(hi); errA == nil && errB == nil && b >= a {
			n += b - a + 1
		}
	}
	return max(n, 1)
}
