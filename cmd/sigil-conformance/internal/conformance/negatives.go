package conformance

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"net/url"
	"slices"
	"sort"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
)

// operation is one operation of the document.
type operation struct {
	id, method, path string
	op               *openapi3.Operation
}

// operations lists the document's operations by path, then method.
func (r *Runner) operations() []operation {
	var out []operation
	paths := r.doc.Paths.InMatchingOrder()
	sort.Strings(paths)
	for _, p := range paths {
		item := r.doc.Paths.Find(p)
		methods := slices.Sorted(maps.Keys(item.Operations()))
		for _, m := range methods {
			o := item.Operations()[m]
			out = append(out, operation{id: lowerFirst(o.OperationID), method: m, path: p, op: o})
		}
	}
	return out
}

func (o operation) secured() bool { return o.op.Security != nil && len(*o.op.Security) > 0 }

// sampleQuery is a well-formed query for each query parameter name.
var sampleQuery = map[string]string{
	"sid": "conformance", "client_secret": "conformance-secret", "token": "000000",
	"medium": "email", "address": "nobody@example.org", "public_key": "bm90IGEga2V5IGF0IGFsbCwganVzdCBmb3IgdGVzdHM",
}

// sampleBody is a well-formed body for each operation that takes one: each
// required property present, with the type the document gives it. The
// values name nothing that exists, so no case changes the server's state.
func sampleBody(id, hs string) map[string]any {
	switch strings.TrimSuffix(id, "V2") {
	case "emailRequestToken":
		return map[string]any{"client_secret": "conformance-secret", "email": "nobody@example.org", "send_attempt": 1}
	case "msisdnRequestToken":
		return map[string]any{"client_secret": "conformance-secret", "country": "GB", "phone_number": "07400123456", "send_attempt": 1}
	case "emailSubmitTokenPost", "msisdnSubmitTokenPost":
		return map[string]any{"sid": "conformance", "client_secret": "conformance-secret", "token": "000000"}
	case "bind3pid", "bind":
		return map[string]any{"sid": "conformance", "client_secret": "conformance-secret", "mxid": "@nobody:" + hs}
	case "unbindV1", "unbind":
		return map[string]any{"mxid": "@nobody:" + hs, "threepid": map[string]any{"medium": "email", "address": "nobody@example.org"}}
	case "bulkLookup":
		return map[string]any{"threepids": [][]string{{"email", "nobody@example.org"}}}
	case "lookup":
		return map[string]any{"algorithm": "sha256", "pepper": "conformance", "addresses": []string{"x"}}
	case "storeInvite":
		return map[string]any{"medium": "email", "address": "nobody@example.org", "room_id": "!conformance:" + hs, "sender": "@nobody:" + hs}
	case "blindlySignStuff":
		return map[string]any{"mxid": "@nobody:" + hs, "token": "conformance", "private_key": "conformance"}
	case "registerAccount":
		return map[string]any{"access_token": "conformance", "token_type": "Bearer", "matrix_server_name": hs, "expires_in": 3600}
	case "agreeToTerms":
		return map[string]any{"user_accepts": []string{}}
	case "logout":
		return map[string]any{}
	}
	return nil
}

// bodySchema is the JSON schema of an operation's request body, if any.
func bodySchema(o operation) *openapi3.Schema {
	if o.op.RequestBody == nil || o.op.RequestBody.Value == nil {
		return nil
	}
	mt := o.op.RequestBody.Value.Content.Get("application/json")
	if mt == nil || mt.Schema == nil {
		return nil
	}
	return mt.Schema.Value
}

// wrongType is a value of another JSON type than the schema's.
func wrongType(s *openapi3.Schema) any {
	switch {
	case s.Type.Is("string"):
		return 42
	case s.Type.Is("integer"), s.Type.Is("number"), s.Type.Is("boolean"):
		return "not-a-number"
	case s.Type.Is("array"), s.Type.Is("object"):
		return "not-a-container"
	}
	return nil
}

// Accepted errcodes for bad parameters.
var (
	missingCodes  = []string{"M_MISSING_PARAMS", "M_MISSING_PARAM", "M_BAD_JSON", "M_INVALID_PARAM"}
	mistypedCodes = []string{"M_BAD_JSON", "M_INVALID_PARAM"}
)

