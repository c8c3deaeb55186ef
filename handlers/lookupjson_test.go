package handlers

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/sigil-matrix/sigil/gen"
	"github.com/sigil-matrix/sigil/handlers/identity"
)

// exactJSON decodes data into v (a pointer to a lookup body) the way the
// server's fallback does: encoding/json, but matching keys exactly (its
// own matching ignores case, which the validator does not) and the last of
// a repeated key winning. It is the reference for the hand decoder.
func exactJSON(data []byte, v any) error {
	var members map[string]json.RawMessage
	if err := json.Unmarshal(data, &members); err != nil {
		return err
	}
	fields := map[string]any{}
	switch b := v.(type) {
	case *gen.BulkLookupJSONRequestBody:
		fields["threepids"] = &b.Threepids
	case *gen.LookupV2JSONRequestBody:
		fields["algorithm"], fields["pepper"], fields["addresses"] = &b.Algorithm, &b.Pepper, &b.Addresses
	}
	for name, raw := range members {
		if f, ok := fields[name]; ok {
			if err := json.Unmarshal(raw, f); err != nil {
				return err
			}
		}
	}
	return nil
}

// decodeBoth decodes body with the hand decoder and the reference, as a
// bulk lookup or (v2) a v2 lookup body.
func decodeBoth(body string, v2 bool) (hand, ref any, ok bool, refErr error) {
	if v2 {
		var h, r gen.LookupV2JSONRequestBody
		ok = decodeInto([]byte(body), new(lookupArena), &h)
		refErr = exactJSON([]byte(body), &r)
		return h, r, ok, refErr
	}
	var h, r gen.BulkLookupJSONRequestBody
	ok = decodeInto([]byte(body), new(lookupArena), &h)
	refErr = exactJSON([]byte(body), &r)
	return h, r, ok, refErr
}

