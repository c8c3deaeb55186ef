package federation

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/sigil-matrix/sigil/handlers/signing"
)

// XMatrixAuth is a parsed `Authorization: X-Matrix ...` header.
type XMatrixAuth struct {
	Origin      string // the signing homeserver's name
	Key         string // key ID, e.g. "ed25519:a_nLjA"
	Sig         string // unpadded base64 signature
	Destination string // optional; newer Synapse sends the id_server here
}

// ParseXMatrix parses `X-Matrix origin="hs",key="ed25519:x",sig="...",destination="is"`.
// The scheme and parameter names are case-insensitive; parameters are
// comma-separated, values quoted (with backslash escapes) or bare; unknown
// parameters are ignored. origin, key and sig are required. Errors match
// ErrBadSignature.
func ParseXMatrix(header string) (XMatrixAuth, error) {
	var a XMatrixAuth
	bad := func(format string, args ...any) (XMatrixAuth, error) {
		return XMatrixAuth{}, fmt.Errorf("%w: "+format, append([]any{ErrBadSignature}, args...)...)
	}
	header = strings.TrimSpace(header)
	scheme, rest, _ := strings.Cut(header, " ")
	if !strings.EqualFold(scheme, "X-Matrix") {
		return bad("authorization scheme is not X-Matrix")
	}
	seen := map[string]bool{}
	for {
		rest = strings.TrimLeft(rest, " \t,")
		if rest == "" {
			break
		}
		eq := strings.IndexByte(rest, '=')
		if eq < 0 {
			return bad("parameter %q without value", truncate(rest, 40))
		}
		name := strings.ToLower(strings.TrimSpace(rest[:eq]))
		if name == "" || strings.ContainsAny(name, " \t\",") {
			return bad("malformed parameter name %q", truncate(rest[:eq], 40))
		}
		rest = strings.TrimLeft(rest[eq+1:], " \t")
		var value string
		if strings.HasPrefix(rest, `"`) {
			var sb strings.Builder
			i, closed := 1, false
			for ; i < len(rest); i++ {
				ch := rest[i]
				if ch == '\\' && i+1 < len(rest) {
					i++
					sb.WriteByte(rest[i])
					continue
				}
				if ch == '"' {
					closed = true
					break
				}
				sb.WriteByte(ch)
			}
			if !closed {
				return bad("unterminated quoted value for %s", name)
			}
			value, rest = sb.String(), strings.TrimLeft(rest[i+1:], " \t")
			if rest != "" && rest[0] != ',' {
				return bad("junk after quoted value for %s", name)
			}
		} else {
			v, after, _ := strings.Cut(rest, ",")
			value, rest = strings.TrimSpace(v), after
		}
		if seen[name] {
			return bad("duplicate parameter %s", name)
		}
		seen[name] = true
		switch name {
		case "origin":
			a.Origin = value
		case "key":
			a.Key = value
		case "sig":
			a.Sig = value
		case "destination":
			a.Destination = value
		}
	}
	switch {
	case a.Origin == "":
		return bad("missing origin")
	case a.Key == "":
		return bad("missing key")
	case a.Sig == "":
		return bad("missing sig")
	}
	return a, nil
}

// SignedRequest is what an X-Matrix signature covers, taken from an
// incoming request: its method, its raw request URI, its Authorization
// headers and its body as received.
type SignedRequest struct {
	Method        string
	URI           string
	Authorization []string
	Body          []byte
}

// XMatrix returns the first Authorization header using the X-Matrix
// scheme, or "".
func (r SignedRequest) XMatrix() string {
	for _, v := range r.Authorization {
		scheme, _, _ := strings.Cut(strings.TrimSpace(v), " ")
		if strings.EqualFold(scheme, "X-Matrix") {
			return v
		}
	}
	return ""
}

// SignedRequestOf takes the signed parts of r, whose body the caller has
// already read into body.
func SignedRequestOf(r *http.Request, body []byte) SignedRequest {
	return SignedRequest{Method: r.Method, URI: requestURI(r), Authorization: r.Header.Values("Authorization"), Body: body}
}

