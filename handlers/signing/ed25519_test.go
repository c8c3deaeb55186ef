package signing

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"testing"
)

// TestSignMatchesStandardLibrary holds Key.Sign (curve25519-voi) to
// crypto/ed25519's signatures byte for byte: stored associations were
// signed by the standard library, and lookups re-sign them expecting the
// same bytes. Messages of every length up to a few blocks of SHA-512, under
// many keys, including the spec's test-vector seed.
func TestSignMatchesStandardLibrary(t *testing.T) {
	vector, err := KeyFromSeed("ed25519:0", vecSeed)
	if err != nil {
		t.Fatal(err)
	}
	keys := []Key{vector}
	for range 20 {
		k, err := GenerateKey("ed25519:x")
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	msg := make([]byte, 300)
	if _, err := rand.Read(msg); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		for n := 0; n <= len(msg); n += 7 {
			got, want := k.Sign(msg[:n]), ed25519.Sign(k.Private, msg[:n])
			if !bytes.Equal(got, want) {
				t.Fatalf("key %x, %d-byte message: Sign = %x, crypto/ed25519 = %x", k.Public(), n, got, want)
			}
		}
	}
}

func TestSignPanicsOnBadKey(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("Sign with a 32-byte private key did not panic")
		}
	}()
	Key{ID: "ed25519:0", Private: make([]byte, 32)}.Sign([]byte("x"))
}

// BenchmarkEd25519Sign compares the signer lookups use with the standard
// library's on a typical association's canonical bytes.
func BenchmarkEd25519Sign(b *testing.B) {
	k, err := GenerateKey("ed25519:0")
	if err != nil {
		b.Fatal(err)
	}
	msg := []byte(`{"address":"alice@example.com","medium":"email","mxid":"@alice:example.com","not_after":4853600000000,"not_before":1700000000000,"ts":1700000000000}`)
	b.Run("voi", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			k.Sign(msg)
		}
	})
	b.Run("crypto-ed25519", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			ed25519.Sign(k.Private, msg)
		}
	})
}
