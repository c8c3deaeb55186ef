package conformance

import (
	"context"
	"maps"
	"net/url"
	"slices"
	"strings"

	"github.com/sigil-matrix/sigil/cmd/sigil-conformance/internal/mxjson"
)

// api is one version of the identity API.
type api struct {
	name   string // "v1" or "v2"
	prefix string
	v2     bool
}

var (
	apiV1 = api{"v1", "/_matrix/identity/api/v1", false}
	apiV2 = api{"v2", "/_matrix/identity/v2", true}
)

// op names an operation in each version: op(v1name, v2name).
func (a api) op(v1, v2 string) string {
	if a.v2 {
		return v2
	}
	return v1
}

// account is a v2 account registered through the fake homeserver.
type account struct {
	token, user string
}

// all is the whole run, in dependency order.
func (r *Runner) all(ctx context.Context) {
	r.versions(ctx)
	if r.cfg.ShortLifetime > 0 {
		r.expiryRun(ctx)
		return
	}
	r.hashVectors(ctx)
	r.routing(ctx)
	var acct account
	if r.v2 {
		acct = r.accounts(ctx)
	}
	for _, a := range []api{apiV1, apiV2} {
		if (a.v2 && !r.v2) || (!a.v2 && !r.v1) {
			r.skipVersion(a)
			continue
		}
		tok := ""
		if a.v2 {
			if tok = acct.token; tok == "" {
				r.skipVersionWhy(a, "needs a v2 account with the terms accepted, which could not be made (see registerAccount and agreeToTerms)")
				continue
			}
		}
		r.versionFlows(ctx, a, tok, acct)
	}
	r.negatives(ctx, acct.token)
	r.transportCases()
	r.coverage()
}

// versions reads /_matrix/identity/versions: a v1 API is served if an r0
// release is listed, the v2 API if r0.3.0 or any v1.x is.
func (r *Runner) versions(ctx context.Context) {
	ok := r.Step(ctx, "getVersions", "lists the supported versions", func(t *T) {
		resp := t.Do(Req{Method: "GET", Path: "/_matrix/identity/versions"})
		t.Expect(resp, 200, "")
		vs, _ := resp.Obj()["versions"].([]any)
		if len(vs) == 0 {
			t.Fatalf("no versions listed: %s", resp)
		}
		for _, v := range vs {
			s, _ := v.(string)
			r.listed = append(r.listed, s)
			switch {
			case strings.HasPrefix(s, "r0."):
				r.v1 = true
				if s == "r0.3.0" {
					r.v2 = true
				}
			case strings.HasPrefix(s, "v1."):
				r.v2 = true
			}
		}
	})
	if !ok {
		// Without a version list, try both: each case then says what fails.
		r.v1, r.v2 = true, true
	}
}

func (r *Runner) skipVersion(a api) {
	r.skipVersionWhy(a, "the server lists no version of the "+a.name+" API in /_matrix/identity/versions")
}

func (r *Runner) skipVersionWhy(a api, why string) {
	for _, o := range r.operations() {
		if (strings.HasPrefix(o.path, a.prefix+"/") || o.path == a.prefix) && (o.id != "bind" || r.strict()) {
			r.SkipCase(o.id, "all cases", why)
		}
	}
}

// hashVectors checks the runner's own sha256 lookup hash against the
// spec's test vectors before using it on the server's pepper.
func (r *Runner) hashVectors(ctx context.Context) {
	r.Case(ctx, "lookupV2", "sha256 hashes match the spec's test vectors", func(t *T) {
		vectors := []struct{ in, want string }{
			{"alice@example.com email matrixrocks", "4kenr7N9drpCJ4AfalmlGQVsOn3o2RHjkADUpXJWZUc"},
			{"bob@example.com email matrixrocks", "LJwSazmv46n0hlMlsb_iYxI0_HXEqy_yj6Jm636cdT8"},
			{"18005552067 msisdn matrixrocks", "nlo35_T5fzSGZzJApqu8lgIudJvmOQtDaHtr-I4rU7I"},
		}
		for _, v := range vectors {
			f := strings.Fields(v.in)
			if got := mxjson.LookupHash(f[0], f[1], f[2]); got != v.want {
				t.Errorf("%q hashes to %s, want %s", v.in, got, v.want)
			}
		}
	})
}

