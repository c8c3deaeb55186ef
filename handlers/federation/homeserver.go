package federation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// UserIDServer returns the server name of a Matrix user ID "@local:server"
// (everything after the first colon), if the ID is well formed.
func UserIDServer(userID string) (string, bool) {
	local, server, ok := strings.Cut(userID, ":")
	if !ok || len(local) < 2 || local[0] != '@' || len(userID) > 255 || !ValidServerName(server) {
		return "", false
	}
	return server, true
}

// OpenIDUserInfo asks serverName who owns an OpenID access token, via
// GET /_matrix/federation/v1/openid/userinfo. It returns the user ID ("sub")
// only if its server part is exactly serverName.
//
// Errors: ErrInvalidServerName; ErrUnknownToken on 401; ErrUnreachable for
// network failures and 5xx; ErrInvalidResponse for a bad body or a sub on
// another server; *StatusError for other statuses.
func (c *Client) OpenIDUserInfo(ctx context.Context, serverName, accessToken string) (string, error) {
	wrap := func(err error) error { return fmt.Errorf("openid userinfo from %s: %w", serverName, err) }
	ctx, cancel := c.callContext(ctx)
	defer cancel()
	if accessToken == "" {
		return "", wrap(ErrUnknownToken)
	}
	path := "/_matrix/federation/v1/openid/userinfo?access_token=" + url.QueryEscape(accessToken)
	resp, err := c.fedDo(ctx, http.MethodGet, serverName, path, nil)
	if err != nil {
		return "", wrap(err)
	}
	body, err := readBody(resp)
	if err != nil {
		return "", wrap(err)
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return "", wrap(fmt.Errorf("%w (%v)", ErrUnknownToken, statusError(resp.StatusCode, body)))
	case resp.StatusCode != http.StatusOK:
		return "", wrap(statusError(resp.StatusCode, body))
	}
	var info struct {
		Sub any `json:"sub"`
	}
	if err := json.Unmarshal(body, &info); err != nil {
		return "", wrap(fmt.Errorf("%w: %v", ErrInvalidResponse, err))
	}
	sub, ok := info.Sub.(string)
	if !ok || sub == "" {
		return "", wrap(fmt.Errorf("%w: no sub", ErrInvalidResponse))
	}
	if server, ok := UserIDServer(sub); !ok || server != serverName {
		return "", wrap(fmt.Errorf("%w: sub %q is not a user of %s", ErrInvalidResponse, truncate(sub, 100), serverName))
	}
	return sub, nil
}

// OnBind POSTs payload as JSON, without authentication, to serverName's
// /_matrix/federation/v1/3pid/onbind (serverName is the server part of the
// bound MXID; see UserIDServer). Any non-2xx answer is a *StatusError; 5xx
// answers and network failures also match ErrUnreachable. The caller owns
// retrying.
func (c *Client) OnBind(ctx context.Context, serverName string, payload any) error {
	wrap := func(err error) error { return fmt.Errorf("onbind to %s: %w", serverName, err) }
	ctx, cancel := c.callContext(ctx)
	defer cancel()
	var raw []byte
	switch p := payload.(type) {
	case json.RawMessage:
		raw = p
	case []byte:
		raw = p
	default:
		var err error
		if raw, err = json.Marshal(payload); err != nil {
			return wrap(err)
		}
	}
	if !json.Valid(raw) {
		return wrap(errors.New("payload is not JSON"))
	}
	resp, err := c.fedDo(ctx, http.MethodPost, serverName, "/_matrix/federation/v1/3pid/onbind", raw)
	if err != nil {
		return wrap(err)
	}
	body, err := readBody(resp)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return wrap(statusError(resp.StatusCode, body))
	}
	if err != nil {
		// The homeserver accepted the bind; a failure reading its (ignored)
		// answer must not make the caller resend.
		c.log.Debug("federation: onbind response unreadable", "server", serverName, "err", err)
	}
	return nil
}
