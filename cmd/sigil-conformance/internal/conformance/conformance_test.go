package conformance

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"encoding/xml"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/smtp"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/sigil-matrix/sigil/gen"
	"github.com/sigil-matrix/sigil/handlers/apitest"
	"github.com/sigil-matrix/sigil/handlers/identity"
	"github.com/sigil-matrix/sigil/handlers/mail/mailtest"
)

// The runner's tests run it against a real Sigil stack (handlers/apitest:
// the whole HTTP stack, SQLite, an in-process SMTP server), then against
// proxies in front of that stack that break one kind of answer, and check
// that the runner notices.

// mailtestBox reads the test SMTP server apitest mails to.
type mailtestBox struct{ s *mailtest.Server }

func (b mailtestBox) Messages() []Mail {
	var out []Mail
	for _, m := range b.s.Messages() {
		out = append(out, Mail{To: m.To, Subject: m.Subject, Text: m.Text + "\n" + m.HTML})
	}
	return out
}

// smsBox reads apitest's SMS gateway.
type smsBox struct{ g *apitest.SMSGateway }

func (b smsBox) Messages() []Mail {
	var out []Mail
	for _, m := range b.g.Messages() {
		out = append(out, Mail{To: []string{m.To}, Text: m.Text})
	}
	return out
}

// sigil starts a Sigil stack with one policy to accept.
func sigil(t *testing.T) *apitest.Env {
	return apitest.New(t, func(s *apitest.Setup) {
		s.Config.Terms = []identity.Policy{
			{ID: "privacy", Version: "1.0", Languages: map[string]identity.PolicyDoc{
				"en": {Name: "Privacy", URL: "https://id.sigil.test/privacy-1.0-en.html"},
				"fr": {Name: "Confidentialité", URL: "https://id.sigil.test/privacy-1.0-fr.html"}}},
			{ID: "terms", Version: "2.0", Languages: map[string]identity.PolicyDoc{
				"en": {Name: "Terms of service", URL: "https://id.sigil.test/terms-2.0-en.html"}}},
		}
	})
}

func run(t *testing.T, env *apitest.Env, baseURL string, only ...string) []Result {
	t.Helper()
	return runWith(t, env, baseURL, only, nil)
}

func runSkipping(t *testing.T, env *apitest.Env, skip ...string) []Result {
	t.Helper()
	return runWith(t, env, env.URL, []string{`^(msisdn|getValidated3pid|bind3pid)`}, skip)
}

func runProfile(t *testing.T, env *apitest.Env, baseURL, profile string) []Result {
	t.Helper()
	// apitest's in-process SMTP server has no SMTPUTF8; the runner's own
	// sink has, and .ci/conformance -profile strict checks Sigil with it.
	return runCfg(t, env, baseURL, nil, []string{`SMTPUTF8`}, func(c *Config) { c.Profile = profile })
}

func runWith(t *testing.T, env *apitest.Env, baseURL string, only, skip []string) []Result {
	t.Helper()
	return runCfg(t, env, baseURL, only, skip, nil)
}

