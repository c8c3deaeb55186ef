package identity

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/sigil-matrix/sigil/handlers/mail"
	"github.com/sigil-matrix/sigil/handlers/sms"
	"github.com/sigil-matrix/sigil/spec/matrixerr"
	"github.com/sigil-matrix/sigil/store"
)

// TokenRequest is a requestToken call, for either medium.
type TokenRequest struct {
	API          API // the version called, for the emailed link
	ClientSecret string
	// SendAttempt absent counts as 0: the first call sends, identical
	// retries do not.
	SendAttempt *int
	NextLink    *string
	// ClientIP is the caller, for the per-client limit on messages.
	ClientIP string
}

// Validated3PID is what a validated session proves.
type Validated3PID struct {
	Medium, Address string
	ValidatedAt     time.Time
}

// PhoneSession is the answer to a phone requestToken; Synapse's msisdn
// delegate passes MSISDN and IntlFmt on to clients.
type PhoneSession struct {
	SID, MSISDN, IntlFmt string
}

// RequestEmailToken starts (or resumes) the validation of an email address
// and mails it a link and token when send_attempt says so. It returns the
// session ID.
func (s *Service) RequestEmailToken(ctx context.Context, r TokenRequest, email string) (string, error) {
	addr, err := canonicalEmail(email)
	if err != nil {
		return "", err
	}
	sess, send, err := s.startSession(ctx, r, mediumEmail, addr)
	if err != nil || !send {
		return sess.SID, err
	}
	link := s.url(r.API, "/validate/email/submitToken") + "?" + url.Values{
		"sid": {sess.SID}, "client_secret": {r.ClientSecret}, "token": {sess.Token},
	}.Encode()
	msg, err := s.templates.Validation(mail.ValidationData{
		Address: addr, Token: sess.Token, Link: link, ServerName: s.cfg.ServerName,
		SessionID: sess.SID, ExpiresIn: humanDuration(s.cfg.TokenLifetime),
	})
	if err != nil {
		return "", matrixerr.Unknown(fmt.Errorf("render validation mail: %w", err))
	}
	if err := s.mail.Send(ctx, msg); err != nil {
		return "", matrixerr.EmailSendError(err)
	}
	return sess.SID, nil
}

// RequestPhoneToken validates a phone number and texts it a code, under the
// same session and send_attempt rules as email.
func (s *Service) RequestPhoneToken(ctx context.Context, r TokenRequest, country, phone string) (PhoneSession, error) {
	msisdn, intl, err := sms.Normalize(country, phone)
	if err != nil {
		return PhoneSession{}, matrixerr.InvalidAddress("Invalid phone number: " + err.Error())
	}
	sess, send, err := s.startSession(ctx, r, mediumMSISDN, msisdn)
	if err != nil {
		return PhoneSession{}, err
	}
	out := PhoneSession{SID: sess.SID, MSISDN: msisdn, IntlFmt: intl}
	if !send {
		return out, nil
	}
	text := fmt.Sprintf("Your %s validation code is %s", s.cfg.ServerName, sess.Token)
	if err := s.sms.Send(ctx, sms.Message{To: msisdn, Text: text}); err != nil {
		if errors.Is(err, sms.ErrInvalidNumber) {
			return PhoneSession{}, matrixerr.InvalidAddress("Invalid phone number")
		}
		return PhoneSession{}, matrixerr.SendError(err)
	}
	return out, nil
}

// startSession creates or reuses a validation session under the
// send_attempt rules and reports whether a message should go out.
// client_secret's grammar is stated by the spec and enforced by the
// validator (every caller is an HTTP operation), so it is not checked here.
func (s *Service) startSession(ctx context.Context, r TokenRequest, medium, address string) (store.Session, bool, error) {
	next, err := s.checkNextLink(r.NextLink)
	if err != nil {
		return store.Session{}, false, err
	}
	if err := s.allowMessage(address, r.ClientIP); err != nil {
		return store.Session{}, false, err
	}
	attempt := 0
	if r.SendAttempt != nil {
		attempt = *r.SendAttempt
	}
	now := s.now()
	sess, send, err := s.store.RequestSession(ctx, store.SessionRequest{
		Medium: medium, Address: address, ClientSecret: r.ClientSecret,
		SendAttempt: attempt, NextLink: next,
		NewSID: randomString(24, alphanumeric), NewToken: newToken(medium),
		Now: now,
		// An unvalidated session whose token expired starts afresh.
		Replace: func(cur store.Session) bool { return cur.ValidatedAt == nil && s.expired(cur, now) },
	})
	if err != nil {
		return store.Session{}, false, matrixerr.Unknown(fmt.Errorf("request session: %w", err))
	}
	return sess, send, nil
}

