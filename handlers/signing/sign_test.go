package signing

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"testing"
)

// Appendix test vectors (Matrix spec, "Signing JSON" examples).
const (
	vecSeed      = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"
	vecPublic    = "XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI"
	vecEntity    = "domain"
	vecKeyID     = "ed25519:1"
	vecSigEmpty  = "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"
	vecSigOneTwo = "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw"
)

func vecKey(t testing.TB) Key {
	t.Helper()
	k, err := KeyFromSeed(vecKeyID, vecSeed)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestKeyFromSeedVector(t *testing.T) {
	k := vecKey(t)
	if got := k.PublicBase64(); got != vecPublic {
		t.Fatalf("public key %s, want %s", got, vecPublic)
	}
	seed := k.Private.Seed()
	priv64 := []byte(k.Private)
	for name, enc := range map[string]string{
		"std padded":   base64.StdEncoding.EncodeToString(seed),
		"url unpadded": base64.RawURLEncoding.EncodeToString(seed),
		"url padded":   base64.URLEncoding.EncodeToString(seed),
		"64-byte key":  base64.RawStdEncoding.EncodeToString(priv64),
	} {
		k2, err := KeyFromSeed("ed25519:1", enc)
		if err != nil || !k2.Private.Equal(k.Private) {
			t.Errorf("%s: KeyFromSeed(%s) = %v, %v", name, enc, k2.PublicBase64(), err)
		}
	}
}

func TestKeyErrors(t *testing.T) {
	bad64 := make([]byte, 64) // seed of zeros with a public half that doesn't match
	bad64[40] = 1
	tests := []struct{ name, id, seed string }{
		{"short seed", "ed25519:0", base64.RawStdEncoding.EncodeToString(make([]byte, 31))},
		{"not base64", "ed25519:0", "!!!"},
		{"mismatched 64-byte key", "ed25519:0", base64.RawStdEncoding.EncodeToString(bad64)},
		{"bad id prefix", "curve25519:0", vecSeed},
		{"empty version", "ed25519:", vecSeed},
		{"bad version chars", "ed25519:a/b", vecSeed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := KeyFromSeed(tt.id, tt.seed); !errors.Is(err, ErrInvalidKey) {
				t.Errorf("err = %v, want ErrInvalidKey", err)
			}
		})
	}
	if _, err := GenerateKey("nope"); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("GenerateKey(nope) err = %v", err)
	}
	if (Key{}).Public() != nil || (Key{}).PublicBase64() != "" {
		t.Error("zero Key should have no public key")
	}
	if _, err := Signature(map[string]any{}, Key{ID: "ed25519:0"}); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("Signature with zero key err = %v", err)
	}
}

