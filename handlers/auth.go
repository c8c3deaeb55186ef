package handlers

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/routers"
	"github.com/labstack/echo/v4"

	"github.com/sigil-matrix/sigil/gen"
	"github.com/sigil-matrix/sigil/handlers/identity"
	"github.com/sigil-matrix/sigil/spec/matrixerr"
	"github.com/sigil-matrix/sigil/spec/validate"
)

// TermsExemptExtension marks, in the spec, the authenticated operations a
// user may call before accepting the current terms (accepting them, and
// logging out): `x-terms-exempt: true` on the operation.
const TermsExemptExtension = "x-terms-exempt"

// termsExempt reports whether the operation carries the extension.
func termsExempt(op *openapi3.Operation) bool {
	exempt, _ := op.Extensions[TermsExemptExtension].(bool)
	return exempt
}

// accessToken reads the token from `Authorization: Bearer`, or from the
// `access_token` query parameter, which Synapse still sends on hash_details.
func accessToken(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, ok := strings.Cut(h, " ")
		if ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(tok)
		}
		return ""
	}
	return r.URL.Query().Get("access_token")
}

// authenticate enforces what the spec's `security` says of the matched
// operation: a valid access token, and (except where exempt) acceptance of
// the current terms. The user goes into the request context. It runs
// before request validation, so an unauthenticated caller learns nothing
// about what a valid request looks like.
func (s *Server) authenticate(v *validate.Validator) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			return s.checkAuth(c, v.Route(c), next)
		}
	}
}

func (s *Server) checkAuth(c echo.Context, route *routers.Route, next echo.HandlerFunc) error {
	if route == nil || route.Operation.Security == nil || len(*route.Operation.Security) == 0 {
		return next(c)
	}
	r := c.Request()
	op := strings.ToLower(route.Operation.OperationID)
	user, err := s.id.Authenticate(r.Context(), accessToken(r))
	if errors.Is(err, identity.ErrUnknownToken) && op == "logout" {
		return matrixerr.UnknownToken("Unknown access token")
	}
	if err != nil {
		return err
	}
	if !termsExempt(route.Operation) {
		if err := s.id.CheckTerms(r.Context(), user); err != nil {
			return err
		}
	}
	c.SetRequest(r.WithContext(context.WithValue(r.Context(), userKey, user)))
	return next(c)
}

// RegisterAccount is POST /_matrix/identity/v2/account/register: the
// user's homeserver vouches for an OpenID token, and we issue our own token.
func (s *Server) RegisterAccount(ctx context.Context, req gen.RegisterAccountRequestObject) (gen.RegisterAccountResponseObject, error) {
	tok, err := s.id.Register(ctx, clientIP(ctx), req.Body.MatrixServerName, req.Body.AccessToken)
	if err != nil {
		return nil, err
	}
	return gen.RegisterAccount200JSONResponse{Token: tok, AccessToken: &tok}, nil
}

// GetAccount is GET /_matrix/identity/v2/account.
func (s *Server) GetAccount(ctx context.Context, _ gen.GetAccountRequestObject) (gen.GetAccountResponseObject, error) {
	return gen.GetAccount200JSONResponse{UserId: userID(ctx)}, nil
}

// Logout is POST /_matrix/identity/v2/account/logout: revokes the token used.
func (s *Server) Logout(ctx context.Context, _ gen.LogoutRequestObject) (gen.LogoutResponseObject, error) {
	if err := s.id.Logout(ctx, accessToken(httpRequest(ctx))); err != nil {
		return nil, err
	}
	return gen.Logout200JSONResponse{}, nil
}

// GetTerms is GET /_matrix/identity/v2/terms.
func (s *Server) GetTerms(context.Context, gen.GetTermsRequestObject) (gen.GetTermsResponseObject, error) {
	terms := s.id.Terms()
	policies := make(map[string]map[string]any, len(terms))
	for _, p := range terms {
		doc := map[string]any{"version": p.Version}
		for lang, d := range p.Languages {
			doc[lang] = map[string]any{"name": d.Name, "url": d.URL}
		}
		policies[p.ID] = doc
	}
	return gen.GetTerms200JSONResponse{Policies: policies}, nil
}

// AgreeToTerms is POST /_matrix/identity/v2/terms.
func (s *Server) AgreeToTerms(ctx context.Context, req gen.AgreeToTermsRequestObject) (gen.AgreeToTermsResponseObject, error) {
	if err := s.id.AgreeToTerms(ctx, userID(ctx), req.Body.UserAccepts); err != nil {
		return nil, err
	}
	return gen.AgreeToTerms200JSONResponse{}, nil
}