// negatives: for every operation of the document, derived from it: each
// required parameter missing, each body property of the wrong type, a body
// that is not JSON, and (for those that need one) a missing or unknown
// access token.
func (r *Runner) negatives(ctx context.Context, tok string) {
	hs := r.cfg.Homeserver.Name
	for _, o := range r.operations() {
		if !r.served(o) {
			continue
		}
		path := strings.ReplaceAll(o.path, "{keyId}", "ed25519:0")
		token := ""
		if o.secured() {
			token = tok
		}
		query := url.Values{}
		var required []string
		for _, p := range o.op.Parameters {
			if p.Value != nil && p.Value.In == "query" {
				query.Set(p.Value.Name, sampleQuery[p.Value.Name])
				if p.Value.Required {
					required = append(required, p.Value.Name)
				}
			}
		}
		for _, name := range required {
			q := url.Values{}
			for k, v := range query {
				if k != name {
					q[k] = v
				}
			}
			if htmlAnswers(o) {
				// A link opened in a browser: any 4xx the document allows (an HTML page or a Matrix error).
				r.Case(ctx, o.id, "missing query parameter "+name+": 4xx", func(t *T) {
					resp := t.Do(Req{Method: o.method, Path: path, Query: q, Token: token})
					if resp.Status < 400 || resp.Status > 499 {
						t.Errorf("want a 4xx, got %s", resp)
					}
				})
				continue
			}
			r.Case(ctx, o.id, "missing query parameter "+name+": "+r.badStatus(), func(t *T) {
				r.needToken(t, o, tok)
				r.refusedInput(t, o, t.Do(Req{Method: o.method, Path: path, Query: q, Token: token}), missingCodes)
			})
		}
		if schema := bodySchema(o); schema != nil {
			r.bodyNegatives(ctx, o, path, token, tok, sampleBody(o.id, hs), schema)
		}
		if o.secured() {
			body := sampleBody(o.id, hs)
			r.Case(ctx, o.id, "no access token: 401 M_UNAUTHORIZED", func(t *T) {
				t.Expect(t.Do(Req{Method: o.method, Path: path, Query: query, Body: nilIfEmpty(body)}), 401, "M_UNAUTHORIZED")
			})
			codes := []string{"M_UNAUTHORIZED"} // the spec's answer to a token it does not know...
			if o.id == "logout" {
				// ...but v2_auth.yaml gives logout's 401 M_UNKNOWN_TOKEN
				// while §Authentication says M_UNAUTHORIZED for every
				// endpoint: the spec contradicts itself, so either passes
				// unless -profile strict (Sigil's choice, the yaml's).
				codes = []string{"M_UNKNOWN_TOKEN", "M_UNAUTHORIZED"}
				if r.strict() {
					codes = codes[:1]
				}
			}
			r.Case(ctx, o.id, "unknown access token: 401 "+strings.Join(codes, " or "), func(t *T) {
				t.ExpectError(t.Do(Req{Method: o.method, Path: path, Query: query, Body: nilIfEmpty(body), Token: "unknown" + randomString(20)}), []int{401}, codes...)
			})
		}
	}
}

func nilIfEmpty(m map[string]any) any {
	if m == nil {
		return nil
	}
	return m
}

func (r *Runner) needToken(t *T, o operation, tok string) {
	if o.secured() && tok == "" {
		t.Skipf("needs a v2 account with the terms accepted, which could not be made")
	}
}

