package signing

import (
	"encoding/json"
	"errors"
	"math"
	"testing"
)

func TestCanonicalBytes(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"empty object", `{}`, `{}`},
		{"simple", `{"one": 1, "two": "Two"}`, `{"one":1,"two":"Two"}`},
		{"sorted", `{"b":"2","a":"1"}`, `{"a":"1","b":"2"}`},
		{"nested appendix",
			`{"auth":{"success":true,"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe","three_pids":[{"medium":"email","address":"john.doe@example.org"},{"medium":"msisdn","address":"123456789"}]}}}`,
			`{"auth":{"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe","three_pids":[{"address":"john.doe@example.org","medium":"email"},{"address":"123456789","medium":"msisdn"}]},"success":true}}`},
		{"raw non-ascii", `{"a":"日本語"}`, `{"a":"日本語"}`},
		{"code point order", `{"本":2,"日":1}`, `{"日":1,"本":2}`},
		{"already ordered", `{"日":1,"本":2}`, `{"日":1,"本":2}`},
		{"unicode escape decoded", `{"a":"\u65E5"}`, `{"a":"日"}`},
		{"null", `{"a":null}`, `{"a":null}`},
		{"minus zero and exponent", `{"a":-0,"b":1e10}`, `{"a":0,"b":10000000000}`},
		{"control chars", `{"a":"\u0000\u0001\u001f\b\t\n\f\r\"\\ x"}`, `{"a":"\u0000\u0001\u001f\b\t\n\f\r\"\\ x"}`},
		{"no html or separator escapes", `{"a":"<>&/\u2028\u2029\/\u007f"}`, "{\"a\":\"<>&/\u2028\u2029/\u007f\"}"},
		{"literals", `{"f":false,"n":null,"t":true}`, `{"f":false,"n":null,"t":true}`},
		{"nested arrays", ` [ [1, [2, {"z":[], "y":{}}]], "s" ] `, `[[1,[2,{"y":{},"z":[]}]],"s"]`},
		{"whitespace", "{ \"a\" :\n\t[ 1 , 2 ] }", `{"a":[1,2]}`},
		{"max safe", `[9007199254740991,-9007199254740991]`, `[9007199254740991,-9007199254740991]`},
		{"integral forms", `[1.0,1.5e1,-2E+2,100e-2,0.0e99,-0.0,12300e-2,9007199254740991.000]`, `[1,15,-200,1,0,0,123,9007199254740991]`},
		{"key escaping", `{"a\"b":1,"a\nb":2}`, `{"a\nb":2,"a\"b":1}`},
		{"astral plane", `{"😀":"\ud83d\ude00"}`, `{"😀":"😀"}`},
		{"scalar", `"x"`, `"x"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := CanonicalBytes([]byte(tt.in))
			if err != nil {
				t.Fatalf("CanonicalBytes(%s): %v", tt.in, err)
			}
			if string(got) != tt.want {
				t.Errorf("CanonicalBytes(%s)\n got %s\nwant %s", tt.in, got, tt.want)
			}
			// Canonical form must be a fixed point.
			again, err := CanonicalBytes(got)
			if err != nil || string(again) != string(got) {
				t.Errorf("not idempotent: %s -> %s (%v)", got, again, err)
			}
		})
	}
}

func TestCanonicalBytesErrors(t *testing.T) {
	tests := []struct {
		name, in string
		want     error
	}{
		{"fraction", `{"a":1.5}`, ErrInvalidNumber},
		{"tiny fraction", `{"a":1.00000000000000001}`, ErrInvalidNumber},
		{"negative exponent", `{"a":1e-1}`, ErrInvalidNumber},
		{"2^53", `{"a":9007199254740992}`, ErrInvalidNumber},
		{"-2^53", `{"a":-9007199254740992}`, ErrInvalidNumber},
		{"huge exponent", `{"a":1e400}`, ErrInvalidNumber},
		{"huge exponent digits", `{"a":1e99999999999999999999}`, ErrInvalidNumber},
		{"tiny exponent", `{"a":1e-99999999999999999999}`, ErrInvalidNumber},
		{"long integer", `[123456789012345678901234567890]`, ErrInvalidNumber},
		{"trailing data", `{} {}`, ErrInvalidJSON},
		{"syntax", `{"a":}`, ErrInvalidJSON},
		{"empty", ``, ErrInvalidJSON},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := CanonicalBytes([]byte(tt.in))
			if !errors.Is(err, tt.want) {
				t.Fatalf("CanonicalBytes(%s) = %s, %v; want error %v", tt.in, got, err, tt.want)
			}
		})
	}
}

type assoc struct {
	Medium  string `json:"medium"`
	Address string `json:"address"`
	MXID    string `json:"mxid"`
	TS      int64  `json:"ts"`
	Note    string `json:"note,omitempty"`
}

type customMarshal struct{}

func (customMarshal) MarshalJSON() ([]byte, error) { return []byte(`{"z":1,"a":"<"}`), nil }

func TestCanonicalGoValues(t *testing.T) {
	tests := []struct {
		name string
		in   any
		want string
	}{
		{"struct fields sorted, tags honoured", assoc{Medium: "email", Address: "a@b", MXID: "@a:b", TS: 1},
			`{"address":"a@b","medium":"email","mxid":"@a:b","ts":1}`},
		{"map any", map[string]any{"b": 1, "a": []any{true, nil, "x"}}, `{"a":[true,null,"x"],"b":1}`},
		{"typed maps and slices", map[string]any{"s": []string{"<", "&"}, "m": map[string]string{"y": "1", "x": "2"},
			"sig": map[string]map[string]string{"d": {"ed25519:1": "s"}}},
			`{"m":{"x":"2","y":"1"},"s":["<","&"],"sig":{"d":{"ed25519:1":"s"}}}`},
		{"nested struct", map[string]any{"v": assoc{Medium: "m"}}, `{"v":{"address":"","medium":"m","mxid":"","ts":0}}`},
		{"marshaler", map[string]any{"c": customMarshal{}}, `{"c":{"a":"<","z":1}}`},
		{"raw message", map[string]any{"r": json.RawMessage(`{"b":1.0e2,"a":"\u003c"}`)}, `{"r":{"a":"<","b":100}}`},
		{"nil raw message", map[string]any{"r": json.RawMessage(nil)}, `{"r":null}`},
		{"json.Number", []any{json.Number("-0"), json.Number("2e3")}, `[0,2000]`},
		{"go numbers", []any{int8(-1), uint16(2), int64(maxSafeInteger), float64(1e10), math.Copysign(0, -1), float32(3)},
			`[-1,2,9007199254740991,10000000000,0,3]`},
		{"nil slice", map[string]any{"a": []string(nil)}, `{"a":null}`},
		{"bytes as base64 like encoding/json", map[string]any{"b": []byte{1, 2}}, `{"b":"AQI="}`},
		{"invalid utf8 string", map[string]any{"a": "x\xffy"}, "{\"a\":\"x\uFFFDy\"}"},
		{"invalid utf8 key", map[string]any{"\xff": 1, "a": 2}, "{\"a\":2,\"\uFFFD\":1}"},
		{"pointer", &assoc{Medium: "m"}, `{"address":"","medium":"m","mxid":"","ts":0}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Canonical(tt.in)
			if err != nil {
				t.Fatalf("Canonical: %v", err)
			}
			if string(got) != tt.want {
				t.Errorf("Canonical\n got %s\nwant %s", got, tt.want)
			}
			// The fast path must agree with marshal-then-canonicalise.
			m, err := json.Marshal(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			slow, err := CanonicalBytes(m)
			if err != nil || string(slow) != string(got) {
				t.Errorf("fast path %s != slow path %s (%v)", got, slow, err)
			}
		})
	}
}

