package main

// The Sydent comparison (-sydent DIR): matrix-org's Python identity server,
// run from a source checkout on the same core as Sigil, with the same N
// bindings, the same request bodies and the same generator. Sydent keeps
// everything in one SQLite file whose schema it creates itself at its first
// start; sigil-load then writes the bindings (and a v2 account, and the
// lookup pepper) straight into that file and starts Sydent again.

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	_ "github.com/mattn/go-sqlite3" // database/sql driver "sqlite3" (also what the store links)

	"github.com/sigil-matrix/sigil/handlers/signing"
	"github.com/sigil-matrix/sigil/store"
)

// sydentTested is the Sydent version the comparison was written and
// checked against (commit a37d60b).
const sydentTested = "2.6.1"

// sydentUser owns Sydent's v2 access token.
const sydentUser = loadUser

// sydentWorkloads are the workloads Sydent can run here (request_token
// would send mail).
var sydentWorkloads = []string{wlStatus, wlLookupV1, wlBulkLookupV1, wlLookupV2}

// sydentResult is one workload against Sydent beside the same workload
// against Sigil (one core) in the same run.
type sydentResult struct {
	workloadResult
	SigilRPS   float64 `json:"sigil_requests_per_second,omitempty"`
	SigilCPUMS float64 `json:"sigil_cpu_ms_per_request,omitempty"`
	// PerCore is Sydent's CPU time per request over Sigil's: how many
	// times Sigil's throughput on one core, if both had the core to
	// themselves.
	PerCore float64 `json:"sigil_over_sydent_per_core,omitempty"`
	// RPSRatio is Sigil's requests/s over Sydent's (at their different
	// generator concurrencies).
	RPSRatio float64 `json:"sigil_over_sydent_requests_per_second,omitempty"`
}

// checkSydent checks that dir looks like a Sydent checkout and python
// runs, and describes both for the report ("Sydent 2.6.1 (a37d60b),
// Python 3.11.2").
func checkSydent(dir, python string) (string, error) {
	if _, err := os.Stat(filepath.Join(dir, "sydent", "sydent.py")); err != nil {
		return "", fmt.Errorf("-sydent %s: not a Sydent checkout (no sydent/sydent.py)", dir)
	}
	out, err := exec.Command(python, "--version").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("-sydent-python %s: %v %s", python, err, out)
	}
	desc := "Sydent"
	if data, err := os.ReadFile(filepath.Join(dir, "pyproject.toml")); err == nil {
		if m := regexp.MustCompile(`(?m)^version = "([^"]+)"`).FindSubmatch(data); m != nil {
			desc += " " + string(m[1])
			if string(m[1]) != sydentTested {
				fmt.Fprintf(os.Stderr, "sigil-load: warning: %s is Sydent %s; the comparison was written against %s (a37d60b)\n", dir, m[1], sydentTested)
			}
		}
	}
	if rev, err := exec.Command("git", "-C", dir, "rev-parse", "--short=7", "HEAD").Output(); err == nil {
		desc += " (" + strings.TrimSpace(string(rev)) + ")"
	}
	return desc + ", " + strings.TrimSpace(string(out)), nil
}

// sydentConfig is Sydent's configuration (its own ini format and option
// names): loopback, SQLite in dir, no terms, otherwise its defaults (INFO
// logs, to stderr, which goes to a file). server.name is the name the
// seeded associations are signed under, so its v1 lookup serves them as
// they are, as it does its own bindings.
func sydentConfig(src, dir string, port int) string {
	return fmt.Sprintf(`[general]
server.name = %s
log.path =
pidfile.path = %s
templates.path = %s
[db]
db.file = %s
[http]
clientapi.http.bind_address = 127.0.0.1
clientapi.http.port = %d
`, serverName, filepath.Join(dir, "sydent.pid"), filepath.Join(src, "res"), sydentDBPath(dir), port)
}

func sydentDBPath(dir string) string { return filepath.Join(dir, "sydent.db") }

