package validate

import (
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

// TestTapeOfTheSchemaWalk: the tape the schema walk records of a body it
// accepts is the tape Tokenize makes of it, and says what the body holds.
func TestTapeOfTheSchemaWalk(t *testing.T) {
	refs := fuzzSchemas(t)
	bulk, v2 := refs[0], refs[1]
	for _, tt := range []struct {
		f    *fastSchema
		body string
	}{
		{mustCompile(t, bulk), `{"threepids":[["email","a@b.c"],["msisdn","4412"]]}`},
		{mustCompile(t, bulk), ` { "threepids" : [ ] , "x" : [0,-1.5e3,true,false,null,"\u00e9",{"k":{}}] } `},
		{mustCompile(t, bulk), `{"x":{"a":[[]]},"threepids":[["em\"ail","\\"]]}`},
		{mustCompile(t, v2), `{"algorithm":"sha256","pepper":"p","addresses":["h1","h2","h3"]}`},
	} {
		ok, walked := tt.f.validTape([]byte(tt.body), true)
		if !ok {
			t.Fatalf("refused %s", tt.body)
		}
		scanned, ok := Tokenize([]byte(tt.body))
		if !ok || !slices.Equal(walked, scanned) {
			t.Errorf("%s:\nschema walk %x\nTokenize    %x", tt.body, walked, scanned)
		}
		if walked.Next(0) != len(walked) {
			t.Errorf("%s: the top object ends at token %d of %d", tt.body, walked.Next(0), len(walked))
		}
	}

	// What the tokens say, on one body.
	body := []byte(`{"a":[1,"x\n"],"b":null}`)
	tape, ok := Tokenize(body)
	if !ok {
		t.Fatal("refused")
	}
	type tok struct {
		kind    int
		text    string
		escaped bool
		next    int
	}
	want := []tok{
		{TokObject, "", false, 7},
		{TokKey, "a", false, 2},
		{TokArray, "", false, 5},
		{TokScalar, "1", false, 4},
		{TokString, `x\n`, true, 5},
		{TokKey, "b", false, 6},
		{TokScalar, "null", false, 7},
	}
	if len(tape) != len(want) {
		t.Fatalf("%d tokens, want %d", len(tape), len(want))
	}
	for i, w := range want {
		got := tok{kind: tape.Kind(i), escaped: tape.Escaped(i), next: tape.Next(i)}
		if w.kind != TokObject && w.kind != TokArray {
			from, to := tape.Span(i)
			got.text = string(body[from:to])
		}
		if got != w {
			t.Errorf("token %d: %+v, want %+v", i, got, w)
		}
	}

	// Not JSON, or not UTF-8, or nested past encoding/json's limit: no
	// tape.
	deep := strings.Repeat("[", maxTokenizeDepth+1) + strings.Repeat("]", maxTokenizeDepth+1)
	if _, ok := Tokenize([]byte(deep[1 : len(deep)-1])); !ok {
		t.Errorf("Tokenize refused nesting %d deep", maxTokenizeDepth)
	}
	for _, bad := range []string{`{"a":}`, `{"a":1`, `"\x00"`, "\"\xff\"", `[1,]`, deep} {
		if _, ok := Tokenize([]byte(bad)); ok {
			t.Errorf("Tokenize accepted %q", bad)
		}
	}
}

func mustCompile(t *testing.T, ref *openapi3.SchemaRef) *fastSchema {
	t.Helper()
	f, err := compileFast(ref)
	if err != nil {
		t.Fatal(err)
	}
	return f
}
