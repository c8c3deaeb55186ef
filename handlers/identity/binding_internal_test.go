package identity

import (
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/sigil-matrix/sigil/handlers/signing"
)

// slowSign is sign through the generic machinery only (SignJSON, then
// json.Marshal), what every association went through before signPlain.
func slowSign(t testing.TB, a association, key signing.Key, serverName string) []byte {
	signed, err := signing.SignJSON(a, serverName, key)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(signed)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// signPlain writes exactly what the generic path writes, byte for byte,
// and declines whatever it cannot write that way (which sign then leaves
// to the generic path).
func TestSignPlainMatchesSignJSON(t *testing.T) {
	key, err := signing.LoadOrCreateKeyFile(filepath.Join(t.TempDir(), "signing.key"))
	if err != nil {
		t.Fatal(err)
	}
	base := association{Address: "alice@example.org", Medium: "email", MXID: "@alice:hs.example.org",
		NotBefore: 1_790_000_000_123, NotAfter: 4_943_600_000_123, TS: 1_790_000_000_123}
	plain := []struct {
		name       string
		a          association
		serverName string
	}{
		{"email", base, "id.example.org"},
		{"msisdn", association{Address: "447700900123", Medium: "msisdn", MXID: "@b:hs", NotBefore: 1, NotAfter: 2, TS: 3}, "id.example.org:8443"},
		{"zero and negative", association{Address: "x", Medium: "email", MXID: "@c:d", NotBefore: 0, NotAfter: -5, TS: 1<<53 - 1}, "[::1]:8090"},
		{"punctuation", association{Address: "a+b.c_d'e!#$%*/=?^`{|}~@example.org", Medium: "email", MXID: "@x=y/z:hs", TS: 7}, "id.example.org"},
	}
	for _, c := range plain {
		got, ok := c.a.signPlain(key, c.serverName)
		if !ok {
			t.Errorf("%s: declined", c.name)
			continue
		}
		if want := slowSign(t, c.a, key, c.serverName); string(got) != string(want) {
			t.Errorf("%s:\n got %s\nwant %s", c.name, got, want)
		}
		if viaSign, err := c.a.sign(key, c.serverName); err != nil || string(viaSign) != string(got) {
			t.Errorf("%s: sign gave %s %v", c.name, viaSign, err)
		}
	}
	declined := map[string]association{}
	for name, addr := range map[string]string{"quote": `a"b@example.org`, "backslash": `a\b@example.org`,
		"html": "<a&b>@example.org", "non-ASCII": "jörg@example.org", "control": "a\tb@example.org", "DEL": "a\x7fb"} {
		a := base
		a.Address = addr
		declined[name] = a
	}
	big := base
	big.NotAfter = 1 << 53
	declined["unsafe integer"] = big
	for name, a := range declined {
		if _, ok := a.signPlain(key, "id.example.org"); ok {
			t.Errorf("%s: signPlain did not decline", name)
		}
		// sign still answers, through the generic path.
		got, err := a.sign(key, "id.example.org")
		if name == "unsafe integer" {
			if err == nil {
				t.Errorf("%s: signed %s, want canonical JSON's refusal", name, got)
			}
			continue
		}
		if want := slowSign(t, a, key, "id.example.org"); err != nil || string(got) != string(want) {
			t.Errorf("%s: sign gave %s %v, want %s", name, got, err, want)
		}
	}
}

// BenchmarkAssociationSign: a v1 lookup's signature on PostgreSQL
// (resignFromIndex), through signPlain and through the generic path.
func BenchmarkAssociationSign(b *testing.B) {
	key, err := signing.LoadOrCreateKeyFile(filepath.Join(b.TempDir(), "signing.key"))
	if err != nil {
		b.Fatal(err)
	}
	a := association{Address: "user123456@example.org", Medium: "email", MXID: "@user123456:hs.example.org",
		NotBefore: 1_790_000_000_123, NotAfter: 4_943_600_000_123, TS: 1_790_000_000_123}
	b.Run("plain", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := a.sign(key, "id.example.org"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("generic", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			slowSign(b, a, key, "id.example.org")
		}
	})
}
