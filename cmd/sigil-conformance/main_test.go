package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestListenersAreLoopbackOnly(t *testing.T) {
	for addr, ok := range map[string]bool{
		"127.0.0.1:0": true, "127.1.2.3:2525": true, "[::1]:0": true,
		"0.0.0.0:2525": false, "10.0.0.1:25": false, "localhost:25": false, ":25": false,
	} {
		if err := loopbackOnly(addr); (err == nil) != ok {
			t.Errorf("loopbackOnly(%q) = %v, want ok=%v", addr, err, ok)
		}
	}
}

func TestBadInvocationsExitTwo(t *testing.T) {
	for name, args := range map[string][]string{
		"no base URL":             {},
		"two base URLs":           {"http://127.0.0.1:1", "http://127.0.0.1:2"},
		"not a URL":               {"127.0.0.1:8090"},
		"port 0 without -exec":    {"http://127.0.0.1:0"},
		"public SMTP listener":    {"-smtp-listen", "0.0.0.0:2525", "http://127.0.0.1:8090"},
		"bad token pattern":       {"-token-pattern", "(", "http://127.0.0.1:8090"},
		"unknown profile":         {"-profile", "lenient", "http://127.0.0.1:8090"},
		"missing -expect file":    {"-expect", "/nonexistent/expect.txt", "http://127.0.0.1:8090"},
		"-expect without reasons": {"-expect", writeFile(t, "bindV2/binds\n"), "http://127.0.0.1:8090"},
	} {
		t.Run(name, func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := run(args, &out, &errb); code != 2 {
				t.Errorf("exit %d, want 2; stderr %s", code, errb.String())
			}
		})
	}
}

// With nothing listening at the base URL, the run stops after -wait with
// status 2, having written the CA file and printed the setup.
func TestUnreachableServer(t *testing.T) {
	ca := filepath.Join(t.TempDir(), "ca.pem")
	var out, errb bytes.Buffer
	code := run([]string{"-wait", "200ms", "-ca-file", ca, "http://127.0.0.1:1"}, &out, &errb)
	if code != 2 || !strings.Contains(errb.String(), "did not answer") {
		t.Errorf("exit %d, stderr %s", code, errb.String())
	}
	if pem, err := os.ReadFile(ca); err != nil || !bytes.Contains(pem, []byte("BEGIN CERTIFICATE")) {
		t.Errorf("CA file: %v %q", err, pem)
	}
	for _, want := range []string{"SMTP server", "trusted CA file", "private addresses"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("setup lacks %q:\n%s", want, out.String())
		}
	}
}

// A server that answers {} to everything: exit status 1, the table and the
// JUnit file say what failed.
func TestFailingRunExitsOne(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{}`))
	}))
	defer srv.Close()
	junit := filepath.Join(t.TempDir(), "junit.xml")
	var out, errb bytes.Buffer
	code := run([]string{"-mail-timeout", "50ms", "-junit", junit, "-only", "^getVersions/", "-only", "^lookupV1/missing", srv.URL}, &out, &errb)
	if code != 1 {
		t.Fatalf("exit %d, want 1; stderr %s\n%s", code, errb.String(), out.String())
	}
	if !strings.Contains(out.String(), "FAIL") || !strings.Contains(out.String(), "failed") {
		t.Errorf("table:\n%s", out.String())
	}
	x, err := os.ReadFile(junit)
	if err != nil || !bytes.Contains(x, []byte("<failure")) || !bytes.Contains(x, []byte(`classname="getVersions"`)) {
		t.Errorf("JUnit %v:\n%s", err, x)
	}
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "expect.txt")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
