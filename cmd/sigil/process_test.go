package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// These tests run the real binary, built once per test run.

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func sigilBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sigil-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "sigil")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// proc is a running sigil.
type proc struct {
	t      *testing.T
	cmd    *exec.Cmd
	addr   string // 127.0.0.1:port
	log    string
	exited chan struct{}
	err    error
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startSigil runs the binary with a loopback configuration in dir, plus
// extra YAML, and waits until it answers.
func startSigil(t *testing.T, dir, addr, extra string) *proc {
	t.Helper()
	return startSigilOn(t, dir, filepath.Join(dir, "sigil.db"), addr, extra)
}

// startSigilOn is startSigil on the database dsn.
func startSigilOn(t *testing.T, dir, dsn, addr, extra string) *proc {
	t.Helper()
	bin := sigilBinary(t)
	cfg := fmt.Sprintf(`server_name: %s
public_base_url: http://%s
listen: %s
database: %q
signing_key: %q
log_level: info
%s`, addr, addr, addr, dsn, filepath.Join(dir, "signing.key"), extra)
	cfgPath := filepath.Join(dir, "sigil.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, fmt.Sprintf("sigil-%d.log", time.Now().UnixNano()))
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-config", cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "SIGIL_CONFIG=")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, cmd: cmd, addr: addr, log: logPath, exited: make(chan struct{})}
	go func() { p.err = cmd.Wait(); logf.Close(); close(p.exited) }()
	t.Cleanup(func() { p.kill() })
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/_matrix/identity/v2")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		select {
		case <-p.exited:
			t.Fatalf("sigil exited at start: %v\n%s", p.err, p.logText())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("sigil did not answer within a minute\n%s", p.logText())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *proc) logText() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

func (p *proc) signal(sig os.Signal) {
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal: %v", err)
	}
}

func (p *proc) kill() {
	select {
	case <-p.exited:
	default:
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// wait waits for the process to exit (up to limit, a bound against a hung
// test, not a speed target) and returns its exit status.
func (p *proc) wait(limit time.Duration) int {
	p.t.Helper()
	select {
	case <-p.exited:
	case <-time.After(limit):
		p.t.Fatalf("sigil still running after %v\n%s", limit, p.logText())
	}
	return p.cmd.ProcessState.ExitCode()
}

// slowUpload starts a POST whose body is announced but not sent yet.
func slowUpload(t *testing.T, addr string, body string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "POST /_matrix/identity/api/v1/bulk_lookup HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body[:5])
	return conn
}

const lookupBody = `{"threepids":[["email","nobody@example.org"]]}`

// SIGTERM: no new connections, the request in flight finishes, exit 0.
func TestShutdownFinishesRequestsInFlight(t *testing.T) {
	addr := freeAddr(t)
	p := startSigil(t, t.TempDir(), addr, "shutdown_timeout: 60s\n")
	conn := slowUpload(t, addr, lookupBody)
	time.Sleep(200 * time.Millisecond) // the request is being read
	p.signal(syscall.SIGTERM)
	refused := false
	for i := 0; i < 100 && !refused; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			refused = true
			break
		}
		c.Close()
		time.Sleep(20 * time.Millisecond)
	}
	if !refused {
		t.Error("still accepting connections after SIGTERM")
	}
	if _, err := io.WriteString(conn, lookupBody[5:]); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("the request in flight got no answer: %v\n%s", err, p.logText())
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(b), "threepids") {
		t.Errorf("request in flight: %d %s", resp.StatusCode, b)
	}
	if code := p.wait(30 * time.Second); code != 0 {
		t.Errorf("exit status %d, want 0\n%s", code, p.logText())
	}
}

// A slow upload is cut at the shutdown deadline, and the exit is still 0.
func TestShutdownCutsSlowUploads(t *testing.T) {
	addr := freeAddr(t)
	p := startSigil(t, t.TempDir(), addr, "shutdown_timeout: 1s\n")
	slowUpload(t, addr, lookupBody)
	time.Sleep(200 * time.Millisecond)
	p.signal(syscall.SIGTERM)
	if code := p.wait(30 * time.Second); code != 0 {
		t.Errorf("exit status %d, want 0\n%s", code, p.logText())
	}
	if !strings.Contains(p.logText(), "cut") {
		t.Errorf("the log does not say the upload was cut:\n%s", p.logText())
	}
}

// A second signal exits at once, without waiting for the deadline.
func TestSecondSignalExitsAtOnce(t *testing.T) {
	addr := freeAddr(t)
	p := startSigil(t, t.TempDir(), addr, "shutdown_timeout: 10m\n")
	slowUpload(t, addr, lookupBody)
	time.Sleep(200 * time.Millisecond)
	p.signal(syscall.SIGTERM)
	time.Sleep(200 * time.Millisecond)
	p.signal(syscall.SIGTERM)
	if code := p.wait(60 * time.Second); code == 0 {
		t.Errorf("exit status 0 after a second signal, want non-zero")
	}
	if !strings.Contains(p.logText(), "second signal") {
		t.Errorf("log:\n%s", p.logText())
	}
}