// startSydent starts Sydent from the checkout src on cpus with its
// database in dir, and waits for the first 200 on the status route.
func startSydent(ctx context.Context, src, python, dir, cpus string) (*server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(dir, "sydent.conf")
	if err := os.WriteFile(cfgPath, []byte(sydentConfig(src, dir, port)), 0o600); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "sydent.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(src)
	if err != nil {
		return nil, err
	}
	cmd := pinned(cpus, python, "-m", "sydent.sydent")
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "PYTHONPATH="+abs, "SYDENT_CONF="+cfgPath)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start Sydent (%s): %w", python, err)
	}
	s := &server{name: "Sydent", cmd: cmd, pid: cmd.Process.Pid, base: fmt.Sprintf("http://127.0.0.1:%d", port), logPath: logPath, exited: make(chan struct{})}
	go func() { s.waitErr = cmd.Wait(); logf.Close(); close(s.exited) }()
	if err := s.waitReady(ctx, statusPath, 2*time.Minute); err != nil {
		return nil, err
	}
	s.ready = time.Since(start)
	return s, nil
}

// seedSydent writes into Sydent's database (its schema already created by
// Sydent) the lookup pepper, an account with the v2 access token, and
// bindings 0..n-1 as a bind on Sydent stores them: a row in
// local_threepid_associations and its copy, with the signed association,
// in global_threepid_associations (the table lookups read). The
// associations and lookup hashes are the same as Sigil's.
func seedSydent(ctx context.Context, dbPath string, key signing.Key, n int, pepper, token string) error {
	db, err := sql.Open("sqlite3", dbPath)
	if err != nil {
		return err
	}
	defer db.Close()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit, a no-op
	now := time.Now()
	if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO hashing_metadata (id, lookup_pepper) VALUES (0, ?)`, pepper); err != nil {
		return fmt.Errorf("hashing_metadata: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO accounts (user_id, created_ts, consent_version) VALUES (?, ?, NULL)`, sydentUser, now.UnixMilli()); err != nil {
		return fmt.Errorf("accounts: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO tokens (token, user_id) VALUES (?, ?)`, token, sydentUser); err != nil {
		return fmt.Errorf("tokens: %w", err)
	}
	local, err := tx.PrepareContext(ctx, `INSERT INTO local_threepid_associations
		(medium, address, lookup_hash, mxid, ts, notBefore, notAfter) VALUES (?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return fmt.Errorf("local_threepid_associations: %w", err)
	}
	defer local.Close()
	global, err := tx.PrepareContext(ctx, `INSERT INTO global_threepid_associations
		(medium, address, lookup_hash, mxid, ts, notBefore, notAfter, originServer, originId, sgAssoc)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return fmt.Errorf("global_threepid_associations: %w", err)
	}
	defer global.Close()

	// Sign runtime.GOMAXPROCS chunks at a time, then insert them in order.
	workers := runtime.GOMAXPROCS(0)
	for first := 0; first < n; first += workers * seedChunk {
		batches := make([][]store.Association, workers)
		var g errgroup.Group
		for w := range workers {
			from := first + w*seedChunk
			if from >= n {
				break
			}
			g.Go(func() (err error) {
				batches[w], err = signChunk(key, pepper, now, from, min(from+seedChunk, n))
				return err
			})
		}
		if err := g.Wait(); err != nil {
			return err
		}
		for _, batch := range batches {
			for _, a := range batch {
				r, err := local.ExecContext(ctx, a.Medium, a.Address, a.LookupHash, a.MXID, a.TS, a.NotBefore, a.NotAfter)
				if err != nil {
					return fmt.Errorf("local_threepid_associations: %w", err)
				}
				id, err := r.LastInsertId()
				if err != nil {
					return err
				}
				if _, err := global.ExecContext(ctx, a.Medium, a.Address, a.LookupHash, a.MXID, a.TS, a.NotBefore, a.NotAfter,
					serverName, id, string(a.Signed)); err != nil {
					return fmt.Errorf("global_threepid_associations: %w", err)
				}
			}
		}
	}
	return tx.Commit()
}