func TestDecodeBase64(t *testing.T) {
	tests := []struct {
		in   string
		want string
		ok   bool
	}{
		{"", "", true},
		{"YQ", "a", true},
		{"YQ==", "a", true},
		{"YWI", "ab", true},
		{"YWI=", "ab", true},
		{"-_8", "\xfb\xff", true},
		{"+/8", "\xfb\xff", true},
		{"+/8=", "\xfb\xff", true},
		{"-_8=", "\xfb\xff", true},
		{"YQ===", "", false},
		{"Y", "", false},
		{"+_8", "", false}, // mixed alphabets
	}
	for _, tt := range tests {
		got, err := DecodeBase64(tt.in)
		if (err == nil) != tt.ok || (tt.ok && string(got) != tt.want) {
			t.Errorf("DecodeBase64(%q) = %q, %v; want %q ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestSignJSONVectors(t *testing.T) {
	k := vecKey(t)
	tests := []struct {
		name string
		in   any
		sig  string
		want string // canonical form of the signed object
	}{
		{"empty raw", json.RawMessage(`{}`), vecSigEmpty,
			`{"signatures":{"domain":{"ed25519:1":"` + vecSigEmpty + `"}}}`},
		{"empty map", map[string]any{}, vecSigEmpty,
			`{"signatures":{"domain":{"ed25519:1":"` + vecSigEmpty + `"}}}`},
		{"one two raw", []byte(`{"two":"Two","one":1}`), vecSigOneTwo,
			`{"one":1,"signatures":{"domain":{"ed25519:1":"` + vecSigOneTwo + `"}},"two":"Two"}`},
		{"one two struct", struct {
			One int    `json:"one"`
			Two string `json:"two"`
		}{1, "Two"}, vecSigOneTwo,
			`{"one":1,"signatures":{"domain":{"ed25519:1":"` + vecSigOneTwo + `"}},"two":"Two"}`},
		{"unsigned ignored", map[string]any{"one": 1, "two": "Two", "unsigned": map[string]any{"age_ts": 5}}, vecSigOneTwo,
			`{"one":1,"signatures":{"domain":{"ed25519:1":"` + vecSigOneTwo + `"}},"two":"Two","unsigned":{"age_ts":5}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sig, err := Signature(tt.in, k)
			if err != nil || sig != tt.sig {
				t.Fatalf("Signature = %s, %v; want %s", sig, err, tt.sig)
			}
			out, err := SignJSON(tt.in, vecEntity, k)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Canonical(out)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("SignJSON\n got %s\nwant %s", got, tt.want)
			}
			keys := map[string]ed25519.PublicKey{vecKeyID: k.Public()}
			if err := VerifyJSON(out, vecEntity, keys); err != nil {
				t.Errorf("VerifyJSON(signed map): %v", err)
			}
			wire, _ := json.Marshal(out)
			if err := VerifyJSON(json.RawMessage(wire), vecEntity, keys); err != nil {
				t.Errorf("VerifyJSON(wire %s): %v", wire, err)
			}
		})
	}
}

func TestSignJSONMergesSignatures(t *testing.T) {
	k1 := vecKey(t)
	k2, err := GenerateKey("ed25519:2")
	if err != nil {
		t.Fatal(err)
	}
	other, _ := GenerateKey("ed25519:a_b")
	in := map[string]any{
		"mxid":       "@a:b",
		"ts":         json.Number("1700000000000"),
		"signatures": map[string]any{"other.example": map[string]any{"ed25519:x": "c2ln"}},
	}
	s1, err := SignJSON(in, "domain", k1)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := SignJSON(s1, "domain", k2)
	if err != nil {
		t.Fatal(err)
	}
	s3, err := SignJSON(s2, "third", other)
	if err != nil {
		t.Fatal(err)
	}
	// Input maps must be untouched.
	if len(in["signatures"].(map[string]any)) != 1 || len(s1["signatures"].(map[string]any)["domain"].(map[string]any)) != 1 {
		t.Fatalf("SignJSON mutated its input: %v / %v", in, s1)
	}
	sigs := s3["signatures"].(map[string]any)
	if got := sigs["other.example"].(map[string]any)["ed25519:x"]; got != "c2ln" {
		t.Errorf("foreign signature lost: %v", sigs)
	}
	dom := sigs["domain"].(map[string]any)
	if len(dom) != 2 || dom["ed25519:1"] == nil || dom["ed25519:2"] == nil {
		t.Errorf("domain signatures = %v, want both keys", dom)
	}
	if s3["ts"] != json.Number("1700000000000") {
		t.Errorf("ts = %#v, want json.Number preserved", s3["ts"])
	}
	// Every signature verifies, since each was over the same content.
	for entity, keys := range map[string]map[string]ed25519.PublicKey{
		"domain": {"ed25519:1": k1.Public()},
		"third":  {"ed25519:a_b": other.Public()},
	} {
		if err := VerifyJSON(s3, entity, keys); err != nil {
			t.Errorf("VerifyJSON(%s): %v", entity, err)
		}
	}
	if err := VerifyJSON(s3, "domain", map[string]ed25519.PublicKey{"ed25519:2": k2.Public()}); err != nil {
		t.Errorf("VerifyJSON(domain, key 2): %v", err)
	}
	// Typed signature maps (as a handler might build them) merge as well.
	typed := map[string]any{"a": 1, "signatures": map[string]map[string]string{"domain": {"ed25519:z": "eA"}}}
	out, err := SignJSON(typed, "domain", k1)
	if err != nil {
		t.Fatal(err)
	}
	if d := out["signatures"].(map[string]any)["domain"].(map[string]any); len(d) != 2 {
		t.Errorf("typed merge: %v", d)
	}
}

func TestSignJSONErrors(t *testing.T) {
	k := vecKey(t)
	tests := []struct {
		name   string
		in     any
		entity string
		key    Key
		want   error
	}{
		{"array", []any{1}, "d", k, ErrNotObject},
		{"raw string", json.RawMessage(`"x"`), "d", k, ErrNotObject},
		{"nil map", map[string]any(nil), "d", k, ErrNotObject},
		{"float", map[string]any{"a": 0.5}, "d", k, ErrInvalidNumber},
		{"signatures not object", map[string]any{"signatures": "x"}, "d", k, ErrNotObject},
		{"entity not object", map[string]any{"signatures": map[string]any{"d": 1}}, "d", k, ErrNotObject},
		{"bad key id", map[string]any{}, "d", Key{ID: "x", Private: k.Private}, ErrInvalidKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := SignJSON(tt.in, tt.entity, tt.key); !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := SignJSON(map[string]any{}, "", k); err == nil {
		t.Error("empty entity accepted")
	}
}

func TestVerifyJSONFailures(t *testing.T) {
	k := vecKey(t)
	keys := map[string]ed25519.PublicKey{vecKeyID: k.Public()}
	signed, err := SignJSON(map[string]any{"mxid": "@a:b", "ts": 1, "unsigned": map[string]any{"x": 1}}, vecEntity, k)
	if err != nil {
		t.Fatal(err)
	}
	with := func(key string, val any) map[string]any {
		out := map[string]any{}
		for k, v := range signed {
			out[k] = v
		}
		out[key] = val
		return out
	}
	sigOnly := func(entitySigs map[string]any) map[string]any {
		return with("signatures", map[string]any{vecEntity: entitySigs})
	}
	good := signed["signatures"].(map[string]any)[vecEntity].(map[string]any)[vecKeyID].(string)
	flipped := []byte(good)
	if flipped[0] == 'A' {
		flipped[0] = 'B'
	} else {
		flipped[0] = 'A'
	}
	other, _ := GenerateKey(vecKeyID)

	tests := []struct {
		name   string
		obj    any
		entity string
		keys   map[string]ed25519.PublicKey
		want   error // nil means must verify
	}{
		{"valid", signed, vecEntity, keys, nil},
		{"unsigned changed is fine", with("unsigned", "other"), vecEntity, keys, nil},
		{"padded signature accepted", sigOnly(map[string]any{vecKeyID: base64.StdEncoding.EncodeToString(mustDecode(t, good))}), vecEntity, keys, nil},
		{"one bad one good", sigOnly(map[string]any{"ed25519:0": "AAAA", vecKeyID: good}),
			vecEntity, map[string]ed25519.PublicKey{"ed25519:0": k.Public(), vecKeyID: k.Public()}, nil},
		{"tampered field", with("mxid", "@evil:b"), vecEntity, keys, ErrBadSignature},
		{"added field", with("extra", true), vecEntity, keys, ErrBadSignature},
		{"tampered signature", sigOnly(map[string]any{vecKeyID: string(flipped)}), vecEntity, keys, ErrBadSignature},
		{"malformed signature", sigOnly(map[string]any{vecKeyID: "%%%"}), vecEntity, keys, ErrBadSignature},
		{"non-string signature", sigOnly(map[string]any{vecKeyID: 5}), vecEntity, keys, ErrBadSignature},
		{"wrong public key", signed, vecEntity, map[string]ed25519.PublicKey{vecKeyID: other.Public()}, ErrBadSignature},
		{"wrong entity", signed, "someone.else", keys, ErrNotSigned},
		{"no signatures", map[string]any{"mxid": "@a:b"}, vecEntity, keys, ErrNotSigned},
		{"null signatures", with("signatures", nil), vecEntity, keys, ErrNotSigned},
		{"no ed25519 keys", sigOnly(map[string]any{"curve25519:1": good}), vecEntity, keys, ErrNoEd25519},
		{"unknown key id", signed, vecEntity, map[string]ed25519.PublicKey{"ed25519:9": k.Public()}, ErrUnknownKey},
		{"no keys given", signed, vecEntity, nil, ErrUnknownKey},
		{"short public key", signed, vecEntity, map[string]ed25519.PublicKey{vecKeyID: k.Public()[:5]}, ErrInvalidKey},
		{"not an object", json.RawMessage(`[]`), vecEntity, keys, ErrNotObject},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := VerifyJSON(tt.obj, tt.entity, tt.keys)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("VerifyJSON: %v", err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("VerifyJSON err = %v, want %v", err, tt.want)
			}
		})
	}
}

func mustDecode(t *testing.T, s string) []byte {
	t.Helper()
	b, err := DecodeBase64(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