func (r *Runner) bodyNegatives(ctx context.Context, o operation, path, token, tok string, sample map[string]any, schema *openapi3.Schema) {
	if sample == nil {
		r.Case(ctx, o.id, "sample body", func(t *T) { t.Fatalf("the runner has no sample body for %s", o.id) })
		return
	}
	if o.id == "logout" && !r.strict() {
		// The spec gives logout no body: a server may ignore it, so bad
		// bodies prove nothing there (strict: Sigil parses and refuses them).
		return
	}
	if o.id == "logout" {
		// Each bad-body case logs out its own account: a server that
		// ignores the body logs the token out, and no other case may
		// depend on it.
		token = ""
	}
	tokenFor := func(t *T) string {
		if o.id == "logout" {
			return r.register(t, "conf-"+r.run+"-logout-"+strings.ToLower(randomString(6))).token
		}
		return token
	}
	notJSON := "body that is not JSON: " + r.badStatus()
	if r.strict() {
		notJSON += " M_NOT_JSON"
	}
	r.Case(ctx, o.id, notJSON, func(t *T) {
		r.needToken(t, o, tok)
		r.refusedInput(t, o, t.Do(Req{Method: o.method, Path: path, Body: []byte(`{"not json`), Token: tokenFor(t)}), []string{"M_NOT_JSON"})
	})
	if o.id != "logout" { // logout's body may be absent (spec: API standards)
		r.Case(ctx, o.id, "no body at all: "+r.badStatus(), func(t *T) {
			r.needToken(t, o, tok)
			r.refusedInput(t, o, t.Do(Req{Method: o.method, Path: path, Token: token}), []string{"M_NOT_JSON", "M_BAD_JSON", "M_MISSING_PARAMS"})
		})
	}
	r.Case(ctx, o.id, "body that is a JSON array: "+r.badStatus(), func(t *T) {
		r.needToken(t, o, tok)
		r.refusedInput(t, o, t.Do(Req{Method: o.method, Path: path, Body: []byte(`[]`), Token: tokenFor(t)}), []string{"M_NOT_JSON", "M_BAD_JSON", "M_INVALID_PARAM"})
	})
	r.hostileBodies(ctx, o, path, tokenFor, tok, sample, schema)
	for _, name := range schema.Required {
		body := maps.Clone(sample)
		delete(body, name)
		r.Case(ctx, o.id, "missing "+name+": "+r.badStatus(), func(t *T) {
			r.needToken(t, o, tok)
			r.refusedInput(t, o, t.Do(Req{Method: o.method, Path: path, Body: body, Token: tokenFor(t)}), missingCodes)
		})
	}
	names := slices.Sorted(maps.Keys(sample))
	for _, name := range names {
		prop := schema.Properties[name]
		if prop == nil || prop.Value == nil {
			continue
		}
		bad := wrongType(prop.Value)
		if bad == nil || (name == "send_attempt" && !r.strict()) {
			// send_attempt: clients send "1" and servers (Sigil too)
			// accept numeric strings, so refusing a string is strict only.
			continue
		}
		body := maps.Clone(sample)
		body[name] = bad
		r.Case(ctx, o.id, name+" of the wrong type: "+r.badStatus(), func(t *T) {
			r.needToken(t, o, tok)
			r.refusedInput(t, o, t.Do(Req{Method: o.method, Path: path, Body: body, Token: tokenFor(t)}), mistypedCodes)
		})
	}
}

// badStatus names the status refusedInput wants, in case names.
func (r *Runner) badStatus() string {
	if r.strict() {
		return "400"
	}
	return "4xx"
}

// refusedInput: input the API description rules out must be refused with
// a Matrix error. The spec gives most of these refusals no status or
// errcode, and does not order a server's checks (it may find the session
// unknown or the token missing first), so by default any 4xx Matrix error
// passes, and so does POST submitToken's pre-v1.18 200 {"success": false}.
// A 5xx fails: the input is the client's fault, not the server's. Strict:
// 400 with one of strictCodes (any errcode if none).
func (r *Runner) refusedInput(t *T, o operation, resp *Resp, strictCodes []string) {
	if r.strict() {
		t.ExpectError(resp, []int{400}, strictCodes...)
		return
	}
	if strings.Contains(o.id, "SubmitTokenPost") {
		a := apiV1
		if strings.HasSuffix(o.id, "V2") {
			a = apiV2
		}
		r.refusedSubmit(t, a, resp)
		return
	}
	t.ExpectError(resp, nil)
}

// served reports whether the server is expected to serve o: its API
// version is listed, and o is in the profile (the r0.1.0 /bind path that
// r0.2.0 replaced is Sigil's alone: strict only).
func (r *Runner) served(o operation) bool {
	if o.id == "bind" && !r.strict() {
		return false
	}
	return r.versionServed(o.path)
}

// termsNotSigned: with an account that has not accepted the terms, every
// operation that needs them answers 403 M_TERMS_NOT_SIGNED.
func (r *Runner) termsNotSigned(ctx context.Context, havePolicies bool) {
	if !havePolicies {
		for _, o := range r.operations() {
			if o.secured() && o.id != "logout" && o.id != "agreeToTerms" {
				r.SkipCase(o.id, "terms not accepted: 403 M_TERMS_NOT_SIGNED", "the server lists no policies to accept")
			}
		}
		return
	}
	var fresh account
	ok := r.Step(ctx, "registerAccount", "a second account, terms not accepted", func(t *T) {
		fresh = r.register(t, "conf-"+r.run+"-noterms")
	})
	r.Case(ctx, "agreeToTerms", "accepting an empty list: still 403 M_TERMS_NOT_SIGNED", func(t *T) {
		if !ok {
			t.Skipf("no second account")
		}
		t.Expect(t.Do(Req{Method: "POST", Path: apiV2.prefix + "/terms", Token: fresh.token, Body: map[string]any{"user_accepts": []string{}}}), 200, "")
		t.Expect(t.Do(Req{Method: "GET", Path: apiV2.prefix + "/hash_details", Token: fresh.token}), 403, "M_TERMS_NOT_SIGNED")
	})
	for _, o := range r.operations() {
		if !o.secured() || o.id == "logout" || o.id == "agreeToTerms" || !r.served(o) { // MSC2140: these work before acceptance
			continue
		}
		path := strings.ReplaceAll(o.path, "{keyId}", "ed25519:0")
		query := url.Values{}
		for _, p := range o.op.Parameters {
			if p.Value != nil && p.Value.In == "query" {
				query.Set(p.Value.Name, sampleQuery[p.Value.Name])
			}
		}
		body := sampleBody(o.id, r.cfg.Homeserver.Name)
		r.Case(ctx, o.id, "terms not accepted: 403 M_TERMS_NOT_SIGNED", func(t *T) {
			if !ok {
				t.Skipf("no second account")
			}
			t.Expect(t.Do(Req{Method: o.method, Path: path, Query: query, Body: nilIfEmpty(body), Token: fresh.token}), 403, "M_TERMS_NOT_SIGNED")
		})
	}
}

