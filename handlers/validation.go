package handlers

import (
	"bytes"
	"context"
	"io"

	"github.com/sigil-matrix/sigil/gen"
	"github.com/sigil-matrix/sigil/handlers/identity"
)

// tokenRequest is the part of a requestToken call common to both media.
func tokenRequest(ctx context.Context, api identity.API, clientSecret string, sendAttempt *int, nextLink *string) identity.TokenRequest {
	return identity.TokenRequest{
		API: api, ClientSecret: clientSecret, SendAttempt: sendAttempt, NextLink: nextLink, ClientIP: clientIP(ctx),
	}
}

// EmailRequestToken is POST /_matrix/identity/api/v1/validate/email/requestToken.
func (s *Server) EmailRequestToken(ctx context.Context, req gen.EmailRequestTokenRequestObject) (gen.EmailRequestTokenResponseObject, error) {
	b := req.Body
	sid, err := s.id.RequestEmailToken(ctx, tokenRequest(ctx, identity.V1, b.ClientSecret, b.SendAttempt, b.NextLink), b.Email)
	if err != nil {
		return nil, err
	}
	return gen.EmailRequestToken200JSONResponse{Sid: &sid}, nil
}

// EmailRequestTokenV2 is POST /_matrix/identity/v2/validate/email/requestToken.
func (s *Server) EmailRequestTokenV2(ctx context.Context, req gen.EmailRequestTokenV2RequestObject) (gen.EmailRequestTokenV2ResponseObject, error) {
	b := req.Body
	sid, err := s.id.RequestEmailToken(ctx, tokenRequest(ctx, identity.V2, b.ClientSecret, b.SendAttempt, b.NextLink), b.Email)
	if err != nil {
		return nil, err
	}
	return gen.EmailRequestTokenV2200JSONResponse{Sid: sid}, nil
}

// EmailSubmitTokenPost is POST .../validate/email/submitToken.
func (s *Server) EmailSubmitTokenPost(ctx context.Context, req gen.EmailSubmitTokenPostRequestObject) (gen.EmailSubmitTokenPostResponseObject, error) {
	b := req.Body
	if _, err := s.id.SubmitToken(ctx, b.Sid, b.ClientSecret, b.Token); err != nil {
		return nil, err
	}
	ok := true
	return gen.EmailSubmitTokenPost200JSONResponse{Success: &ok}, nil
}

// EmailSubmitTokenPostV2 is POST /_matrix/identity/v2/validate/email/submitToken.
func (s *Server) EmailSubmitTokenPostV2(ctx context.Context, req gen.EmailSubmitTokenPostV2RequestObject) (gen.EmailSubmitTokenPostV2ResponseObject, error) {
	b := req.Body
	if _, err := s.id.SubmitToken(ctx, b.Sid, b.ClientSecret, b.Token); err != nil {
		return nil, err
	}
	return gen.EmailSubmitTokenPostV2200JSONResponse{Success: true}, nil
}

// clickedLink validates a session from a link someone clicked, and returns
// where to send them: the next_link stored with the session, or a page.
func (s *Server) clickedLink(ctx context.Context, sid, clientSecret, token string, page []byte) (*string, io.Reader, int64, error) {
	next, err := s.id.SubmitToken(ctx, sid, clientSecret, token)
	if err != nil {
		return nil, nil, 0, err
	}
	if next != "" {
		return &next, nil, 0, nil
	}
	return nil, bytes.NewReader(page), int64(len(page)), nil
}

// EmailSubmitTokenGet is the link in the email: a page for people, or a
// redirect to the next_link stored with the session.
func (s *Server) EmailSubmitTokenGet(ctx context.Context, req gen.EmailSubmitTokenGetRequestObject) (gen.EmailSubmitTokenGetResponseObject, error) {
	p := req.Params
	loc, body, n, err := s.clickedLink(ctx, p.Sid, p.ClientSecret, p.Token, s.pages.successPage("email"))
	switch {
	case err != nil:
		return nil, err
	case loc != nil:
		return gen.EmailSubmitTokenGet3XXResponse{StatusCode: 302, Headers: gen.EmailSubmitTokenGet3XXResponseHeaders{Location: loc}}, nil
	}
	return gen.EmailSubmitTokenGet200TexthtmlResponse{Body: body, ContentLength: n}, nil
}

// EmailSubmitTokenGetV2 is the v2 link: no access token is needed to click it.
func (s *Server) EmailSubmitTokenGetV2(ctx context.Context, req gen.EmailSubmitTokenGetV2RequestObject) (gen.EmailSubmitTokenGetV2ResponseObject, error) {
	p := req.Params
	loc, body, n, err := s.clickedLink(ctx, p.Sid, p.ClientSecret, p.Token, s.pages.successPage("email"))
	switch {
	case err != nil:
		return nil, err
	case loc != nil:
		return gen.EmailSubmitTokenGetV23XXResponse{StatusCode: 302, Headers: gen.EmailSubmitTokenGetV23XXResponseHeaders{Location: loc}}, nil
	}
	return gen.EmailSubmitTokenGetV2200TexthtmlResponse{Body: body, ContentLength: n}, nil
}