// routing: unknown routes and wrong methods get Matrix errors.
func (r *Runner) routing(ctx context.Context) {
	for _, p := range []string{"/_matrix/identity/v2/conformance-unknown", "/_matrix/identity/api/v1/conformance-unknown", "/_matrix/identity/conformance-unknown"} {
		r.Case(ctx, "(router)", "unknown route GET "+p+": 404 M_UNRECOGNIZED", func(t *T) {
			r.needV16(t)
			t.ExpectError(t.Do(Req{Method: "GET", Path: p}), []int{404}, "M_UNRECOGNIZED")
		})
	}
	for _, o := range r.operations() {
		if !r.served(o) {
			continue
		}
		path := strings.ReplaceAll(o.path, "{keyId}", "ed25519:0")
		method := "PUT"
		if _, taken := r.doc.Paths.Find(o.path).Operations()[method]; taken {
			method = "DELETE"
		}
		r.Case(ctx, o.id, "wrong method "+method+": 405 M_UNRECOGNIZED", func(t *T) {
			r.needV16(t)
			statuses := []int{405, 404}
			if r.listsAtLeast(6) {
				statuses = []int{405} // v1.6 (MSC3743): 405 for a known endpoint
			}
			t.ExpectError(t.Do(Req{Method: method, Path: path, NoCheck: true}), statuses, "M_UNRECOGNIZED")
		})
		r.Case(ctx, o.id, "CORS pre-flight", func(t *T) { r.preflight(t, o.method, path) })
	}
}

// needV16 skips a routing case for a server that lists no v1.6 or later:
// MSC3743 (v1.6) is what says unknown endpoints and wrong methods answer
// M_UNRECOGNIZED (strict: always, Sigil's choice).
func (r *Runner) needV16(t *T) {
	if !r.strict() && !r.listsAtLeast(6) {
		t.Skipf("answers to unknown endpoints and methods are a rule of v1.6 (MSC3743); the server lists no v1.6 or later")
	}
}

func (r *Runner) versionServed(path string) bool {
	switch {
	case strings.HasPrefix(path, apiV1.prefix):
		return r.v1
	case strings.HasPrefix(path, apiV2.prefix):
		return r.v2
	}
	return true
}

