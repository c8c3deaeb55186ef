package signing

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
)

// KeyAlgorithm is the only signing algorithm Matrix identity servers use.
const KeyAlgorithm = "ed25519"

const keyIDPrefix = KeyAlgorithm + ":"

var (
	// ErrInvalidKey reports a malformed key, seed or key ID.
	ErrInvalidKey = errors.New("signing: invalid key")
	// ErrNotObject reports a value to sign or verify that is not a JSON object.
	ErrNotObject = errors.New("signing: value is not a JSON object")
	// ErrNotSigned reports a missing signatures object or no entry for the entity.
	ErrNotSigned = errors.New("signing: no signatures for entity")
	// ErrNoEd25519 reports that the entity has signatures, but none ed25519.
	ErrNoEd25519 = errors.New("signing: no ed25519 signatures for entity")
	// ErrUnknownKey reports ed25519 signatures only by keys the caller did not supply.
	ErrUnknownKey = errors.New("signing: no signature by a known key")
	// ErrBadSignature reports a signature that does not verify.
	ErrBadSignature = errors.New("signing: signature verification failed")
)

// Key is a named ed25519 signing key, e.g. ID "ed25519:0".
type Key struct {
	ID      string
	Private ed25519.PrivateKey
}

// Public returns the public half, or nil if the private key is malformed
// (ed25519 would panic on it).
func (k Key) Public() ed25519.PublicKey {
	if len(k.Private) != ed25519.PrivateKeySize {
		return nil
	}
	return k.Private.Public().(ed25519.PublicKey)
}

// PublicBase64 returns the public key as standard unpadded base64, the form
// used by /_matrix/identity/v2/pubkey and key listings.
func (k Key) PublicBase64() string {
	pub := k.Public()
	if pub == nil {
		return ""
	}
	return EncodeBase64(pub)
}

// version returns the identifier after "ed25519:".
func (k Key) version() string { return strings.TrimPrefix(k.ID, keyIDPrefix) }

// validKeyID checks "ed25519:<version>" with the spec's identifier alphabet
// [a-zA-Z0-9_], so IDs are safe in URL paths and key files.
func validKeyID(id string) bool {
	v, ok := strings.CutPrefix(id, keyIDPrefix)
	return ok && validVersion(v)
}

