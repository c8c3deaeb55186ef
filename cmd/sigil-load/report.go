package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
)

// runResult is one (database, N).
type runResult struct {
	DB          string  `json:"db"`
	N           int     `json:"n"`
	SeedSeconds float64 `json:"seed_seconds"`
	// AnalyzeSeconds is 0 when no ANALYZE ran (SQLite, or -analyze=false).
	AnalyzeSeconds float64          `json:"analyze_seconds"`
	ReadyMS        float64          `json:"ready_ms"`
	StartRSSMB     float64          `json:"server_rss_mb_at_start"`
	PeakRSSMB      float64          `json:"server_peak_rss_mb"`
	Workloads      []workloadResult `json:"workloads"`
	Scaling        []scaleResult    `json:"scaling,omitempty"`
	// IndexBytesPerBinding is the lookup index's memory over its bindings.
	IndexBytesPerBinding float64 `json:"index_bytes_per_binding,omitempty"`
	// Concurrency is the generator's for Sigil (and the baseline).
	Concurrency int `json:"concurrency"`
	// Sydent: the same workloads against Sydent (-sydent), on the same core
	// with the same bindings, at SydentConcurrency clients.
	Sydent            []sydentResult `json:"sydent,omitempty"`
	SydentVersion     string         `json:"sydent_version,omitempty"`
	SydentConcurrency int            `json:"sydent_concurrency,omitempty"`
	SydentSeedSeconds float64        `json:"sydent_seed_seconds,omitempty"`
	SydentReadyMS     float64        `json:"sydent_ready_ms,omitempty"`
	SydentPeakRSSMB   float64        `json:"sydent_peak_rss_mb,omitempty"`
}

// report is a whole run.
type report struct {
	Date        string `json:"date"`
	Command     string `json:"command"`
	GoVersion   string `json:"go_version"`
	CPU         string `json:"cpu"`
	Cores       int    `json:"cores"`
	Concurrency int    `json:"concurrency"`
	Duration    string `json:"duration_per_workload"`
	Warmup      string `json:"warmup"`
	Total       string `json:"total_time"`
	// LoadAvg is /proc/loadavg at the start: other work on the machine
	// shows up here and in the "other CPU" column.
	LoadAvg string `json:"loadavg_at_start"`
	// The cores (taskset lists) of the server, the generator and the
	// scaling rows; empty when not pinned.
	ServerCPUs    string      `json:"server_cpus,omitempty"`
	GeneratorCPUs string      `json:"generator_cpus,omitempty"`
	ScaleCPUs     string      `json:"scale_cpus,omitempty"`
	Runs          []runResult `json:"runs"`
}

// thousands formats 1000000 as 1,000,000.
func thousands(n int) string {
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func (r runResult) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "### %s, N = %s\n\n", r.DB, thousands(r.N))
	analyze := ""
	if r.AnalyzeSeconds > 0 {
		analyze = fmt.Sprintf(" + ANALYZE %.1f s", r.AnalyzeSeconds)
	}
	fmt.Fprintf(&b, "seed %.1f s (%s rows/s)%s · ready in %.0f ms · server RSS %.0f MB at start, peak %.0f MB · lookup index %.1f bytes a binding\n\n",
		r.SeedSeconds, thousands(int(float64(r.N)/r.SeedSeconds)), analyze, r.ReadyMS, r.StartRSSMB, r.PeakRSSMB, r.IndexBytesPerBinding)
	b.WriteString("| workload | req/s | net/http req/s | Sigil / net/http | per core (CPU) | p50 ms | p99 ms | server CPU ms/req | net/http CPU ms/req | generator CPU ms/req | other CPU ms/req | errors |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, w := range r.Workloads {
		errs := "0"
		if w.Errors > 0 {
			errs = fmt.Sprintf("**%d** (%s)", w.Errors, statusSummary(w.Statuses))
		}
		bare, ratio, perCore, bareCPU := "–", "–", "–", "–"
		if w.BareRPS > 0 {
			bare, ratio, bareCPU = fmt.Sprintf("%.0f", w.BareRPS), fmt.Sprintf("%.2f", w.VsBare), fmt.Sprintf("%.3f", w.BareCPUMS)
			perCore = fmt.Sprintf("%.2f", w.VsBareCPU)
		}
		fmt.Fprintf(&b, "| %s | %.0f | %s | %s | %s | %.2f | %.2f | %.3f | %s | %.3f | %.3f | %s |\n",
			w.Name, w.RPS, bare, ratio, perCore, w.P50MS, w.P99MS, w.ServerCPUMS, bareCPU, w.GenCPUMS, w.OtherCPUMS, errs)
	}
	if len(r.Scaling) > 0 {
		b.WriteString("\n| workload | one core req/s | cores " + r.Scaling[0].CPUs + " req/s | ratio | server CPU ms/req, one core | on cores " + r.Scaling[0].CPUs +
			" | ratio by CPU |\n|---|---:|---:|---:|---:|---:|---:|\n")
		for _, sc := range r.Scaling {
			fmt.Fprintf(&b, "| %s | %.0f | %.0f | %.2f | %.3f | %.3f | %.2f |\n", sc.Name, sc.OneRPS, sc.AllRPS, sc.Ratio, sc.OneCPUMS, sc.AllCPUMS, sc.CPURatio)
		}
	}
	for _, w := range r.Workloads {
		if w.FirstErr != "" {
			fmt.Fprintf(&b, "\n%s, first error: %s\n", w.Name, strings.TrimSpace(w.FirstErr))
		}
	}
	b.WriteString(r.sydentMarkdown())
	return b.String()
}

