package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sigil-matrix/sigil/handlers/signing"
)

const (
	v1Prefix = "/_matrix/identity/api/v1"
	v2Prefix = "/_matrix/identity/v2"
)

// Workload names, in the order they run. requestToken writes (a session
// per request), so it goes last.
const (
	wlStatus       = "status"
	wlLookupV1     = "lookup_v1"
	wlBulkLookupV1 = "bulk_lookup_v1"
	wlLookupV2     = "lookup_v2"
	wlRequestToken = "request_token"
)

func workloadNames() []string {
	return []string{wlStatus, wlLookupV1, wlBulkLookupV1, wlLookupV2, wlRequestToken}
}

// workload makes the requests of one benchmark. req is called by each
// worker with its own random source, so it must only read shared state.
type workload struct {
	name string
	req  func(rng *rand.Rand) request
}

// request is one request of a workload, ready to be written to a
// connection (rawConn) or turned into an *http.Request.
type request struct {
	method, uri string // uri: path and query
	auth        string // the Authorization header, if any
	body        []byte // a JSON body, or nil
}

// http is r as an *http.Request to base (http://host:port).
func (r request) http(base string) *http.Request {
	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	req, _ := http.NewRequest(r.method, base+r.uri, body)
	if r.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if r.auth != "" {
		req.Header.Set("Authorization", r.auth)
	}
	return req
}

// pools holds request bodies built before the clock starts, so the
// generator spends its time sending, not encoding.
type pools struct {
	n      int
	fx     fixture
	bulk   []body // bulk_lookup bodies
	hashed []body // v2 lookup bodies
	tokenK atomic.Int64
}

// body is a prepared JSON body and the bindings it names.
type body struct {
	json  []byte
	picks []int // binding numbers; those < n are bound
}

// newPools builds count bodies of size addresses each for bulk_lookup and
// v2 lookup: half of every body bound (numbers below n), half not.
func newPools(n int, fx fixture, count, size int, seed uint64) *pools {
	p := &pools{n: n, fx: fx}
	rng := rand.New(rand.NewPCG(seed, 0x5161))
	for range count {
		picks := halfBound(n, size, rng)
		var b bytes.Buffer
		b.WriteString(`{"threepids":[`)
		for j, i := range picks {
			if j > 0 {
				b.WriteByte(',')
			}
			b.WriteString(`["email","`)
			b.WriteString(email(i))
			b.WriteString(`"]`)
		}
		b.WriteString(`]}`)
		p.bulk = append(p.bulk, body{json: b.Bytes(), picks: picks})
	}
	for range count {
		picks := halfBound(n, size, rng)
		var b bytes.Buffer
		b.WriteString(`{"algorithm":"sha256","pepper":"` + fx.Pepper + `","addresses":[`)
		for j, i := range picks {
			if j > 0 {
				b.WriteByte(',')
			}
			b.WriteByte('"')
			b.WriteString(signing.LookupHash(email(i), "email", fx.Pepper))
			b.WriteByte('"')
		}
		b.WriteString(`]}`)
		p.hashed = append(p.hashed, body{json: b.Bytes(), picks: picks})
	}
	return p
}

// halfBound returns size binding numbers in random order: size/2 drawn
// from [0, n) (bound) and the rest from [n, 2n) (never bound), without
// repetition when there are enough of each.
func halfBound(n, size int, rng *rand.Rand) []int {
	out := make([]int, 0, size)
	draw := func(k, offset int) {
		if k > n { // not enough distinct numbers: allow repeats
			for range k {
				out = append(out, offset+rng.IntN(n))
			}
			return
		}
		seen := make(map[int]bool, k)
		for len(seen) < k {
			i := rng.IntN(n)
			if !seen[i] {
				seen[i] = true
				out = append(out, offset+i)
			}
		}
	}
	draw(size/2, 0)
	draw(size-size/2, n)
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

func post(url string, b []byte) *http.Request {
	r, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(b))
	r.Header.Set("Content-Type", "application/json")
	return r
}

func (p *pools) workload(name string) workload {
	switch name {
	case wlStatus:
		return workload{name, func(*rand.Rand) request {
			return request{method: http.MethodGet, uri: statusPath}
		}}
	case wlLookupV1:
		return workload{name, func(rng *rand.Rand) request {
			return request{method: http.MethodGet, uri: v1Prefix + "/lookup?medium=email&address=user" +
				strconv.Itoa(rng.IntN(2*p.n)) + "%40load.test"}
		}}
	case wlBulkLookupV1:
		return workload{name, func(rng *rand.Rand) request {
			return request{method: http.MethodPost, uri: v1Prefix + "/bulk_lookup", body: p.bulk[rng.IntN(len(p.bulk))].json}
		}}
	case wlLookupV2:
		auth := "Bearer " + p.fx.Token
		return workload{name, func(rng *rand.Rand) request {
			return request{method: http.MethodPost, uri: v2Prefix + "/lookup", auth: auth, body: p.hashed[rng.IntN(len(p.hashed))].json}
		}}
	case wlRequestToken:
		return workload{name, func(*rand.Rand) request {
			k := strconv.FormatInt(p.tokenK.Add(1), 10)
			return request{method: http.MethodPost, uri: v1Prefix + "/validate/email/requestToken",
				body: []byte(`{"client_secret":"load` + k + `","email":"new` + k + `@load.test","send_attempt":1}`)}
		}}
	}
	panic("unknown workload " + name)
}