// accounts: terms, registration through OpenID, the account, logout.
func (r *Runner) accounts(ctx context.Context) account {
	urls := []string{}                // [] and not null when there is nothing to accept
	byPolicy := map[string][]string{} // policy → its URLs, one per language
	var acct account
	r.Step(ctx, "getTerms", "lists the policies", func(t *T) {
		resp := t.Do(Req{Method: "GET", Path: apiV2.prefix + "/terms"})
		t.Expect(resp, 200, "")
		policies, _ := resp.Obj()["policies"].(map[string]any)
		for name, p := range policies {
			pm, _ := p.(map[string]any)
			if _, ok := pm["version"].(string); !ok {
				t.Errorf("policy %s has no version", name)
			}
			for lang, d := range pm {
				if lang == "version" {
					continue
				}
				dm, _ := d.(map[string]any)
				u, _ := dm["url"].(string)
				if pu, err := url.Parse(u); err != nil || pu.Host == "" {
					t.Errorf("policy %s/%s: url %q is not absolute", name, lang, u)
				}
				urls = append(urls, u)
				byPolicy[name] = append(byPolicy[name], u)
			}
		}
	})
	r.Step(ctx, "registerAccount", "OpenID token from the homeserver: an access token", func(t *T) {
		acct = r.register(t, "conf-"+r.run+"-v2")
	})
	r.Case(ctx, "registerAccount", "userinfo naming a user of another server: refused", func(t *T) {
		openid := randomString(24)
		r.cfg.Homeserver.AddOpenIDToken(openid, "@mallory:elsewhere.example.org") // spec: MUST match the server asked
		resp := t.Do(Req{Method: "POST", Path: apiV2.prefix + "/account/register", Body: map[string]any{
			"access_token": openid, "token_type": "Bearer", "matrix_server_name": r.cfg.Homeserver.Name, "expires_in": 3600,
		}})
		if resp.Status < 400 || resp.Errcode() == "" {
			t.Errorf("want a Matrix error, got %s", resp)
		}
	})
	r.Case(ctx, "registerAccount", "matrix_server_name that is not a server name: 4xx", func(t *T) {
		resp := t.Do(Req{Method: "POST", Path: apiV2.prefix + "/account/register", Body: map[string]any{
			"access_token": randomString(24), "token_type": "Bearer", "matrix_server_name": r.cfg.Homeserver.Name + "/_matrix/key/v2/server?x=", "expires_in": 3600,
		}})
		t.ExpectError(resp, nil)
	})
	r.Case(ctx, "registerAccount", "OpenID token the homeserver does not know: refused", func(t *T) {
		resp := t.Do(Req{Method: "POST", Path: apiV2.prefix + "/account/register", Body: map[string]any{
			"access_token": "unknown-" + randomString(16), "token_type": "Bearer",
			"matrix_server_name": r.cfg.Homeserver.Name, "expires_in": 3600,
		}})
		if r.strict() {
			t.ExpectError(resp, nil)
		}
		// v2_auth.yaml names no error for it: any Matrix error will do.
		if resp.Status < 400 || resp.Errcode() == "" {
			t.Errorf("want a Matrix error, got %s", resp)
		}
	})
	if len(urls) > 0 {
		r.Case(ctx, "agreeToTerms", "before acceptance: 403 M_TERMS_NOT_SIGNED", func(t *T) {
			t.Need("registerAccount/OpenID token from the homeserver: an access token")
			resp := t.Do(Req{Method: "GET", Path: apiV2.prefix + "/hash_details", Token: acct.token})
			t.Expect(resp, 403, "M_TERMS_NOT_SIGNED")
		})
	} else {
		r.SkipCase("agreeToTerms", "before acceptance: 403 M_TERMS_NOT_SIGNED", "the server lists no policies to accept")
	}
	r.Step(ctx, "agreeToTerms", "accepts every policy", func(t *T) {
		t.Need("registerAccount/OpenID token from the homeserver: an access token")
		resp := t.Do(Req{Method: "POST", Path: apiV2.prefix + "/terms", Token: acct.token, Body: map[string]any{"user_accepts": urls}})
		t.Expect(resp, 200, "")
		resp = t.Do(Req{Method: "GET", Path: apiV2.prefix + "/hash_details", Token: acct.token})
		t.Expect(resp, 200, "")
	})
	r.Case(ctx, "getAccount", "the token's user_id", func(t *T) {
		t.Need("agreeToTerms/accepts every policy")
		resp := t.Do(Req{Method: "GET", Path: apiV2.prefix + "/account", Token: acct.token})
		t.Expect(resp, 200, "")
		if got := resp.Str("user_id"); got != acct.user {
			t.Errorf("user_id %q, want %q", got, acct.user)
		}
	})
	r.Case(ctx, "agreeToTerms", "no access token: 401 M_UNAUTHORIZED", func(t *T) {
		t.Expect(t.Do(Req{Method: "POST", Path: apiV2.prefix + "/terms", Body: map[string]any{"user_accepts": urls}}), 401, "M_UNAUTHORIZED")
	})
	r.Case(ctx, "logout", "the token stops working", func(t *T) {
		// Its own account, with the terms accepted: the token must work
		// before logout, so that after it the only reason to refuse it is
		// the logout (an account without the terms would get 403
		// M_TERMS_NOT_SIGNED whether or not the token was revoked).
		other := r.signedAccount(t, "conf-"+r.run+"-logout")
		t.Expect(t.Do(Req{Method: "GET", Path: apiV2.prefix + "/account", Token: other.token}), 200, "")
		t.Expect(t.Do(Req{Method: "POST", Path: apiV2.prefix + "/account/logout", Token: other.token}), 200, "")
		// §Authentication: an invalid token on a v2 endpoint is 401 M_UNAUTHORIZED.
		t.Expect(t.Do(Req{Method: "GET", Path: apiV2.prefix + "/account", Token: other.token}), 401, "M_UNAUTHORIZED")
		t.Expect(t.Do(Req{Method: "GET", Path: apiV2.prefix + "/hash_details", Token: other.token}), 401, "M_UNAUTHORIZED")
		// v2_auth.yaml: logout of a token the server no longer knows is
		// 401 M_UNKNOWN_TOKEN. §Authentication's M_UNAUTHORIZED for every
		// endpoint contradicts it, so the default profile takes either
		// (as the unknown-token case does); -profile strict wants the yaml's.
		codes := []string{"M_UNKNOWN_TOKEN", "M_UNAUTHORIZED"}
		if r.strict() {
			codes = codes[:1]
		}
		t.ExpectError(t.Do(Req{Method: "POST", Path: apiV2.prefix + "/account/logout", Token: other.token}), []int{401}, codes...)
	})
	r.termsNotSigned(ctx, len(urls) > 0)
	r.termsBookkeeping(ctx, byPolicy)
	return acct
}