func statusSummary(st map[int]int) string {
	var parts []string
	for _, c := range slices.Sorted(maps.Keys(st)) {
		n := st[c]
		if c/100 == 2 {
			continue
		}
		name := fmt.Sprint(c)
		if c == 0 {
			name = "transport"
		}
		parts = append(parts, fmt.Sprintf("%s×%d", name, n))
	}
	return strings.Join(parts, ", ")
}

func (rep report) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Run %s on %s (%d cores, load average %s at start), %s; %d concurrent clients, %s per workload after %s warm-up; total %s.\n\n",
		rep.Date, rep.CPU, rep.Cores, rep.LoadAvg, rep.GoVersion, rep.Concurrency, rep.Duration, rep.Warmup, rep.Total)
	fmt.Fprintf(&b, "`%s`\n\n", rep.Command)
	if rep.ServerCPUs != "" {
		fmt.Fprintf(&b, "Sigil and the net/http baseline on core %s, the generator on %s; scaling rows: Sigil on cores %s.\n\n",
			rep.ServerCPUs, rep.GeneratorCPUs, rep.ScaleCPUs)
	}
	for _, r := range rep.Runs {
		b.WriteString(r.markdown())
		b.WriteString("\n")
	}
	b.WriteString(rep.sizes())
	return b.String()
}

func (rep report) write(path string) error {
	var data []byte
	if strings.HasSuffix(path, ".json") {
		var err error
		if data, err = json.MarshalIndent(rep, "", "  "); err != nil {
			return err
		}
		data = append(data, '\n')
	} else {
		data = []byte(rep.markdown())
	}
	return os.WriteFile(path, data, 0o644)
}

// sizes compares, per database, each workload at the largest N with the
// same workload at the smallest: requests/s and server CPU per request.
func (rep report) sizes() string {
	var b strings.Builder
	byDB := map[string][]runResult{}
	var dbs []string
	for _, r := range rep.Runs {
		if _, ok := byDB[r.DB]; !ok {
			dbs = append(dbs, r.DB)
		}
		byDB[r.DB] = append(byDB[r.DB], r)
	}
	for _, db := range dbs {
		runs := byDB[db]
		if len(runs) < 2 {
			continue
		}
		small, large := runs[0], runs[0]
		for _, r := range runs {
			if r.N < small.N {
				small = r
			}
			if r.N > large.N {
				large = r
			}
		}
		if small.N == large.N {
			continue
		}
		fmt.Fprintf(&b, "### %s, N = %s against N = %s\n\n", db, thousands(large.N), thousands(small.N))
		b.WriteString("| workload | req/s, small | req/s, large | large / small | server CPU ms/req, small | large | small / large |\n|---|---:|---:|---:|---:|---:|---:|\n")
		for _, w := range large.Workloads {
			for _, s := range small.Workloads {
				if s.Name != w.Name || s.RPS == 0 || w.ServerCPUMS == 0 {
					continue
				}
				fmt.Fprintf(&b, "| %s | %.0f | %.0f | %.2f | %.3f | %.3f | %.2f |\n",
					w.Name, s.RPS, w.RPS, w.RPS/s.RPS, s.ServerCPUMS, w.ServerCPUMS, s.ServerCPUMS/w.ServerCPUMS)
			}
		}
		b.WriteString("\n")
	}
	return b.String()
}
