package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const statusPath = "/_matrix/identity/v2"

// buildSigil compiles ./cmd/sigil of the module that contains srcDir.
func buildSigil(ctx context.Context, srcDir, outDir string) (string, error) {
	gomod, err := exec.CommandContext(ctx, goTool(), "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	if strings.TrimSpace(string(gomod)) == "" || strings.TrimSpace(string(gomod)) == os.DevNull {
		root = srcDir
	}
	bin := filepath.Join(outDir, "sigil")
	cmd := exec.CommandContext(ctx, goTool(), "build", "-o", bin, "./cmd/sigil")
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build ./cmd/sigil in %s: %w", root, err)
	}
	return bin, nil
}

func goTool() string {
	if g := os.Getenv("GO"); g != "" {
		return g
	}
	return "go"
}

// server is a running sigil process.
type server struct {
	name    string // for messages; "" is sigil
	cmd     *exec.Cmd
	pid     int
	base    string // http://127.0.0.1:port
	debug   string // http://127.0.0.1:port of /debug/pprof/, if enabled
	ready   time.Duration
	logPath string
	exited  chan struct{}
	waitErr error
}

// configYAML is the server's configuration for a run: loopback, no mail
// rate limit, otherwise as shipped: info-level logs, so the access log
// writes a line per request (to a file), and the metrics are counted.
func configYAML(port int, dsn, keyPath string) string {
	return fmt.Sprintf(`server_name: %s
public_base_url: http://127.0.0.1:%d
listen: 127.0.0.1:%d
database: %q
signing_key: %q
log_level: info
limits:
  mail_every: 0s
`, serverName, port, port, dsn, keyPath)
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// startServer writes a configuration into dir, starts bin and waits for the
// first 200 on the status route.
func startServer(ctx context.Context, bin, dir, dsn, keyPath string, debug bool, cpus string) (*server, error) {
	return startServerWith(ctx, bin, dir, func(port int) string { return configYAML(port, dsn, keyPath) }, debug, cpus)
}

// startServerWith is startServer with the configuration config(port), on
// cpus ("" for any).
func startServerWith(ctx context.Context, bin, dir string, config func(port int) string, debug bool, cpus string) (*server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	cfg, debugBase := config(port), ""
	if debug {
		dport, err := freePort()
		if err != nil {
			return nil, err
		}
		cfg += fmt.Sprintf("debug_listen: 127.0.0.1:%d\n", dport)
		debugBase = fmt.Sprintf("http://127.0.0.1:%d", dport)
	}
	cfgPath := filepath.Join(dir, "sigil.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "sigil.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := pinned(cpus, bin, "-config", cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = withoutSigilEnv(os.Environ())
	start := time.Now()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	s := &server{cmd: cmd, pid: cmd.Process.Pid, base: fmt.Sprintf("http://127.0.0.1:%d", port), debug: debugBase, logPath: logPath, exited: make(chan struct{})}
	go func() { s.waitErr = cmd.Wait(); logf.Close(); close(s.exited) }()

	if err := s.waitReady(ctx, statusPath, 2*time.Minute); err != nil {
		return nil, err
	}
	s.ready = time.Since(start)
	return s, nil
}

// waitReady polls path until it answers 200, the process exits or limit
// passes (then the process is stopped).
func (s *server) waitReady(ctx context.Context, path string, limit time.Duration) error {
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	deadline := time.Now().Add(limit)
	for {
		resp, err := client.Get(s.base + path)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-s.exited:
			return fmt.Errorf("%s exited before it was ready (%v):\n%s", s.cmd.Path, s.waitErr, tail(s.logPath, 20))
		case <-ctx.Done():
			s.stop()
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.stop()
			return fmt.Errorf("%s not ready after %s:\n%s", s.cmd.Path, limit, tail(s.logPath, 20))
		}
	}
}

// withoutSigilEnv drops SIGIL_* variables so only the generated file
// configures the server.
func withoutSigilEnv(env []string) []string {
	out := env[:0:0]
	for _, e := range env {
		if !strings.HasPrefix(e, "SIGIL_") {
			out = append(out, e)
		}
	}
	return out
}

// alive reports an error if the server has exited.
func (s *server) alive() error {
	select {
	case <-s.exited:
		name := s.name
		if name == "" {
			name = "sigil"
		}
		return fmt.Errorf("%s exited during the run (%v):\n%s", name, s.waitErr, tail(s.logPath, 20))
	default:
		return nil
	}
}

// stop sends SIGTERM and waits for a graceful exit, killing after 20 s.
func (s *server) stop() {
	select {
	case <-s.exited:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}

// cpuTicks is the server's user+system CPU time so far, in clock ticks.
func (s *server) cpuTicks() (int64, error) { return procCPUTicks(s.pid) }

// memMB reads a Vm* line of /proc/<pid>/status, in MB (0 if unreadable).
func (s *server) memMB(field string) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.pid))
	if err != nil {
		return 0
	}
	kb, err := parseStatusKB(string(data), field)
	if err != nil {
		return 0
	}
	return float64(kb) / 1024
}

func tail(path string, lines int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	var buf []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		buf = append(buf, sc.Text())
		if len(buf) > lines {
			buf = buf[1:]
		}
	}
	if len(buf) == 0 {
		return "(empty log)"
	}
	return strings.Join(buf, "\n")
}

// profile records the server's CPU profile for d, starting after wait,
// into path (its directory is created).
func (s *server) profile(ctx context.Context, wait, d time.Duration, path string) <-chan error {
	done := make(chan error, 1)
	go func() {
		done <- func() error {
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return ctx.Err()
			}
			secs := max(1, int(d.Round(time.Second)/time.Second))
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", s.debug, secs), nil)
			if err != nil {
				return err
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("GET /debug/pprof/profile: %s", resp.Status)
			}
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				return err
			}
			f, err := os.Create(path)
			if err != nil {
				return err
			}
			if _, err := io.Copy(f, resp.Body); err != nil {
				f.Close()
				return err
			}
			return f.Close()
		}()
	}()
	return done
}

// indexLoaded waits (up to limit) for the server's "lookup index loaded"
// log line and returns its bindings and bytes.
func (s *server) indexLoaded(ctx context.Context, limit time.Duration) (bindings, bytes int64, err error) {
	deadline := time.Now().Add(limit)
	for {
		data, _ := os.ReadFile(s.logPath)
		for line := range strings.Lines(string(data)) {
			if !strings.Contains(line, "lookup index loaded") {
				continue
			}
			for _, f := range strings.Fields(line) {
				if v, ok := strings.CutPrefix(f, "bindings="); ok {
					bindings, _ = strconv.ParseInt(v, 10, 64)
				}
				if v, ok := strings.CutPrefix(f, "bytes="); ok {
					bytes, _ = strconv.ParseInt(v, 10, 64)
				}
			}
			return bindings, bytes, nil
		}
		if time.Now().After(deadline) {
			return 0, 0, fmt.Errorf("no \"lookup index loaded\" line after %s", limit)
		}
		select {
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
