package conformance

import (
	"context"
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"golang.org/x/text/cases"
)

// Cases from the spec's prose (not the document): CORS, 3PID case folding,
// request formats, identifier rules, next_link, terms bookkeeping.

// preflight: browsers' CORS pre-flight (spec: Web browser clients).
func (r *Runner) preflight(t *T, method, path string) {
	resp := t.Do(Req{Method: "OPTIONS", Path: path, Raw: true, Header: map[string][]string{
		"Origin": {"https://client.example.org"}, "Access-Control-Request-Method": {method},
		"Access-Control-Request-Headers": {"authorization,content-type"},
	}})
	if resp.Status < 200 || resp.Status > 299 {
		t.Errorf("status %d, want 2xx", resp.Status)
	}
	if o := resp.Header.Get("Access-Control-Allow-Origin"); o != "*" && o != "https://client.example.org" {
		t.Errorf("Access-Control-Allow-Origin %q", o)
	}
	if m := resp.Header.Get("Access-Control-Allow-Methods"); m != "*" && !containsFold(m, method) {
		t.Errorf("Access-Control-Allow-Methods %q lacks %s", m, method)
	}
	h := resp.Header.Get("Access-Control-Allow-Headers")
	for _, want := range []string{"Authorization", "Content-Type"} {
		if h != "*" && !containsFold(h, want) {
			t.Errorf("Access-Control-Allow-Headers %q lacks %s", h, want)
		}
	}
}

func containsFold(list, item string) bool {
	for _, f := range strings.Split(list, ",") {
		if strings.EqualFold(strings.TrimSpace(f), item) {
			return true
		}
	}
	return false
}

// transportTally counts one operation's answers and their transport faults.
type transportTally struct {
	answers, noCORS, badCT      int
	noCORSExample, badCTExample string
}

func (r *Runner) tally(op string) *transportTally {
	t := r.transport[op]
	if t == nil {
		t = &transportTally{}
		r.transport[op] = t
	}
	return t
}

// transportCases are recorded last, one pair per operation that was
// answered: every answer carried Access-Control-Allow-Origin, and every
// JSON answer was labelled application/json. They are separate from the
// logic cases, so one header bug fails two cases, not all of them.
// The transport cases: run-wide tallies of an operation's answers, so the
// one kind of case whose verdict depends on which other cases ran.
const (
	caseCORSAnswers = "every answer carries Access-Control-Allow-Origin"
	caseJSONType    = "JSON answers carry Content-Type: application/json"
)

func (r *Runner) transportCases() {
	for _, o := range r.operations() {
		tl := r.transport[o.id]
		if tl == nil || tl.answers == 0 {
			if len(r.cfg.Only) > 0 {
				// Selected alone, a transport case has nothing to judge:
				// say so rather than leave it out silently.
				why := "judges the answers this operation's other cases got, and none ran: select them too (-only '^" + regexp.QuoteMeta(o.id) + "/')"
				r.SkipCase(o.id, caseCORSAnswers, why)
				r.SkipCase(o.id, caseJSONType, why)
			}
			continue
		}
		r.Case(context.Background(), o.id, caseCORSAnswers, func(t *T) {
			if !r.strict() {
				// §Web browser clients: servers MUST support OPTIONS (the
				// pre-flight cases) but SHOULD send the headers on answers.
				t.Skipf("strict profile only: the spec recommends (should) CORS headers on every answer; the CORS pre-flight case checks what it requires")
			}
			if tl.noCORS > 0 {
				t.Errorf("%d of %d answers lack it, e.g. %s", tl.noCORS, tl.answers, tl.noCORSExample)
			}
		})
		r.Case(context.Background(), o.id, caseJSONType, func(t *T) {
			if tl.badCT > 0 {
				t.Errorf("%d of %d answers have another content type, e.g. %s", tl.badCT, tl.answers, tl.badCTExample)
			}
		})
	}
}

var pepperRE = regexp.MustCompile(`^[a-zA-Z0-9]+$`)

