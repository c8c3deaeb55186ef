package mxjson

import (
	"crypto/ed25519"
	"strings"
	"testing"
)

// The spec's canonical JSON examples (appendices, "Canonical JSON").
func TestCanonicalSpecVectors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{}`, `{}`},
		{`{"one": 1, "two": "Two"}`, `{"one":1,"two":"Two"}`},
		{`{"b": "2", "a": "1"}`, `{"a":"1","b":"2"}`},
		{`{"b":"2","a":"1"}`, `{"a":"1","b":"2"}`},
		{`{"auth": {"success": true, "mxid": "@john.doe:example.com", "profile": {"display_name": "John Doe", "three_pids": [{"medium": "email", "address": "john.doe@example.org"}, {"medium": "msisdn", "address": "123456789"}]}}}`,
			`{"auth":{"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe","three_pids":[{"address":"john.doe@example.org","medium":"email"},{"address":"123456789","medium":"msisdn"}]},"success":true}}`},
		{`{"a": "日本語"}`, `{"a":"日本語"}`},
		{`{"本": 2, "日": 1}`, `{"日":1,"本":2}`},
		{`{"a": "\u65E5"}`, `{"a":"日"}`},
		{`{"a": null}`, `{"a":null}`},
		{`{"a": -0, "b": 1e10}`, `{"a":0,"b":10000000000}`},
		// Beyond the examples: what Go's encoder would escape stays raw.
		{`{"m": "<&>\u2028\u2029", "c": "\u0001\n"}`, "{\"c\":\"\\u0001\\n\",\"m\":\"<&>\u2028\u2029\"}"},
	} {
		v, err := Decode([]byte(tc.in))
		if err != nil {
			t.Fatal(err)
		}
		got, err := Canonical(v)
		if err != nil || string(got) != tc.want {
			t.Errorf("%s: got %s (%v), want %s", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{`{"a": 1.5}`, `{"a": 9007199254740992}`} {
		v, _ := Decode([]byte(bad))
		if _, err := Canonical(v); err == nil {
			t.Errorf("%s: no error for a number canonical JSON cannot hold", bad)
		}
	}
}

// The spec's signing test vectors (appendices, "Cryptographic test vectors").
func TestSignSpecVectors(t *testing.T) {
	k, err := KeyFromSeed("ed25519:1", "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ in, sig string }{
		{`{}`, "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"},
		{`{"one": 1, "two": "Two"}`, "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw"},
	} {
		v, _ := Decode([]byte(tc.in))
		obj := v.(map[string]any)
		signed, err := SignJSON(obj, "domain", k)
		if err != nil {
			t.Fatal(err)
		}
		if got := signed["signatures"].(map[string]any)["domain"].(map[string]any)["ed25519:1"]; got != tc.sig {
			t.Errorf("%s: signature %v, want %s", tc.in, got, tc.sig)
		}
		keys := map[string]ed25519.PublicKey{"ed25519:1": k.Public()}
		if err := VerifyJSON(signed, "domain", keys); err != nil {
			t.Errorf("%s: %v", tc.in, err)
		}
		// A changed member, or a signature over another key order, fails.
		signed["extra"] = "x"
		if err := VerifyJSON(signed, "domain", keys); err == nil {
			t.Errorf("%s: a changed object still verifies", tc.in)
		}
	}
}

// The spec's lookup hash vectors (identity service API, "sha256").
func TestLookupHashSpecVectors(t *testing.T) {
	for _, v := range []struct{ in, want string }{
		{"alice@example.com email matrixrocks", "4kenr7N9drpCJ4AfalmlGQVsOn3o2RHjkADUpXJWZUc"},
		{"bob@example.com email matrixrocks", "LJwSazmv46n0hlMlsb_iYxI0_HXEqy_yj6Jm636cdT8"},
		{"18005552067 msisdn matrixrocks", "nlo35_T5fzSGZzJApqu8lgIudJvmOQtDaHtr-I4rU7I"},
	} {
		f := strings.Fields(v.in)
		if got := LookupHash(f[0], f[1], f[2]); got != v.want {
			t.Errorf("%q hashes to %s, want %s", v.in, got, v.want)
		}
	}
}

func TestDecodeBase64BothAlphabets(t *testing.T) {
	for _, s := range []string{"+/8", "-_8", "+/8="} {
		if b, err := DecodeBase64(s); err != nil || len(b) != 2 || b[0] != 0xfb || b[1] != 0xff {
			t.Errorf("%s: %x %v", s, b, err)
		}
	}
}
