package validate

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/bytedance/sonic"
	"github.com/getkin/kin-openapi/openapi3"
	"github.com/labstack/echo/v4"

	"github.com/sigil-matrix/sigil/gen"
)

// instance builds a value the schema accepts (as far as it can tell).
func instance(s *openapi3.Schema) any {
	switch {
	case s.Type.Is("object"):
		m := map[string]any{}
		for name, p := range s.Properties {
			m[name] = instance(p.Value)
		}
		return m
	case s.Type.Is("array"):
		var item any = "x"
		if s.Items != nil {
			item = instance(s.Items.Value)
		}
		n := 2
		if s.MinItems > 2 {
			n = int(s.MinItems)
		}
		if s.MaxItems != nil && int(*s.MaxItems) < n {
			n = int(*s.MaxItems)
		}
		a := make([]any, n)
		for i := range a {
			a[i] = item
		}
		return a
	case s.Type.Is("integer"):
		return 3.0
	case s.Type.Is("number"):
		return 2.5
	case s.Type.Is("boolean"):
		return true
	case len(s.Enum) > 0:
		return s.Enum[0]
	}
	return "text"
}

// mutations are near misses and oddities around a valid body.
func mutations(s *openapi3.Schema, valid map[string]any) []any {
	out := []any{valid, map[string]any{}, map[string]any{"unexpected": 1}}
	clone := func() map[string]any {
		m := map[string]any{}
		for k, v := range valid {
			m[k] = v
		}
		return m
	}
	names := make([]string, 0, len(s.Properties))
	for n := range s.Properties {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		m := clone()
		delete(m, n)
		out = append(out, m)
		for _, wrong := range []any{1.0, 1.5, "s", true, nil, []any{}, []any{1.0}, []any{"a"}, []any{[]any{"a", "b"}}, []any{[]any{"a"}}, map[string]any{}, map[string]any{"k": "v"}, map[string]any{"k": 1.0}} {
			m := clone()
			m[n] = wrong
			out = append(out, m)
		}
	}
	m := clone()
	m["extra_field"] = "x"
	out = append(out, m)
	return out
}

// TestFastSchemaAgreesWithKin: for every request body in the document the
// compiled schema accepts exactly what kin-openapi accepts.
func TestFastSchemaAgreesWithKin(t *testing.T) {
	doc, err := gen.GetSwagger()
	if err != nil {
		t.Fatal(err)
	}
	compiled := 0
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			if op.RequestBody == nil || op.RequestBody.Value == nil {
				continue
			}
			mt := op.RequestBody.Value.Content.Get(echo.MIMEApplicationJSON)
			if mt == nil || mt.Schema == nil {
				continue
			}
			f, err := compileFast(mt.Schema)
			if err != nil {
				t.Logf("%s %s: left to kin-openapi: %v", method, path, err)
				continue
			}
			compiled++
			s := mt.Schema.Value
			valid, _ := instance(s).(map[string]any)
			for i, body := range mutations(s, valid) {
				raw, _ := json.Marshal(body)
				var decoded any
				json.Unmarshal(raw, &decoded)
				kin := s.VisitJSON(decoded, openapi3.VisitAsRequest()) == nil
				if got := f.validJSON(raw); got != kin {
					t.Errorf("%s %s case %d %s: fast says %v, kin-openapi %v", method, path, i, raw, got, kin)
				}
			}
		}
	}
	if compiled < 20 {
		t.Errorf("only %d request bodies compiled; the fast path covers too little", compiled)
	}
}