// verifySydent sends one bulk lookup and one v2 lookup of the benchmark's
// own bodies and checks that Sydent answers exactly the bound half, that
// it serves the pepper the v2 bodies were hashed with, and that a v1
// lookup of a bound address answers its signed association. A comparison
// with a server that answers errors or nothing would be worthless.
func verifySydent(ctx context.Context, base string, p *pools) error {
	client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{Proxy: nil}}
	defer client.CloseIdleConnections()
	call := func(req *http.Request, into any) error {
		req.Header.Set("Authorization", "Bearer "+p.fx.Token)
		resp, err := client.Do(req.WithContext(ctx))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s %s: HTTP %d: %.300s", req.Method, req.URL.Path, resp.StatusCode, data)
		}
		if err := json.Unmarshal(data, into); err != nil {
			return fmt.Errorf("%s %s: %w: %.300s", req.Method, req.URL.Path, err, data)
		}
		return nil
	}

	var details struct {
		Pepper     string   `json:"lookup_pepper"`
		Algorithms []string `json:"algorithms"`
	}
	req, _ := http.NewRequest(http.MethodGet, base+v2Prefix+"/hash_details", nil)
	if err := call(req, &details); err != nil {
		return err
	}
	if details.Pepper != p.fx.Pepper {
		return fmt.Errorf("Sydent's lookup pepper is %q, the v2 bodies use %q", details.Pepper, p.fx.Pepper)
	}

	var one struct {
		MXID       string         `json:"mxid"`
		Signatures map[string]any `json:"signatures"`
	}
	req, _ = http.NewRequest(http.MethodGet, base+v1Prefix+"/lookup?medium=email&address=user0%40load.test", nil)
	if err := call(req, &one); err != nil {
		return err
	}
	if one.MXID != mxid(0) || one.Signatures[serverName] == nil {
		return fmt.Errorf("v1 lookup of %s: Sydent answered mxid %q, signatures %v", email(0), one.MXID, one.Signatures)
	}

	b := p.bulk[0]
	want := map[string]string{}
	for _, i := range b.picks {
		if i < p.n {
			want[email(i)] = mxid(i)
		}
	}
	var bulk struct {
		Threepids [][]string `json:"threepids"`
	}
	if err := call(post(base+v1Prefix+"/bulk_lookup", b.json), &bulk); err != nil {
		return err
	}
	if len(bulk.Threepids) != len(want) {
		return fmt.Errorf("bulk_lookup of %d addresses: Sydent found %d, %d are bound", len(b.picks), len(bulk.Threepids), len(want))
	}
	for _, t := range bulk.Threepids {
		if len(t) != 3 || t[0] != "email" || want[t[1]] != t[2] {
			return fmt.Errorf("bulk_lookup: Sydent answered %q, not a seeded binding", t)
		}
	}

	h := p.hashed[0]
	wantH := map[string]string{}
	for _, i := range h.picks {
		if i < p.n {
			wantH[signing.LookupHash(email(i), "email", p.fx.Pepper)] = mxid(i)
		}
	}
	var v2 struct {
		Mappings map[string]string `json:"mappings"`
	}
	if err := call(post(base+v2Prefix+"/lookup", h.json), &v2); err != nil {
		return err
	}
	if len(v2.Mappings) != len(wantH) {
		return fmt.Errorf("v2 lookup of %d hashes: Sydent found %d, %d are bound", len(h.picks), len(v2.Mappings), len(wantH))
	}
	for k, v := range v2.Mappings {
		if wantH[k] != v {
			return fmt.Errorf("v2 lookup: Sydent mapped %s to %s, not a seeded binding", k, v)
		}
	}
	return nil
}

// startSydentRun prepares the Sydent comparison for N = n (SQLite): Sydent
// creates its schema at a first start, the bindings are written into it,
// and Sydent starts again pinned to the server's cores. Its answers are
// checked before anything is measured. The caller stops the server.
func startSydentRun(ctx context.Context, o options, work string, n int, res *runResult) (*server, *pools, error) {
	res.SydentVersion, res.SydentConcurrency = o.sydentVersion, o.sydentConcurrency
	dir, err := os.MkdirTemp(work, fmt.Sprintf("sydent-%d-", n))
	if err != nil {
		return nil, nil, err
	}
	fmt.Fprintf(os.Stderr, "== Sydent, N=%d: creating its schema\n", n)
	first, err := startSydent(ctx, o.sydentDir, o.sydentPython, dir, o.serverCPUs)
	if err != nil {
		return nil, nil, err
	}
	first.stop()

	key, err := signing.LoadOrCreateKeyFile(filepath.Join(dir, "signing.key"))
	if err != nil {
		return nil, nil, err
	}
	fx := fixture{N: n, Pepper: loadPepper, Token: "sydentload" + fmt.Sprint(time.Now().UnixNano())}
	t := time.Now()
	if err := seedSydent(ctx, sydentDBPath(dir), key, n, fx.Pepper, fx.Token); err != nil {
		return nil, nil, fmt.Errorf("seeding Sydent's database: %w", err)
	}
	res.SydentSeedSeconds = time.Since(t).Seconds()
	fmt.Fprintf(os.Stderr, "seeded %d bindings into Sydent's database in %s\n", n, time.Since(t).Round(time.Millisecond))

	srv, err := startSydent(ctx, o.sydentDir, o.sydentPython, dir, o.serverCPUs)
	if err != nil {
		return nil, nil, err
	}
	res.SydentReadyMS = float64(srv.ready.Microseconds()) / 1000
	p := benchPools(n, fx)
	if err := verifySydent(ctx, srv.base, p); err != nil {
		srv.stop()
		return nil, nil, fmt.Errorf("Sydent's answers are wrong, nothing measured: %w\n%s", err, tail(srv.logPath, 20))
	}
	fmt.Fprintf(os.Stderr, "Sydent ready in %s; a bulk and a v2 lookup answered the bound half, a v1 lookup the signed association\n", srv.ready.Round(time.Millisecond))
	return srv, p, nil
}

