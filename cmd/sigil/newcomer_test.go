package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// runSigil runs the binary to completion with a configuration file of
// yaml in dir and returns its exit status and output.
func runSigil(t *testing.T, dir, yaml string, env []string, args ...string) (int, string) {
	t.Helper()
	cfgPath := filepath.Join(dir, "sigil.yaml")
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(sigilBinary(t), append([]string{"-config", cfgPath}, args...)...)
	cmd.Env = append(append(os.Environ(), "SIGIL_CONFIG="), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatal(err)
		}
	}
	return cmd.ProcessState.ExitCode(), string(out)
}

func localConfig(dir, addr string) string {
	return fmt.Sprintf("server_name: %s\nlisten: %s\ndatabase: %q\nsigning_key: %q\n",
		addr, addr, filepath.Join(dir, "sigil.db"), filepath.Join(dir, "signing.key"))
}

// A port that is taken: exit 1 with an error naming the address and the
// listen setting, and never a "sigil ready" line first.
func TestBusyPortExitsWithoutReady(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dir := t.TempDir()
	addr := ln.Addr().String()
	code, out := runSigil(t, dir, localConfig(dir, addr), nil)
	if code != exitFailure {
		t.Errorf("exit status %d, want %d\n%s", code, exitFailure, out)
	}
	if strings.Contains(out, "sigil ready") {
		t.Errorf("\"ready\" logged for a server that cannot listen:\n%s", out)
	}
	if !strings.Contains(out, addr) || !strings.Contains(out, "address already in use") || !strings.Contains(out, "listen") {
		t.Errorf("the error does not name the address and the cause:\n%s", out)
	}
}

// "sigil ready" comes after the port is bound: by the time it is in the
// log, the server answers.
func TestReadyLoggedOnlyOnceServing(t *testing.T) {
	dir := t.TempDir()
	addr := freeAddr(t)
	p := startSigil(t, dir, addr, "")
	log := p.logText()
	for i := 0; i < 200 && !strings.Contains(log, "sigil ready"); i++ {
		time.Sleep(20 * time.Millisecond)
		log = p.logText()
	}
	ready := strings.Index(log, "sigil ready")
	listening := strings.Index(log, "msg=listening")
	if ready < 0 || listening < 0 || ready < listening {
		t.Errorf("want \"listening\" then \"sigil ready\":\n%s", log)
	}
	if !strings.Contains(log[ready:], "addr="+addr) {
		t.Errorf("the ready line does not name the bound address %s:\n%s", addr, log)
	}
}

// Every flag a command's usage line names (`sigil COMMAND -h`, `sigil
// help`) is one the command accepts: import-sydent's once named -db and
// -config-sydent, which it never had.
func TestUsageNamesOnlyRealFlags(t *testing.T) {
	flagRE := regexp.MustCompile(`(?:^|[\s\[|])-([a-z][a-z0-9-]*)`)
	for _, cmd := range commands() {
		fs := flag.NewFlagSet(cmd.name, flag.ContinueOnError)
		cmd.run(&cli{}, fs)
		for _, m := range flagRE.FindAllStringSubmatch(cmd.args, -1) {
			if fs.Lookup(m[1]) == nil {
				t.Errorf("sigil %s: the usage %q names -%s, which is not a flag of the command", cmd.name, cmd.args, m[1])
			}
		}
	}
}

// `sigil check` says when public_base_url was left on a port Sigil no
// longer listens on, and names a derived one as derived.
func TestCheckWarnsAboutPublicBaseURL(t *testing.T) {
	dir := t.TempDir()
	code, out := runSigil(t, dir, localConfig(dir, "127.0.0.1:9001")+"public_base_url: http://localhost:8090\n", nil, "check")
	if code != exitOK || !strings.Contains(out, "WARN config") || !strings.Contains(out, "Sigil listens on 127.0.0.1:9001") {
		t.Errorf("exit %d, want 0 and a warning:\n%s", code, out)
	}
	code, out = runSigil(t, dir, "listen: 127.0.0.1:9001\ndatabase: "+filepath.Join(dir, "x.db")+"\n", nil, "check")
	if code != exitOK || strings.Contains(out, "WARN") || !strings.Contains(out, "public_base_url http://localhost:9001 (not set: derived") {
		t.Errorf("exit %d, want 0, no warning and the derived URL:\n%s", code, out)
	}
}

// Another tool's SIGIL_ variable in the environment: Sigil serves, and
// says it ignored it.
func TestOtherToolsVariableWarnedNotFatal(t *testing.T) {
	dir := t.TempDir()
	code, out := runSigil(t, dir, localConfig(dir, "127.0.0.1:9001"), []string{"SIGIL_SRC=/src"}, "check")
	if code != exitOK || !strings.Contains(out, "SIGIL_SRC names no setting and is ignored") {
		t.Errorf("exit %d, want 0 and a warning:\n%s", code, out)
	}
}

// A derived public_base_url follows the port actually bound (listen on
// port 0), and serve logs the configuration's warnings (here another
// tool's SIGIL_ variable) and serves all the same.
func TestServeDerivesBaseURLFromTheBoundPortAndLogsWarnings(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "sigil.yaml")
	yaml := fmt.Sprintf("listen: 127.0.0.1:0\ndatabase: %q\nsigning_key: %q\n",
		filepath.Join(dir, "sigil.db"), filepath.Join(dir, "signing.key"))
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(sigilBinary(t), "-config", cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "SIGIL_CONFIG=", "SIGIL_SRC=/src")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	re := regexp.MustCompile(`msg=listening addr=127\.0\.0\.1:(\d+) public_base_url=(\S+)`)
	var m []string
	for i := 0; i < 1200 && m == nil; i++ {
		time.Sleep(50 * time.Millisecond)
		b, _ := os.ReadFile(logPath)
		m = re.FindStringSubmatch(string(b))
	}
	b, _ := os.ReadFile(logPath)
	if m == nil {
		t.Fatalf("no listening line:\n%s", b)
	}
	if want := "http://localhost:" + m[1]; m[2] != want {
		t.Errorf("public_base_url %s, want %s (the bound port)", m[2], want)
	}
	if !strings.Contains(string(b), "level=WARN") || !strings.Contains(string(b), "SIGIL_SRC names no setting and is ignored") {
		t.Errorf("the warning about SIGIL_SRC is not in the log:\n%s", b)
	}
}