// expired is the one session lifetime rule: a token may be submitted for
// TokenLifetime after it was sent, and a validated session used to bind
// for SessionLifetime after it was validated.
func (s *Service) expired(sess store.Session, now time.Time) bool {
	age := now.Sub(sess.ModifiedAt)
	if sess.ValidatedAt == nil {
		return age > s.cfg.TokenLifetime
	}
	return age > s.cfg.SessionLifetime
}

// newToken: a long random token for links, six digits for SMS.
func newToken(medium string) string {
	if medium == mediumMSISDN {
		return randomString(6, "0123456789")
	}
	return randomString(32, alphanumeric)
}

// allowMessage applies the per-IP and per-address limits on outgoing mail
// and SMS. The client is checked first, so a client that is refused never
// creates state for the addresses it names.
func (s *Service) allowMessage(address, ip string) error {
	now := s.now()
	if ip != "" {
		if ok, wait := s.mailByIP.Allow(ip, now); !ok {
			return matrixerr.LimitExceeded(wait.Milliseconds())
		}
	}
	if ok, wait := s.mailByAddr.Allow(address, now); !ok {
		return matrixerr.LimitExceeded(wait.Milliseconds())
	}
	return nil
}

// checkNextLink accepts only absolute http(s) URLs (and, when configured,
// only the allowed hosts), so a validation link can never become an open
// redirect to another scheme.
func (s *Service) checkNextLink(p *string) (string, error) {
	if p == nil || *p == "" {
		return "", nil
	}
	u, err := url.Parse(*p)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", matrixerr.InvalidParam("next_link must be an absolute http or https URL")
	}
	if len(s.cfg.NextLinkHosts) > 0 && !slices.Contains(s.cfg.NextLinkHosts, strings.ToLower(u.Hostname())) {
		return "", matrixerr.InvalidParam("next_link points at a host this server does not redirect to")
	}
	return u.String(), nil
}

func humanDuration(d time.Duration) string {
	h := d.Hours()
	if h >= 1 && h == float64(int(h)) {
		if h == 1 {
			return "1 hour"
		}
		return fmt.Sprintf("%d hours", int(h))
	}
	return fmt.Sprintf("%.0f minutes", h*60)
}

// SubmitToken validates a session with the token that was sent, and
// returns the next_link stored with it (empty when none). Submitting a
// validated session's token again is not an error.
func (s *Service) SubmitToken(ctx context.Context, sid, clientSecret, token string) (nextLink string, err error) {
	noSession := matrixerr.InvalidParam("No session matches that sid and client_secret")
	now := s.now()
	if ok, wait := s.tokenTries.Allow(sid, now); !ok {
		return "", matrixerr.LimitExceeded(wait.Milliseconds())
	}
	sess, err := s.store.SessionBySID(ctx, sid)
	if errors.Is(err, store.ErrNotFound) {
		return "", noSession
	}
	if err != nil {
		return "", matrixerr.Unknown(fmt.Errorf("load session: %w", err))
	}
	if !secretEqual(sess.ClientSecret, clientSecret) {
		return "", noSession
	}
	if !secretEqual(sess.Token, token) {
		return "", matrixerr.TokenIncorrect()
	}
	if sess.ValidatedAt != nil {
		return sess.NextLink, nil
	}
	if s.expired(sess, now) {
		return "", matrixerr.SessionExpired()
	}
	if err := s.store.MarkSessionValidated(ctx, sid, now); err != nil {
		return "", matrixerr.Unknown(fmt.Errorf("validate session: %w", err))
	}
	return sess.NextLink, nil
}

// Validated returns the 3PID of a session that is validated and still
// usable (getValidated3pid, and the proof behind bind and unbind).
func (s *Service) Validated(ctx context.Context, sid, clientSecret string) (Validated3PID, error) {
	sess, err := s.store.SessionBySID(ctx, sid)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !secretEqual(sess.ClientSecret, clientSecret)) {
		return Validated3PID{}, matrixerr.NoValidSession()
	}
	if err != nil {
		return Validated3PID{}, matrixerr.Unknown(fmt.Errorf("load session: %w", err))
	}
	switch expired := s.expired(sess, s.now()); {
	case expired:
		return Validated3PID{}, matrixerr.SessionExpired()
	case sess.ValidatedAt == nil:
		return Validated3PID{}, matrixerr.SessionNotValidated()
	}
	return Validated3PID{Medium: sess.Medium, Address: sess.Address, ValidatedAt: *sess.ValidatedAt}, nil
}