func TestHandDecoderMatchesEncodingJSON(t *testing.T) {
	tests := []struct {
		name string
		v2   bool
		body string
		// fallback: the hand decoder must give up (the body then goes to
		// sonic, as before).
		fallback bool
	}{
		{name: "plain", body: `{"threepids":[["email","a@example.org"],["msisdn","447700900001"]]}`},
		{name: "empty list", body: `{"threepids":[]}`},
		{name: "empty pairs", body: `{"threepids":[[],["email","a"],[]]}`},
		{name: "empty strings", body: `{"threepids":[["",""]]}`},
		{name: "whitespace everywhere", body: " \t\r\n{ \"threepids\" :\n[ [ \"email\" ,\t\"a@b\" ] ,\r\n[\"msisdn\",\"1\"]\n]\n}\n "},
		{name: "simple escapes", body: `{"threepids":[["email","a\"b\\c\/d\b\f\n\r\te"]]}`},
		{name: "unicode escapes", body: `{"threepids":[["email","zo\u00eb@\u4f8b\u3048.jp"],["email","\u0000\u001f\u007F\uFFFF"]]}`},
		{name: "surrogate pair", body: `{"threepids":[["email","\ud83d\ude00@example.org"]]}`},
		{name: "lone surrogates", body: `{"threepids":[["email","\ud83d"],["email","\ude00x"],["email","\ud83d\u0041"],["email","\ud83d\ud83d\ude00"]]}`},
		{name: "raw unicode", body: `{"threepids":[["email","zoë@例え.jp"],["email","😀 ` + "\u2028" + `"]]}`},
		{name: "escape at chunk edges", body: `{"threepids":[["1234567\"","12345678\\","123456789012345\u00e9"]]}`},
		{name: "long", body: `{"threepids":[["email","` + strings.Repeat("abcdefgh", 64) + `"]]}`},
		{name: "unknown members", body: `{"x":{"a":[1,2.5e3,-1,true,false,null,{"b":"]\"}"}]},"threepids":[["email","a"]],"y":"z","n":null}`},
		{name: "case differs", body: `{"Threepids":[["email","a"]]}`},
		{name: "repeated key, last wins", body: `{"threepids":[["email","a"]],"threepids":[["email","b"]]}`},
		{name: "three items", body: `{"threepids":[["email","a","b"],["x"]]}`},
		{name: "no members", body: `{}`},
		{name: "escaped key", body: `{"thre\u0065pids":[["email","a"]]}`, fallback: true},
		{name: "null list", body: `{"threepids":null}`, fallback: true},
		{name: "null pair", body: `{"threepids":[null]}`, fallback: true},
		{name: "null string", body: `{"threepids":[["email",null]]}`, fallback: true},
		{name: "number", body: `{"threepids":[["email",1]]}`, fallback: true},
		{name: "not an object", body: `[]`, fallback: true},
		{name: "trailing junk", body: `{"threepids":[]} x`, fallback: true},
		{name: "invalid UTF-8", body: "{\"threepids\":[[\"email\",\"a\xffb\"]]}", fallback: true},
		{name: "control character", body: "{\"threepids\":[[\"email\",\"a\tb\"]]}", fallback: true},
		{name: "empty", body: ``, fallback: true},

		{name: "v2 plain", v2: true, body: `{"algorithm":"sha256","pepper":"matrixrocks","addresses":["4kenr7N9drpCJ4AfalmlGQVsOn3o2RHjkADUpXJWZUc","nlo35_T5fzSGZzJApqu8lgIudJvmOQtDaHtr-I4rU7I"]}`},
		{name: "v2 keys swapped", v2: true, body: `{"addresses":["a b"],"pepper":"p","algorithm":"none"}`},
		{name: "v2 empty addresses", v2: true, body: `{"algorithm":"sha256","pepper":"","addresses":[]}`},
		{name: "v2 escapes", v2: true, body: `{"algorithm":"none","pepper":"p\u00e9\"","addresses":["a@b.c email","\ud83d\ude00@x email","tab\there email"]}`},
		{name: "v2 whitespace and extras", v2: true, body: "{ \"extra\" : [ [ ] , { } ] , \"algorithm\" : \"sha256\" ,\n\"pepper\":\"p\" , \"addresses\" : [ \"h\" ] }"},
		{name: "v2 case differs", v2: true, body: `{"Algorithm":"none","PEPPER":"p","Addresses":["a"],"algorithm":"sha256"}`},
		{name: "v2 null addresses", v2: true, body: `{"algorithm":"sha256","pepper":"p","addresses":null}`, fallback: true},
		{name: "v2 number pepper", v2: true, body: `{"algorithm":"sha256","pepper":1,"addresses":[]}`, fallback: true},
		{name: "v2 nested addresses", v2: true, body: `{"algorithm":"sha256","pepper":"p","addresses":[["a"]]}`, fallback: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hand, ref, ok, refErr := decodeBoth(tt.body, tt.v2)
			if ok == tt.fallback {
				t.Fatalf("hand decoder ok=%v, want %v", ok, !tt.fallback)
			}
			if !ok {
				return
			}
			if refErr != nil {
				t.Fatalf("hand decoder accepted a body encoding/json refuses: %v", refErr)
			}
			if !reflect.DeepEqual(hand, ref) {
				t.Errorf("hand decoder:\n%#v\nencoding/json:\n%#v", hand, ref)
			}
		})
	}
}

// TestHandDecoderLeavesTargetOnFallback: a body the hand decoder gives up
// on goes to sonic in full, so the decoder must not have half-filled it.
func TestHandDecoderLeavesTargetOnFallback(t *testing.T) {
	var b gen.BulkLookupJSONRequestBody
	if decodeInto([]byte(`{"threepids":[["email","a"],["email",1]]}`), new(lookupArena), &b) || b.Threepids != nil {
		t.Errorf("fallback left %#v", b)
	}
	var v gen.LookupV2JSONRequestBody
	if decodeInto([]byte(`{"pepper":"p","addresses":null}`), new(lookupArena), &v) || v.Pepper != "" {
		t.Errorf("fallback left %#v", v)
	}
}

// TestHandDecoderNeverWritesTheBody: the decoded strings point into the
// request body (validate.Body's buffer), which the decoder must leave as
// it is, escapes and all: the fallback and GetBody read it again.
func TestHandDecoderNeverWritesTheBody(t *testing.T) {
	body := []byte(`{"threepids":[["email","a\"b\u00e9\ud83d\ude00\n"],["email","plain"]],"x":"\u0041"}`)
	orig := slices.Clone(body)
	var b gen.BulkLookupJSONRequestBody
	if !decodeInto(body, new(lookupArena), &b) {
		t.Fatal("not decoded")
	}
	if string(body) != string(orig) {
		t.Errorf("body written: %s", body)
	}
	if want := [][]string{{"email", "a\"bé😀\n"}, {"email", "plain"}}; !reflect.DeepEqual(b.Threepids, want) {
		t.Errorf("decoded %q, want %q", b.Threepids, want)
	}
	v2 := []byte(`{"algorithm":"none","pepper":"p\/","addresses":["a\tb email","c"]}`)
	orig = slices.Clone(v2)
	var v gen.LookupV2JSONRequestBody
	if !decodeInto(v2, new(lookupArena), &v) || string(v2) != string(orig) || v.Pepper != "p/" || v.Addresses[0] != "a\tb email" {
		t.Errorf("v2: body %s, decoded %#v", v2, v)
	}
}