// register makes an account for @localpart:<homeserver>.
func (r *Runner) register(t *T, localpart string) account {
	openid := randomString(24)
	user := "@" + localpart + ":" + r.cfg.Homeserver.Name
	r.cfg.Homeserver.AddOpenIDToken(openid, user)
	resp := t.Do(Req{Method: "POST", Path: apiV2.prefix + "/account/register", Body: map[string]any{
		"access_token": openid, "token_type": "Bearer", "matrix_server_name": r.cfg.Homeserver.Name, "expires_in": 3600,
	}})
	t.Expect(resp, 200, "")
	tok := resp.Str("token")
	if tok == "" {
		t.Fatalf("no token in %s", resp)
	}
	return account{token: tok, user: user}
}

// signedAccount registers a new account and accepts every policy GET
// /terms lists: an account of the case's own that every v2 endpoint
// serves, so no case depends on another's token.
func (r *Runner) signedAccount(t *T, localpart string) account {
	a := r.register(t, localpart)
	resp := t.Do(Req{Method: "GET", Path: apiV2.prefix + "/terms"})
	t.Expect(resp, 200, "")
	urls := []string{}
	policies, _ := resp.Obj()["policies"].(map[string]any)
	for _, p := range policies {
		pm, _ := p.(map[string]any)
		for lang, d := range pm {
			if dm, ok := d.(map[string]any); ok && lang != "version" {
				if u, ok := dm["url"].(string); ok {
					urls = append(urls, u)
				}
			}
		}
	}
	t.Expect(t.Do(Req{Method: "POST", Path: apiV2.prefix + "/terms", Token: a.token, Body: map[string]any{"user_accepts": urls}}), 200, "")
	return a
}

// versionFlows runs the flows of one API version.
func (r *Runner) versionFlows(ctx context.Context, a api, tok string, acct account) {
	p := a.prefix
	if a.v2 {
		r.Step(ctx, "getPingV2", "answers {}", func(t *T) { t.Expect(t.Do(Req{Method: "GET", Path: p}), 200, "") })
	} else {
		r.Step(ctx, "getPingV1", "answers {}", func(t *T) { t.Expect(t.Do(Req{Method: "GET", Path: p}), 200, "") })
	}
	mxid := "@conf-" + r.run + "-v1:" + r.cfg.Homeserver.Name
	if a.v2 {
		mxid = acct.user
	}
	f := &flow{r: r, a: a, tok: tok, mxid: mxid}
	f.email(ctx)
	f.requestFormats(ctx)
	f.binding(ctx)
	f.caseFolding(ctx)
	f.keys(ctx)
	f.lookups(ctx)
	f.invites(ctx)
	f.unbind(ctx)
	f.submitGet(ctx)
	f.nextLink(ctx)
	f.msisdn(ctx)
	r.expiryCases(ctx, a, tok, mxid)
}