func validVersion(v string) bool {
	if v == "" {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// GenerateKey creates a fresh key with the given ID from crypto/rand.
func GenerateKey(id string) (Key, error) {
	if !validKeyID(id) {
		return Key{}, fmt.Errorf("%w: key id %q must be ed25519:[a-zA-Z0-9_]+", ErrInvalidKey, id)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return Key{}, fmt.Errorf("signing: generate key: %w", err)
	}
	return Key{ID: id, Private: priv}, nil
}

// KeyFromSeed builds a key from base64 (standard or URL-safe, padded or not)
// of a 32-byte seed, or of a 64-byte seed||public private key as libsodium
// and Go store it.
func KeyFromSeed(id string, seedB64 string) (Key, error) {
	if !validKeyID(id) {
		return Key{}, fmt.Errorf("%w: key id %q must be ed25519:[a-zA-Z0-9_]+", ErrInvalidKey, id)
	}
	raw, err := DecodeBase64(seedB64)
	if err != nil {
		return Key{}, fmt.Errorf("%w: seed is not base64: %v", ErrInvalidKey, err)
	}
	switch len(raw) {
	case ed25519.SeedSize:
		return Key{ID: id, Private: ed25519.NewKeyFromSeed(raw)}, nil
	case ed25519.PrivateKeySize:
		// Re-derive so a corrupted public half cannot yield signatures that
		// fail to verify against the advertised public key.
		priv := ed25519.NewKeyFromSeed(raw[:ed25519.SeedSize])
		if !priv.Equal(ed25519.PrivateKey(raw)) {
			return Key{}, fmt.Errorf("%w: public half of 64-byte key does not match its seed", ErrInvalidKey)
		}
		return Key{ID: id, Private: priv}, nil
	default:
		return Key{}, fmt.Errorf("%w: seed is %d bytes, want %d or %d", ErrInvalidKey, len(raw), ed25519.SeedSize, ed25519.PrivateKeySize)
	}
}

// EncodeBase64 is Matrix's base64: standard alphabet, unpadded.
func EncodeBase64(b []byte) string { return base64.RawStdEncoding.EncodeToString(b) }

// DecodeBase64 decodes standard or URL-safe base64, padded or unpadded.
// Matrix says unpadded standard base64, but peers are not always strict.
func DecodeBase64(s string) ([]byte, error) {
	if len(s)%4 == 0 {
		// At most two '=' are legal padding; more is left for the decoder to reject.
		for n := 0; n < 2 && strings.HasSuffix(s, "="); n++ {
			s = s[:len(s)-1]
		}
	}
	enc := base64.RawStdEncoding
	if strings.ContainsAny(s, "-_") {
		enc = base64.RawURLEncoding
	}
	return enc.DecodeString(s)
}

// asObject returns v as a JSON object without copying when it already is a
// map[string]any. json.RawMessage and []byte are treated as raw JSON text;
// anything else goes through encoding/json.
func asObject(v any) (map[string]any, error) {
	var tree any
	var err error
	switch x := v.(type) {
	case map[string]any:
		if x == nil {
			return nil, ErrNotObject
		}
		return x, nil
	case json.RawMessage:
		tree, err = decodeJSON(x)
	case []byte:
		tree, err = decodeJSON(x)
	default:
		tree, err = viaEncodingJSON(v)
	}
	if err != nil {
		return nil, err
	}
	obj, ok := tree.(map[string]any)
	if !ok || obj == nil {
		return nil, ErrNotObject
	}
	return obj, nil
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// signObject signs canonical(obj minus signatures/unsigned). The canonical
// bytes only live for the duration of the call, so a pooled buffer is used.
func signObject(obj map[string]any, key Key) (string, error) {
	if len(key.Private) != ed25519.PrivateKeySize {
		return "", fmt.Errorf("%w: private key is %d bytes", ErrInvalidKey, len(key.Private))
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf, err := appendObject((*bp)[:0], obj, 0, true)
	*bp = buf
	if err != nil {
		return "", err
	}
	return base64.RawStdEncoding.EncodeToString(key.Sign(buf)), nil
}

// Signature returns the unpadded base64 signature by key over the canonical
// form of v with "signatures" and "unsigned" removed.
func Signature(v any, key Key) (string, error) {
	obj, err := asObject(v)
	if err != nil {
		return "", err
	}
	return signObject(obj, key)
}

// SignJSON signs v as entity with key and returns a copy of the object with
// the signature stored at signatures[entity][key.ID]. Existing signatures
// (including other keys of the same entity) and "unsigned" are kept. The
// caller's maps are never modified.
func SignJSON(v any, entity string, key Key) (map[string]any, error) {
	if entity == "" {
		return nil, errors.New("signing: empty entity")
	}
	if !validKeyID(key.ID) {
		return nil, fmt.Errorf("%w: key id %q", ErrInvalidKey, key.ID)
	}
	src, err := asObject(v)
	if err != nil {
		return nil, err
	}
	sig, err := signObject(src, key)
	if err != nil {
		return nil, err
	}
	sigs, err := cloneObject(src["signatures"], "signatures")
	if err != nil {
		return nil, err
	}
	ent, err := cloneObject(sigs[entity], "signatures."+entity)
	if err != nil {
		return nil, err
	}
	ent[key.ID] = sig
	sigs[entity] = ent
	out := maps.Clone(src) // shallow: only "signatures" is replaced
	out["signatures"] = sigs
	return out, nil
}

// cloneObject returns a fresh map[string]any copy of an existing object
// value, or an empty map if absent/null. Other JSON types are an error
// because silently replacing them would discard data.
func cloneObject(v any, what string) (map[string]any, error) {
	switch x := v.(type) {
	case nil:
		return map[string]any{}, nil
	case map[string]any:
		return maps.Clone(x), nil
	case map[string]string:
		out := make(map[string]any, len(x))
		for k, s := range x {
			out[k] = s
		}
		return out, nil
	case map[string]map[string]string:
		out := make(map[string]any, len(x))
		for k, m := range x {
			out[k] = m
		}
		return out, nil
	}
	tree, err := viaEncodingJSON(v)
	if err != nil {
		return nil, err
	}
	if tree == nil {
		return map[string]any{}, nil
	}
	obj, ok := tree.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: %s is %T", ErrNotObject, what, tree)
	}
	return obj, nil
}

// VerifyJSON checks that obj carries at least one valid ed25519 signature by
// entity from one of keys (key ID → public key). Signatures by unknown key
// IDs are ignored, as the spec requires; one good signature suffices.
func VerifyJSON(obj any, entity string, keys map[string]ed25519.PublicKey) error {
	o, err := asObject(obj)
	if err != nil {
		return err
	}
	if o["signatures"] == nil {
		return ErrNotSigned
	}
	sigs, err := cloneObject(o["signatures"], "signatures")
	if err != nil {
		return err
	}
	if sigs[entity] == nil {
		return fmt.Errorf("%w %q", ErrNotSigned, entity)
	}
	ent, err := cloneObject(sigs[entity], "signatures."+entity)
	if err != nil {
		return err
	}

	var ids []string
	for id := range ent {
		if strings.HasPrefix(id, keyIDPrefix) {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return fmt.Errorf("%w %q", ErrNoEd25519, entity)
	}
	slices.Sort(ids) // deterministic error reporting

	var msg []byte // canonical bytes, computed once and only if needed
	lastErr := fmt.Errorf("%w: entity %q signed with %v", ErrUnknownKey, entity, ids)
	for _, id := range ids {
		pub, ok := keys[id]
		if !ok {
			continue
		}
		if len(pub) != ed25519.PublicKeySize { // ed25519.Verify panics otherwise
			lastErr = fmt.Errorf("%w: public key %s is %d bytes", ErrInvalidKey, id, len(pub))
			continue
		}
		s, _ := ent[id].(string)
		sig, err := DecodeBase64(s)
		if err != nil || len(sig) != ed25519.SignatureSize {
			lastErr = fmt.Errorf("%w: %s: malformed signature", ErrBadSignature, id)
			continue
		}
		if msg == nil {
			if msg, err = appendObject(make([]byte, 0, 512), o, 0, true); err != nil {
				return err
			}
		}
		if ed25519.Verify(pub, msg, sig) {
			return nil
		}
		lastErr = fmt.Errorf("%w: %s", ErrBadSignature, id)
	}
	return lastErr
}
