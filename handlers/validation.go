package handlers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"

	"github.com/sigil-matrix/sigil/gen"
	"github.com/sigil-matrix/sigil/handlers/mail"
	"github.com/sigil-matrix/sigil/handlers/matrixerr"
	"github.com/sigil-matrix/sigil/store"
)

// API prefixes; links and key_validity_urls point at the version the client
// used, so they keep working when the other one is switched off.
const (
	v1Prefix = "/_matrix/identity/api/v1"
	v2Prefix = "/_matrix/identity/v2"
)

// sessionRequest is a requestToken call, for any medium.
type sessionRequest struct {
	medium, address, clientSecret string
	sendAttempt                   *int
	nextLink                      *string
}

// startSession creates or reuses a validation session under the
// send_attempt rules and reports whether a message should go out. An absent
// send_attempt counts as 0: the first call sends, identical retries do not.
func (s *Server) startSession(ctx context.Context, r sessionRequest) (store.Session, bool, error) {
	if err := checkClientSecret(r.clientSecret); err != nil {
		return store.Session{}, false, err
	}
	next, err := s.checkNextLink(r.nextLink)
	if err != nil {
		return store.Session{}, false, err
	}
	if err := s.allowMessage(r.address, clientIP(ctx)); err != nil {
		return store.Session{}, false, err
	}
	attempt := 0
	if r.sendAttempt != nil {
		attempt = *r.sendAttempt
	}
	sess, send, err := s.store.RequestSession(ctx, store.SessionRequest{
		Medium: r.medium, Address: r.address, ClientSecret: r.clientSecret,
		SendAttempt: attempt, NextLink: next,
		NewSID: randomString(24, alphanumeric), NewToken: s.newToken(r.medium),
		Now: s.now(), Lifetime: s.cfg.TokenLifetime,
	})
	if err != nil {
		return store.Session{}, false, matrixerr.Unknown(fmt.Errorf("request session: %w", err))
	}
	return sess, send, nil
}

// newToken: a long random token for links, six digits for SMS.
func (s *Server) newToken(medium string) string {
	if medium == mediumMSISDN {
		return randomString(6, "0123456789")
	}
	return randomString(32, alphanumeric)
}

// allowMessage applies the per-address and per-IP limits on outgoing mail
// and SMS.
func (s *Server) allowMessage(address, ip string) error {
	now := s.now()
	if ok, wait := s.mailByAddr.Allow("addr:"+address, now); !ok {
		return matrixerr.LimitExceeded(wait.Milliseconds())
	}
	if ip != "" {
		if ok, wait := s.mailByIP.Allow("ip:"+ip, now); !ok {
			return matrixerr.LimitExceeded(wait.Milliseconds())
		}
	}
	return nil
}

