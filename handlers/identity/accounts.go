package identity

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/sigil-matrix/sigil/handlers/federation"
	"github.com/sigil-matrix/sigil/spec/matrixerr"
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

// ErrUnknownToken is Authenticate's refusal of a token that is not (or no
// longer) known; compare with errors.Is.
var ErrUnknownToken = matrixerr.Unauthorized("Unknown or expired access token")

// AccessTokenHash is how access tokens are stored: SHA-256, hex.
func AccessTokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// Register exchanges an OpenID token, vouched for by the user's
// homeserver, for an access token of ours (v2 account/register). Each call
// costs an outbound request, so clientIP is rate-limited.
func (s *Service) Register(ctx context.Context, clientIP, serverName, openIDToken string) (string, error) {
	if clientIP != "" {
		if ok, wait := s.registerByIP.Allow(clientIP, s.now()); !ok {
			return "", matrixerr.LimitExceeded(wait.Milliseconds())
		}
	}
	server := strings.ToLower(serverName)
	if !federation.ValidServerName(server) {
		return "", matrixerr.InvalidParam("matrix_server_name is not a valid server name")
	}
	if len(s.cfg.RegisterAllowedServers) > 0 && !slices.Contains(s.cfg.RegisterAllowedServers, server) {
		return "", matrixerr.Forbidden("Accounts from this homeserver are not accepted here")
	}
	if openIDToken == "" {
		return "", matrixerr.InvalidParam("access_token is empty")
	}
	user, err := s.fed.OpenIDUserInfo(ctx, server, openIDToken)
	switch {
	case errors.Is(err, federation.ErrUnknownToken):
		return "", matrixerr.UnknownToken("The homeserver does not recognise this OpenID token")
	case errors.Is(err, federation.ErrForbiddenAddress):
		// Policy, not an outage: say so, and do not invite a retry.
		return "", matrixerr.Forbidden(fmt.Sprintf(
			"%s resolves to a private or reserved address, which this server does not contact", server)).WithCause(err)
	case errors.Is(err, federation.ErrUnresolvable):
		// The name does not exist: the client's mistake, not an outage.
		return "", matrixerr.InvalidParam(fmt.Sprintf("matrix_server_name %s does not resolve to any address", server)).WithCause(err)
	case errors.Is(err, federation.ErrInvalidServerName):
		return "", matrixerr.InvalidParam("matrix_server_name is not a valid server name").WithCause(err)
	case err != nil:
		return "", matrixerr.New(http.StatusBadGateway, "M_UNKNOWN",
			fmt.Sprintf("Could not verify the OpenID token with %s", server)).WithCause(err)
	}
	tok := randomString(64, alphanumeric)
	if err := s.store.CreateAccount(ctx, user, AccessTokenHash(tok), s.now()); err != nil {
		return "", matrixerr.Unknown(fmt.Errorf("create account: %w", err))
	}
	return tok, nil
}

// Authenticate returns the user an access token belongs to. An empty or
// unknown token is M_UNAUTHORIZED (ErrUnknownToken for an unknown one).
func (s *Service) Authenticate(ctx context.Context, token string) (string, error) {
	if token == "" {
		return "", matrixerr.Unauthorized("An access token is required: register at /_matrix/identity/v2/account/register")
	}
	hash := AccessTokenHash(token)
	user, err := s.store.AccountByTokenHash(ctx, hash)
	if errors.Is(err, store.ErrNotFound) {
		return "", ErrUnknownToken
	}
	if err != nil {
		if user, ok := s.auth.get(hash, s.now()); ok && Unavailable(err) {
			return user, nil // the database is down: lookups go on
		}
		return "", matrixerr.Unknown(fmt.Errorf("authenticate: %w", err))
	}
	s.auth.put(hash, user, s.now())
	return user, nil
}

// Logout revokes an access token.
func (s *Service) Logout(ctx context.Context, token string) error {
	s.auth.forget(AccessTokenHash(token))
	if _, err := s.store.DeleteAccount(ctx, AccessTokenHash(token)); err != nil {
		return matrixerr.Unknown(fmt.Errorf("logout: %w", err))
	}
	return nil
}

// RequireSelf refuses acting for another user than the token's: v2 bind
// and store-invite name the user they act for (MSC2140).
func RequireSelf(user, mxid, what string) error {
	if mxid != user {
		return matrixerr.New(http.StatusForbidden, "M_UNAUTHORIZED", fmt.Sprintf("The %s must be the user this access token belongs to", what))
	}
	return nil
}

// Terms are the policies users must accept.
func (s *Service) Terms() []Policy { return s.cfg.Terms }

// CheckTerms requires that user accepted, for every configured policy,
// one of the URLs of its current version (any language counts).
func (s *Service) CheckTerms(ctx context.Context, user string) (err error) {
	if len(s.cfg.Terms) == 0 {
		return nil
	}
	accepted, err := s.store.AcceptedTerms(ctx, user)
	if err != nil {
		if _, ok := s.auth.get(termsKey(user), s.now()); ok && Unavailable(err) {
			return nil // accepted when last checked; the database is down
		}
		return matrixerr.Unknown(fmt.Errorf("terms: %w", err))
	}
	defer func() {
		if err == nil {
			s.auth.put(termsKey(user), user, s.now())
		}
	}()
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

// termsKey is where authCache remembers that user had accepted the terms.
func termsKey(user string) string { return "terms\x00" + user }

// AgreeToTerms records user's acceptance of the URLs given, adding to what
// was accepted before. URLs of no current policy are ignored.
func (s *Service) AgreeToTerms(ctx context.Context, user string, urls []string) error {
	known := map[string]bool{}
	for _, p := range s.cfg.Terms {
		for _, d := range p.Languages {
			known[d.URL] = true
		}
	}
	var accepted []string
	for _, u := range urls {
		if known[u] {
			accepted = append(accepted, u)
		}
	}
	if err := s.store.AcceptTerms(ctx, user, accepted, s.now()); err != nil {
		return matrixerr.Unknown(fmt.Errorf("accept terms: %w", err))
	}
	return nil
}