// expiryRun is the -short-lifetimes run: an account (v2), then the expiry
// cases of each served API version.
func (r *Runner) expiryRun(ctx context.Context) {
	for _, a := range []api{apiV1, apiV2} {
		if (a.v2 && !r.v2) || (!a.v2 && !r.v1) {
			continue
		}
		mxid := "@conf-" + r.run + "-exp:" + r.cfg.Homeserver.Name
		tok := ""
		if a.v2 {
			var acct account
			ok := r.Step(ctx, "registerAccount", "an account with every policy accepted", func(t *T) {
				acct = r.signedAccount(t, "conf-"+r.run+"-exp")
			})
			if !ok {
				continue
			}
			tok, mxid = acct.token, acct.user
		}
		r.expiryCases(ctx, a, tok, mxid)
	}
}

// flow is the state of one version's flows.
type flow struct {
	r    *Runner
	a    api
	tok  string
	mxid string

	s           session // validated, bound to mxid, then unbound by session
	invitee     session // got an invite, then bound (onbind), then unbound by X-Matrix
	inviteToken string
	// inviteeAssoc is the bind answer for the invitee's address.
	inviteeAssoc map[string]any
	ephemeral    string
}

func (f *flow) path(rest string) string { return f.a.prefix + rest }

func (f *flow) op(v1, v2 string) string { return f.a.op(v1, v2) }

// step names, as Need takes them.
func (f *flow) stepName(op, name string) string { return op + "/" + name }

const (
	caseRequest   = "sends a mail with a token"
	caseSubmit    = "token from the mail: success"
	caseBind      = "binds and returns the signed association"
	caseStore     = "stores the invite: token, public keys, redacted display_name"
	caseOnbindSes = "the invitee validates and binds: pending invite delivered by onbind"
)

// termsBookkeeping: acceptances add up over calls, and one language's URL
// accepts its policy in every language (spec: Terms of service API).
func (r *Runner) termsBookkeeping(ctx context.Context, byPolicy map[string][]string) {
	names := slices.Sorted(maps.Keys(byPolicy))
	accept := func(t *T, a account, urls []string) {
		t.Expect(t.Do(Req{Method: "POST", Path: apiV2.prefix + "/terms", Token: a.token, Body: map[string]any{"user_accepts": urls}}), 200, "")
	}
	hashDetails := func(t *T, a account) *Resp {
		return t.Do(Req{Method: "GET", Path: apiV2.prefix + "/hash_details", Token: a.token})
	}
	if len(names) < 2 {
		r.SkipCase("agreeToTerms", "acceptances add up over several calls", "the server lists fewer than two policies")
	} else {
		r.Case(ctx, "agreeToTerms", "acceptances add up over several calls", func(t *T) {
			a := r.register(t, "conf-"+r.run+"-terms-append")
			for i, name := range names {
				t.Expect(hashDetails(t, a), 403, "M_TERMS_NOT_SIGNED")
				accept(t, a, byPolicy[name][:1])
				if i == len(names)-1 {
					t.Expect(hashDetails(t, a), 200, "")
				}
			}
		})
	}
	multi := ""
	for _, name := range names {
		if len(byPolicy[name]) > 1 {
			multi = name
		}
	}
	if multi == "" {
		r.SkipCase("agreeToTerms", "one language's URL accepts the policy", "no policy is offered in two languages")
		return
	}
	r.Case(ctx, "agreeToTerms", "one language's URL accepts the policy", func(t *T) {
		a := r.register(t, "conf-"+r.run+"-terms-lang")
		var urls []string
		for _, name := range names {
			langs := byPolicy[name]
			urls = append(urls, langs[len(langs)-1]) // for multi: not the first language
		}
		accept(t, a, urls)
		t.Expect(hashDetails(t, a), 200, "")
	})
}
