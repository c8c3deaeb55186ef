package handlers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/getkin/kin-openapi/routers"
	"github.com/labstack/echo/v4"

	"github.com/sigil-matrix/sigil/gen"
	"github.com/sigil-matrix/sigil/handlers/federation"
	"github.com/sigil-matrix/sigil/handlers/matrixerr"
	"github.com/sigil-matrix/sigil/spec/validate"
	"github.com/sigil-matrix/sigil/store"
)

// Policy is one terms-of-service document in several languages.
type Policy struct {
	ID        string
	Version   string
	Languages map[string]PolicyDoc // ISO 639 code → document
}

// PolicyDoc is one language's version of a policy.
type PolicyDoc struct {
	Name string
	URL  string
}

// termsExempt are the authenticated operations a user may call before
// accepting the terms: accepting them, and logging out. Keys are lower
// case: the embedded document carries oapi-codegen's capitalised ids.
var termsExempt = map[string]bool{"agreetoterms": true, "logout": true}

type userKey struct{}

// userID is the authenticated user of a v2 request.
func userID(ctx context.Context) string {
	u, _ := ctx.Value(userKey{}).(string)
	return u
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

// AccessTokenHash is how access tokens are stored: SHA-256, hex.
func AccessTokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
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
	tok := accessToken(r)
	if tok == "" {
		return matrixerr.Unauthorized("An access token is required: register at /_matrix/identity/v2/account/register")
	}
	user, err := s.store.AccountByTokenHash(r.Context(), AccessTokenHash(tok))
	if errors.Is(err, store.ErrNotFound) {
		if strings.EqualFold(route.Operation.OperationID, "logout") {
			return matrixerr.UnknownToken("Unknown access token")
		}
		return matrixerr.Unauthorized("Unknown or expired access token")
	}
	if err != nil {
		return matrixerr.Unknown(fmt.Errorf("authenticate: %w", err))
	}
	if !termsExempt[strings.ToLower(route.Operation.OperationID)] {
		if err := s.checkTerms(r.Context(), user); err != nil {
			return err
		}
	}
	c.SetRequest(r.WithContext(context.WithValue(r.Context(), userKey{}, user)))
	return next(c)
}

// checkTerms requires that user accepted, for every configured policy, one
// of the URLs of its current version (any language counts).
func (s *Server) checkTerms(ctx context.Context, user string) error {
	if len(s.cfg.Terms) == 0 {
		return nil
	}
	accepted, err := s.store.AcceptedTerms(ctx, user)
	if err != nil {
		return matrixerr.Unknown(fmt.Errorf("terms: %w", err))
	}
	for _, p := range s.cfg.Terms {
		ok := false
		for _, d := range p.Languages {
			if slices.Contains(accepted, d.URL) {
				ok = true
				break
			}
		}
		if !ok {
			return matrixerr.TermsNotSigned()
		}
	}
	return nil
}

// RegisterAccount is POST /_matrix/identity/v2/account/register: the
// user's homeserver vouches for an OpenID token, and we issue our own token.
func (s *Server) RegisterAccount(ctx context.Context, req gen.RegisterAccountRequestObject) (gen.RegisterAccountResponseObject, error) {
	b := req.Body
	server := strings.ToLower(b.MatrixServerName)
	if !federation.ValidServerName(server) {
		return nil, matrixerr.InvalidParam("matrix_server_name is not a valid server name")
	}
	if len(s.cfg.RegisterAllowedServers) > 0 && !slices.Contains(s.cfg.RegisterAllowedServers, server) {
		return nil, matrixerr.Forbidden("Accounts from this homeserver are not accepted here")
	}
	if b.AccessToken == "" {
		return nil, matrixerr.InvalidParam("access_token is empty")
	}
	user, err := s.fed.OpenIDUserInfo(ctx, server, b.AccessToken)
	switch {
	case errors.Is(err, federation.ErrUnknownToken):
		return nil, matrixerr.UnknownToken("The homeserver does not recognise this OpenID token")
	case err != nil:
		return nil, matrixerr.New(http.StatusBadGateway, "M_UNKNOWN",
			fmt.Sprintf("Could not verify the OpenID token with %s", server)).WithCause(err)
	}
	tok := randomString(64, alphanumeric)
	if err := s.store.CreateAccount(ctx, user, AccessTokenHash(tok), s.now()); err != nil {
		return nil, matrixerr.Unknown(fmt.Errorf("create account: %w", err))
	}
	return gen.RegisterAccount200JSONResponse{Token: tok, AccessToken: &tok}, nil
}

// GetAccount is GET /_matrix/identity/v2/account.
func (s *Server) GetAccount(ctx context.Context, _ gen.GetAccountRequestObject) (gen.GetAccountResponseObject, error) {
	return gen.GetAccount200JSONResponse{UserId: userID(ctx)}, nil
}

// Logout is POST /_matrix/identity/v2/account/logout: revokes the token used.
func (s *Server) Logout(ctx context.Context, _ gen.LogoutRequestObject) (gen.LogoutResponseObject, error) {
	if _, err := s.store.DeleteAccount(ctx, AccessTokenHash(accessToken(httpRequest(ctx)))); err != nil {
		return nil, matrixerr.Unknown(fmt.Errorf("logout: %w", err))
	}
	return gen.Logout200JSONResponse{}, nil
}

// GetTerms is GET /_matrix/identity/v2/terms.
func (s *Server) GetTerms(context.Context, gen.GetTermsRequestObject) (gen.GetTermsResponseObject, error) {
	policies := make(map[string]map[string]any, len(s.cfg.Terms))
	for _, p := range s.cfg.Terms {
		doc := map[string]any{"version": p.Version}
		for lang, d := range p.Languages {
			doc[lang] = map[string]any{"name": d.Name, "url": d.URL}
		}
		policies[p.ID] = doc
	}
	return gen.GetTerms200JSONResponse{Policies: policies}, nil
}

// AgreeToTerms is POST /_matrix/identity/v2/terms: records acceptance of
// the URLs given, adding to what was accepted before. URLs of no current
// policy are ignored.
func (s *Server) AgreeToTerms(ctx context.Context, req gen.AgreeToTermsRequestObject) (gen.AgreeToTermsResponseObject, error) {
	known := map[string]bool{}
	for _, p := range s.cfg.Terms {
		for _, d := range p.Languages {
			known[d.URL] = true
		}
	}
	var urls []string
	for _, u := range req.Body.UserAccepts {
		if known[u] {
			urls = append(urls, u)
		}
	}
	if err := s.store.AcceptTerms(ctx, userID(ctx), urls, s.now()); err != nil {
		return nil, matrixerr.Unknown(fmt.Errorf("accept terms: %w", err))
	}
	return gen.AgreeToTerms200JSONResponse{}, nil
}

// requireSelf refuses acting for another user than the token's.
func requireSelf(ctx context.Context, mxid, what string) error {
	if mxid != userID(ctx) {
		return matrixerr.New(http.StatusForbidden, "M_UNAUTHORIZED", fmt.Sprintf("The %s must be the user this access token belongs to", what))
	}
	return nil
}
