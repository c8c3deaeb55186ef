package convert

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

// seed loads one of the 2018 seed files exactly as published (indentation
// restored), which is what every fix-up is written against.
func seed(t *testing.T, name string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "seed", name))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := ParseYAML(data)
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

func dig(v any, path ...string) any {
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

func TestSeedIsBrokenWithoutFixups(t *testing.T) {
	// The reason the fix-ups exist: kin-openapi alone loses the request
	// bodies (no consumes) and keeps invalid status keys.
	doc := seed(t, "email_associations.yaml")
	if _, ok := doc["consumes"]; ok {
		t.Fatal("seed declares consumes; the fix-up would be pointless")
	}
	if dig(doc, "paths", "/validate/email/submitToken", "get", "responses", "3xx") == nil {
		t.Fatal("seed lacks the 3xx key this test is about")
	}
}

func TestFixups(t *testing.T) {
	tests := []struct {
		name  string
		file  string
		fix   func(map[string]any) []string
		check func(t *testing.T, doc map[string]any)
	}{
		{"status ranges", "email_associations.yaml", fixStatusRanges, func(t *testing.T, doc map[string]any) {
			r := dig(doc, "paths", "/validate/email/submitToken", "get", "responses").(map[string]any)
			if r["3XX"] == nil || r["4XX"] == nil || r["3xx"] != nil || r["4xx"] != nil {
				t.Errorf("responses %v", keysOf(r))
			}
		}},
		{"response-level example", "invitation_signing.yaml", fixResponseExamples, func(t *testing.T, doc map[string]any) {
			r := dig(doc, "paths", "/sign-ed25519", "post", "responses", "404").(map[string]any)
			if r["example"] != nil || dig(r, "examples", "application/json", "errcode") != "M_UNRECOGNIZED" {
				t.Errorf("404 %v", r)
			}
		}},
		{"mime-keyed schema example", "store_invite.yaml", fixResponseExamples, func(t *testing.T, doc map[string]any) {
			r := dig(doc, "paths", "/store-invite", "post", "responses", "200").(map[string]any)
			if dig(r, "schema", "example") != nil || dig(r, "examples", "application/json", "token") != "sometoken" {
				t.Errorf("200 %v", r)
			}
		}},
		{"default consumes", "associations.yaml", fixConsumes, func(t *testing.T, doc map[string]any) {
			if c, _ := doc["consumes"].([]any); len(c) != 1 || c[0] != "application/json" {
				t.Errorf("consumes %v", doc["consumes"])
			}
		}},
		{"required bodies", "associations.yaml", fixRequiredBodies, func(t *testing.T, doc map[string]any) {
			p := dig(doc, "paths", "/bind", "post", "parameters").([]any)[0].(map[string]any)
			if p["required"] != true {
				t.Errorf("bind body %v", p)
			}
		}},
		{"error schemas", "associations.yaml", fixErrorSchemas, func(t *testing.T, doc map[string]any) {
			for _, code := range []string{"400", "404"} {
				if dig(doc, "paths", "/bind", "post", "responses", code, "schema", "$ref") != "#/definitions/MatrixError" {
					t.Errorf("%s has no error schema", code)
				}
			}
			if dig(doc, "paths", "/bind", "post", "responses", "200", "schema", "$ref") != nil {
				t.Error("a success response got the error schema")
			}
			if dig(doc, "definitions", "MatrixError", "required") == nil {
				t.Error("MatrixError not defined")
			}
		}},
		{"default errors", "invitation_signing.yaml", fixDefaultErrors, func(t *testing.T, doc map[string]any) {
			if dig(doc, "paths", "/sign-ed25519", "post", "responses", "default", "schema", "$ref") != "#/definitions/MatrixError" {
				t.Error("no default error response")
			}
		}},
		{"escaped quotes", "store_invite.yaml", fixEscapedQuotes, func(t *testing.T, doc map[string]any) {
			s := dig(doc, "paths", "/store-invite", "post", "summary").(string)
			if s != "Store pending invitations to a user's 3pid." {
				t.Errorf("summary %q", s)
			}
		}},
		{"integer x-example on a string parameter", "associations.yaml", fixParameterExamples, func(t *testing.T, doc map[string]any) {
			p := dig(doc, "paths", "/3pid/getValidated3pid", "get", "parameters").([]any)[0].(map[string]any)
			if p["x-example"] != "1234" {
				t.Errorf("x-example %#v", p["x-example"])
			}
		}},
		{"host-pinned servers", "associations.yaml", foldBasePath, func(t *testing.T, doc map[string]any) {
			if doc["host"] != nil || doc["basePath"] != nil || doc["schemes"] != nil {
				t.Errorf("host/basePath/schemes left: %v %v %v", doc["host"], doc["basePath"], doc["schemes"])
			}
			if dig(doc, "paths", "/_matrix/identity/api/v1/bind") == nil {
				t.Errorf("paths %v", keysOf(doc["paths"].(map[string]any)))
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := seed(t, tt.file)
			if changes := tt.fix(doc); len(changes) == 0 {
				t.Fatal("the fix-up changed nothing in the seed")
			}
			tt.check(t, doc)
			if again := tt.fix(doc); len(again) != 0 && tt.name != "host-pinned servers" {
				t.Errorf("not idempotent: second run changed %v", again)
			}
		})
	}
}

func keysOf(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestSeedConvertsToValidDocument(t *testing.T) {
	srcs, err := ReadDir(filepath.Join("testdata", "seed"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := Convert(context.Background(), srcs, openapi3.Info{Title: "t", Version: "1"})
	if err != nil {
		t.Fatalf("seed does not convert: %v", err)
	}
	sum := Summary(res.Doc)
	for _, want := range []string{
		"GET    /_matrix/identity/api/v1/3pid/getValidated3pid getValidated3pid",
		"POST   /_matrix/identity/api/v1/bind bind",
		"POST   /_matrix/identity/api/v1/store-invite storeInvite",
		"POST   /_matrix/identity/api/v1/sign-ed25519 blindlySignStuff",
		"GET    /_matrix/identity/api/v1/validate/email/submitToken emailSubmitTokenGet",
	} {
		if !strings.Contains(sum, want) {
			t.Errorf("missing %q in\n%s", want, sum)
		}
	}
	if len(res.Doc.Servers) != 0 {
		t.Errorf("servers %v, want none", res.Doc.Servers)
	}
	body := res.Doc.Paths.Value("/_matrix/identity/api/v1/bind").Post.RequestBody.Value
	if !body.Required || body.Content.Get("application/json") == nil {
		t.Errorf("bind request body lost or optional: %+v", body)
	}
}

func TestMergeRefusesClashes(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "seed", "associations.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	other := []byte(strings.Replace(string(data), "Publish an association", "Publish another association", 1))
	srcs := []Source{{Name: "a.yaml", Data: data}, {Name: "b.yaml", Data: other}}
	if _, err := Convert(context.Background(), srcs, openapi3.Info{Title: "t", Version: "1"}); err == nil || !strings.Contains(err.Error(), "a.yaml and b.yaml define POST /_matrix/identity/api/v1/bind differently") {
		t.Errorf("conflicting operations merged: %v", err)
	}
	srcs[1].Data = data
	if _, err := Convert(context.Background(), srcs, openapi3.Info{Title: "t", Version: "1"}); err != nil {
		t.Errorf("identical operations do not merge: %v", err)
	}
}

func TestGeneratedDocumentIsCurrent(t *testing.T) {
	// The same check CI makes with `make generate`, for the document.
	srcs, err := ReadDir(filepath.Join("..", ""))
	if err != nil {
		t.Fatal(err)
	}
	res, err := Convert(context.Background(), srcs, DocumentInfo)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Marshal(res.Doc)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join("..", "..", "gen", "openapi.json"))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Error("gen/openapi.json is stale: run `make generate`")
	}
}
