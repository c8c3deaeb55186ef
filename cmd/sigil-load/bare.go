package main

import (
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
	"time"
)

// The baseline: a bare net/http server that reads the request body and
// answers {} to everything. It runs as a process of its own (this binary,
// -bare-serve), pinned to the same cores as Sigil, so "Sigil / net/http"
// compares the two on the same core in the same run: the ratio holds
// however busy the machine is, which absolute figures do not.

// serveBare is the baseline server's main: it serves addr until killed.
func serveBare(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	body := []byte("{}")
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})
	return (&http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}).Serve(ln)
}

// startBare starts the baseline server on cpus ("" for any) and waits
// until it answers.
func startBare(ctx context.Context, dir, cpus string) (*server, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "bare.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := pinned(cpus, self, "-bare-serve", fmt.Sprintf("127.0.0.1:%d", port))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start the net/http baseline: %w", err)
	}
	s := &server{cmd: cmd, pid: cmd.Process.Pid, base: fmt.Sprintf("http://127.0.0.1:%d", port), logPath: logPath, exited: make(chan struct{})}
	go func() { s.waitErr = cmd.Wait(); logf.Close(); close(s.exited) }()
	if err := s.waitReady(ctx, "/", time.Minute); err != nil {
		return nil, err
	}
	return s, nil
}

// pinned is the command name args, run on cpus (a taskset list such as
// "0" or "0,1") when cpus is set and taskset is installed. taskset execs
// the command, so the process id is the command's.
func pinned(cpus, name string, args ...string) *exec.Cmd {
	if cpus != "" && tasksetPath() != "" {
		return exec.Command(tasksetPath(), append([]string{"-c", cpus, name}, args...)...)
	}
	return exec.Command(name, args...)
}

func tasksetPath() string {
	p, err := exec.LookPath("taskset")
	if err != nil {
		return ""
	}
	return p
}

// pinSelf moves every thread of this process (the load generator) to
// cpus; it reports whether that worked.
func pinSelf(cpus string) bool {
	if cpus == "" || tasksetPath() == "" {
		return false
	}
	return exec.Command(tasksetPath(), "-a", "-p", "-c", cpus, strconv.Itoa(os.Getpid())).Run() == nil
}

// cpuPlan splits the machine's cores: the server (Sigil or the baseline)
// on the first, the generator on the others. With one core, nothing is
// pinned.
func cpuPlan(n int) (server, generator, all string) {
	if n < 2 {
		return "", "", ""
	}
	var rest []string
	for i := 1; i < n; i++ {
		rest = append(rest, strconv.Itoa(i))
	}
	every := append([]string{"0"}, rest...)
	return "0", strings.Join(rest, ","), strings.Join(every, ",")
}