func TestFastSchemaScalars(t *testing.T) {
	max := uint64(3)
	tests := []struct {
		schema *openapi3.Schema
		json   string
		want   bool
	}{
		{openapi3.NewIntegerSchema(), `3`, true},
		{openapi3.NewIntegerSchema(), `3.0`, true},
		{openapi3.NewIntegerSchema(), `3.5`, false},
		{openapi3.NewFloat64Schema(), `3.5`, true},
		{openapi3.NewStringSchema(), `"a\u00e9"`, true},
		{openapi3.NewStringSchema().WithPattern(`^[a-z]+$`), `"abc"`, true},
		{openapi3.NewStringSchema().WithPattern(`^[a-z]+$`), `"ab1"`, false},
		{&openapi3.Schema{Type: &openapi3.Types{"string"}, MaxLength: &max}, `"日本語"`, true},
		{&openapi3.Schema{Type: &openapi3.Types{"string"}, MaxLength: &max}, `"日本語!"`, false},
		{openapi3.NewBoolSchema(), `false`, true},
		{openapi3.NewBoolSchema(), `null`, false},
		{&openapi3.Schema{Type: &openapi3.Types{"string"}, Nullable: true}, `null`, true},
	}
	for i, tt := range tests {
		f, err := compileFast(openapi3.NewSchemaRef("", tt.schema))
		if err != nil {
			t.Fatal(err)
		}
		if got := f.validJSON([]byte(tt.json)); got != tt.want {
			t.Errorf("case %d %s: %v, want %v", i, tt.json, got, tt.want)
		}
		var d any
		json.Unmarshal([]byte(tt.json), &d)
		if kin := tt.schema.VisitJSON(d) == nil; kin != tt.want {
			t.Errorf("case %d: the expectation disagrees with kin-openapi (%v)", i, kin)
		}
	}
	_ = fmt.Sprint
}

// fuzzSchemas are the request bodies of a few operations, looked up in the
// document by path.
func fuzzSchemas(t testing.TB) []*openapi3.SchemaRef {
	doc, err := gen.GetSwagger()
	if err != nil {
		t.Fatal(err)
	}
	var out []*openapi3.SchemaRef
	for _, path := range []string{
		"/_matrix/identity/api/v1/bulk_lookup",
		"/_matrix/identity/v2/lookup",
		"/_matrix/identity/v2/validate/email/requestToken",
		"/_matrix/identity/v2/store-invite",
	} {
		item := doc.Paths.Value(path)
		if item == nil || item.Post == nil {
			t.Fatalf("no POST %s in the document", path)
		}
		out = append(out, item.Post.RequestBody.Value.Content.Get(echo.MIMEApplicationJSON).Schema)
	}
	return out
}

// checkAgainstKin fails when the compiled schema and kin-openapi disagree
// on a syntactically valid body.
func checkAgainstKin(t *testing.T, refs []*openapi3.SchemaRef, body []byte) {
	if !json.Valid(body) {
		return
	}
	var decoded any
	if err := json.Unmarshal(body, &decoded); err != nil {
		return
	}
	for _, ref := range refs {
		f, err := compileFast(ref)
		if err != nil {
			t.Fatal(err)
		}
		kin := ref.Value.VisitJSON(decoded, openapi3.VisitAsRequest()) == nil
		if got := f.validJSON(body); got != kin {
			t.Errorf("%s: fast says %v, kin-openapi %v", body, got, kin)
		}
	}
}

// TestFastSchemaBytes covers what the byte walker must get right that
// instance() never produces: escapes, white space, nesting, duplicates.
func TestFastSchemaBytes(t *testing.T) {
	refs := fuzzSchemas(t)
	for _, body := range []string{
		`{"threepids":[["email","a@b.c"]]}`,
		` { "threepids" : [ [ "email" , "a@b.c" ] ] } `,
		`{"threepids":[["em\u0061il","a\"@b.c"],["msisdn","\\"]]}`,
		`{"thr\u0065epids":[["email","x\\\"y"]]}`,
		`{"threepids":[["email","a@b.c","extra"]]}`,
		`{"threepids":[["email"]]}`,
		`{"threepids":[]}`,
		`{"threepids":[[]],"x":{"y":[1,2.5e3,-0,true,false,null,{}]}}`,
		`{"threepids":"email"}`,
		`{"threepids":[["email","a"]],"threepids":7}`,
		`{"addresses":["abc"],"algorithm":"sha256","pepper":"p"}`,
		`{"addresses":["abc",null],"algorithm":"sha256","pepper":"p"}`,
		`{"addresses":[],"algorithm":"none","pepper":""}`,
		`{"client_secret":"abc","email":"a@b.c","send_attempt":1}`,
		`{"client_secret":"abc","email":"a@b.c","send_attempt":1.5}`,
		`{"client_secret":"abc","email":"a@b.c","send_attempt":"1"}`,
		`{"client_secret":"abc","email":"a@b.c","send_attempt":1e400}`,
		`{"client_secret":"a\u0000c","email":"a@b.c","send_attempt":1}`,
		`{"medium":"email","address":"a@b.c","room_id":"!r:x","sender":"@s:x","room_name":"\ud83d\ude00"}`,
		`{}`, `[]`, `"s"`, `1`, `null`,
	} {
		checkAgainstKin(t, refs, []byte(body))
	}
}