// newClient is the HTTP client of the soak and the tests (the benchmark's
// generator uses rawConn): keep-alive connections, loopback only.
func newClient(concurrency int) *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			MaxIdleConns:        2 * concurrency,
			MaxIdleConnsPerHost: concurrency,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
	}
}

// loadResult is what one closed-loop run observed.
type loadResult struct {
	latencies []time.Duration // sorted
	errors    int
	statuses  map[int]int
	firstErr  string
	elapsed   time.Duration
}

// runLoad runs concurrency workers, each with its own connection,
// sending one request at a time until d has passed. Non-2xx answers and
// transport failures are errors.
func runLoad(ctx context.Context, base string, wl workload, concurrency int, d time.Duration) loadResult {
	type worker struct {
		lat      []time.Duration
		errors   int
		statuses map[int]int
		firstErr string
	}
	addr := strings.TrimPrefix(base, "http://")
	workers := make([]worker, concurrency)
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for w := range workers {
		wk := &workers[w]
		wk.lat = make([]time.Duration, 0, 1<<15)
		wk.statuses = map[int]int{}
		rng := rand.New(rand.NewPCG(uint64(start.UnixNano()), uint64(w)))
		rc := newRawConn(addr)
		stop := context.AfterFunc(ctx, rc.abort) // unblocks a read when the run is cancelled
		wg.Go(func() {
			defer rc.close()
			defer stop()
			for ctx.Err() == nil && time.Now().Before(deadline) {
				req := wl.req(rng)
				t0 := time.Now()
				code, errBody, err := rc.do(req, deadline.Add(30*time.Second))
				wk.lat = append(wk.lat, time.Since(t0))
				if err != nil {
					if ctx.Err() != nil {
						wk.lat = wk.lat[:len(wk.lat)-1]
						return
					}
					wk.errors++
					wk.statuses[0]++
					if wk.firstErr == "" {
						wk.firstErr = err.Error()
					}
					continue
				}
				wk.statuses[code]++
				if code/100 != 2 {
					wk.errors++
					if wk.firstErr == "" {
						wk.firstErr = fmt.Sprintf("HTTP %d: %s", code, errBody)
					}
				}
			}
		})
	}
	wg.Wait()
	res := loadResult{elapsed: time.Since(start), statuses: map[int]int{}}
	total := 0
	for _, wk := range workers {
		total += len(wk.lat)
	}
	res.latencies = make([]time.Duration, 0, total)
	for _, wk := range workers {
		res.latencies = append(res.latencies, wk.lat...)
		res.errors += wk.errors
		for c, k := range wk.statuses {
			res.statuses[c] += k
		}
		if res.firstErr == "" {
			res.firstErr = wk.firstErr
		}
	}
	slices.Sort(res.latencies)
	return res
}

// percentile is the nearest-rank percentile (0 < p <= 100) of sorted
// values: the smallest value with at least p% of all values at or below it.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// workloadResult is one row of the report.
type workloadResult struct {
	Name     string      `json:"workload"`
	Requests int         `json:"requests"`
	Errors   int         `json:"errors"`
	Statuses map[int]int `json:"statuses"`
	FirstErr string      `json:"first_error,omitempty"`
	Seconds  float64     `json:"seconds"`
	RPS      float64     `json:"requests_per_second"`
	P50MS    float64     `json:"p50_ms"`
	P99MS    float64     `json:"p99_ms"`
	// CPU milliseconds per request: the server process, this generator, and
	// the rest of the machine (PostgreSQL backends, mostly).
	ServerCPUMS float64 `json:"server_cpu_ms_per_request"`
	GenCPUMS    float64 `json:"generator_cpu_ms_per_request"`
	OtherCPUMS  float64 `json:"other_cpu_ms_per_request"`
	RSSMB       float64 `json:"server_rss_mb_after"`
	// The net/http baseline on the same cores, measured right after:
	// its requests/s and CPU per request, and Sigil's requests/s over it.
	BareRPS   float64 `json:"baseline_requests_per_second,omitempty"`
	BareCPUMS float64 `json:"baseline_cpu_ms_per_request,omitempty"`
	VsBare    float64 `json:"ratio_to_baseline,omitempty"`
	// VsBareCPU is the same per core: the baseline's CPU time per request
	// over Sigil's. It holds when the generator, not the server, is what
	// limits the baseline's requests/s (the small requests on two cores).
	VsBareCPU float64 `json:"ratio_to_baseline_per_core,omitempty"`
}

