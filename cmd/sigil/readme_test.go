package main

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// readmeBlock is the shell block of README.md between the try-it markers.
func readmeBlock(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	i, j := strings.Index(s, "<!-- try-it"), strings.Index(s, "<!-- /try-it -->")
	if i < 0 || j < i {
		t.Fatal("README.md has no <!-- try-it --> ... <!-- /try-it --> block")
	}
	block := s[i:j]
	start := strings.Index(block, "```sh\n")
	end := strings.LastIndex(block, "```")
	if start < 0 || end <= start {
		t.Fatal("the try-it block holds no ```sh code")
	}
	return block[start+len("```sh\n") : end]
}

// The README's "Try it", pasted as a block into bash, works: the server
// starts, the mail's link validates the address, the bind and the lookup
// answer with the signed association, and the server is stopped, its
// port free again. The block runs as written but for its `go build` (the
// binary the tests built is copied in) and on a free port (PORT).
func TestReadmeTryItWorksPastedAsABlock(t *testing.T) {
	bin := sigilBinary(t)
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("the block uses curl, which is not installed (.ci/run installs it)")
	}
	block := readmeBlock(t)
	if !strings.Contains(block, "go build -o sigil ./cmd/sigil\n") || !strings.Contains(block, "PORT=${PORT:-8090}") {
		t.Fatalf("the block no longer builds ./sigil or takes PORT:\n%s", block)
	}
	block = strings.Replace(block, "go build -o sigil ./cmd/sigil\n", "", 1)
	dir := t.TempDir()
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sigil"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash")
	cmd.Dir = dir
	cmd.Stdin = strings.NewReader(block)
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SIGIL_") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, "PORT="+port)
	out, err := cmd.CombinedOutput()
	log, _ := os.ReadFile(filepath.Join(dir, "sigil.log"))
	if err != nil {
		t.Fatalf("the block failed: %v\n%s\nsigil.log:\n%s", err, out, log)
	}
	for _, want := range []string{"Email address verified", `"mxid":"@alice:example.org"`, `"signatures":{"localhost:8090"`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the output lacks %q:\n%s\nsigil.log:\n%s", want, out, log)
		}
	}
	if n := strings.Count(string(out), `"mxid":"@alice:example.org"`); n != 2 {
		t.Errorf("want the bind and the lookup to show the association, got it %d times:\n%s", n, out)
	}
	if !strings.Contains(string(log), "shut down") {
		t.Errorf("the server was not stopped gracefully:\n%s", log)
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Errorf("something still listens on %s after the block", addr)
	}
}
