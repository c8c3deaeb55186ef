package conformance

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sigil-matrix/sigil/handlers/apitest"
	"github.com/sigil-matrix/sigil/handlers/identity"
)

// A server that ignores logout's body (the spec gives it none) logs out
// the token of every bad-body logout case. No other case may depend on
// that token: by default nothing fails; under strict only logout's
// bad-body cases do (Sigil refuses such bodies there).
func TestLogoutIgnoringItsBodyFailsNothingElse(t *testing.T) {
	env := sigil(t)
	target, _ := url.Parse(env.URL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/account/logout") {
			_, _ = io.Copy(io.Discard, r.Body)
			r.Body, r.ContentLength = http.NoBody, 0
			r.Header.Del("Content-Type")
		}
		proxy.ServeHTTP(w, r)
	}))
	defer srv.Close()
	for _, profile := range []string{ProfileSpec, ProfileStrict} {
		results := runCfg(t, env, srv.URL, nil, []string{`SMTPUTF8`}, func(c *Config) { c.Profile = profile })
		for _, r := range results {
			if r.Status != Fail {
				continue
			}
			if profile == ProfileStrict && r.Op == "logout" && r.Area == "request validation" {
				continue
			}
			t.Errorf("%s: %s: %s", profile, r.ID(), r.Reason)
		}
	}
}

// With short lifetimes Sigil passes the expiry cases; a server whose
// sessions do not expire within the announced lifetime fails them all.
func TestExpiryCases(t *testing.T) {
	for _, tc := range []struct {
		name     string
		lifetime time.Duration
		wantFail bool
	}{
		{"sessions expire", time.Second, false},
		{"sessions never expire", time.Hour, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := apitest.New(t, func(s *apitest.Setup) {
				s.Config.TokenLifetime, s.Config.SessionLifetime = tc.lifetime, tc.lifetime
				s.Config.Terms = []identity.Policy{{ID: "privacy", Version: "1.0", Languages: map[string]identity.PolicyDoc{
					"en": {Name: "Privacy", URL: "https://id.sigil.test/privacy-1.0-en.html"}}}}
			})
			results := runCfg(t, env, env.URL, nil, nil, func(c *Config) { c.ShortLifetime = time.Second })
			expiry := 0
			for _, r := range results {
				if r.Area != "expiry" {
					if r.Status != Pass {
						t.Errorf("%s: %s %s", r.ID(), r.Status, r.Reason)
					}
					continue
				}
				expiry++
				if (r.Status == Fail) != tc.wantFail || r.Status == Skip {
					t.Errorf("%s: %s %s", r.ID(), r.Status, r.Reason)
				}
			}
			if expiry != 6 {
				t.Errorf("%d expiry cases, want 3 per API version", expiry)
			}
		})
	}
}

// The expected-failures file: a listed failure is XFAIL and does not fail
// the run; a listed pass is XPASS and does; "*" is the only wildcard.
func TestExpectations(t *testing.T) {
	exps, err := ParseExpectations(strings.NewReader(`
# comment
bindV2/binds * # Sydent returns the invites
lookupV2/[0-9a-zA-Z.=_-] # literal brackets
getPingV2/answers {} # fixed since
never/matches # stale
`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseExpectations(strings.NewReader("bindV2/x\n")); err == nil {
		t.Error("an entry without a reason was accepted")
	}
	results := []Result{
		{Op: "bindV2", Case: "binds and returns", Status: Fail, Reason: "x"},
		{Op: "lookupV2", Case: "[0-9a-zA-Z.=_-]", Status: Fail},
		{Op: "lookupV2", Case: "a", Status: Fail},
		{Op: "getPingV2", Case: "answers {}", Status: Pass},
	}
	results = append(results, Result{Op: "bindV2", Case: "binds and passes", Status: Pass})
	results, unused := ApplyExpectations(results, exps)
	// The pattern leaves the pass alone; the exact ID that passes is XPASS.
	want := []Status{XFail, XFail, Fail, XPass, Pass}
	for i, r := range results {
		if r.Status != want[i] {
			t.Errorf("%s: %s, want %s", r.ID(), r.Status, want[i])
		}
	}
	if len(unused) != 1 || unused[0].Pattern != "never/matches" {
		t.Errorf("unused %+v", unused)
	}
	s := Summarize(results)
	if s.OK() || s.XFail != 2 || s.XPass != 1 || len(results) != 5 {
		t.Errorf("summary %+v", s)
	}
	// A pattern that matches no failure is reported.
	pat, _ := ParseExpectations(strings.NewReader("bindV2/* # all of bind\n"))
	if got, _ := ApplyExpectations([]Result{{Op: "bindV2", Case: "x", Status: Pass}}, pat); len(got) != 2 || got[1].Status != XPass {
		t.Errorf("a pattern matching no failure: %+v", got)
	}
	if (Summary{Pass: 3, XFail: 2}).OK() != true {
		t.Error("expected failures alone fail the run")
	}
	var out bytes.Buffer
	if err := WriteSummary(&out, results); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"Failures by cause:", "Expected failures by reason", "Sydent returns the invites", "getPingV2/answers {}"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("summary lacks %q:\n%s", w, out.String())
		}
	}
}

// Every case cites the spec.
func TestEveryCaseCitesTheSpec(t *testing.T) {
	env := sigil(t)
	for _, r := range runProfile(t, env, env.URL, ProfileStrict) {
		if r.Cite == "" || r.Area == "" {
			t.Errorf("%s: cite %q area %q", r.ID(), r.Cite, r.Area)
		}
	}
}

// A step -only left out that fails is reported when a selected case needs
// it: the skip it causes must not turn a broken server into a green run.
func TestHiddenStepFailureIsReported(t *testing.T) {
	env := sigil(t)
	proxy := breaking(t, env, func(req *http.Request, status int, body map[string]any, h http.Header) (int, map[string]any) {
		if req.URL.Path == "/_matrix/identity/v2/3pid/bind" && status == 200 {
			return 500, map[string]any{"errcode": "M_UNKNOWN", "error": "planted"}
		}
		return status, body
	})
	results := run(t, env, proxy, `^lookupV2/sha256: the bound address`)
	var ids []string
	for _, r := range results {
		ids = append(ids, r.ID()+" "+string(r.Status))
	}
	if !slices.Contains(ids, "bindV2/"+caseBind+" fail") || !slices.Contains(ids, "lookupV2/sha256: the bound address maps to its mxid skip") {
		t.Errorf("results %v: want the failed step reported and the case skipped", ids)
	}
}
