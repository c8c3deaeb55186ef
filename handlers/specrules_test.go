package handlers_test

import (
	"strings"
	"testing"

	"github.com/sigil-matrix/sigil/handlers"
	"github.com/sigil-matrix/sigil/handlers/apitest"
	"github.com/sigil-matrix/sigil/handlers/federation/fedtest"
)

// The rules the spec states are enforced by the validator (issue 10): a
// client_secret outside the spec's grammar and an unknown lookup
// algorithm are refused before any operation runs.
func TestSpecRulesAreEnforced(t *testing.T) {
	hs := fedtest.Start(t)
	env := apitest.New(t)
	tok := register(t, env, hs, "rita")
	long := strings.Repeat("a", 256)
	for _, prefix := range []string{v1, v2} {
		for _, secret := range []string{"bad secret", "", long, "a/b", "naïve"} {
			for _, r := range []apitest.Request{
				{Method: "POST", Path: prefix + "/validate/email/requestToken", Body: map[string]any{"client_secret": secret, "email": "r@example.org", "send_attempt": 1}},
				{Method: "POST", Path: prefix + "/validate/email/submitToken", Body: map[string]any{"sid": "1", "client_secret": secret, "token": "t"}},
				{Method: "POST", Path: prefix + "/3pid/bind", Body: map[string]any{"sid": "1", "client_secret": secret, "mxid": "@r:example.org"}},
				{Method: "GET", Path: prefix + "/3pid/getValidated3pid?sid=1&client_secret=" + strings.ReplaceAll(secret, " ", "%20")},
			} {
				r.Header = bearer(tok)
				if got := env.Do(r); got.Status != 400 || got.Errcode() != "M_INVALID_PARAM" && got.Errcode() != "M_MISSING_PARAMS" {
					t.Errorf("%s %s client_secret %q: %d %s", r.Method, r.Path, secret, got.Status, got.Body)
				}
			}
		}
	}
	r := env.Do(apitest.Request{Method: "POST", Path: v2 + "/lookup", Header: bearer(tok),
		Body: map[string]any{"algorithm": "md5", "pepper": "p", "addresses": []string{"x"}}})
	if r.Status != 400 || r.Errcode() != "M_INVALID_PARAM" || !strings.Contains(string(r.Body), "algorithm") {
		t.Errorf("unknown algorithm: %d %s", r.Status, r.Body)
	}
}

// The spec states the rules the handlers used to hold: every client_secret
// has the grammar, lookup's algorithm its values, and the operations
// callable before accepting the terms carry the extension the auth
// middleware reads.
func TestDocumentStatesTheRules(t *testing.T) {
	doc := apitest.Doc(t)
	const pattern = `^[0-9a-zA-Z.=_-]{1,255}$`
	secrets := 0
	var exempt []string
	for _, item := range doc.Paths.Map() {
		for _, op := range item.Operations() {
			for _, p := range op.Parameters {
				if p.Value.Name == "client_secret" {
					secrets++
					if p.Value.Schema.Value.Pattern != pattern {
						t.Errorf("%s: client_secret parameter without the grammar", op.OperationID)
					}
				}
			}
			if op.RequestBody != nil {
				s := op.RequestBody.Value.Content.Get("application/json").Schema.Value
				if cs := s.Properties["client_secret"]; cs != nil {
					secrets++
					if cs.Value.Pattern != pattern {
						t.Errorf("%s: client_secret property without the grammar", op.OperationID)
					}
				}
				if alg := s.Properties["algorithm"]; alg != nil && len(alg.Value.Enum) != 2 {
					t.Errorf("%s: algorithm enum %v", op.OperationID, alg.Value.Enum)
				}
			}
			if v, _ := op.Extensions[handlers.TermsExemptExtension].(bool); v {
				exempt = append(exempt, strings.ToLower(op.OperationID))
			}
		}
	}
	if secrets < 18 {
		t.Errorf("%d client_secrets in the document", secrets)
	}
	if len(exempt) != 2 || !strings.Contains(strings.Join(exempt, ","), "logout") || !strings.Contains(strings.Join(exempt, ","), "agreetoterms") {
		t.Errorf("terms-exempt operations %v", exempt)
	}
}
