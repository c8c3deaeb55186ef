package federation

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"time"

	"github.com/sigil-matrix/sigil/handlers/signing"
)

const (
	keyMinTTL = 5 * time.Minute
	keyMaxTTL = 7 * 24 * time.Hour
	// keyRefetchAfter limits how often an unknown key ID in a request may
	// trigger a fresh key fetch (the homeserver may have rotated keys).
	keyRefetchAfter = time.Minute
)

type keyEntry struct {
	keys    map[string]ed25519.PublicKey
	fetched time.Time
	expires time.Time
}

// ServerKeys returns serverName's current federation signing keys (key ID →
// public key) from GET /_matrix/key/v2/server on its resolved destination.
// The response must name serverName as server_name and be self-signed by
// one of its verify_keys. Keys are cached until valid_until_ts, clamped to
// [5 minutes, 7 days]; concurrent callers share one fetch. The caller may
// modify the returned map.
//
// Network failures and 5xx answers match ErrUnreachable; a wrong or
// unsigned answer matches ErrInvalidResponse.
func (c *Client) ServerKeys(ctx context.Context, serverName string) (map[string]ed25519.PublicKey, error) {
	return c.serverKeys(ctx, serverName, false)
}

// serverKeys is ServerKeys; refresh asks for a new fetch unless the cached
// keys are younger than keyRefetchAfter.
func (c *Client) serverKeys(ctx context.Context, serverName string, refresh bool) (map[string]ed25519.PublicKey, error) {
	if !ValidServerName(serverName) {
		return nil, fmt.Errorf("fetch keys from %q: %w", serverName, ErrInvalidServerName)
	}
	now := c.now()
	c.mu.Lock()
	e, ok := c.keys[serverName]
	c.mu.Unlock()
	if ok && now.Before(e.expires) && !(refresh && now.Sub(e.fetched) >= keyRefetchAfter) {
		return maps.Clone(e.keys), nil
	}
	ch := c.flight.DoChan("keys\x00"+serverName, func() (any, error) {
		fctx, cancel := c.callContext(context.WithoutCancel(ctx))
		defer cancel()
		keys, ttl, err := c.fetchServerKeys(fctx, serverName)
		if err != nil {
			return nil, err
		}
		fetched := c.now()
		c.mu.Lock()
		putBounded(c.keys, serverName, keyEntry{keys: keys, fetched: fetched, expires: fetched.Add(ttl)},
			func(e keyEntry) bool { return !fetched.Before(e.expires) })
		c.mu.Unlock()
		return keys, nil
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, fmt.Errorf("fetch keys from %s: %w", serverName, r.Err)
		}
		return maps.Clone(r.Val.(map[string]ed25519.PublicKey)), nil
	case <-ctx.Done():
		return nil, fmt.Errorf("fetch keys from %s: %w: %w", serverName, ErrUnreachable, ctx.Err())
	}
}

func (c *Client) fetchServerKeys(ctx context.Context, serverName string) (map[string]ed25519.PublicKey, time.Duration, error) {
	resp, err := c.fedDo(ctx, http.MethodGet, serverName, "/_matrix/key/v2/server", nil)
	if err != nil {
		return nil, 0, err
	}
	body, err := readBody(resp)
	if err != nil {
		return nil, 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, 0, statusError(resp.StatusCode, body)
	}
	var kr struct {
		ServerName   string      `json:"server_name"`
		ValidUntilTS json.Number `json:"valid_until_ts"`
		VerifyKeys   map[string]struct {
			Key string `json:"key"`
		} `json:"verify_keys"`
	}
	if err := json.Unmarshal(body, &kr); err != nil {
		return nil, 0, fmt.Errorf("%w: %v", ErrInvalidResponse, err)
	}
	if kr.ServerName != serverName {
		return nil, 0, fmt.Errorf("%w: server_name is %q", ErrInvalidResponse, kr.ServerName)
	}
	keys := make(map[string]ed25519.PublicKey, len(kr.VerifyKeys))
	for id, k := range kr.VerifyKeys {
		if !strings.HasPrefix(id, signing.KeyAlgorithm+":") {
			continue
		}
		raw, err := signing.DecodeBase64(k.Key)
		if err != nil || len(raw) != ed25519.PublicKeySize {
			return nil, 0, fmt.Errorf("%w: verify key %s is malformed", ErrInvalidResponse, id)
		}
		keys[id] = ed25519.PublicKey(raw)
	}
	if len(keys) == 0 {
		return nil, 0, fmt.Errorf("%w: no ed25519 verify_keys", ErrInvalidResponse)
	}
	if err := signing.VerifyJSON(json.RawMessage(body), serverName, keys); err != nil {
		return nil, 0, fmt.Errorf("%w: key response is not self-signed: %w", ErrInvalidResponse, err)
	}
	ttl := keyMinTTL
	if ms, err := kr.ValidUntilTS.Int64(); err == nil {
		ttl = min(max(time.UnixMilli(ms).Sub(c.now()), keyMinTTL), keyMaxTTL)
	}
	return keys, ttl, nil
}