func TestCanonicalGoValueErrors(t *testing.T) {
	cyclic := map[string]any{}
	cyclic["self"] = cyclic
	tests := []struct {
		name string
		in   any
		want error
	}{
		{"float fraction", map[string]any{"a": 1.5}, ErrInvalidNumber},
		{"float too big", []any{float64(1 << 53)}, ErrInvalidNumber},
		{"NaN", []any{math.NaN()}, ErrInvalidNumber},
		{"Inf", []any{math.Inf(-1)}, ErrInvalidNumber},
		{"int too big", []any{int64(1 << 53)}, ErrInvalidNumber},
		{"int too small", []any{int64(-(1 << 53))}, ErrInvalidNumber},
		{"uint too big", []any{uint64(math.MaxUint64)}, ErrInvalidNumber},
		{"bad json.Number", []any{json.Number("01")}, ErrInvalidNumber},
		{"json.Number fraction", []any{json.Number("0.5")}, ErrInvalidNumber},
		{"bad raw message", json.RawMessage(`{`), ErrInvalidJSON},
		{"cycle", cyclic, ErrTooDeep},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, err := Canonical(tt.in); !errors.Is(err, tt.want) {
				t.Fatalf("Canonical = %s, %v; want %v", got, err, tt.want)
			}
		})
	}
	if _, err := Canonical(map[string]any{"c": make(chan int)}); err == nil {
		t.Error("Canonical(chan) succeeded")
	}
}