// requestURI is the raw request target as the homeserver signed it: path
// plus query, exactly as received.
func requestURI(r *http.Request) string {
	if r.RequestURI != "" {
		if strings.HasPrefix(r.RequestURI, "/") {
			return r.RequestURI
		}
		if u, err := url.Parse(r.RequestURI); err == nil && u.IsAbs() { // absolute-form
			return u.RequestURI()
		}
		return r.RequestURI
	}
	return r.URL.RequestURI()
}

// VerifyRequest is VerifySigned for an *http.Request whose body the caller
// has already read into body.
func (c *Client) VerifyRequest(ctx context.Context, r *http.Request, body []byte, ourName string) (string, error) {
	return c.VerifySigned(ctx, SignedRequestOf(r, body), ourName)
}

// VerifySigned checks the X-Matrix signature of r the way Synapse signs identity-server
// requests: over {"method","uri","origin","destination_is","content"} with
// uri the raw request URI, destination_is = ourName (this identity server's
// configured server name) and content the JSON body (omitted when empty).
// If that fails and the header names a destination, the newer federation
// form with "destination" instead of "destination_is" is tried too.
// It returns the verified origin server name.
//
// Errors: ErrMissingAuth without an X-Matrix header; ErrBadSignature for a
// malformed header, a destination other than ourName, an unknown key or a
// signature that does not verify; ErrUnreachable when the origin's keys
// cannot be fetched.
func (c *Client) VerifySigned(ctx context.Context, r SignedRequest, ourName string) (string, error) {
	hdr, body := r.XMatrix(), r.Body
	if hdr == "" {
		return "", ErrMissingAuth
	}
	auth, err := ParseXMatrix(hdr)
	if err != nil {
		return "", err
	}
	bad := func(format string, args ...any) (string, error) {
		return "", fmt.Errorf("%w: "+format, append([]any{ErrBadSignature}, args...)...)
	}
	if !ValidServerName(auth.Origin) {
		return bad("invalid origin %q", truncate(auth.Origin, 100))
	}
	if auth.Destination != "" && auth.Destination != ourName {
		return bad("request is for %q, not %q", truncate(auth.Destination, 100), ourName)
	}
	if !strings.HasPrefix(auth.Key, signing.KeyAlgorithm+":") {
		return bad("unsupported key %q", truncate(auth.Key, 100))
	}
	if sig, err := signing.DecodeBase64(auth.Sig); err != nil || len(sig) != ed25519.SignatureSize {
		return bad("malformed sig")
	}
	var content any
	if len(bytes.TrimSpace(body)) > 0 {
		if !json.Valid(body) {
			return bad("request body is not JSON")
		}
		content = json.RawMessage(body)
	}

	keys, err := c.serverKeys(ctx, auth.Origin, false)
	if err == nil {
		if _, ok := keys[auth.Key]; !ok {
			// Maybe the homeserver rotated its key since we cached.
			keys, err = c.serverKeys(ctx, auth.Origin, true)
		}
	}
	if err != nil {
		if !errors.Is(err, ErrUnreachable) {
			err = fmt.Errorf("%w: %w", ErrUnreachable, err)
		}
		return "", fmt.Errorf("verify X-Matrix from %s: %w", auth.Origin, err)
	}
	pub, ok := keys[auth.Key]
	if !ok {
		return bad("%s has no key %q", auth.Origin, truncate(auth.Key, 100))
	}
	only := map[string]ed25519.PublicKey{auth.Key: pub}

	obj := map[string]any{
		"method":         r.Method,
		"uri":            r.URI,
		"origin":         auth.Origin,
		"destination_is": ourName,
		"signatures":     map[string]any{auth.Origin: map[string]any{auth.Key: auth.Sig}},
	}
	if content != nil {
		obj["content"] = content
	}
	errIS := signing.VerifyJSON(obj, auth.Origin, only)
	if errIS == nil {
		c.log.Debug("federation: X-Matrix verified", "origin", auth.Origin, "form", "destination_is")
		return auth.Origin, nil
	}
	if auth.Destination != "" {
		delete(obj, "destination_is")
		obj["destination"] = auth.Destination
		if signing.VerifyJSON(obj, auth.Origin, only) == nil {
			c.log.Debug("federation: X-Matrix verified", "origin", auth.Origin, "form", "destination")
			return auth.Origin, nil
		}
	}
	return bad("from %s with %s: %v", auth.Origin, auth.Key, errIS)
}