// scaleResult compares a workload on all the scaling cores with the same
// workload on the server's one core.
type scaleResult struct {
	Name   string  `json:"workload"`
	CPUs   string  `json:"cpus"`
	OneRPS float64 `json:"one_core_requests_per_second"`
	AllRPS float64 `json:"requests_per_second"`
	Ratio  float64 `json:"ratio"`
	// Server CPU time per request on one core and on all: equal when the
	// work spreads over the cores without contention.
	OneCPUMS float64 `json:"one_core_cpu_ms_per_request"`
	AllCPUMS float64 `json:"cpu_ms_per_request"`
	// CPURatio is cores × OneCPUMS / AllCPUMS: the throughput on all the
	// cores against one if the server had them to itself. On a 2-core
	// machine the generator shares them in the scaling rows (and takes a
	// fifth of a bulk request's CPU), so Ratio cannot reach 2 however well
	// the server scales; this says how well it does.
	CPURatio float64 `json:"cpu_ratio"`
}

// measure warms the server up with wl, then runs it for d while reading
// the CPU counters of the server, this process and the machine.
func measure(ctx context.Context, srv *server, wl workload, concurrency int, warmup, d time.Duration) (workloadResult, error) {
	if warmup > 0 {
		runLoad(ctx, srv.base, wl, concurrency, warmup)
	}
	if err := srv.alive(); err != nil {
		return workloadResult{}, err
	}
	s0, err := srv.cpuTicks()
	if err != nil {
		return workloadResult{}, err
	}
	g0, _ := selfCPUTicks()
	m0, _ := machineBusyTicks()
	lr := runLoad(ctx, srv.base, wl, concurrency, d)
	s1, err := srv.cpuTicks()
	if err != nil {
		return workloadResult{}, fmt.Errorf("server gone: %w\n%s", err, tail(srv.logPath, 20))
	}
	g1, _ := selfCPUTicks()
	m1, _ := machineBusyTicks()
	if err := ctx.Err(); err != nil {
		return workloadResult{}, err
	}
	n := len(lr.latencies)
	r := workloadResult{
		Name: wl.name, Requests: n, Errors: lr.errors, Statuses: lr.statuses, FirstErr: lr.firstErr,
		Seconds: lr.elapsed.Seconds(), RSSMB: srv.memMB("VmRSS"),
		P50MS: ms(percentile(lr.latencies, 50)), P99MS: ms(percentile(lr.latencies, 99)),
	}
	if n > 0 {
		r.RPS = float64(n) / lr.elapsed.Seconds()
		perReq := func(ticks int64) float64 { return float64(ticks) / clkTck() * 1000 / float64(n) }
		r.ServerCPUMS = perReq(s1 - s0)
		r.GenCPUMS = perReq(g1 - g0)
		r.OtherCPUMS = max(0, perReq((m1-m0)-(s1-s0)-(g1-g0)))
	}
	return r, nil
}

func ms(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }

// combine merges the results of several turns of one workload: requests
// and time add up, CPU per request is weighted by requests, the latency
// percentiles are the median turn's.
func combine(rs []workloadResult) workloadResult {
	if len(rs) == 1 {
		return rs[0]
	}
	out := workloadResult{Name: rs[0].Name, Statuses: map[int]int{}}
	var p50, p99 []float64
	for _, r := range rs {
		out.Requests += r.Requests
		out.Errors += r.Errors
		out.Seconds += r.Seconds
		for c, n := range r.Statuses {
			out.Statuses[c] += n
		}
		if out.FirstErr == "" {
			out.FirstErr = r.FirstErr
		}
		w := float64(r.Requests)
		out.ServerCPUMS += r.ServerCPUMS * w
		out.GenCPUMS += r.GenCPUMS * w
		out.OtherCPUMS += r.OtherCPUMS * w
		p50, p99 = append(p50, r.P50MS), append(p99, r.P99MS)
		out.RSSMB = r.RSSMB
	}
	if out.Requests > 0 {
		n := float64(out.Requests)
		out.ServerCPUMS, out.GenCPUMS, out.OtherCPUMS = out.ServerCPUMS/n, out.GenCPUMS/n, out.OtherCPUMS/n
		out.RPS = n / out.Seconds
	}
	slices.Sort(p50)
	slices.Sort(p99)
	out.P50MS, out.P99MS = p50[len(p50)/2], p99[len(p99)/2]
	return out
}
