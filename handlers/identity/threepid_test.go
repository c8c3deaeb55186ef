package identity

import (
	"fmt"
	"testing"

	"golang.org/x/text/cases"
)

func TestCanonicalEmail(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"alice@example.org", "alice@example.org", true},
		{"Alice@Example.ORG", "alice@example.org", true},
		{"Strauß@Example.com", "strauss@example.com", true},
		{"a.b+tag@sub.example.org", "a.b+tag@sub.example.org", true},
		{"", "", false},
		{"alice", "", false},
		{"alice@", "", false},
		{"@example.org", "", false},
		{"Alice <alice@example.org>", "", false},
		{"alice@example.org\r\nBcc: eve@example.org", "", false},
		{"alice@example.org\nBcc: eve@example.org", "", false},
		{"alice@example.org, eve@example.org", "", false},
		{"a@b@example.org", "", false},
		{`"a b"@example.org`, "", false},
	}
	for _, tt := range tests {
		got, err := canonicalEmail(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("canonicalEmail(%q) = %q, %v; want %q, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestRedactEmail(t *testing.T) {
	tests := map[string]string{
		"foo@bar.baz":                "f...@bar...",
		"bobd1795712439@example.org": "bob...@exa...",
		"a@b.c":                      "...@b...",
		"ab@cd":                      "a...@c...",
	}
	for in, want := range tests {
		if got := redactEmail(in); got != want {
			t.Errorf("redactEmail(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCheckMXIDAndSecret(t *testing.T) {
	for _, ok := range []string{"@alice:example.org", "@bob:localhost:8448", "@x.y_z=1:[::1]:8448"} {
		if err := checkMXID(ok); err != nil {
			t.Errorf("checkMXID(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"alice", "@alice", "@:example.org", "@a b:example.org", "#room:example.org"} {
		if checkMXID(bad) == nil {
			t.Errorf("checkMXID(%q) accepted", bad)
		}
	}
}

func TestFoldCaseMatchesUnicodeFolding(t *testing.T) {
	samples := []string{"alice@example.org", "Alice@Example.ORG", "Strauß@Example.com", "ǅ@x", "KELVIN\u212a@x", "İstanbul@x", "",
		"abcdefgh", "abcdefgH", "Abcdefgh", "abcdefghijklmnoZ", "@[`{@[`{@[`{@[`{", "\x7f\x7f\x7f\x7f\x7f\x7f\x7f\x7fA", "aaaaaaaaé"}
	// Every ASCII byte at every place of a word and of the tail.
	for c := 0; c < 0x80; c++ {
		for at := 0; at < 11; at++ {
			b := []byte("xxxxxxxxxxx")
			b[at] = byte(c)
			samples = append(samples, string(b))
		}
	}
	for _, s := range samples {
		if got, want := foldCase(s), cases.Fold().String(s); got != want {
			t.Errorf("foldCase(%q) = %q, want %q", s, got, want)
		}
	}
}

// BenchmarkFoldCase: what a 1,000-address bulk lookup folds.
func BenchmarkFoldCase(b *testing.B) {
	addrs := make([]string, 1000)
	for i := range addrs {
		addrs[i] = fmt.Sprintf("user%d@load.example.org", i*977)
	}
	for b.Loop() {
		for _, a := range addrs {
			foldCase(a)
		}
	}
}
