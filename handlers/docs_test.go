package handlers_test

import (
	"encoding/json"
	"io"
	"strings"
	"testing"

	"github.com/sigil-matrix/sigil/handlers/apitest"
)

// get fetches a path outside the API (which the document, and so
// apitest's response check, does not describe).
func get(t *testing.T, env *apitest.Env, path string) *apitest.Response {
	t.Helper()
	resp, err := env.HTTP.Get(env.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return &apitest.Response{Status: resp.StatusCode, Header: resp.Header, Body: body}
}

func TestDocsPage(t *testing.T) {
	env := apitest.New(t, func(s *apitest.Setup) { s.HTTP.Docs = true })
	r := get(t, env, "/docs/")
	if r.Status != 200 || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/html") ||
		!strings.Contains(string(r.Body), `spec-url="openapi.json"`) || !strings.Contains(string(r.Body), `src="redoc.standalone.js"`) {
		t.Fatalf("page: %d %s", r.Status, r.Body)
	}
	if csp := r.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
		t.Errorf("no CSP keeping the page to this server: %q", csp)
	}
	if strings.Contains(string(r.Body), "https://") {
		t.Error("the page loads something from elsewhere")
	}
	js := get(t, env, "/docs/redoc.standalone.js")
	if js.Status != 200 || len(js.Body) < 500000 || !strings.Contains(string(js.Body[:200]), "redoc") {
		t.Errorf("bundle: %d, %d bytes", js.Status, len(js.Body))
	}
	doc := get(t, env, "/docs/openapi.json")
	var spec struct {
		OpenAPI string                    `json:"openapi"`
		Paths   map[string]map[string]any `json:"paths"`
	}
	if doc.Status != 200 || json.Unmarshal(doc.Body, &spec) != nil || !strings.HasPrefix(spec.OpenAPI, "3.") {
		t.Fatalf("document: %d %.200s", doc.Status, doc.Body)
	}
	if spec.Paths["/_matrix/identity/v2/lookup"]["post"] == nil {
		t.Errorf("the document lacks v2 lookup: %d paths", len(spec.Paths))
	}
	if r := get(t, env, "/docs"); r.Status != 301 || r.Header.Get("Location") != "/docs/" {
		t.Errorf("/docs: %d %s", r.Status, r.Header.Get("Location"))
	}
}

func TestDocsCanBeTurnedOff(t *testing.T) {
	env := apitest.New(t) // HTTPOptions.Docs is false
	for _, p := range []string{"/docs/", "/docs/openapi.json", "/docs/redoc.standalone.js"} {
		if r := env.Get(p); r.Status != 404 || r.Errcode() != "M_UNRECOGNIZED" {
			t.Errorf("%s with docs off: %d %s", p, r.Status, r.Body)
		}
	}
}