// coverage fails the run if an operation of the document had no case at
// all (only when every case was selected).
func (r *Runner) coverage() {
	if len(r.cfg.Only) > 0 || len(r.cfg.Skip) > 0 {
		return
	}
	seen := map[string]bool{}
	for _, res := range r.results {
		seen[res.Op] = true
	}
	for _, o := range r.operations() {
		if !seen[o.id] && r.served(o) {
			r.record(Result{Op: o.id, Case: "(coverage)", Status: Fail, Reason: "no case of the runner exercised this operation"})
		}
	}
}

// htmlAnswers reports whether the document lets the operation answer an
// HTML page (GET submitToken, a link opened in a browser).
func htmlAnswers(o operation) bool {
	for _, code := range []string{"200", "4XX"} {
		if resp := o.op.Responses.Value(code); resp != nil && resp.Value != nil && resp.Value.Content.Get("text/html") != nil {
			return true
		}
	}
	return false
}

func lowerFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToLower(s[:1]) + s[1:]
}

// hostileBodies: malformed input of the kinds fuzzers find must get a 4xx
// Matrix error, never a 5xx or a hang: invalid UTF-8, trailing garbage,
// deep nesting, null for a required field, numbers an integer field cannot
// hold.
func (r *Runner) hostileBodies(ctx context.Context, o operation, path string, tokenFor func(*T) string, tok string, sample map[string]any, schema *openapi3.Schema) {
	raw, _ := json.Marshal(sample)
	send := func(name string, body []byte) {
		r.Case(ctx, o.id, name+": "+r.badStatus(), func(t *T) {
			r.needToken(t, o, tok)
			r.refusedInput(t, o, t.Do(Req{Method: o.method, Path: path, Body: body, Token: tokenFor(t)}), nil)
		})
	}
	send("trailing garbage after the JSON object", append(append([]byte{}, raw...), []byte(` {"x":1}`)...))
	if len(schema.Required) == 0 {
		return
	}
	first := slices.Sorted(slices.Values(schema.Required))[0]
	if _, isString := sample[first].(string); isString {
		bad := bytes.Replace(raw, []byte(`"`+first+`":"`), []byte(`"`+first+`":"\xff\xfe`), 1)
		bad = bytes.ReplaceAll(bad, []byte(`\xff\xfe`), []byte{0xff, 0xfe})
		send("invalid UTF-8 in "+first, bad)
	}
	deep := maps.Clone(sample)
	deep[first] = json.RawMessage(strings.Repeat("[", 5000) + strings.Repeat("]", 5000))
	if b, err := json.Marshal(deep); err == nil {
		send(first+" nested 5000 deep", b)
	}
	null := maps.Clone(sample)
	null[first] = nil
	if b, err := json.Marshal(null); err == nil {
		send(first+" null", b)
	}
	for _, name := range slices.Sorted(maps.Keys(sample)) {
		if p := schema.Properties[name]; p != nil && p.Value != nil && p.Value.Type.Is("integer") {
			with := func(v string) []byte {
				b := maps.Clone(sample)
				b[name] = json.RawMessage(v)
				enc, _ := json.Marshal(b)
				return enc
			}
			send(name+" = 1.5", with("1.5"))
			// 2^64 and 1e400 are integers to the document (no bounds), so a
			// server may take them; it must not fail on them.
			for label, v := range map[string]string{"2^64": "18446744073709551616", "1e400": "1e400"} {
				r.Case(ctx, o.id, name+" = "+label+": no 5xx", func(t *T) {
					r.needToken(t, o, tok)
					if resp := t.Do(Req{Method: o.method, Path: path, Body: with(v), Token: tokenFor(t)}); resp.Status >= 500 {
						t.Errorf("got %s", resp)
					}
				})
			}
		}
	}
}