// checkNextLink accepts only absolute http(s) URLs (and, when configured,
// only the allowed hosts), so a validation link can never become an open
// redirect to another scheme.
func (s *Server) checkNextLink(p *string) (string, error) {
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

// requestEmailToken is email requestToken for both API versions.
func (s *Server) requestEmailToken(ctx context.Context, prefix, clientSecret, email string, sendAttempt *int, nextLink *string) (string, error) {
	addr, err := canonicalEmail(email)
	if err != nil {
		return "", err
	}
	sess, send, err := s.startSession(ctx, sessionRequest{
		medium: mediumEmail, address: addr, clientSecret: clientSecret,
		sendAttempt: sendAttempt, nextLink: nextLink,
	})
	if err != nil || !send {
		return sess.SID, err
	}
	link := s.cfg.PublicBaseURL + prefix + "/validate/email/submitToken?" + url.Values{
		"sid": {sess.SID}, "client_secret": {clientSecret}, "token": {sess.Token},
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

func humanDuration(d interface{ Hours() float64 }) string {
	h := d.Hours()
	if h >= 1 && h == float64(int(h)) {
		if h == 1 {
			return "1 hour"
		}
		return fmt.Sprintf("%d hours", int(h))
	}
	return fmt.Sprintf("%.0f minutes", h*60)
}

// submitToken validates a session with the token that was sent.
func (s *Server) submitToken(ctx context.Context, sid, clientSecret, token string) (store.Session, error) {
	noSession := matrixerr.InvalidParam("No session matches that sid and client_secret")
	if ok, wait := s.tokenTries.Allow(sid, s.now()); !ok {
		return store.Session{}, matrixerr.LimitExceeded(wait.Milliseconds())
	}
	sess, err := s.store.SessionBySID(ctx, sid)
	if errors.Is(err, store.ErrNotFound) {
		return sess, noSession
	}
	if err != nil {
		return sess, matrixerr.Unknown(fmt.Errorf("load session: %w", err))
	}
	if !secretEqual(sess.ClientSecret, clientSecret) {
		return sess, noSession
	}
	if !secretEqual(sess.Token, token) {
		return sess, matrixerr.TokenIncorrect()
	}
	if sess.ValidatedAt != nil {
		return sess, nil // submitting twice is not an error
	}
	if s.now().Sub(sess.ModifiedAt) > s.cfg.TokenLifetime {
		return sess, matrixerr.SessionExpired()
	}
	if err := s.store.MarkSessionValidated(ctx, sid, s.now()); err != nil {
		return sess, matrixerr.Unknown(fmt.Errorf("validate session: %w", err))
	}
	return sess, nil
}

// validatedSession returns a session that is validated and still usable.
func (s *Server) validatedSession(ctx context.Context, sid, clientSecret string) (store.Session, error) {
	if err := checkClientSecret(clientSecret); err != nil {
		return store.Session{}, err
	}
	sess, err := s.store.SessionBySID(ctx, sid)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !secretEqual(sess.ClientSecret, clientSecret)) {
		return store.Session{}, matrixerr.NoValidSession()
	}
	if err != nil {
		return store.Session{}, matrixerr.Unknown(fmt.Errorf("load session: %w", err))
	}
	age := s.now().Sub(sess.ModifiedAt)
	switch {
	case sess.ValidatedAt == nil && age > s.cfg.TokenLifetime:
		return store.Session{}, matrixerr.SessionExpired()
	case sess.ValidatedAt == nil:
		return store.Session{}, matrixerr.SessionNotValidated()
	case age > s.cfg.SessionLifetime:
		return store.Session{}, matrixerr.SessionExpired()
	}
	return sess, nil
}

// EmailRequestToken is POST /_matrix/identity/api/v1/validate/email/requestToken.
func (s *Server) EmailRequestToken(ctx context.Context, req gen.EmailRequestTokenRequestObject) (gen.EmailRequestTokenResponseObject, error) {
	b := req.Body
	sid, err := s.requestEmailToken(ctx, v1Prefix, b.ClientSecret, b.Email, b.SendAttempt, b.NextLink)
	if err != nil {
		return nil, err
	}
	return gen.EmailRequestToken200JSONResponse{Sid: &sid}, nil
}

// EmailSubmitTokenPost is POST .../validate/email/submitToken.
func (s *Server) EmailSubmitTokenPost(ctx context.Context, req gen.EmailSubmitTokenPostRequestObject) (gen.EmailSubmitTokenPostResponseObject, error) {
	b := req.Body
	if _, err := s.submitToken(ctx, b.Sid, b.ClientSecret, b.Token); err != nil {
		return nil, err
	}
	ok := true
	return gen.EmailSubmitTokenPost200JSONResponse{Success: &ok}, nil
}

// clickedLink validates a session from a link someone clicked, and returns
// where to send them: the next_link stored with the session, or a page.
func (s *Server) clickedLink(ctx context.Context, sid, clientSecret, token string, page []byte) (*string, io.Reader, int64, error) {
	sess, err := s.submitToken(ctx, sid, clientSecret, token)
	if err != nil {
		return nil, nil, 0, err
	}
	if sess.NextLink != "" {
		return &sess.NextLink, nil, 0, nil
	}
	return nil, bytes.NewReader(page), int64(len(page)), nil
}

var emailVerifiedPage = successPage("Email address verified",
	"Your email address has been verified. You can close this page and return to your Matrix client.")

// EmailSubmitTokenGet is the link in the email: a page for people, or a
// redirect to the next_link stored with the session.
func (s *Server) EmailSubmitTokenGet(ctx context.Context, req gen.EmailSubmitTokenGetRequestObject) (gen.EmailSubmitTokenGetResponseObject, error) {
	p := req.Params
	loc, body, n, err := s.clickedLink(ctx, p.Sid, p.ClientSecret, p.Token, emailVerifiedPage)
	switch {
	case err != nil:
		return nil, err
	case loc != nil:
		return gen.EmailSubmitTokenGet3XXResponse{StatusCode: 302, Headers: gen.EmailSubmitTokenGet3XXResponseHeaders{Location: loc}}, nil
	}
	return gen.EmailSubmitTokenGet200TexthtmlResponse{Body: body, ContentLength: n}, nil
}

// EmailRequestTokenV2 is POST /_matrix/identity/v2/validate/email/requestToken.
func (s *Server) EmailRequestTokenV2(ctx context.Context, req gen.EmailRequestTokenV2RequestObject) (gen.EmailRequestTokenV2ResponseObject, error) {
	b := req.Body
	sid, err := s.requestEmailToken(ctx, v2Prefix, b.ClientSecret, b.Email, b.SendAttempt, b.NextLink)
	if err != nil {
		return nil, err
	}
	return gen.EmailRequestTokenV2200JSONResponse{Sid: sid}, nil
}

// EmailSubmitTokenPostV2 is POST /_matrix/identity/v2/validate/email/submitToken.
func (s *Server) EmailSubmitTokenPostV2(ctx context.Context, req gen.EmailSubmitTokenPostV2RequestObject) (gen.EmailSubmitTokenPostV2ResponseObject, error) {
	b := req.Body
	if _, err := s.submitToken(ctx, b.Sid, b.ClientSecret, b.Token); err != nil {
		return nil, err
	}
	return gen.EmailSubmitTokenPostV2200JSONResponse{Success: true}, nil
}

// EmailSubmitTokenGetV2 is the v2 link: no token is needed to click it.
func (s *Server) EmailSubmitTokenGetV2(ctx context.Context, req gen.EmailSubmitTokenGetV2RequestObject) (gen.EmailSubmitTokenGetV2ResponseObject, error) {
	p := req.Params
	loc, body, n, err := s.clickedLink(ctx, p.Sid, p.ClientSecret, p.Token, emailVerifiedPage)
	switch {
	case err != nil:
		return nil, err
	case loc != nil:
		return gen.EmailSubmitTokenGetV23XXResponse{StatusCode: 302, Headers: gen.EmailSubmitTokenGetV23XXResponseHeaders{Location: loc}}, nil
	}
	return gen.EmailSubmitTokenGetV2200TexthtmlResponse{Body: body, ContentLength: n}, nil
}