// FuzzFastSchema: on any valid JSON the walker neither panics nor
// disagrees with kin-openapi ("go test -fuzz FuzzFastSchema ./spec/validate/").
func FuzzFastSchema(f *testing.F) {
	for _, s := range []string{
		`{"threepids":[["email","a@b.c"]]}`,
		`{"addresses":["abc"],"algorithm":"sha256","pepper":"p"}`,
		`{"client_secret":"abc","email":"a@b.c","send_attempt":1,"next_link":"https://x"}`,
		`{"a\u0062":"\\\"","c":[{},[],-1.5E+3]}`,
		`{"threepids":[["email","a\x"]]}`,
		"{\"addresses\":[\"abcdefghijklmnopqrstuvwxyz\x01\"],\"algorithm\":\"none\",\"pepper\":\"p\"}",
	} {
		f.Add([]byte(s))
	}
	refs := fuzzSchemas(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		if !utf8.Valid(body) {
			return // prepareBody refuses it before any walk
		}
		// The walker checks the syntax itself: checkJSON no longer asks
		// sonic.Valid about the bodies it accepts.
		_, tokenized := Tokenize(body)
		if !json.Valid(body) || !sonic.Valid(body) {
			for _, ref := range refs {
				if f, _ := compileFast(ref); f.validJSON(body) {
					t.Fatalf("%q is not JSON, yet the walker accepts it", body)
				}
			}
			if tokenized {
				t.Fatalf("%q is not JSON, yet Tokenize accepts it", body)
			}
			return
		}
		checkAgainstKin(t, refs, body)
		// The tape of a body a schema accepts is the one Tokenize makes.
		scanned, _ := Tokenize(body)
		for _, ref := range refs {
			f, _ := compileFast(ref)
			if ok, walked := f.validTape(body, true); ok && !slices.Equal(walked, scanned) {
				t.Fatalf("%q: the schema walk's tape is not Tokenize's", body)
			}
		}
	})
}

func TestDuplicateKeysFound(t *testing.T) {
	many := `{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"k":11,"a":12}`
	for body, want := range map[string]bool{
		`{"a":1,"b":2}`:                         false,
		`{"a":1,"a":2}`:                         true,
		`{"a":{"x":1,"x":2}}`:                   true,
		`[{"x":1},{"x":2}]`:                     false,
		`{"a":[{"x":1,"y":[1,{"z":1,"z":1}]}]}`: true,
		`{"a":1,"\u0061":2}`:                    true,
		`{"a":1,"A":2}`:                         false,
		many:                                    true,
		many[:len(many)-8] + "}":                false,
		`{"n":1e400,"s":"x","t":true,"u":null,"n":0}`: true,
	} {
		if got := hasDuplicateKeys([]byte(body)); got != want {
			t.Errorf("hasDuplicateKeys(%s) = %v", body, got)
		}
	}
	// The compiled checker never accepts a body that repeats a key.
	f, err := compileFast(&openapi3.SchemaRef{Value: &openapi3.Schema{Type: &openapi3.Types{"object"}}})
	if err != nil {
		t.Fatal(err)
	}
	if f.validJSON([]byte(`{"a":1,"a":2}`)) || !f.validJSON([]byte(`{"a":1,"b":2}`)) {
		t.Error("fast schema and duplicate keys")
	}
}

