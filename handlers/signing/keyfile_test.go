package signing

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadOrCreateKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys", "nested", "signing.key")
	k, err := LoadOrCreateKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if k.ID != "ed25519:0" {
		t.Errorf("ID = %q, want ed25519:0", k.ID)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	di, _ := os.Stat(filepath.Dir(path))
	if di.Mode().Perm() != 0o700 {
		t.Errorf("key dir mode %v, want 0700", di.Mode().Perm())
	}
	data, _ := os.ReadFile(path)
	if f := strings.Fields(string(data)); len(f) != 3 || f[0] != "ed25519" || f[1] != "0" || !strings.HasSuffix(string(data), "\n") || strings.Contains(f[2], "=") {
		t.Errorf("key file contents %q", data)
	}
	if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 1 {
		t.Errorf("temp files left behind: %v", ents)
	}

	again, err := LoadOrCreateKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if again.ID != k.ID || !again.Private.Equal(k.Private) {
		t.Errorf("reloaded key differs: %s vs %s", again.PublicBase64(), k.PublicBase64())
	}
}

func TestLoadKeyFileVectorAndPermissions(t *testing.T) {
	path := filepath.Join(t.TempDir(), "signing.key")
	if err := os.WriteFile(path, []byte("ed25519 1 "+vecSeed+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, 0o644) // defeat umask
	k, err := LoadOrCreateKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if k.ID != vecKeyID || k.PublicBase64() != vecPublic {
		t.Errorf("got %s %s, want %s %s", k.ID, k.PublicBase64(), vecKeyID, vecPublic)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v not tightened to 0600", fi.Mode().Perm())
	}
	// Narrower permissions are left alone.
	os.Chmod(path, 0o400)
	if _, err := LoadOrCreateKeyFile(path); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o400 {
		t.Errorf("mode %v changed from 0400", fi.Mode().Perm())
	}
}

func TestMalformedKeyFile(t *testing.T) {
	tests := []struct{ name, contents string }{
		{"empty", ""},
		{"blank lines", "\n\n  \n"},
		{"two fields", "ed25519 " + vecSeed + "\n"},
		{"four fields", "ed25519 0 " + vecSeed + " extra\n"},
		{"wrong algorithm", "curve25519 0 " + vecSeed + "\n"},
		{"bad version", "ed25519 a:b " + vecSeed + "\n"},
		{"bad base64", "ed25519 0 not*base64\n"},
		{"short seed", "ed25519 0 YWJj\n"},
		{"two keys", "ed25519 0 " + vecSeed + "\ned25519 1 " + vecSeed + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "signing.key")
			if err := os.WriteFile(path, []byte(tt.contents), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := LoadOrCreateKeyFile(path)
			if !errors.Is(err, ErrMalformedKeyFile) {
				t.Fatalf("err = %v, want ErrMalformedKeyFile", err)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the file", err)
			}
			// A malformed file must never be replaced by a fresh key.
			if data, _ := os.ReadFile(path); string(data) != tt.contents {
				t.Errorf("file was rewritten: %q", data)
			}
		})
	}
	// Tolerated variations: CRLF, surrounding blank lines, no trailing newline.
	for _, ok := range []string{
		"ed25519 1 " + vecSeed,
		"\r\ned25519 1 " + vecSeed + "\r\n\n",
		"ed25519  1\t" + vecSeed + "=\n",
	} {
		k, err := ParseKeyFile([]byte(ok))
		if err != nil || k.PublicBase64() != vecPublic {
			t.Errorf("ParseKeyFile(%q) = %v, %v", ok, k.PublicBase64(), err)
		}
	}
}

func TestKeyFileUnreadable(t *testing.T) {
	dir := t.TempDir()
	// A directory where the file should be is an error, not a reason to
	// generate a new key.
	if _, err := LoadOrCreateKeyFile(dir); err == nil || errors.Is(err, ErrMalformedKeyFile) {
		t.Errorf("LoadOrCreateKeyFile(dir) err = %v", err)
	}
}

func TestFormatKeyFileRoundTrip(t *testing.T) {
	k := vecKey(t)
	data, err := FormatKeyFile(k)
	if err != nil {
		t.Fatal(err)
	}
	want := "ed25519 1 " + "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA0\n" // canonical (zero trailing bits) form of vecSeed
	if string(data) != want {
		t.Errorf("FormatKeyFile = %q, want %q", data, want)
	}
	back, err := ParseKeyFile(data)
	if err != nil || !back.Private.Equal(k.Private) || back.ID != k.ID {
		t.Errorf("round trip: %v %v", back, err)
	}
	if _, err := FormatKeyFile(Key{ID: "ed25519:0"}); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("FormatKeyFile(zero) err = %v", err)
	}
}

func TestLoadOrCreateKeyFileConcurrent(t *testing.T) {
	// Concurrent first starts must agree on one key, never overwrite it.
	path := filepath.Join(t.TempDir(), "signing.key")
	const n = 8
	keys := make([]Key, n)
	errs := make([]error, n)
	done := make(chan int)
	for i := range n {
		go func() { keys[i], errs[i] = LoadOrCreateKeyFile(path); done <- i }()
	}
	for range n {
		<-done
	}
	onDisk, err := LoadOrCreateKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if errs[i] != nil || !keys[i].Private.Equal(onDisk.Private) {
			t.Errorf("goroutine %d: %v, key matches disk: %v", i, errs[i], keys[i].Private.Equal(onDisk.Private))
		}
	}
}
