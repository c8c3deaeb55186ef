package conformance

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"maps"
	"math/big"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/sigil-matrix/sigil/handlers/signing"
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
	r.corsEverywhere()
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
		if strings.HasPrefix(o.path, a.prefix+"/") || o.path == a.prefix {
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
			if got := signing.LookupHash(f[0], f[1], f[2]); got != v.want {
				t.Errorf("%q hashes to %s, want %s", v.in, got, v.want)
			}
		}
	})
}

// routing: unknown routes and wrong methods get Matrix errors.
func (r *Runner) routing(ctx context.Context) {
	for _, p := range []string{"/_matrix/identity/v2/conformance-unknown", "/_matrix/identity/api/v1/conformance-unknown", "/_matrix/identity/conformance-unknown"} {
		r.Case(ctx, "(router)", "unknown route GET "+p+": 404 M_UNRECOGNIZED", func(t *T) {
			t.ExpectError(t.Do(Req{Method: "GET", Path: p}), []int{404}, "M_UNRECOGNIZED")
		})
	}
	for _, o := range r.operations() {
		if !r.versionServed(o.path) {
			continue
		}
		path := strings.ReplaceAll(o.path, "{keyId}", "ed25519:0")
		method := "PUT"
		if _, taken := r.doc.Paths.Find(o.path).Operations()[method]; taken {
			method = "DELETE"
		}
		r.Case(ctx, o.id, "wrong method "+method+": 405 M_UNRECOGNIZED", func(t *T) {
			statuses := []int{405, 404}
			if r.listsAtLeast(6) {
				statuses = []int{405} // v1.6 (MSC3743): 405 for a known endpoint
			}
			t.ExpectError(t.Do(Req{Method: method, Path: path, NoCheck: true}), statuses, "M_UNRECOGNIZED")
		})
		r.Case(ctx, o.id, "CORS pre-flight", func(t *T) { r.preflight(t, o.method, path) })
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
	var urls []string
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
	r.Case(ctx, "registerAccount", "OpenID token the homeserver does not know: 4xx", func(t *T) {
		resp := t.Do(Req{Method: "POST", Path: apiV2.prefix + "/account/register", Body: map[string]any{
			"access_token": "unknown-" + randomString(16), "token_type": "Bearer",
			"matrix_server_name": r.cfg.Homeserver.Name, "expires_in": 3600,
		}})
		t.ExpectError(resp, nil)
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
		other := r.register(t, "conf-"+r.run+"-logout")
		t.Expect(t.Do(Req{Method: "POST", Path: apiV2.prefix + "/account/logout", Token: other.token}), 200, "")
		t.Expect(t.Do(Req{Method: "GET", Path: apiV2.prefix + "/account", Token: other.token}), 401, "M_UNAUTHORIZED")
	})
	if len(urls) > 0 {
		r.termsNotSigned(ctx)
		r.termsBookkeeping(ctx, byPolicy)
	}
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

// session is an email validation session.
type session struct {
	addr, secret, sid, token string
	mails                    int // mails received for addr so far
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
	ephemeral   string
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

func (f *flow) requestToken(t *T, s *session, attempt int) {
	resp := t.Do(Req{Method: "POST", Path: f.path("/validate/email/requestToken"), Token: f.tok,
		Body: map[string]any{"client_secret": s.secret, "email": s.addr, "send_attempt": attempt}})
	t.Expect(resp, 200, "")
	sid := resp.Str("sid")
	if sid == "" {
		t.Fatalf("no sid in %s", resp)
	}
	s.sid = sid
}

// newSession requests a token for a new address and reads it from the mail.
func (f *flow) newSession(t *T, label string) session {
	s := session{addr: fmt.Sprintf("conf-%s-%s-%s@example.org", f.r.run, f.a.name, label), secret: "conf-" + randomString(12)}
	f.requestToken(t, &s, 1)
	f.readToken(t, &s)
	return s
}

func (f *flow) readToken(t *T, s *session) {
	m := f.r.waitMail(t, s.addr, s.mails+1)
	s.mails++
	got := f.r.cfg.TokenPattern.FindStringSubmatch(m.Text)
	if got == nil {
		t.Fatalf("no token matching %q in the mail to %s:\n%s", f.r.cfg.TokenPattern, s.addr, short(m.Text, 600))
	}
	s.token = got[len(got)-1]
	if tok, err := url.QueryUnescape(s.token); err == nil {
		s.token = tok
	}
}

func (f *flow) submit(t *T, s session, token string) *Resp {
	return t.Do(Req{Method: "POST", Path: f.path("/validate/email/submitToken"), Token: f.tok,
		Body: map[string]any{"sid": s.sid, "client_secret": s.secret, "token": token}})
}

func (f *flow) email(ctx context.Context) {
	r := f.r
	reqOp, subOp, valOp := f.op("emailRequestToken", "emailRequestTokenV2"), f.op("emailSubmitTokenPost", "emailSubmitTokenPostV2"), f.op("getValidated3pid", "getValidated3pidV2")
	bindOp := f.op("bind3pid", "bindV2")
	stepReq := f.stepName(reqOp, caseRequest)
	r.Step(ctx, reqOp, caseRequest, func(t *T) { f.s = f.newSession(t, "a") })
	r.Case(ctx, reqOp, "same send_attempt again: same sid, no new mail", func(t *T) {
		t.Need(stepReq)
		again := f.s
		f.requestToken(t, &again, 1)
		if again.sid != f.s.sid {
			t.Errorf("sid %q, want the first request's %q", again.sid, f.s.sid)
		}
		time.Sleep(r.cfg.Quiet)
		if n := r.mailCount(f.s.addr); n != f.s.mails {
			t.Errorf("%d mails to %s after a repeated send_attempt, want %d", n, f.s.addr, f.s.mails)
		}
	})
	r.Step(ctx, reqOp, "higher send_attempt: the mail is sent again", func(t *T) {
		t.Need(stepReq)
		f.requestToken(t, &f.s, 2)
		f.readToken(t, &f.s)
	})
	r.Case(ctx, reqOp, "lower send_attempt after a higher one: same sid, no new mail", func(t *T) {
		t.Need(f.stepName(reqOp, "higher send_attempt: the mail is sent again"))
		again := f.s
		f.requestToken(t, &again, 1)
		if again.sid != f.s.sid {
			t.Errorf("sid %q, want %q", again.sid, f.s.sid)
		}
		time.Sleep(r.cfg.Quiet)
		if n := r.mailCount(f.s.addr); n != f.s.mails {
			t.Errorf("%d mails to %s, want %d", n, f.s.addr, f.s.mails)
		}
	})
	r.Case(ctx, valOp, "session not validated yet: 400 M_SESSION_NOT_VALIDATED", func(t *T) {
		t.Need(stepReq)
		resp := t.Do(Req{Method: "GET", Path: f.path("/3pid/getValidated3pid"), Token: f.tok,
			Query: url.Values{"sid": {f.s.sid}, "client_secret": {f.s.secret}}})
		t.Expect(resp, 400, "M_SESSION_NOT_VALIDATED")
	})
	r.Case(ctx, bindOp, "session not validated yet: 400 M_SESSION_NOT_VALIDATED", func(t *T) {
		t.Need(stepReq)
		resp := t.Do(Req{Method: "POST", Path: f.path("/3pid/bind"), Token: f.tok,
			Body: map[string]any{"sid": f.s.sid, "client_secret": f.s.secret, "mxid": f.mxid}})
		t.Expect(resp, 400, "M_SESSION_NOT_VALIDATED")
	})
	wrongToken := "wrong token: 4xx"
	if f.a.v2 && r.listsAtLeast(18) {
		wrongToken = "wrong token: 400 M_TOKEN_INCORRECT (v1.18)"
	}
	r.Case(ctx, subOp, wrongToken, func(t *T) {
		t.Need(stepReq)
		resp := f.submit(t, f.s, "wrong"+randomString(6))
		if f.a.v2 && r.listsAtLeast(18) {
			t.Expect(resp, 400, "M_TOKEN_INCORRECT")
		}
		t.ExpectError(resp, nil)
	})
	r.Case(ctx, subOp, "unknown sid: 4xx", func(t *T) {
		t.Need(stepReq)
		t.ExpectError(f.submit(t, session{sid: "unknown" + randomString(8), secret: f.s.secret}, f.s.token), nil)
	})
	r.Step(ctx, subOp, caseSubmit, func(t *T) {
		t.Need(stepReq, f.stepName(reqOp, "higher send_attempt: the mail is sent again"))
		resp := f.submit(t, f.s, f.s.token)
		t.Expect(resp, 200, "")
		if resp.Obj()["success"] != true {
			t.Errorf("success is not true: %s", resp)
		}
	})
	stepSub := f.stepName(subOp, caseSubmit)
	r.Case(ctx, valOp, "validated session: medium, address, validated_at", func(t *T) {
		t.Need(stepSub)
		resp := t.Do(Req{Method: "GET", Path: f.path("/3pid/getValidated3pid"), Token: f.tok,
			Query: url.Values{"sid": {f.s.sid}, "client_secret": {f.s.secret}}})
		t.Expect(resp, 200, "")
		if resp.Str("medium") != "email" || resp.Str("address") != f.s.addr {
			t.Errorf("got %s, want medium email and address %s", resp, f.s.addr)
		}
		at, err := jsonInt(resp.Obj()["validated_at"])
		if d := time.Since(time.UnixMilli(at)); err != nil || d > time.Hour || d < -time.Hour {
			t.Errorf("validated_at %v is not a time of this run in milliseconds", resp.Obj()["validated_at"])
		}
	})
	r.Case(ctx, valOp, "wrong client_secret: 404 M_NO_VALID_SESSION", func(t *T) {
		t.Need(stepSub)
		resp := t.Do(Req{Method: "GET", Path: f.path("/3pid/getValidated3pid"), Token: f.tok,
			Query: url.Values{"sid": {f.s.sid}, "client_secret": {"wrong" + randomString(8)}}})
		t.Expect(resp, 404, "M_NO_VALID_SESSION")
	})
	r.Case(ctx, valOp, "unknown sid: 404 M_NO_VALID_SESSION", func(t *T) {
		resp := t.Do(Req{Method: "GET", Path: f.path("/3pid/getValidated3pid"), Token: f.tok,
			Query: url.Values{"sid": {"unknown" + randomString(8)}, "client_secret": {"conf-secret"}}})
		t.Expect(resp, 404, "M_NO_VALID_SESSION")
	})
}

// bind sends a bind for s to mxid at path and checks the signed association.
func (f *flow) bind(t *T, path string, s session, mxid string) map[string]any {
	resp := t.Do(Req{Method: "POST", Path: f.path(path), Token: f.tok,
		Body: map[string]any{"sid": s.sid, "client_secret": s.secret, "mxid": mxid}})
	t.Expect(resp, 200, "")
	assoc := resp.Obj()
	f.r.checkAssociation(t, assoc, s.addr, mxid)
	return assoc
}

func (f *flow) binding(ctx context.Context) {
	r := f.r
	bindOp := f.op("bind3pid", "bindV2")
	stepSub := f.stepName(f.op("emailSubmitTokenPost", "emailSubmitTokenPostV2"), caseSubmit)
	r.Case(ctx, f.op("lookupV1", "lookupV2"), "validated, not bound yet: lookup finds nothing", func(t *T) {
		t.Need(stepSub)
		f.notPublishedBeforeBind(t)
	})
	r.Step(ctx, bindOp, caseBind, func(t *T) {
		t.Need(stepSub)
		f.bind(t, "/3pid/bind", f.s, f.mxid)
	})
	if !f.a.v2 {
		r.Case(ctx, "bind", "the /bind alias binds the same session again", func(t *T) {
			t.Need(stepSub)
			f.bind(t, "/bind", f.s, f.mxid)
		})
	}
	r.Case(ctx, bindOp, "wrong client_secret: 404 M_NO_VALID_SESSION", func(t *T) {
		t.Need(stepSub)
		resp := t.Do(Req{Method: "POST", Path: f.path("/3pid/bind"), Token: f.tok,
			Body: map[string]any{"sid": f.s.sid, "client_secret": "wrong" + randomString(8), "mxid": f.mxid}})
		t.Expect(resp, 404, "M_NO_VALID_SESSION")
	})
	if f.a.v2 {
		r.Case(ctx, bindOp, "mxid of another user than the token's: 403", func(t *T) {
			t.Need(stepSub)
			resp := t.Do(Req{Method: "POST", Path: f.path("/3pid/bind"), Token: f.tok,
				Body: map[string]any{"sid": f.s.sid, "client_secret": f.s.secret, "mxid": "@someone-else:" + r.cfg.Homeserver.Name}})
			t.ExpectError(resp, []int{403})
		})
	}
}

// checkAssociation verifies a signed association: its fields, and its
// signature by the keys the server publishes.
func (r *Runner) checkAssociation(t *T, assoc map[string]any, addr, mxid string) {
	r.checkAssociationOf(t, assoc, "email", addr, mxid)
}

func (r *Runner) checkAssociationOf(t *T, assoc map[string]any, medium, addr, mxid string) {
	if assoc["medium"] != medium || assoc["address"] != addr || assoc["mxid"] != mxid {
		t.Errorf("association names %v %v %v, want %s %s %s", assoc["medium"], assoc["address"], assoc["mxid"], medium, addr, mxid)
	}
	for _, k := range []string{"ts", "not_before", "not_after"} {
		if _, err := jsonInt(assoc[k]); err != nil {
			t.Errorf("%s: %v", k, err)
		}
	}
	nb, _ := jsonInt(assoc["not_before"])
	na, _ := jsonInt(assoc["not_after"])
	ts, _ := jsonInt(assoc["ts"])
	if na <= nb || ts < nb || ts > na {
		t.Errorf("want not_before %d <= ts %d <= not_after %d, not_before < not_after", nb, ts, na)
	}
	if d := time.Since(time.UnixMilli(ts)); d > time.Hour || d < -time.Hour {
		t.Errorf("ts %d is %v away from now: not milliseconds since the epoch?", ts, d.Round(time.Second))
	}
	r.verifyServerSigned(t, assoc)
}

// verifyServerSigned checks obj's signature by the server under test,
// learning its name and fetching its published keys on first use.
func (r *Runner) verifyServerSigned(t *T, obj map[string]any) {
	sigs, _ := obj["signatures"].(map[string]any)
	if r.serverName == "" {
		if len(sigs) != 1 {
			t.Fatalf("cannot tell the server's name from signatures %v (set -server-name)", obj["signatures"])
		}
		for name := range sigs {
			r.serverName = name
		}
	}
	ent, _ := sigs[r.serverName].(map[string]any)
	if len(ent) == 0 {
		t.Fatalf("not signed by %s: signatures %v", r.serverName, obj["signatures"])
	}
	for id := range ent {
		if _, known := r.keys[id]; !known && strings.HasPrefix(id, "ed25519:") {
			r.fetchKey(t, id)
		}
	}
	if err := signing.VerifyJSON(obj, r.serverName, r.keys); err != nil {
		t.Fatalf("signature does not verify with the published keys (canonical JSON, ed25519): %v", err)
	}
}

func (r *Runner) fetchKey(t *T, id string) {
	resp := t.Do(Req{Method: "GET", Path: r.keyPrefix() + "/pubkey/" + url.PathEscape(id)})
	t.Expect(resp, 200, "")
	pub, err := signing.DecodeBase64(resp.Str("public_key"))
	if err != nil || len(pub) != ed25519.PublicKeySize {
		t.Fatalf("public key %q of %s is not unpadded base64 ed25519", resp.Str("public_key"), id)
	}
	r.keys[id] = ed25519.PublicKey(pub)
}

func (r *Runner) keyPrefix() string {
	if r.v2 {
		return apiV2.prefix
	}
	return apiV1.prefix
}

func (f *flow) keys(ctx context.Context) {
	r := f.r
	stepBind := f.stepName(f.op("bind3pid", "bindV2"), caseBind)
	pubOp, validOp := f.op("getPubKey", "getPubKeyV2"), f.op("isPubKeyValid", "isPubKeyValidV2")
	var longTerm string
	r.Case(ctx, pubOp, "the signing key of the association", func(t *T) {
		t.Need(stepBind)
		for id, want := range r.keys {
			resp := t.Do(Req{Method: "GET", Path: f.path("/pubkey/" + url.PathEscape(id))})
			t.Expect(resp, 200, "")
			if got := resp.Str("public_key"); got != signing.EncodeBase64(want) {
				t.Errorf("%s: public_key %q, want %q", id, got, signing.EncodeBase64(want))
			}
			longTerm = resp.Str("public_key")
		}
	})
	r.Case(ctx, pubOp, "unknown key ID: 404 M_NOT_FOUND", func(t *T) {
		t.Expect(t.Do(Req{Method: "GET", Path: f.path("/pubkey/ed25519:conformance" + randomString(4))}), 404, "M_NOT_FOUND")
	})
	r.Case(ctx, validOp, "the published key is valid", func(t *T) {
		t.Need(stepBind)
		if longTerm == "" {
			for _, k := range r.keys {
				longTerm = signing.EncodeBase64(k)
			}
		}
		f.expectValid(t, "/pubkey/isvalid", longTerm, true)
	})
	r.Case(ctx, validOp, "a random key is not valid", func(t *T) {
		f.expectValid(t, "/pubkey/isvalid", randomKey(), false)
	})
}

func (f *flow) expectValid(t *T, path, key string, want bool) {
	resp := t.Do(Req{Method: "GET", Path: f.path(path), Query: url.Values{"public_key": {key}}})
	t.Expect(resp, 200, "")
	if resp.Obj()["valid"] != want {
		t.Errorf("valid: got %s, want %v", resp, want)
	}
}

func (f *flow) lookups(ctx context.Context) {
	r := f.r
	stepBind := f.stepName(f.op("bind3pid", "bindV2"), caseBind)
	if !f.a.v2 {
		r.Case(ctx, "lookupV1", "bound address: the signed association", func(t *T) {
			t.Need(stepBind)
			resp := f.lookupV1(t, f.s.addr)
			r.checkAssociation(t, resp.Obj(), f.s.addr, f.mxid)
		})
		r.Case(ctx, "lookupV1", "unbound address: {}", func(t *T) {
			if resp := f.lookupV1(t, "nobody-"+randomString(8)+"@example.org"); len(resp.Obj()) != 0 {
				t.Errorf("want {}, got %s", resp)
			}
		})
		r.Case(ctx, "bulkLookup", "bound address listed with its mxid, unbound left out", func(t *T) {
			t.Need(stepBind)
			resp := t.Do(Req{Method: "POST", Path: f.path("/bulk_lookup"), Body: map[string]any{
				"threepids": [][]string{{"email", f.s.addr}, {"email", "nobody-" + randomString(8) + "@example.org"}}}})
			t.Expect(resp, 200, "")
			got, _ := resp.Obj()["threepids"].([]any)
			if len(got) != 1 || fmt.Sprint(got[0]) != fmt.Sprint([]any{"email", f.s.addr, f.mxid}) {
				t.Errorf("threepids %v, want [[email %s %s]]", got, f.s.addr, f.mxid)
			}
		})
		return
	}
	var pepper string
	var algorithms []any
	r.Step(ctx, "getHashDetails", "a pepper and sha256", func(t *T) {
		resp := t.Do(Req{Method: "GET", Path: f.path("/hash_details"), Token: f.tok})
		t.Expect(resp, 200, "")
		pepper = resp.Str("lookup_pepper")
		algorithms, _ = resp.Obj()["algorithms"].([]any)
		if pepper == "" || !contains(algorithms, "sha256") {
			t.Errorf("want a lookup_pepper and sha256 among the algorithms, got %s", resp)
		}
		pepperFormat(t, pepper)
	})
	r.Case(ctx, "getHashDetails", "access_token query parameter (as Synapse sends it)", func(t *T) {
		resp := t.Do(Req{Method: "GET", Path: f.path("/hash_details"), Query: url.Values{"access_token": {f.tok}}})
		t.Expect(resp, 200, "")
	})
	stepHash := "getHashDetails/a pepper and sha256"
	r.Case(ctx, "lookupV2", "sha256: the bound address maps to its mxid", func(t *T) {
		t.Need(stepHash, stepBind)
		h := signing.LookupHash(f.s.addr, "email", pepper)
		miss := signing.LookupHash("nobody-"+randomString(8)+"@example.org", "email", pepper)
		m := f.lookupV2(t, "sha256", pepper, h, miss)
		if len(m) != 1 || m[h] != f.mxid {
			t.Errorf("mappings %v, want only %s → %s", m, h, f.mxid)
		}
	})
	r.Case(ctx, "lookupV2", "none: the plain address maps to its mxid", func(t *T) {
		t.Need(stepHash, stepBind)
		if !contains(algorithms, "none") {
			t.Skipf("the server does not offer the none algorithm")
		}
		k := f.s.addr + " email"
		if m := f.lookupV2(t, "none", pepper, k); m[k] != f.mxid {
			t.Errorf("mappings %v, want %s → %s", m, k, f.mxid)
		}
	})
	r.Case(ctx, "lookupV2", "wrong pepper: 400 M_INVALID_PEPPER", func(t *T) {
		t.Need(stepHash)
		resp := t.Do(Req{Method: "POST", Path: f.path("/lookup"), Token: f.tok,
			Body: map[string]any{"algorithm": "sha256", "pepper": pepper + "x", "addresses": []string{"x"}}})
		t.Expect(resp, 400, "M_INVALID_PEPPER")
		if resp.Str("algorithm") != "sha256" || resp.Str("lookup_pepper") != pepper {
			t.Errorf("M_INVALID_PEPPER must carry the current algorithm and lookup_pepper: %s", resp)
		}
	})
	r.Case(ctx, "lookupV2", "unknown algorithm: 400 M_INVALID_PARAM", func(t *T) {
		t.Need(stepHash)
		resp := t.Do(Req{Method: "POST", Path: f.path("/lookup"), Token: f.tok,
			Body: map[string]any{"algorithm": "conformance-unknown", "pepper": pepper, "addresses": []string{"x"}}})
		t.Expect(resp, 400, "M_INVALID_PARAM")
	})
}

func (f *flow) lookupV1(t *T, addr string) *Resp { return f.lookupV1Of(t, "email", addr) }

func (f *flow) lookupV1Of(t *T, medium, addr string) *Resp {
	resp := t.Do(Req{Method: "GET", Path: f.path("/lookup"), Query: url.Values{"medium": {medium}, "address": {addr}}})
	t.Expect(resp, 200, "")
	return resp
}

func (f *flow) lookupV2(t *T, alg, pepper string, addrs ...string) map[string]any {
	resp := t.Do(Req{Method: "POST", Path: f.path("/lookup"), Token: f.tok,
		Body: map[string]any{"algorithm": alg, "pepper": pepper, "addresses": addrs}})
	t.Expect(resp, 200, "")
	m, _ := resp.Obj()["mappings"].(map[string]any)
	return m
}

// bound reports whether addr is bound to mxid, by this version's lookup.
func (f *flow) bound(t *T, addr string) bool { return f.boundOf(t, "email", addr) }

func (f *flow) boundOf(t *T, medium, addr string) bool {
	if !f.a.v2 {
		return len(f.lookupV1Of(t, medium, addr).Obj()) != 0
	}
	resp := t.Do(Req{Method: "GET", Path: f.path("/hash_details"), Token: f.tok})
	t.Expect(resp, 200, "")
	h := signing.LookupHash(addr, medium, resp.Str("lookup_pepper"))
	return f.lookupV2(t, "sha256", resp.Str("lookup_pepper"), h)[h] != nil
}

func (f *flow) invites(ctx context.Context) {
	r := f.r
	storeOp, signOp, ephOp := f.op("storeInvite", "storeInviteV2"), f.op("blindlySignStuff", "blindlySignStuffV2"), f.op("isEphemeralPubKeyValid", "isEphemeralPubKeyValidV2")
	sender := "@conf-" + r.run + "-inviter:" + r.cfg.Homeserver.Name
	if f.a.v2 {
		sender = f.mxid // v2: the token's own user
	}
	f.invitee = session{addr: fmt.Sprintf("conf-%s-%s-b@example.org", r.run, f.a.name), secret: "conf-" + randomString(12)}
	r.Step(ctx, storeOp, caseStore, func(t *T) {
		resp := t.Do(Req{Method: "POST", Path: f.path("/store-invite"), Token: f.tok, Body: map[string]any{
			"medium": "email", "address": f.invitee.addr, "room_id": "!conf" + r.run + ":" + r.cfg.Homeserver.Name,
			"sender": sender, "room_name": "Conformance <&> \u2028 Room", "sender_display_name": "Conformance Runner",
		}})
		t.Expect(resp, 200, "")
		f.inviteToken = resp.Str("token")
		if f.inviteToken == "" {
			t.Errorf("no token")
		}
		if dn := resp.Str("display_name"); strings.Contains(dn, f.invitee.addr) {
			t.Errorf("display_name %q is not redacted", dn)
		}
		keys, _ := resp.Obj()["public_keys"].([]any)
		for _, k := range keys {
			pk, _ := k.(string)
			if m, ok := k.(map[string]any); ok {
				pk, _ = m["public_key"].(string)
			}
			if !f.isLongTerm(pk) {
				f.ephemeral = pk
			}
		}
		if len(keys) != 2 || f.ephemeral == "" {
			t.Errorf("public_keys %v: want the long-term and an ephemeral key", keys)
		}
		f.keyValidityURLs(t, keys)
		if pk, ok := resp.Obj()["public_key"].(string); ok && !f.isLongTerm(pk) {
			t.Errorf("public_key %q is not the server's long-term key", pk)
		}
	})
	stepStore := f.stepName(storeOp, caseStore)
	r.Case(ctx, storeOp, "the invitee is mailed", func(t *T) {
		t.Need(stepStore)
		f.r.waitMail(t, f.invitee.addr, 1)
		f.invitee.mails = 1
	})
	r.Case(ctx, ephOp, "the invite's ephemeral key is valid", func(t *T) {
		t.Need(stepStore)
		f.expectValid(t, "/pubkey/ephemeral/isvalid", f.ephemeral, true)
	})
	r.Case(ctx, ephOp, "a random key is not valid", func(t *T) {
		f.expectValid(t, "/pubkey/ephemeral/isvalid", randomKey(), false)
	})
	r.Case(ctx, storeOp, "address already bound: 400 M_THREEPID_IN_USE naming the mxid", func(t *T) {
		t.Need(f.stepName(f.op("bind3pid", "bindV2"), caseBind))
		resp := t.Do(Req{Method: "POST", Path: f.path("/store-invite"), Token: f.tok, Body: map[string]any{
			"medium": "email", "address": f.s.addr, "room_id": "!conf:" + r.cfg.Homeserver.Name, "sender": sender}})
		t.Expect(resp, 400, "M_THREEPID_IN_USE")
		if resp.Str("mxid") != f.mxid {
			t.Errorf("mxid %q, want %q", resp.Str("mxid"), f.mxid)
		}
	})
	r.Case(ctx, storeOp, "medium other than email: 400 M_UNRECOGNIZED", func(t *T) {
		resp := t.Do(Req{Method: "POST", Path: f.path("/store-invite"), Token: f.tok, Body: map[string]any{
			"medium": "msisdn", "address": "447700900123", "room_id": "!conf:" + r.cfg.Homeserver.Name, "sender": sender}})
		t.Expect(resp, 400, "M_UNRECOGNIZED")
	})
	r.Case(ctx, signOp, "signs {mxid, sender, token} with the given key", func(t *T) {
		t.Need(stepStore)
		f.signInvite(t, "@conf-"+r.run+"-invitee:"+r.cfg.Homeserver.Name, sender)
	})
	r.Case(ctx, signOp, "canonical JSON: non-ASCII, <>& and U+2028 in the signed mxid", func(t *T) {
		t.Need(stepStore)
		f.signInvite(t, "@conf-ünï<&>\u2028/"+r.run+":example.org", sender)
	})
	r.Case(ctx, signOp, "unknown token: 404 M_UNRECOGNIZED", func(t *T) {
		_, seed := newKey()
		resp := t.Do(Req{Method: "POST", Path: f.path("/sign-ed25519"), Token: f.tok, Body: map[string]any{
			"mxid": "@x:example.org", "token": "unknown" + randomString(10), "private_key": seed}})
		t.Expect(resp, 404, "M_UNRECOGNIZED")
	})
	r.Case(ctx, signOp, "private_key that is not a key: 4xx", func(t *T) {
		t.Need(stepStore)
		resp := t.Do(Req{Method: "POST", Path: f.path("/sign-ed25519"), Token: f.tok, Body: map[string]any{
			"mxid": "@x:example.org", "token": f.inviteToken, "private_key": "not a key!"}})
		t.ExpectError(resp, nil)
	})
	r.Step(ctx, storeOp, caseOnbindSes, func(t *T) {
		t.Need(stepStore)
		f.requestToken(t, &f.invitee, 1)
		f.readToken(t, &f.invitee)
		t.Expect(f.submit(t, f.invitee, f.invitee.token), 200, "")
		before := len(r.cfg.Homeserver.OnBinds())
		f.bind(t, "/3pid/bind", f.invitee, f.mxid)
		f.r.checkOnBind(t, before, f.invitee.addr, f.mxid, f.inviteToken, sender)
	})
}

func (f *flow) isLongTerm(pk string) bool {
	for _, k := range f.r.keys {
		if signing.EncodeBase64(k) == pk {
			return true
		}
	}
	return false
}

func (f *flow) signInvite(t *T, mxid, sender string) {
	pub, seed := newKey()
	resp := t.Do(Req{Method: "POST", Path: f.path("/sign-ed25519"), Token: f.tok, Body: map[string]any{
		"mxid": mxid, "token": f.inviteToken, "private_key": seed}})
	if resp.Status == 400 && resp.Errcode() == "M_INVALID_PARAM" && strings.Contains(mxid, "\u2028") {
		t.Skipf("the server refuses this user ID: %s", resp)
	}
	t.Expect(resp, 200, "")
	obj := resp.Obj()
	if obj["mxid"] != mxid || obj["sender"] != sender || obj["token"] != f.inviteToken {
		t.Errorf("signed %s, want mxid %q sender %q token %q", resp, mxid, sender, f.inviteToken)
	}
	sigs, _ := obj["signatures"].(map[string]any)
	if _, ok := sigs[f.r.serverName]; f.r.serverName != "" && !ok {
		t.Errorf("not signed as the server (%s): %v", f.r.serverName, obj["signatures"])
	}
	verified := false
	for entity, e := range sigs {
		em, _ := e.(map[string]any)
		keys := map[string]ed25519.PublicKey{}
		for id := range em {
			keys[id] = pub
		}
		if err := signing.VerifyJSON(obj, entity, keys); err != nil {
			t.Errorf("signature of %s does not verify with the given key: %v", entity, err)
		} else {
			verified = true
		}
	}
	if !verified {
		t.Errorf("no signature in %s", resp)
	}
}

// checkOnBind waits for the onbind of addr and checks its signed invite.
func (r *Runner) checkOnBind(t *T, before int, addr, mxid, token, sender string) {
	deadline := time.Now().Add(r.cfg.MailTimeout)
	for {
		for _, raw := range r.cfg.Homeserver.OnBinds()[before:] {
			var body struct {
				Address string           `json:"address"`
				MXID    string           `json:"mxid"`
				Invites []map[string]any `json:"invites"`
			}
			if json.Unmarshal(raw, &body) != nil || body.Address != addr {
				continue
			}
			if body.MXID != mxid || len(body.Invites) != 1 {
				t.Fatalf("onbind %s: want mxid %s and one invite", short(string(raw), 400), mxid)
			}
			inv := body.Invites[0]
			if inv["sender"] != sender || inv["mxid"] != mxid || inv["medium"] != "email" || inv["address"] != addr {
				t.Errorf("invite %v: want medium email, address %s, sender %s, mxid %s", inv, addr, sender, mxid)
			}
			if room, _ := inv["room_id"].(string); !strings.HasPrefix(room, "!") {
				t.Errorf("invite %v: no room_id", inv)
			}
			signed, _ := inv["signed"].(map[string]any)
			if signed["mxid"] != mxid || signed["token"] != token {
				t.Errorf("signed %v: want mxid %s token %s", signed, mxid, token)
			}
			r.verifyServerSigned(t, signed)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no onbind for %s at the homeserver after %v", addr, r.cfg.MailTimeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (f *flow) unbind(ctx context.Context) {
	r := f.r
	op := f.op("unbindV1", "unbindV2")
	stepBind := f.stepName(f.op("bind3pid", "bindV2"), caseBind)
	stepInvitee := f.stepName(f.op("storeInvite", "storeInviteV2"), caseOnbindSes)
	threepid := func(addr string) map[string]any { return map[string]any{"medium": "email", "address": addr} }
	r.Case(ctx, op, "session of another 3PID: 403 M_FORBIDDEN", func(t *T) {
		t.Need(stepBind)
		resp := t.Do(Req{Method: "POST", Path: f.path("/3pid/unbind"), Body: map[string]any{
			"sid": f.s.sid, "client_secret": f.s.secret, "mxid": f.mxid, "threepid": threepid("other-" + randomString(6) + "@example.org")}})
		t.Expect(resp, 403, "M_FORBIDDEN")
	})
	r.Case(ctx, op, "wrong client_secret: 4xx", func(t *T) {
		t.Need(stepBind)
		resp := t.Do(Req{Method: "POST", Path: f.path("/3pid/unbind"), Body: map[string]any{
			"sid": f.s.sid, "client_secret": "wrong" + randomString(6), "mxid": f.mxid, "threepid": threepid(f.s.addr)}})
		t.ExpectError(resp, nil)
	})
	r.Case(ctx, op, "neither a session nor a signature: 4xx", func(t *T) {
		t.Need(stepBind)
		resp := t.Do(Req{Method: "POST", Path: f.path("/3pid/unbind"), Body: map[string]any{"mxid": f.mxid, "threepid": threepid(f.s.addr)}})
		t.ExpectError(resp, nil)
	})
	r.Case(ctx, op, "by sid and client_secret: unbound", func(t *T) {
		t.Need(stepBind)
		resp := t.Do(Req{Method: "POST", Path: f.path("/3pid/unbind"), Body: map[string]any{
			"sid": f.s.sid, "client_secret": f.s.secret, "mxid": f.mxid, "threepid": threepid(f.s.addr)}})
		t.Expect(resp, 200, "")
		if f.bound(t, f.s.addr) {
			t.Errorf("%s is still found by lookup after the unbind", f.s.addr)
		}
	})
	signed := func(t *T, body map[string]any) Req {
		raw, _ := json.Marshal(body)
		auth, err := r.cfg.Homeserver.SignRequest("POST", f.path("/3pid/unbind"), r.serverName, raw)
		if err != nil {
			t.Fatalf("sign: %v", err)
		}
		return Req{Method: "POST", Path: f.path("/3pid/unbind"), Body: raw, Header: map[string][]string{"Authorization": {auth}}}
	}
	r.Case(ctx, op, "X-Matrix with a bad signature: 401 or 403", func(t *T) {
		t.Need(stepInvitee)
		req := signed(t, map[string]any{"mxid": f.mxid, "threepid": threepid(f.invitee.addr)})
		h := req.Header.Get("Authorization")
		i := strings.Index(h, `sig="`) + len(`sig="`)
		req.Header.Set("Authorization", h[:i]+flipBase64(h[i:i+1])+h[i+1:])
		t.ExpectError(t.Do(req), []int{401, 403})
	})
	r.Case(ctx, op, "X-Matrix signed for another identity server: 401 or 403", func(t *T) {
		t.Need(stepInvitee)
		body, _ := json.Marshal(map[string]any{"mxid": f.mxid, "threepid": threepid(f.invitee.addr)})
		auth, err := r.cfg.Homeserver.SignRequest("POST", f.path("/3pid/unbind"), "other-identity.example.org", body)
		if err != nil {
			t.Fatalf("sign: %v", err)
		}
		t.ExpectError(t.Do(Req{Method: "POST", Path: f.path("/3pid/unbind"), Body: body, Header: map[string][]string{"Authorization": {auth}}}), []int{401, 403})
	})
	r.Case(ctx, op, "X-Matrix signature over another body: 401 or 403", func(t *T) {
		t.Need(stepInvitee)
		req := signed(t, map[string]any{"mxid": f.mxid, "threepid": threepid("someone-else@example.org")})
		req.Body, _ = json.Marshal(map[string]any{"mxid": f.mxid, "threepid": threepid(f.invitee.addr)})
		t.ExpectError(t.Do(req), []int{401, 403})
	})
	r.Case(ctx, op, "X-Matrix naming a key the homeserver does not publish: 401 or 403", func(t *T) {
		t.Need(stepInvitee)
		req := signed(t, map[string]any{"mxid": f.mxid, "threepid": threepid(f.invitee.addr)})
		req.Header.Set("Authorization", strings.Replace(req.Header.Get("Authorization"), HomeserverKeyID, "ed25519:unpublished", 1))
		t.ExpectError(t.Do(req), []int{401, 403})
	})
	r.Case(ctx, op, "X-Matrix for a user of another server: 403 M_FORBIDDEN", func(t *T) {
		t.Need(stepInvitee)
		t.ExpectError(t.Do(signed(t, map[string]any{"mxid": "@conf:elsewhere.example.org", "threepid": threepid(f.invitee.addr)})), []int{403}, "M_FORBIDDEN")
	})
	r.Case(ctx, op, "X-Matrix signed by the user's homeserver: unbound", func(t *T) {
		t.Need(stepInvitee)
		t.Expect(t.Do(signed(t, map[string]any{"mxid": f.mxid, "threepid": threepid(f.invitee.addr)})), 200, "")
		if f.bound(t, f.invitee.addr) {
			t.Errorf("%s is still found by lookup after the unbind", f.invitee.addr)
		}
	})
}

// submitGet: the link in the mail, opened in a browser (no access token).
func (f *flow) submitGet(ctx context.Context) {
	r := f.r
	op := f.op("emailSubmitTokenGet", "emailSubmitTokenGetV2")
	var s session
	r.Step(ctx, op, "opening the mailed link validates the session", func(t *T) {
		s = f.newSession(t, "c")
		resp := t.Do(Req{Method: "GET", Path: f.path("/validate/email/submitToken"),
			Query: url.Values{"sid": {s.sid}, "client_secret": {s.secret}, "token": {s.token}}})
		if resp.Status != 200 && (resp.Status < 300 || resp.Status > 399) {
			t.Fatalf("want 200 or a redirect, got %s", resp)
		}
		v := t.Do(Req{Method: "GET", Path: f.path("/3pid/getValidated3pid"), Token: f.tok,
			Query: url.Values{"sid": {s.sid}, "client_secret": {s.secret}}})
		t.Expect(v, 200, "")
	})
	r.Case(ctx, op, "wrong token: 4xx", func(t *T) {
		t.Need(f.stepName(op, "opening the mailed link validates the session"))
		resp := t.Do(Req{Method: "GET", Path: f.path("/validate/email/submitToken"),
			Query: url.Values{"sid": {s.sid}, "client_secret": {s.secret}, "token": {"wrong" + randomString(6)}}})
		if resp.Status < 400 || resp.Status > 499 {
			t.Errorf("want a 4xx, got %s", resp)
		}
	})
}

func (f *flow) msisdn(ctx context.Context) {
	r := f.r
	reqOp := f.op("msisdnRequestToken", "msisdnRequestTokenV2")
	subOp, getOp := f.op("msisdnSubmitTokenPost", "msisdnSubmitTokenPostV2"), f.op("msisdnSubmitTokenGet", "msisdnSubmitTokenGetV2")
	valOp, bindOp := f.op("getValidated3pid", "getValidated3pidV2"), f.op("bind3pid", "bindV2")
	secret := "conf-" + randomString(12)
	digits := fmt.Sprintf("%03d", randomInt(1000))
	msisdn := "447400123" + digits // E.164 without +, what the server must store
	var sid string
	r.Step(ctx, reqOp, "a valid number: a sid", func(t *T) {
		resp := t.Do(Req{Method: "POST", Path: f.path("/validate/msisdn/requestToken"), Token: f.tok, Body: map[string]any{
			"client_secret": secret, "country": "GB", "phone_number": "07400 123" + digits, "send_attempt": 1}})
		t.Expect(resp, 200, "")
		if sid = resp.Str("sid"); sid == "" {
			t.Errorf("no sid")
		}
	})
	r.Case(ctx, reqOp, "not a phone number: 400 M_INVALID_ADDRESS", func(t *T) {
		resp := t.Do(Req{Method: "POST", Path: f.path("/validate/msisdn/requestToken"), Token: f.tok, Body: map[string]any{
			"client_secret": secret, "country": "GB", "phone_number": "12", "send_attempt": 1}})
		t.Expect(resp, 400, "M_INVALID_ADDRESS")
	})
	stepReq := f.stepName(reqOp, "a valid number: a sid")
	wrongToken := "wrong token: 4xx"
	if f.a.v2 && r.listsAtLeast(18) {
		wrongToken = "wrong token: 400 M_TOKEN_INCORRECT (v1.18)"
	}
	submit := func(t *T, token string) *Resp {
		return t.Do(Req{Method: "POST", Path: f.path("/validate/msisdn/submitToken"), Token: f.tok,
			Body: map[string]any{"sid": sid, "client_secret": secret, "token": token}})
	}
	r.Case(ctx, subOp, wrongToken, func(t *T) {
		t.Need(stepReq)
		resp := submit(t, "wrong0")
		if f.a.v2 && r.listsAtLeast(18) {
			t.Expect(resp, 400, "M_TOKEN_INCORRECT")
		}
		t.ExpectError(resp, nil)
	})
	r.Case(ctx, getOp, "wrong token: 4xx", func(t *T) {
		t.Need(stepReq)
		resp := t.Do(Req{Method: "GET", Path: f.path("/validate/msisdn/submitToken"),
			Query: url.Values{"sid": {sid}, "client_secret": {secret}, "token": {"wrong0"}}})
		if resp.Status < 400 || resp.Status > 499 {
			t.Errorf("want a 4xx, got %s", resp)
		}
	})
	const caseCode = "code from the SMS: success"
	if r.cfg.SMS == nil {
		r.SkipCase(subOp, caseCode, "no SMS sink: the runner cannot read the code")
		return
	}
	r.Step(ctx, subOp, caseCode, func(t *T) {
		t.Need(stepReq)
		m := r.waitSMS(t, msisdn)
		got := r.cfg.SMSTokenPattern.FindStringSubmatch(m.Text)
		if got == nil {
			t.Fatalf("no code matching %q in the SMS to %s: %s", r.cfg.SMSTokenPattern, msisdn, short(m.Text, 400))
		}
		resp := submit(t, got[len(got)-1])
		t.Expect(resp, 200, "")
		if resp.Obj()["success"] != true {
			t.Errorf("success is not true: %s", resp)
		}
	})
	stepCode := f.stepName(subOp, caseCode)
	r.Case(ctx, valOp, "validated phone: medium msisdn, E.164 address without +", func(t *T) {
		t.Need(stepCode)
		resp := t.Do(Req{Method: "GET", Path: f.path("/3pid/getValidated3pid"), Token: f.tok,
			Query: url.Values{"sid": {sid}, "client_secret": {secret}}})
		t.Expect(resp, 200, "")
		if resp.Str("medium") != "msisdn" || resp.Str("address") != msisdn {
			t.Errorf("got %s, want medium msisdn and address %s", resp, msisdn)
		}
	})
	r.Case(ctx, bindOp, "binds a phone number: signed, found by lookup", func(t *T) {
		t.Need(stepCode)
		resp := t.Do(Req{Method: "POST", Path: f.path("/3pid/bind"), Token: f.tok,
			Body: map[string]any{"sid": sid, "client_secret": secret, "mxid": f.mxid}})
		t.Expect(resp, 200, "")
		r.checkAssociationOf(t, resp.Obj(), "msisdn", msisdn, f.mxid)
		if !f.boundOf(t, "msisdn", msisdn) {
			t.Errorf("lookup does not find %s", msisdn)
		}
	})
}

// waitSMS waits for a text message naming msisdn.
func (r *Runner) waitSMS(t *T, msisdn string) Mail {
	deadline := time.Now().Add(r.cfg.MailTimeout)
	for {
		for _, m := range r.cfg.SMS.Messages() {
			if strings.Contains(m.Text, msisdn) || slices.ContainsFunc(m.To, func(to string) bool { return strings.Contains(to, msisdn) }) {
				return m
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no SMS to %s after %v (is the server's SMS API pointed at the sink?)", msisdn, r.cfg.MailTimeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitMail waits for the n-th mail to addr.
func (r *Runner) waitMail(t *T, addr string, n int) Mail {
	deadline := time.Now().Add(r.cfg.MailTimeout)
	for {
		if got := r.mailsTo(addr); len(got) >= n {
			return got[n-1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d mail(s) to %s after %v, want %d (is the server's SMTP pointed at the sink?)", len(r.mailsTo(addr)), addr, r.cfg.MailTimeout, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (r *Runner) mailsTo(addr string) []Mail {
	var out []Mail
	for _, m := range r.cfg.Mailbox.Messages() {
		for _, to := range m.To {
			if fold(strings.Trim(to, "<>")) == fold(addr) {
				out = append(out, m)
				break
			}
		}
	}
	return out
}

func (r *Runner) mailCount(addr string) int { return len(r.mailsTo(addr)) }

func contains(list []any, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func jsonInt(v any) (int64, error) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, fmt.Errorf("%v is not a number", v)
	}
	i, err := n.Int64()
	if err != nil {
		return 0, fmt.Errorf("%v is not an integer", v)
	}
	return i, nil
}

const alnum = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

func randomString(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = alnum[randomInt(len(alnum))]
	}
	return string(b)
}

func randomInt(n int) int {
	v, err := rand.Int(rand.Reader, big.NewInt(int64(n)))
	if err != nil {
		panic(err)
	}
	return int(v.Int64())
}

// newKey returns a fresh ed25519 public key and its seed in unpadded base64.
func newKey() (ed25519.PublicKey, string) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	return pub, signing.EncodeBase64(priv.Seed())
}

func randomKey() string {
	pub, _ := newKey()
	return signing.EncodeBase64(pub)
}

// flipBase64 returns another base64 character than c.
func flipBase64(c string) string {
	if c == "A" {
		return "B"
	}
	return "A"
}

// keyValidityURLs: each key_validity_url store-invite returns must say its
// key is valid (followed only when it is on the base URL: the runner talks
// to nothing else).
func (f *flow) keyValidityURLs(t *T, keys []any) {
	for _, k := range keys {
		m, ok := k.(map[string]any)
		if !ok {
			continue // v1's old shape: bare keys
		}
		pk, _ := m["public_key"].(string)
		u, _ := m["key_validity_url"].(string)
		rest, found := strings.CutPrefix(u, f.r.cfg.BaseURL)
		if !found {
			continue
		}
		pu, err := url.Parse(rest)
		if err != nil || !strings.HasSuffix(pu.Path, "isvalid") {
			t.Errorf("key_validity_url %q is not an isvalid endpoint", u)
			continue
		}
		resp := t.Do(Req{Method: "GET", Path: pu.Path, Query: url.Values{"public_key": {pk}}})
		t.Expect(resp, 200, "")
		if resp.Obj()["valid"] != true {
			t.Errorf("%s says %s is not valid: %s", u, pk, resp)
		}
	}
}

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