// sydentRow sets Sydent's result r of a workload beside Sigil's (nil when
// Sigil did not run it), and fails on a Sydent that answered errors.
func sydentRow(srv *server, r workloadResult, sigil *workloadResult) (sydentResult, error) {
	sr := sydentResult{workloadResult: r}
	if sigil != nil {
		sr.SigilRPS, sr.SigilCPUMS = sigil.RPS, sigil.ServerCPUMS
	}
	if sr.SigilCPUMS > 0 {
		sr.PerCore = r.ServerCPUMS / sr.SigilCPUMS
	}
	if r.RPS > 0 {
		sr.RPSRatio = sr.SigilRPS / r.RPS
	}
	fmt.Fprintf(os.Stderr, "  Sydent %-14s %8.1f req/s  p50 %.1f ms  CPU %.2f ms/req  errors %d  Sigil / Sydent per core %.1f\n",
		r.Name, r.RPS, r.P50MS, r.ServerCPUMS, r.Errors, sr.PerCore)
	if r.Requests == 0 || r.Errors*100 > r.Requests {
		return sr, fmt.Errorf("Sydent %s: %d errors in %d requests (first: %s)\n%s", r.Name, r.Errors, r.Requests, r.FirstErr, tail(srv.logPath, 20))
	}
	return sr, nil
}

// sydentMarkdown is the Sydent table of one run ("" without one).
func (r runResult) sydentMarkdown() string {
	if len(r.Sydent) == 0 {
		return ""
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "\n%s on the same core, the same %s bindings and request bodies, **%d concurrent clients** (Sigil: %d) · seed %.1f s · ready in %.0f ms · peak RSS %.0f MB\n\n",
		r.SydentVersion, thousands(r.N), r.SydentConcurrency, r.Concurrency, r.SydentSeedSeconds, r.SydentReadyMS, r.SydentPeakRSSMB)
	b.WriteString("| workload | Sydent req/s | Sigil req/s | Sydent CPU ms/req | Sigil CPU ms/req | Sigil / Sydent per core | Sydent p50 ms | Sydent p99 ms | Sydent errors |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, s := range r.Sydent {
		errs := "0"
		if s.Errors > 0 {
			errs = fmt.Sprintf("**%d** (%s)", s.Errors, statusSummary(s.Statuses))
		}
		sigRPS, sigCPU, perCore := "–", "–", "–"
		if s.SigilCPUMS > 0 {
			sigRPS, sigCPU, perCore = fmt.Sprintf("%.0f", s.SigilRPS), fmt.Sprintf("%.3f", s.SigilCPUMS), fmt.Sprintf("**%.1f×**", s.PerCore)
		}
		fmt.Fprintf(&b, "| %s | %.1f | %s | %.2f | %s | %s | %.1f | %.1f | %s |\n",
			s.Name, s.RPS, sigRPS, s.ServerCPUMS, sigCPU, perCore, s.P50MS, s.P99MS, errs)
	}
	for _, s := range r.Sydent {
		if s.FirstErr != "" {
			fmt.Fprintf(&b, "\nSydent %s, first error: %s\n", s.Name, strings.TrimSpace(s.FirstErr))
		}
	}
	return b.String()
}
