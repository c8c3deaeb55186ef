package signing

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ErrMalformedKeyFile reports a key file that is not "ed25519 <version> <seed>".
var ErrMalformedKeyFile = errors.New("signing: malformed key file")

// defaultKeyVersion is used for newly generated key files, giving key ID
// "ed25519:0" as Sydent does.
const defaultKeyVersion = "0"

// LoadOrCreateKeyFile reads the long-term signing key at path, or generates
// one (key ID "ed25519:0") and writes it with mode 0600, creating the parent
// directory with 0700 if needed. The format is the Synapse/Sydent one-line
// "ed25519 <version> <unpadded-base64-seed>\n"; the key ID is
// "ed25519:<version>". An existing file readable by group/others is
// tightened to 0600; failure to do so (e.g. a read-only mount) is ignored
// because the key is still usable.
func LoadOrCreateKeyFile(path string) (Key, error) {
	k, err := readKeyFile(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	k, err = GenerateKey(keyIDPrefix + defaultKeyVersion)
	if err != nil {
		return Key{}, err
	}
	created, err := writeKeyFileExclusive(path, k)
	if err != nil {
		return Key{}, err
	}
	if !created {
		// Lost a creation race with another process: use its key so both
		// agree on what the server's key is.
		return readKeyFile(path)
	}
	return k, nil
}

func readKeyFile(path string) (Key, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Key{}, fmt.Errorf("signing: read key file: %w", err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&^0o600 != 0 {
		_ = os.Chmod(path, 0o600)
	}
	k, err := ParseKeyFile(data)
	if err != nil {
		return Key{}, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// ParseKeyFile parses key file contents: exactly one non-blank line
// "ed25519 <version> <base64 seed>". More lines are rejected rather than
// silently ignored so an operator never signs with an unexpected key.
func ParseKeyFile(data []byte) (Key, error) {
	var line string
	for l := range strings.Lines(string(data)) {
		if strings.TrimSpace(l) == "" {
			continue
		}
		if line != "" {
			return Key{}, fmt.Errorf("%w: more than one key line", ErrMalformedKeyFile)
		}
		line = l
	}
	f := strings.Fields(line)
	if len(f) != 3 {
		return Key{}, fmt.Errorf("%w: want \"ed25519 <version> <seed>\", got %d fields", ErrMalformedKeyFile, len(f))
	}
	if f[0] != KeyAlgorithm {
		return Key{}, fmt.Errorf("%w: unsupported algorithm %q", ErrMalformedKeyFile, f[0])
	}
	if !validVersion(f[1]) {
		return Key{}, fmt.Errorf("%w: invalid key version %q", ErrMalformedKeyFile, f[1])
	}
	k, err := KeyFromSeed(keyIDPrefix+f[1], f[2])
	if err != nil {
		return Key{}, fmt.Errorf("%w: %w", ErrMalformedKeyFile, err)
	}
	return k, nil
}

// FormatKeyFile renders k in key file format.
func FormatKeyFile(k Key) ([]byte, error) {
	if !validKeyID(k.ID) || len(k.Private) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("%w: cannot write key %q", ErrInvalidKey, k.ID)
	}
	seed := base64.RawStdEncoding.EncodeToString(k.Private.Seed())
	return []byte(KeyAlgorithm + " " + k.version() + " " + seed + "\n"), nil
}

// writeKeyFileExclusive writes k to path without ever exposing a partial
// file or overwriting an existing one: write a 0600 temp file in the same
// directory, fsync, then hard-link it into place (link fails if path
// exists). It reports false if another writer got there first.
func writeKeyFileExclusive(path string, k Key) (bool, error) {
	data, err := FormatKeyFile(k)
	if err != nil {
		return false, err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, fmt.Errorf("signing: create key directory: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".signing-key-*")
	if err != nil {
		return false, fmt.Errorf("signing: create key file: %w", err)
	}
	tmpName := tmp.Name()
	defer os.Remove(tmpName)
	// CreateTemp already uses 0600; Chmod makes it exact regardless of umask.
	err = tmp.Chmod(0o600)
	if err == nil {
		_, err = tmp.Write(data)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return false, fmt.Errorf("signing: write key file: %w", err)
	}
	if err := os.Link(tmpName, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return false, nil
		}
		// Filesystems without hard links: fall back to rename, which is
		// still atomic but could replace a file created concurrently.
		if err := os.Rename(tmpName, path); err != nil {
			return false, fmt.Errorf("signing: install key file: %w", err)
		}
	}
	return true, nil
}

// LoadKeyFile reads an existing key file and refuses a malformed one; it
// never creates a key (sigil check, import-sydent).
func LoadKeyFile(path string) (Key, error) { return readKeyFile(path) }