func runCfg(t *testing.T, env *apitest.Env, baseURL string, only, skip []string, tune func(*Config)) []Result {
	t.Helper()
	hs, err := StartHomeserver("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hs.Close() })
	cfg := Config{BaseURL: baseURL, Mailbox: mailtestBox{env.Mail}, SMS: smsBox{env.SMS}, Homeserver: hs, MailTimeout: 10 * time.Second, Quiet: 300 * time.Millisecond}
	for _, o := range only {
		cfg.Only = append(cfg.Only, regexp.MustCompile(o))
	}
	for _, o := range skip {
		cfg.Skip = append(cfg.Skip, regexp.MustCompile(o))
	}
	if tune != nil {
		tune(&cfg)
	}
	results, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return results
}

func TestSigilPasses(t *testing.T) {
	for _, profile := range []string{ProfileSpec, ProfileStrict} {
		t.Run(profile, func(t *testing.T) { sigilPasses(t, profile) })
	}
}

func sigilPasses(t *testing.T, profile string) {
	env := sigil(t)
	results := runProfile(t, env, env.URL, profile)
	var table bytes.Buffer
	if err := WriteTable(&table, results); err != nil {
		t.Fatal(err)
	}
	s := Summarize(results)
	if s.Fail > 0 || s.Pass < 200 {
		t.Errorf("against Sigil: %v\n%s", s, table.String())
	}
	// Every operation of the document was exercised, with at least one pass.
	passed := map[string]bool{}
	for _, r := range results {
		if r.Status == Pass {
			passed[r.Op] = true
		}
	}
	rr := &Runner{}
	rr.doc, _ = docForTest()
	for _, o := range rr.operations() {
		if !passed[o.id] && (o.id != "bind" || profile == ProfileStrict) {
			t.Errorf("no passing case for %s", o.id)
		}
	}
	t.Logf("\n%s", table.String())
}

// breaking is a reverse proxy to env that lets corrupt rewrite answers.
func breaking(t *testing.T, env *apitest.Env, corrupt func(req *http.Request, status int, body map[string]any, h http.Header) (int, map[string]any)) string {
	target, _ := url.Parse(env.URL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ModifyResponse = func(resp *http.Response) error {
		raw, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		var body map[string]any
		if json.Unmarshal(raw, &body) == nil {
			status, nb := corrupt(resp.Request, resp.StatusCode, body, resp.Header)
			if nb != nil {
				raw, _ = json.Marshal(nb)
			}
			resp.StatusCode = status
		}
		resp.Body = io.NopCloser(bytes.NewReader(raw))
		resp.ContentLength = int64(len(raw))
		resp.Header.Set("Content-Length", strconv.Itoa(len(raw)))
		return nil
	}
	srv := httptest.NewServer(proxy)
	t.Cleanup(srv.Close)
	return srv.URL
}

// failed returns the failed results whose op/case matches pattern.
func failed(results []Result, pattern string) []Result {
	re := regexp.MustCompile(pattern)
	var out []Result
	for _, r := range results {
		if r.Status == Fail && re.MatchString(r.Op+"/"+r.Case) {
			out = append(out, r)
		}
	}
	return out
}

func TestCatchesBrokenServers(t *testing.T) {
	env := sigil(t)
	tests := []struct {
		name    string
		only    []string
		corrupt func(req *http.Request, status int, body map[string]any, h http.Header) (int, map[string]any)
		// want: the cases that must fail (pattern) and a word of their reason.
		want, reason string
	}{
		{
			name: "wrong shape: hash_details without algorithms",
			only: []string{`^getHashDetails/a pepper`},
			corrupt: func(req *http.Request, status int, body map[string]any, h http.Header) (int, map[string]any) {
				if strings.HasSuffix(req.URL.Path, "/hash_details") {
					delete(body, "algorithms")
				}
				return status, body
			},
			want: `^getHashDetails/a pepper`, reason: "does not conform to the document",
		},
		{
			name: "wrong shape: versions as a string",
			only: []string{`^getVersions/`},
			corrupt: func(req *http.Request, status int, body map[string]any, h http.Header) (int, map[string]any) {
				if strings.HasSuffix(req.URL.Path, "/versions") {
					body["versions"] = "v1.1"
				}
				return status, body
			},
			want: `^getVersions/`, reason: "does not conform",
		},
		{
			name: "wrong status: 200 for a missing parameter",
			only: []string{`^lookupV1/missing query parameter`},
			corrupt: func(req *http.Request, status int, body map[string]any, h http.Header) (int, map[string]any) {
				if strings.HasSuffix(req.URL.Path, "/api/v1/lookup") && status == 400 {
					return 200, map[string]any{}
				}
				return status, body
			},
			want: `^lookupV1/missing query parameter (medium|address)`, reason: "want a 4xx error",
		},
		{
			name: "wrong status: 500 for an unknown key",
			only: []string{`^getPubKeyV2/unknown key`},
			corrupt: func(req *http.Request, status int, body map[string]any, h http.Header) (int, map[string]any) {
				if status == 404 {
					return 500, body
				}
				return status, body
			},
			want: `^getPubKeyV2/unknown key`, reason: "500",
		},
		{
			name: "bad signature on the bound association",
			only: []string{`^bindV2/binds`},
			corrupt: func(req *http.Request, status int, body map[string]any, h http.Header) (int, map[string]any) {
				if strings.HasSuffix(req.URL.Path, "/3pid/bind") && status == 200 {
					for _, e := range body["signatures"].(map[string]any) {
						for id, sig := range e.(map[string]any) {
							b := []byte(sig.(string)) // another valid signature's worth of base64
							b[0] = map[bool]byte{true: 'B', false: 'A'}[b[0] == 'A']
							e.(map[string]any)[id] = string(b)
						}
					}
				}
				return status, body
			},
			want: `^bindV2/binds`, reason: "signature does not verify",
		},
		{
			name: "bad signature from sign-ed25519",
			only: []string{`^blindlySignStuff/signs`},
			corrupt: func(req *http.Request, status int, body map[string]any, h http.Header) (int, map[string]any) {
				if strings.HasSuffix(req.URL.Path, "/sign-ed25519") && status == 200 {
					for _, e := range body["signatures"].(map[string]any) {
						for id := range e.(map[string]any) {
							e.(map[string]any)[id] = "AAAA" + strings.Repeat("B", 82)
						}
					}
				}
				return status, body
			},
			want: `^blindlySignStuff/signs`, reason: "does not verify",
		},
		{
			// A JSON answer labelled text/plain fails the operation's
			// transport case, not its logic case ("answers {}" passes).
			name: "wrong content type on a success",
			only: []string{`^getPingV2/`},
			corrupt: func(req *http.Request, status int, body map[string]any, h http.Header) (int, map[string]any) {
				if req.URL.Path == "/_matrix/identity/v2" && req.Method == "GET" {
					h.Set("Content-Type", "text/plain")
				}
				return status, body
			},
			want: `^getPingV2/JSON answers carry Content-Type`, reason: "text/plain",
		},
		{
			name: "missing errcode",
			only: []string{`^emailRequestTokenV2/missing email`, `^bulkLookup/body that is not JSON`},
			corrupt: func(req *http.Request, status int, body map[string]any, h http.Header) (int, map[string]any) {
				delete(body, "errcode")
				return status, body
			},
			want: `^(emailRequestTokenV2/missing email|bulkLookup/body that is not JSON)`, reason: "errcode",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			results := run(t, env, breaking(t, env, tc.corrupt), tc.only...)
			got := failed(results, tc.want)
			if len(got) == 0 {
				var table bytes.Buffer
				_ = WriteTable(&table, results)
				t.Fatalf("no failure matching %s:\n%s", tc.want, table.String())
			}
			for _, r := range got {
				if !strings.Contains(r.Reason, tc.reason) {
					t.Errorf("%s/%s failed for %q, want a reason with %q", r.Op, r.Case, r.Reason, tc.reason)
				}
			}
			// Nothing that was not broken fails.
			for _, r := range results {
				if r.Status == Fail && !regexp.MustCompile(tc.want).MatchString(r.Op+"/"+r.Case) {
					t.Errorf("unexpected failure %s/%s: %s", r.Op, r.Case, r.Reason)
				}
			}
		})
	}
}

func docForTest() (*openapi3.T, error) { return gen.GetSwagger() }

// A version the server does not list is skipped, with the reason.
func TestSkipsUnlistedVersions(t *testing.T) {
	env := sigil(t)
	url := breaking(t, env, func(req *http.Request, status int, body map[string]any, _ http.Header) (int, map[string]any) {
		if strings.HasSuffix(req.URL.Path, "/versions") {
			body["versions"] = []string{"v1.1", "v1.18"} // no r0.x: no v1 API
		}
		return status, body
	})
	results := run(t, env, url, `^getPing`, `^lookupV1/`)
	got := map[string]Result{}
	for _, r := range results {
		got[r.Op+"/"+r.Case] = r
	}
	for _, key := range []string{"getPingV1/all cases", "lookupV1/all cases"} {
		if r := got[key]; r.Status != Skip || !strings.Contains(r.Reason, "lists no version of the v1 API") {
			t.Errorf("%s: %+v, want a skip naming the versions", key, r)
		}
	}
	if r := got["getPingV2/answers {}"]; r.Status != Pass {
		t.Errorf("v2 ping: %+v", r)
	}
	if len(failed(results, ".")) > 0 {
		t.Errorf("failures: %+v", failed(results, "."))
	}
}

// -only picks cases (the steps they need still run, unreported); -skip
// drops them.
func TestOnlyAndSkip(t *testing.T) {
	env := sigil(t)
	results := run(t, env, env.URL, `^bindV2/binds and returns`)
	if len(results) != 1 || results[0].Op != "bindV2" || results[0].Status != Pass {
		t.Fatalf("-only ^bindV2/binds and returns: %+v", results)
	}
	// -skip of a step: not run; what needs it is skipped, saying why.
	results = runSkipping(t, env, `code from the SMS`)
	dependents := 0
	for _, r := range results {
		if r.Case == "validated phone: medium msisdn, E.164 address without +" {
			dependents++
			if r.Status != Skip || !strings.Contains(r.Reason, "excluded by -skip") {
				t.Errorf("%s/%s: %s %s, want a skip naming -skip", r.Op, r.Case, r.Status, r.Reason)
			}
		}
		if strings.Contains(r.Case, "code from the SMS") || r.Status == Fail {
			t.Errorf("%s/%s %s: %s", r.Op, r.Case, r.Status, r.Reason)
		}
	}
	if dependents != 2 {
		t.Errorf("%d getValidated3pid phone cases, want 2 (v1 and v2)", dependents)
	}
	r := &Runner{cfg: Config{Only: []*regexp.Regexp{regexp.MustCompile(`^lookup`)}, Skip: []*regexp.Regexp{regexp.MustCompile(`pepper`)}}}
	for key, want := range map[string]bool{"lookupV2/sha256": true, "lookupV2/wrong pepper": false, "bindV2/binds": false} {
		op, name, _ := strings.Cut(key, "/")
		if got := r.selected(op, name); got != want {
			t.Errorf("selected(%s) = %v, want %v", key, got, want)
		}
	}
}

func TestReports(t *testing.T) {
	results := []Result{
		{Op: "getPingV2", Case: "answers {}", Status: Pass, Elapsed: time.Millisecond},
		{Op: "bindV2", Case: "binds", Status: Fail, Reason: "signature <does not> verify"},
		{Op: "msisdnSubmitTokenPost", Case: "token", Status: Skip, Reason: "no SMS sink"},
	}
	var table, junit bytes.Buffer
	if err := WriteTable(&table, results); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"OPERATION", "bindV2", "FAIL", "signature <does not> verify", "3 cases: 1 passed, 1 failed, 1 skipped"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	if err := WriteJUnit(&junit, "suite", results); err != nil {
		t.Fatal(err)
	}
	var parsed junitSuites
	if err := xml.Unmarshal(junit.Bytes(), &parsed); err != nil {
		t.Fatalf("JUnit XML does not parse: %v\n%s", err, junit.String())
	}
	s := parsed.Suites[0]
	if s.Tests != 3 || s.Failures != 1 || s.Skipped != 1 || s.Cases[1].Failure == nil || !strings.HasPrefix(s.Cases[1].Failure.Text, "signature <does not> verify") || s.Cases[2].Skipped == nil {
		t.Errorf("JUnit %+v", s)
	}
}

// The SMTP sink takes mail as an SMTP client sends it (multipart, quoted-
// printable, AUTH) and the default pattern finds the token in it.
func TestSMTPSinkFindsToken(t *testing.T) {
	sink, err := StartSMTPSink("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	msg := "From: is@example.org\r\nTo: alice@example.org\r\nSubject: =?utf-8?q?V=C3=A9rify?=\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" +
		"Open https://id.example.org/_matrix/identity/api/v1/validate/email/submitToken?token=3Dabc=\r\n123&sid=3D1\r\n" +
		"--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<a href=\"x?token=abc123&amp;sid=1\">link</a>\r\n--b--\r\n"
	auth := smtp.PlainAuth("", "user", "pass", sink.Host)
	if err := smtp.SendMail(sink.Addr(), auth, "is@example.org", []string{"alice@example.org"}, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	got := sink.Messages()
	if len(got) != 1 || got[0].To[0] != "alice@example.org" || got[0].Subject != "Vérify" {
		t.Fatalf("messages %+v", got)
	}
	m := regexp.MustCompile(DefaultTokenPattern).FindStringSubmatch(got[0].Text)
	if m == nil || m[1] != "abc123" {
		t.Errorf("token %v in %q", m, got[0].Text)
	}
}

// Tiny servers that get everything wrong: the run ends (no hang, no
// panic), every operation has failures, nothing passes by accident.
func TestTinyBrokenServers(t *testing.T) {
	for name, h := range map[string]http.HandlerFunc{
		"200 {} to everything": func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{}`))
		},
		"HTML 500 to everything": func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(500)
			_, _ = w.Write([]byte(`<h1>oops</h1>`))
		},
	} {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(h)
			defer srv.Close()
			hs, err := StartHomeserver("127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer hs.Close()
			results, err := Run(context.Background(), Config{BaseURL: srv.URL, Mailbox: emptyBox{}, SMS: emptyBox{},
				Homeserver: hs, MailTimeout: 50 * time.Millisecond, Quiet: time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			s := Summarize(results)
			if s.Fail < 100 {
				t.Errorf("only %v", s)
			}
			failedOps := map[string]bool{}
			for _, r := range results {
				if r.Status == Fail {
					failedOps[r.Op] = true
				}
			}
			rr := &Runner{}
			rr.doc, _ = docForTest()
			for _, o := range rr.operations() {
				if !failedOps[o.id] && o.id != "bind" { // bind: strict profile only
					t.Errorf("nothing of %s failed", o.id)
				}
			}
		})
	}
}

type emptyBox struct{}

func (emptyBox) Messages() []Mail { return nil }

// A server with no policies: the terms cases say why they did not run, and
// everything else passes.
func TestSigilWithoutTerms(t *testing.T) {
	env := apitest.New(t)
	results := run(t, env, env.URL)
	skipped := 0
	for _, r := range results {
		switch {
		case r.Status == Fail:
			t.Errorf("%s/%s: %s", r.Op, r.Case, r.Reason)
		case r.Status == Skip && strings.Contains(r.Reason, "polic"):
			skipped++
		}
	}
	if skipped < 3 {
		t.Errorf("%d terms cases skipped for want of policies, want at least 3", skipped)
	}
}

// A server whose sign-ed25519 signs encoding/json's output instead of
// canonical JSON (which escapes <, >, & and U+2028): plain user IDs still
// verify, the case built to tell the two apart fails.
func TestCatchesNonCanonicalSigning(t *testing.T) {
	env := sigil(t)
	target, _ := url.Parse(env.URL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/sign-ed25519") {
			proxy.ServeHTTP(w, r)
			return
		}
		raw, _ := io.ReadAll(r.Body)
		rec := httptest.NewRecorder()
		r.Body = io.NopCloser(bytes.NewReader(raw))
		proxy.ServeHTTP(rec, r)
		var req struct {
			PrivateKey string `json:"private_key"`
		}
		_ = json.Unmarshal(raw, &req)
		var real map[string]any
		if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &real) != nil {
			w.WriteHeader(rec.Code)
			_, _ = w.Write(rec.Body.Bytes())
			return
		}
		seed, _ := base64.RawStdEncoding.DecodeString(req.PrivateKey)
		obj := map[string]any{"mxid": real["mxid"], "sender": real["sender"], "token": real["token"]}
		notCanonical, _ := json.Marshal(obj) // sorted keys, but \u003c, \u0026, \u2028
		obj["signatures"] = map[string]any{apitest.ServerName: map[string]any{
			"ed25519:0": base64.RawStdEncoding.EncodeToString(ed25519.Sign(ed25519.NewKeyFromSeed(seed), notCanonical))}}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(obj)
	}))
	defer srv.Close()
	results := run(t, env, srv.URL, `^blindlySignStuff/`)
	got := map[string]Result{}
	for _, r := range results {
		got[r.Case] = r
	}
	if r := got["signs {mxid, sender, token} with the given key"]; r.Status != Pass {
		t.Errorf("plain user ID: %+v, want a pass (encoding/json and canonical JSON agree there)", r)
	}
	if r := got["canonical JSON: non-ASCII, <>& and U+2028 in the signed mxid"]; r.Status != Fail || !strings.Contains(r.Reason, "does not verify") {
		t.Errorf("canonical JSON case: %+v, want a failure to verify", r)
	}
}
