// Validation sessions: email (through the SMTP sink) and phone (through
// the SMS sink), send_attempt, submitToken by POST and by the mailed link.

package conformance

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
)

// session is an email validation session.
type session struct {
	addr, secret, sid, token string
	mails                    int // mails received for addr so far
}

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
	// The send_attempt cases each request on a session of their own: a
	// server that wrongly mails again would otherwise leave an extra mail
	// (and maybe a new token) in the way of the run's shared session.
	r.Case(ctx, reqOp, "same send_attempt again: same sid, no new mail", func(t *T) {
		t.Need(stepReq)
		own := f.newSession(t, "resend-"+strings.ToLower(randomString(6)))
		f.expectNoResend(t, own, 1)
	})
	r.Step(ctx, reqOp, "higher send_attempt: the mail is sent again", func(t *T) {
		t.Need(stepReq)
		f.requestToken(t, &f.s, 2)
		f.readToken(t, &f.s)
	})
	r.Case(ctx, reqOp, "lower send_attempt after a higher one: same sid, no new mail", func(t *T) {
		t.Need(f.stepName(reqOp, "higher send_attempt: the mail is sent again"))
		own := f.newSession(t, "lower-"+strings.ToLower(randomString(6)))
		f.requestToken(t, &own, 2)
		f.readToken(t, &own)
		f.expectNoResend(t, own, 1)
	})
	r.Case(ctx, reqOp, "another client_secret for the same address: a new sid and a mail", func(t *T) {
		t.Need(f.stepName(reqOp, "higher send_attempt: the mail is sent again"))
		own := f.newSession(t, "secret-"+strings.ToLower(randomString(6)))
		other := session{addr: own.addr, secret: "conf-" + randomString(12), mails: r.mailCount(own.addr)}
		f.requestToken(t, &other, 1)
		if other.sid == own.sid {
			t.Errorf("same sid %q for another client_secret", other.sid)
		}
		f.readToken(t, &other)
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
		f.r.refusedSubmit(t, f.a, resp)
	})
	r.Case(ctx, subOp, "unknown sid: 4xx", func(t *T) {
		t.Need(stepReq)
		f.r.refusedSubmit(t, f.a, f.submit(t, session{sid: "unknown" + randomString(8), secret: f.s.secret}, f.s.token))
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
	digits := fmt.Sprintf("%06d", randomInt(1000000)) // a number of this flow's own
	msisdn := "447400" + digits                       // E.164 without +, what the server must store
	var sid string
	r.Step(ctx, reqOp, "a valid number: a sid", func(t *T) {
		resp := t.Do(Req{Method: "POST", Path: f.path("/validate/msisdn/requestToken"), Token: f.tok, Body: map[string]any{
			"client_secret": secret, "country": "GB", "phone_number": "07400 " + digits, "send_attempt": 1}})
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
		r.refusedSubmit(t, f.a, resp)
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
		// Cases running at the same time may text this number too (another
		// session of the same number, a resend that replaces the code): if
		// the first code is refused, the later texts' codes are tried, newest
		// first. A server whose texts carry no valid code still fails.
		if resp.Status != 200 {
			msgs := r.smsTo(msisdn)
			for i := len(msgs) - 1; i >= 0 && resp.Status != 200; i-- {
				if g := r.cfg.SMSTokenPattern.FindStringSubmatch(msgs[i].Text); g != nil && g[len(g)-1] != got[len(got)-1] {
					resp = submit(t, g[len(g)-1])
				}
			}
		}
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

// refusedSubmit: a POST submitToken that must not validate. v1.18
// (MSC4183) gave it 4xx errors; before, the API description had only the
// 200 answer with "success", so a server listing no version from v1.18 on
// may answer 200 {"success": false} (strict: Sigil's 4xx either way).
func (r *Runner) refusedSubmit(t *T, a api, resp *Resp) {
	if resp.Status == 200 && !r.strict() && !(a.v2 && r.listsAtLeast(18)) {
		if resp.Obj()["success"] == true {
			t.Fatalf("want success false (or a 4xx), got %s", resp)
		}
		return
	}
	t.ExpectError(resp, nil)
}

// waitSMS waits for a text message naming msisdn.
// smsTo returns the texts received so far for msisdn, oldest first.
func (r *Runner) smsTo(msisdn string) []Mail {
	var out []Mail
	for _, m := range r.cfg.SMS.Messages() {
		if strings.Contains(m.Text, msisdn) || slices.ContainsFunc(m.To, func(to string) bool { return strings.Contains(to, msisdn) }) {
			out = append(out, m)
		}
	}
	return out
}

func (r *Runner) waitSMS(t *T, msisdn string) Mail {
	deadline := time.Now().Add(r.cfg.MailTimeout)
	for {
		if got := r.smsTo(msisdn); len(got) > 0 {
			return got[0]
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

// waitMailQuiet reports whether the n-th mail to addr arrives in time.
func (r *Runner) waitMailQuiet(addr string, n int) bool {
	deadline := time.Now().Add(r.cfg.MailTimeout)
	for time.Now().Before(deadline) {
		if len(r.mailsTo(addr)) >= n {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
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

// expectNoResend requests a token for s again with a send_attempt that is
// not higher than the last one: the server must answer the same sid and
// send no mail.
func (f *flow) expectNoResend(t *T, s session, attempt int) {
	again := s
	f.requestToken(t, &again, attempt)
	if again.sid != s.sid {
		t.Errorf("sid %q, want the session's %q", again.sid, s.sid)
	}
	time.Sleep(f.r.cfg.Quiet)
	if n := f.r.mailCount(s.addr); n != s.mails {
		t.Errorf("%d mails to %s after send_attempt %d, want %d", n, s.addr, attempt, s.mails)
	}
}
