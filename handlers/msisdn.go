package handlers

import (
	"context"

	"github.com/sigil-matrix/sigil/gen"
	"github.com/sigil-matrix/sigil/handlers/identity"
)

// MsisdnRequestToken is POST /_matrix/identity/api/v1/validate/msisdn/requestToken.
func (s *Server) MsisdnRequestToken(ctx context.Context, req gen.MsisdnRequestTokenRequestObject) (gen.MsisdnRequestTokenResponseObject, error) {
	b := req.Body
	r, err := s.id.RequestPhoneToken(ctx, tokenRequest(ctx, identity.V1, b.ClientSecret, b.SendAttempt, b.NextLink), b.Country, b.PhoneNumber)
	if err != nil {
		return nil, err
	}
	ok := true
	return gen.MsisdnRequestToken200JSONResponse{Sid: r.SID, Msisdn: &r.MSISDN, IntlFmt: &r.IntlFmt, Success: &ok}, nil
}

// MsisdnRequestTokenV2 is POST /_matrix/identity/v2/validate/msisdn/requestToken.
func (s *Server) MsisdnRequestTokenV2(ctx context.Context, req gen.MsisdnRequestTokenV2RequestObject) (gen.MsisdnRequestTokenV2ResponseObject, error) {
	b := req.Body
	r, err := s.id.RequestPhoneToken(ctx, tokenRequest(ctx, identity.V2, b.ClientSecret, b.SendAttempt, b.NextLink), b.Country, b.PhoneNumber)
	if err != nil {
		return nil, err
	}
	return convertJSON[gen.MsisdnRequestTokenV2200JSONResponse](map[string]any{
		"sid": r.SID, "msisdn": r.MSISDN, "intl_fmt": r.IntlFmt, "success": true,
	})
}

// MsisdnSubmitTokenPost is POST /_matrix/identity/api/v1/validate/msisdn/submitToken.
func (s *Server) MsisdnSubmitTokenPost(ctx context.Context, req gen.MsisdnSubmitTokenPostRequestObject) (gen.MsisdnSubmitTokenPostResponseObject, error) {
	b := req.Body
	if _, err := s.id.SubmitToken(ctx, b.Sid, b.ClientSecret, b.Token); err != nil {
		return nil, err
	}
	return convertJSON[gen.MsisdnSubmitTokenPost200JSONResponse](map[string]any{"success": true})
}

// MsisdnSubmitTokenPostV2 is POST /_matrix/identity/v2/validate/msisdn/submitToken.
func (s *Server) MsisdnSubmitTokenPostV2(ctx context.Context, req gen.MsisdnSubmitTokenPostV2RequestObject) (gen.MsisdnSubmitTokenPostV2ResponseObject, error) {
	b := req.Body
	if _, err := s.id.SubmitToken(ctx, b.Sid, b.ClientSecret, b.Token); err != nil {
		return nil, err
	}
	return convertJSON[gen.MsisdnSubmitTokenPostV2200JSONResponse](map[string]any{"success": true})
}

// MsisdnSubmitTokenGet is GET /_matrix/identity/api/v1/validate/msisdn/submitToken.
func (s *Server) MsisdnSubmitTokenGet(ctx context.Context, req gen.MsisdnSubmitTokenGetRequestObject) (gen.MsisdnSubmitTokenGetResponseObject, error) {
	p := req.Params
	loc, body, n, err := s.clickedLink(ctx, p.Sid, p.ClientSecret, p.Token, s.pages.successPage("msisdn"))
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
	loc, body, n, err := s.clickedLink(ctx, p.Sid, p.ClientSecret, p.Token, s.pages.successPage("msisdn"))
	switch {
	case err != nil:
		return nil, err
	case loc != nil:
		return gen.MsisdnSubmitTokenGetV23XXResponse{StatusCode: 302, Headers: gen.MsisdnSubmitTokenGetV23XXResponseHeaders{Location: loc}}, nil
	}
	return gen.MsisdnSubmitTokenGetV2200TexthtmlResponse{Body: body, ContentLength: n}, nil
}