func TestAnswerEncodersRoundTrip(t *testing.T) {
	strs := []string{
		"", "plain", "a@example.org", "@u:example.org", `quote"`, `back\slash`, "ctl\x00\x01\x1f\x7f",
		"tab\tnl\nret\r", "zoë@例え.jp", "😀", "\u2028\u2029", "<&>", strings.Repeat("12345678", 9) + `"`,
		"bad\xffutf8", "\xed\xa0\x80", // invalid UTF-8: encoding/json's U+FFFD
	}
	for _, s := range strs {
		var got string
		enc := appendJSONString(nil, s)
		if err := json.Unmarshal(enc, &got); err != nil {
			t.Fatalf("%q encodes as %s: %v", s, enc, err)
		}
		if want := viaJSON(s); got != want {
			t.Errorf("%q encodes as %s, which decodes to %q", s, enc, got)
		}
	}

	bulk := bulkAnswer{
		in: [][]string{{"email", "a@b"}, {"email", "unbound"}, {"msisdn", "1\"2"}, {"email", "zoë\n"}, {"x", "y"}},
		m:  &identity.MXIDs{List: []string{"@a:hs", "", "@b:hs", "@c:hs", ""}},
	}
	want := [][]string{{"email", "a@b", "@a:hs"}, {"msisdn", "1\"2", "@b:hs"}, {"email", "zoë\n", "@c:hs"}}
	var gotBulk gen.BulkLookup200JSONResponse
	if err := json.Unmarshal(bulk.appendTo(nil), &gotBulk); err != nil || !reflect.DeepEqual(gotBulk.Threepids, want) {
		t.Errorf("bulk answer %s decodes to %v (%v)", bulk.appendTo(nil), gotBulk, err)
	}
	for _, a := range []bulkAnswer{{m: &identity.MXIDs{}}, {in: [][]string{{"a", "b"}}, m: &identity.MXIDs{List: []string{""}}}} {
		if got := string(a.appendTo(nil)); got != "{\"threepids\":[]}\n" {
			t.Errorf("empty bulk answer %q", got)
		}
	}

	m := mappingsAnswer{
		hashes: []string{"h1", "h\"2", "unbound", "h3\u00e9"},
		m:      &identity.MXIDs{List: []string{"@a:hs", "@b:hs", "", "@c\\:hs"}},
	}
	wantV2 := map[string]string{"h1": "@a:hs", "h\"2": "@b:hs", "h3\u00e9": "@c\\:hs"}
	var gotV2 gen.LookupV2200JSONResponse
	if err := json.Unmarshal(m.appendTo(nil), &gotV2); err != nil || !reflect.DeepEqual(gotV2.Mappings, wantV2) {
		t.Errorf("v2 answer %s decodes to %v (%v)", m.appendTo(nil), gotV2, err)
	}
	for _, a := range []mappingsAnswer{{m: &identity.MXIDs{}}, {hashes: []string{"x"}, m: &identity.MXIDs{List: []string{""}}}} {
		if got := string(a.appendTo(nil)); got != "{\"mappings\":{}}\n" {
			t.Errorf("empty v2 answer %q", got)
		}
	}
}