// fold is the spec's canonical form of an email address (Unicode full
// case folding of the whole address).
func fold(s string) string { return cases.Fold().String(s) }

// requestFormats: what requestToken must accept and refuse.
func (f *flow) requestFormats(ctx context.Context) {
	r := f.r
	op := f.op("emailRequestToken", "emailRequestTokenV2")
	secret := "conf-" + randomString(12)
	r.Case(ctx, op, "JSON body without a Content-Type header: accepted", func(t *T) {
		if !r.strict() {
			// Clients SHOULD send application/json (§API standards); a
			// server need not accept a body without it. Sigil does.
			t.Skipf("strict profile only: the spec does not oblige servers to accept it")
		}
		addr := fmt.Sprintf("conf-%s-%s-noct@example.org", r.run, f.a.name)
		resp := t.Do(Req{Method: "POST", Path: f.path("/validate/email/requestToken"), Token: f.tok, ContentType: "none",
			Body: map[string]any{"client_secret": secret, "email": addr, "send_attempt": 1}})
		t.Expect(resp, 200, "")
	})
	if !f.a.v2 {
		r.Case(ctx, op, "form-encoded body (documented for v1): accepted", func(t *T) {
			addr := fmt.Sprintf("conf-%s-%s-form@example.org", r.run, f.a.name)
			form := url.Values{"client_secret": {secret}, "email": {addr}, "send_attempt": {"1"}}
			resp := t.Do(Req{Method: "POST", Path: f.path("/validate/email/requestToken"), Token: f.tok,
				ContentType: "application/x-www-form-urlencoded", Body: []byte(form.Encode())})
			t.Expect(resp, 200, "")
			if resp.Str("sid") == "" {
				t.Errorf("no sid")
			}
		})
	}
	r.Case(ctx, op, "not an email address: 400 M_INVALID_EMAIL", func(t *T) {
		resp := t.Do(Req{Method: "POST", Path: f.path("/validate/email/requestToken"), Token: f.tok,
			Body: map[string]any{"client_secret": secret, "email": "not-an-email-address", "send_attempt": 1}})
		t.Expect(resp, 400, "M_INVALID_EMAIL")
	})
	r.Case(ctx, op, "client_secret outside [0-9a-zA-Z.=_-]: 400", func(t *T) {
		if !r.listsAtLeast(1) {
			t.Skipf("the client_secret character set is a rule of v1.1; the server lists no v1.x version")
		}
		resp := t.Do(Req{Method: "POST", Path: f.path("/validate/email/requestToken"), Token: f.tok,
			Body: map[string]any{"client_secret": "not a secret!", "email": "nobody@example.org", "send_attempt": 1}})
		if r.strict() {
			t.Expect(resp, 400, "M_INVALID_PARAM")
		}
		t.ExpectError(resp, []int{400})
	})
}

// caseFolding: an address in another case is the same 3PID: the
// association names the folded address, and lookups find it by it. The
// ASCII case needs nothing of the mail system; the Unicode one (ß folds to
// ss) needs the server to mail a non-ASCII address, which SMTPUTF8 checks
// on its own.
func (f *flow) caseFolding(ctx context.Context) {
	r := f.r
	op := f.op("bind3pid", "bindV2")
	reqOp := f.op("emailRequestToken", "emailRequestTokenV2")
	const smtputf8 = "non-ASCII address: the mail is sent (SMTPUTF8)"
	r.Case(ctx, reqOp, smtputf8, func(t *T) {
		if !r.strict() {
			t.Skipf("strict profile only: the spec does not oblige a server to mail non-ASCII addresses")
		}
		s := session{addr: fmt.Sprintf("conf-%s-%s-ünï@example.org", r.run, f.a.name), secret: "conf-" + randomString(12)}
		f.requestToken(t, &s, 1)
		f.readToken(t, &s)
	})
	f.foldCase(ctx, op, "email address is case-folded, ASCII (Conf-X@Example.ORG → conf-x@example.org)", "Conf-%s-%s-Fold@Example.ORG", "")
	f.foldCase(ctx, op, "email address is case-folded, Unicode (Straße@Example.ORG → strasse@example.org)", "Conf-%s-%s-Straße@Example.ORG", f.stepName(reqOp, smtputf8))
}