// TestWalkerRefusesBrokenSyntax: bodies that are JSON but for one flaw,
// which a schema would otherwise accept. The walker must refuse them all
// on its own: checkJSON asks nothing else about a body the walker accepts.
func TestWalkerRefusesBrokenSyntax(t *testing.T) {
	refs := fuzzSchemas(t)
	bulk, v2 := refs[0], refs[1]
	deep := strings.Repeat("[", maxDepth+1) + strings.Repeat("]", maxDepth+1)
	tests := []struct {
		ref  *openapi3.SchemaRef
		body string
	}{
		{bulk, `{"threepids":[["email","a"]]`},
		{bulk, `{"threepids":[["email","a"]],}`},
		{bulk, `{"threepids":[["email","a"],]}`},
		{bulk, `{"threepids":[["email","a",]]}`},
		{bulk, `{"threepids" [["email","a"]]}`},
		{bulk, `{"threepids":[["email" "a"]]}`},
		{bulk, `{"threepids":[["email";"a"]]}`},
		{bulk, `{"threepids":[["email","a"]] "x":1}`},
		{bulk, `{"threepids":[["email","a"]]}}`},
		{bulk, `{"threepids":[["email","a"]]} x`},
		{bulk, `{threepids:[["email","a"]]}`},
		{bulk, `{'threepids':[["email","a"]]}`},
		{bulk, `{"threepids":[["email","a\x"]]}`},
		{bulk, `{"threepids":[["email","a\u12"]]}`},
		{bulk, "{\"threepids\":[[\"email\",\"a\tb\"]]}"},
		{bulk, `{"threepids":[["email","a"]],"x":tru}`},
		{bulk, `{"threepids":[["email","a"]],"x":nul}`},
		{bulk, `{"threepids":[["email","a"]],"x":falsey}`},
		{bulk, `{"threepids":[["email","a"]],"x":True}`},
		{bulk, `{"threepids":[["email","a"]],"x":01}`},
		{bulk, `{"threepids":[["email","a"]],"x":+1}`},
		{bulk, `{"threepids":[["email","a"]],"x":.5}`},
		{bulk, `{"threepids":[["email","a"]],"x":1.}`},
		{bulk, `{"threepids":[["email","a"]],"x":1e}`},
		{bulk, `{"threepids":[["email","a"]],"x":-}`},
		{bulk, `{"threepids":[["email","a"]],"x":0x10}`},
		{bulk, `{"threepids":[["email","a"]],"x":NaN}`},
		{bulk, `{"threepids":[["email","a"]],"x":[1 2]}`},
		{bulk, `{"threepids":[["email","a"]],"x":{"a" 1}}`},
		{bulk, `{"threepids":[["email","a"]],"x":"\u0000`},
		{bulk, `{"threepids":[["email","a"]],"x":"`},
		{bulk, `{"threepids":[["email","a"]],"x":[`},
		{bulk, `{"threepids":[["email","a"]],`},
		{bulk, `{"threepids":[["email","a"]],"x"`},
		{v2, `{"algorithm":"sha256","pepper":"p","addresses":["a",]}`},
		{v2, `{"algorithm":"sha256","pepper":"p","addresses":["a"],}`},
		{v2, `{"algorithm":"sha256","pepper":"p","addresses":["a"]`},
		{v2, `{"algorithm":"sha256","pepper":"p","addresses":["a"` + "\x00" + `]}`},
	}
	for _, tt := range tests {
		if json.Valid([]byte(tt.body)) {
			t.Fatalf("test body is JSON: %s", tt.body)
		}
		f, err := compileFast(tt.ref)
		if err != nil {
			t.Fatal(err)
		}
		if f.validJSON([]byte(tt.body)) {
			t.Errorf("the walker accepts %s", tt.body)
		}
	}
	// Too deep to walk (JSON, yet refused: sonic.Valid and kin-openapi
	// decide), and as deep as it walks.
	if f, _ := compileFast(bulk); f.validJSON([]byte(`{"threepids":[],"x":` + deep + `}`)) {
		t.Errorf("the walker accepts nesting deeper than %d", maxDepth)
	}
	deepest := strings.Repeat("[", maxDepth-1) + strings.Repeat("]", maxDepth-1)
	// And the flawless ones pass, numbers in every form JSON allows.
	for _, body := range []string{
		`{"threepids":[["email","a"]],"x":[0,-0,1,-12,1.5,-0.25,1e3,1E+3,2e-3,0.0e0,true,false,null,"\u00e9\/",{},[],{"a":[{}]}]}`,
		` {"threepids" : [ ] , "x" : ` + deepest + ` } `,
	} {
		if f, _ := compileFast(bulk); !f.validJSON([]byte(body)) || !json.Valid([]byte(body)) {
			t.Errorf("the walker refuses %s", body)
		}
	}
}