// FuzzHandDecoder checks the hand decoder against encoding/json (exact
// keys) on valid JSON bodies, and that the answer encoders write what
// encoding/json reads back as what was decoded.
func FuzzHandDecoder(f *testing.F) {
	for _, s := range []string{
		`{"threepids":[["email","a@example.org"],["msisdn","447700900001"]]}`,
		`{"threepids":[["email","zo\u00eb\ud83d\ude00\"\\\/\n"],[]],"x":{"y":[1,null,true]}}`,
		` {"threepids" : [ [ "a" , "b" ] ] } `,
		`{"Threepids":[["a","b"]],"threepids":[]}`,
		`{"algorithm":"sha256","pepper":"p","addresses":["4kenr7N9drpCJ4AfalmlGQVsOn3o2RHjkADUpXJWZUc"]}`,
		`{"addresses":["a\u0000b email","\ud800"],"pepper":"\u00e9","algorithm":"none"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if !json.Valid(body) || !utf8.Valid(body) {
			return // the validator refuses these before any decoder
		}
		for _, v2 := range []bool{false, true} {
			hand, ref, ok, refErr := decodeBoth(string(body), v2)
			if !ok {
				continue
			}
			if refErr != nil {
				t.Fatalf("v2=%v: hand decoder accepted %q, encoding/json refuses: %v", v2, body, refErr)
			}
			if !reflect.DeepEqual(hand, ref) {
				t.Fatalf("v2=%v: %q:\nhand %#v\nencoding/json %#v", v2, body, hand, ref)
			}
			roundTrip(t, hand)
		}
	})
}

// roundTrip encodes what was decoded as an answer and reads it back.
func roundTrip(t *testing.T, decoded any) {
	switch b := decoded.(type) {
	case gen.BulkLookupJSONRequestBody:
		// Every pair of two is bound, to its address reversed.
		a := bulkAnswer{in: b.Threepids, m: &identity.MXIDs{List: make([]string, len(b.Threepids))}}
		want := [][]string{}
		for i, p := range b.Threepids {
			if len(p) == 2 {
				a.m.List[i] = "@" + reverse(p[1])
				want = append(want, []string{p[0], p[1], viaJSON(a.m.List[i])})
			}
		}
		var got gen.BulkLookup200JSONResponse
		enc := a.appendTo(nil)
		if err := json.Unmarshal(enc, &got); err != nil || !reflect.DeepEqual(got.Threepids, want) {
			t.Fatalf("bulk answer %q reads back as %#v (%v), want %#v", enc, got.Threepids, err, want)
		}
	case gen.LookupV2JSONRequestBody:
		// Each address bound to the address at the other end, and the
		// pepper to the algorithm; repeats answered once (the first).
		m := mappingsAnswer{hashes: append(slices.Clone(b.Addresses), b.Pepper), m: &identity.MXIDs{}}
		want := map[string]string{}
		for i, h := range m.hashes {
			v := string(b.Algorithm)
			if i < len(b.Addresses) {
				v = b.Addresses[len(b.Addresses)-1-i]
			}
			if _, repeat := want[h]; repeat || v == "" {
				v = ""
			} else {
				want[h] = v
			}
			m.m.List = append(m.m.List, v)
		}
		var got gen.LookupV2200JSONResponse
		enc := m.appendTo(nil)
		if err := json.Unmarshal(enc, &got); err != nil || !reflect.DeepEqual(got.Mappings, want) {
			t.Fatalf("v2 answer %q reads back as %#v (%v), want %#v", enc, got.Mappings, err, want)
		}
	}
}

// viaJSON is s as encoding/json writes and reads it back: invalid UTF-8
// becomes U+FFFD.
func viaJSON(s string) string {
	raw, _ := json.Marshal(s)
	var out string
	_ = json.Unmarshal(raw, &out)
	return out
}

// reverse reverses s byte by byte, which can break its UTF-8: the encoder
// must still write valid JSON for it.
func reverse(s string) string {
	b := []byte(s)
	slices.Reverse(b)
	return string(b)
}

// BenchmarkHotDecode compares the hand decoder with sonic (the fallback,
// and what decoded these bodies before) on 1,000-item bodies.
func BenchmarkHotDecode(b *testing.B) {
	tp := make([][]string, 1000)
	hashes := make([]string, 1000)
	for i := range tp {
		tp[i] = []string{"email", "user" + strings.Repeat("x", i%7) + "@load.test"}
		hashes[i] = strings.Repeat(string(rune('a'+i%26)), 43)
	}
	bulk, _ := json.Marshal(map[string]any{"threepids": tp})
	v2, _ := json.Marshal(map[string]any{"algorithm": "sha256", "pepper": "p", "addresses": hashes})
	for _, c := range []struct {
		name string
		body []byte
		new  func() any
	}{
		{"bulk", bulk, func() any { return new(gen.BulkLookupJSONRequestBody) }},
		{"v2", v2, func() any { return new(gen.LookupV2JSONRequestBody) }},
	} {
		b.Run(c.name+"/hand", func(b *testing.B) {
			b.ReportAllocs()
			reportCPU(b, func() {
				for b.Loop() {
					if !decodeInto(c.body, new(lookupArena), c.new()) {
						b.Fatal("not decoded")
					}
				}
			})
		})
		b.Run(c.name+"/sonic", func(b *testing.B) {
			b.ReportAllocs()
			body := string(c.body)
			reportCPU(b, func() {
				for b.Loop() {
					if err := bodyJSON.UnmarshalFromString(body, c.new()); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