func (f *flow) foldCase(ctx context.Context, op, name, format, needMail string) {
	r := f.r
	r.Case(ctx, op, name, func(t *T) {
		if !r.listsAtLeast(1) {
			t.Skipf("case folding is a rule of v1.1 (MSC2265); the server lists no v1.x version")
		}
		s := session{addr: fmt.Sprintf(format, r.run, f.a.name), secret: "conf-" + randomString(12)}
		if needMail != "" {
			// A server that cannot mail a non-ASCII address says so here.
			resp := t.Do(Req{Method: "POST", Path: f.path("/validate/email/requestToken"), Token: f.tok,
				Body: map[string]any{"client_secret": s.secret, "email": s.addr, "send_attempt": 1}})
			if resp.Errcode() == "M_EMAIL_SEND_ERROR" {
				t.Skipf("the server could not mail the non-ASCII address %s (see %q): %s", s.addr, needMail, resp)
			}
		}
		f.requestToken(t, &s, 1)
		if needMail != "" {
			// Without SMTPUTF8 the token never arrives: skip, the
			// SMTPUTF8 case says why.
			if got := r.waitMailQuiet(s.addr, 1); !got {
				t.Skipf("no mail to the non-ASCII address %s (see %q)", s.addr, needMail)
			}
		}
		f.readToken(t, &s)
		t.Expect(f.submit(t, s, s.token), 200, "")
		resp := t.Do(Req{Method: "POST", Path: f.path("/3pid/bind"), Token: f.tok,
			Body: map[string]any{"sid": s.sid, "client_secret": s.secret, "mxid": f.mxid}})
		t.Expect(resp, 200, "")
		want := fold(s.addr)
		r.checkAssociation(t, resp.Obj(), want, f.mxid)
		if !f.bound(t, want) {
			t.Errorf("lookup does not find the folded address %s", want)
		}
	})
}

// nextLink: GET submitToken redirects to the session's next_link.
func (f *flow) nextLink(ctx context.Context) {
	r := f.r
	op := f.op("emailSubmitTokenGet", "emailSubmitTokenGetV2")
	r.Case(ctx, op, "next_link given at requestToken: 3XX redirect there", func(t *T) {
		next := "https://client.example.org/conformance/next?x=1"
		s := session{addr: fmt.Sprintf("conf-%s-%s-next@example.org", r.run, f.a.name), secret: "conf-" + randomString(12)}
		resp := t.Do(Req{Method: "POST", Path: f.path("/validate/email/requestToken"), Token: f.tok,
			Body: map[string]any{"client_secret": s.secret, "email": s.addr, "send_attempt": 1, "next_link": next}})
		t.Expect(resp, 200, "")
		s.sid = resp.Str("sid")
		f.readToken(t, &s)
		resp = t.Do(Req{Method: "GET", Path: f.path("/validate/email/submitToken"),
			Query: url.Values{"sid": {s.sid}, "client_secret": {s.secret}, "token": {s.token}}})
		if resp.Status < 300 || resp.Status > 399 {
			t.Fatalf("want a redirect, got %s", resp)
		}
		if loc := resp.Header.Get("Location"); !strings.HasPrefix(loc, "https://client.example.org/conformance/next") {
			t.Errorf("Location %q, want the next_link %s", loc, next)
		}
	})
}

// notPublishedBeforeBind: validating publishes nothing.
func (f *flow) notPublishedBeforeBind(t *T) {
	if f.bound(t, f.s.addr) {
		t.Errorf("%s is found by lookup after submitToken, before any bind", f.s.addr)
	}
}

// pepperFormat: MSC2134's rule on the pepper.
func pepperFormat(t *T, pepper string) {
	if !pepperRE.MatchString(pepper) {
		t.Errorf("lookup_pepper %q does not match [a-zA-Z0-9]+", pepper)
	}
}
