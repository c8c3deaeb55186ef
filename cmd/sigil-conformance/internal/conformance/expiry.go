// Expiry of validation tokens and sessions (spec: §Establishing
// associations: sessions expire; M_SESSION_EXPIRED on getValidated3pid and
// bind, and on POST submitToken since v1.18). Real lifetimes are hours, so
// these cases need the server started with short ones: -short-lifetimes D
// tells the -exec start script (CONFORMANCE_SHORT_LIFETIME=D) to configure
// D as both the token and the session lifetime, and the run is then these
// cases only (every other case's sessions would expire under it).

package conformance

import (
	"context"
	"fmt"
	"net/url"
	"time"
)

// Case names of the expiry cases.
const (
	caseTokenExpires     = "token expires: submitToken after the token lifetime does not validate"
	caseSessionExpiresV  = "validated session expires: 400 M_SESSION_EXPIRED"
	caseSessionExpiresB  = "validated session expires: bind refused, nothing published"
	needShortLifetimes   = "needs -short-lifetimes (a server started with short token and session lifetimes)"
	expiryMarginFraction = 2
)

func (r *Runner) expiryCases(ctx context.Context, a api, tok, mxid string) {
	f := &flow{r: r, a: a, tok: tok, mxid: mxid}
	reqOp, valOp, bindOp := f.op("emailSubmitTokenPost", "emailSubmitTokenPostV2"), f.op("getValidated3pid", "getValidated3pidV2"), f.op("bind3pid", "bindV2")
	if r.cfg.ShortLifetime <= 0 {
		for _, c := range [][2]string{{reqOp, caseTokenExpires}, {valOp, caseSessionExpiresV}, {bindOp, caseSessionExpiresB}} {
			r.SkipCase(c[0], c[1], needShortLifetimes)
		}
		return
	}
	wait := func() {
		time.Sleep(r.cfg.ShortLifetime + max(time.Second, r.cfg.ShortLifetime/expiryMarginFraction))
	}
	expired := func(t *T, resp *Resp) {
		if r.strict() {
			t.Expect(resp, 400, "M_SESSION_EXPIRED")
		}
		// A server may also have purged the expired session: 404
		// M_NO_VALID_SESSION is the spec's answer to a session it cannot find.
		if !(resp.Status == 400 && resp.Errcode() == "M_SESSION_EXPIRED") && !(resp.Status == 404 && resp.Errcode() == "M_NO_VALID_SESSION") {
			t.Fatalf("want 400 M_SESSION_EXPIRED (or 404 M_NO_VALID_SESSION), got %s", resp)
		}
	}
	r.Case(ctx, reqOp, caseTokenExpires, func(t *T) {
		s := session{addr: fmt.Sprintf("conf-%s-%s-exp-token@example.org", r.run, a.name), secret: "conf-" + randomString(12)}
		f.requestToken(t, &s, 1)
		f.readToken(t, &s)
		wait()
		resp := f.submit(t, s, s.token)
		if r.strict() || (a.v2 && r.listsAtLeast(18)) {
			expired(t, resp)
		} else {
			r.refusedSubmit(t, a, resp)
		}
		v := t.Do(Req{Method: "GET", Path: f.path("/3pid/getValidated3pid"), Token: f.tok,
			Query: url.Values{"sid": {s.sid}, "client_secret": {s.secret}}})
		if v.Status == 200 {
			t.Errorf("the session was validated with an expired token: %s", v)
		}
	})
	validated := func(t *T, label string) session {
		s := session{addr: fmt.Sprintf("conf-%s-%s-exp-%s@example.org", r.run, a.name, label), secret: "conf-" + randomString(12)}
		f.requestToken(t, &s, 1)
		f.readToken(t, &s)
		t.Expect(f.submit(t, s, s.token), 200, "")
		wait()
		return s
	}
	r.Case(ctx, valOp, caseSessionExpiresV, func(t *T) {
		s := validated(t, "val")
		expired(t, t.Do(Req{Method: "GET", Path: f.path("/3pid/getValidated3pid"), Token: f.tok,
			Query: url.Values{"sid": {s.sid}, "client_secret": {s.secret}}}))
	})
	r.Case(ctx, bindOp, caseSessionExpiresB, func(t *T) {
		s := validated(t, "bind")
		expired(t, t.Do(Req{Method: "POST", Path: f.path("/3pid/bind"), Token: f.tok,
			Body: map[string]any{"sid": s.sid, "client_secret": s.secret, "mxid": f.mxid}}))
		if f.bound(t, s.addr) {
			t.Errorf("%s is found by lookup after a bind with an expired session", s.addr)
		}
	})
}
