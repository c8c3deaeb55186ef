package handlers

import (
	"context"
	"errors"
	"fmt"

	"github.com/sigil-matrix/sigil/gen"
	"github.com/sigil-matrix/sigil/handlers/matrixerr"
	"github.com/sigil-matrix/sigil/handlers/sms"
)

// msisdnSession is the answer to a phone requestToken; Synapse's msisdn
// delegate passes msisdn and intl_fmt on to clients.
type msisdnSession struct {
	sid, msisdn, intl string
}

// requestMSISDNToken validates a phone number and texts it a code, under
// the same session and send_attempt rules as email.
func (s *Server) requestMSISDNToken(ctx context.Context, clientSecret, country, phone string, sendAttempt *int, nextLink *string) (msisdnSession, error) {
	msisdn, intl, err := sms.Normalize(country, phone)
	if err != nil {
		return msisdnSession{}, matrixerr.InvalidAddress("Invalid phone number: " + err.Error())
	}
	sess, send, err := s.startSession(ctx, sessionRequest{
		medium: mediumMSISDN, address: msisdn, clientSecret: clientSecret,
		sendAttempt: sendAttempt, nextLink: nextLink,
	})
	if err != nil {
		return msisdnSession{}, err
	}
	out := msisdnSession{sid: sess.SID, msisdn: msisdn, intl: intl}
	if !send {
		return out, nil
	}
	text := fmt.Sprintf("Your %s validation code is %s", s.cfg.ServerName, sess.Token)
	if err := s.sms.Send(ctx, sms.Message{To: msisdn, Text: text}); err != nil {
		if errors.Is(err, sms.ErrInvalidNumber) {
			return msisdnSession{}, matrixerr.InvalidAddress("Invalid phone number")
		}
		return msisdnSession{}, matrixerr.SendError(err)
	}
	return out, nil
}

var phoneVerifiedPage = successPage("Phone number verified",
	"Your phone number has been verified. You can close this page and return to your Matrix client.")

// MsisdnRequestToken is POST /_matrix/identity/api/v1/validate/msisdn/requestToken.
func (s *Server) MsisdnRequestToken(ctx context.Context, req gen.MsisdnRequestTokenRequestObject) (gen.MsisdnRequestTokenResponseObject, error) {
	b := req.Body
	r, err := s.requestMSISDNToken(ctx, b.ClientSecret, b.Country, b.PhoneNumber, b.SendAttempt, b.NextLink)
	if err != nil {
		return nil, err
	}
	ok := true
	return gen.MsisdnRequestToken200JSONResponse{Sid: r.sid, Msisdn: &r.msisdn, IntlFmt: &r.intl, Success: &ok}, nil
}

// MsisdnRequestTokenV2 is POST /_matrix/identity/v2/validate/msisdn/requestToken.
func (s *Server) MsisdnRequestTokenV2(ctx context.Context, req gen.MsisdnRequestTokenV2RequestObject) (gen.MsisdnRequestTokenV2ResponseObject, error) {
	b := req.Body
	r, err := s.requestMSISDNToken(ctx, b.ClientSecret, b.Country, b.PhoneNumber, b.SendAttempt, b.NextLink)
	if err != nil {
		return nil, err
	}
	return convertJSON[gen.MsisdnRequestTokenV2200JSONResponse](map[string]any{
		"sid": r.sid, "msisdn": r.msisdn, "intl_fmt": r.intl, "success": true,
	})
}

// MsisdnSubmitTokenPost is POST /_matrix/identity/api/v1/validate/msisdn/submitToken.
func (s *Server) MsisdnSubmitTokenPost(ctx context.Context, req gen.MsisdnSubmitTokenPostRequestObject) (gen.MsisdnSubmitTokenPostResponseObject, error) {
	b := req.Body
	if _, err := s.submitToken(ctx, b.Sid, b.ClientSecret, b.Token); err != nil {
		return nil, err
	}
	return convertJSON[gen.MsisdnSubmitTokenPost200JSONResponse](map[string]any{"success": true})
}

// MsisdnSubmitTokenPostV2 is POST /_matrix/identity/v2/validate/msisdn/submitToken.
func (s *Server) MsisdnSubmitTokenPostV2(ctx context.Context, req gen.MsisdnSubmitTokenPostV2RequestObject) (gen.MsisdnSubmitTokenPostV2ResponseObject, error) {
	b := req.Body
	if _, err := s.submitToken(ctx, b.Sid, b.ClientSecret, b.Token); err != nil {
		return nil, err
	}
	return convertJSON[gen.MsisdnSubmitTokenPostV2200JSONResponse](map[string]any{"success": true})
}

// MsisdnSubmitTokenGet is GET /_matrix/identity/api/v1/validate/msisdn/submitToken.
func (s *Server) MsisdnSubmitTokenGet(ctx context.Context, req gen.MsisdnSubmitTokenGetRequestObject) (gen.MsisdnSubmitTokenGetResponseObject, error) {
	p := req.Params
	loc, body, n, err := s.clickedLink(ctx, p.Sid, p.ClientSecret, p.Token, phoneVerifiedPage)
	switch {
	case err != nil:
		return nil, err
	case loc != nil:
		return gen.MsisdnSubmitTokenGet3XXResponse{StatusCode: 302, Headers: gen.MsisdnSubmitTokenGet3XXResponseHeaders{Location: loc}}, nil
	}
	return gen.MsisdnSubmitTokenGet200TexthtmlResponse{Body: body, ContentLength: n}, nil
}

// MsisdnSubmitTokenGetV2 is GET /_matrix/identity/v2/validate/msisdn/submitToken.
func (s *Server) MsisdnSubmitTokenGetV2(ctx context.Context, req gen.MsisdnSubmitTokenGetV2RequestObject) (gen.MsisdnSubmitTokenGetV2ResponseObject, error) {
	p := req.Params
	loc, body, n, err := s.clickedLink(ctx, p.Sid, p.ClientSecret, p.Token, phoneVerifiedPage)
	switch {
	case err != nil:
		return nil, err
	case loc != nil:
		return gen.MsisdnSubmitTokenGetV23XXResponse{StatusCode: 302, Headers: gen.MsisdnSubmitTokenGetV23XXResponseHeaders{Location: loc}}, nil
	}
	return gen.MsisdnSubmitTokenGetV2200TexthtmlResponse{Body: body, ContentLength: n}, nil
}
