// Package mxjson is the runner's own implementation of the Matrix rules it
// checks servers against: canonical JSON, unpadded base64, signed JSON
// (ed25519) and the sha256 lookup hash (spec: appendices, "Canonical JSON",
// "Signing JSON", "Unpadded Base64"; identity service API, "Association
// lookup"). It deliberately shares no code with Sigil's handlers/signing: a
// bug in the server's signing code must not be reproduced by the checker
// (e.g. keys signed in reverse order would otherwise verify).
package mxjson

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Canonical encodes a JSON value (as decoded by encoding/json, with or
// without UseNumber, or any value json.Marshal accepts) in the spec's
// canonical form: object keys sorted by code point, no insignificant
// whitespace, UTF-8 strings with only the escapes JSON requires, integers
// without exponent or fraction.
func Canonical(v any) ([]byte, error) {
	tree, err := toTree(v)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := encode(&b, tree); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// toTree turns any value into a generic tree with json.Number leaves.
func toTree(v any) (any, error) {
	switch v.(type) {
	case nil, bool, string, json.Number, map[string]any, []any:
		if !containsForeign(v) {
			return v, nil
		}
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("canonical json: %w", err)
	}
	return Decode(raw)
}

func containsForeign(v any) bool {
	switch t := v.(type) {
	case nil, bool, string, json.Number:
		return false
	case map[string]any:
		for _, e := range t {
			if containsForeign(e) {
				return true
			}
		}
		return false
	case []any:
		for _, e := range t {
			if containsForeign(e) {
				return true
			}
		}
		return false
	}
	return true
}

// Decode parses JSON into a generic tree with json.Number numbers.
func Decode(raw []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, fmt.Errorf("canonical json: %w", err)
	}
	return v, nil
}

func encode(b *bytes.Buffer, v any) error {
	switch t := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		b.WriteString(strconv.FormatBool(t))
	case string:
		return encodeString(b, t)
	case json.Number:
		return encodeNumber(b, string(t))
	case []any:
		b.WriteByte('[')
		for i, e := range t {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := encode(b, e); err != nil {
				return err
			}
		}
		b.WriteByte(']')
	case map[string]any:
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		// Byte order of UTF-8 is code point order.
		sort.Strings(keys)
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := encodeString(b, k); err != nil {
				return err
			}
			b.WriteByte(':')
			if err := encode(b, t[k]); err != nil {
				return err
			}
		}
		b.WriteByte('}')
	default:
		return fmt.Errorf("canonical json: unexpected %T", v)
	}
	return nil
}

func encodeString(b *bytes.Buffer, s string) error {
	if !utf8.ValidString(s) {
		return errors.New("canonical json: string is not valid UTF-8")
	}
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\b':
			b.WriteString(`\b`)
		case r == '\f':
			b.WriteString(`\f`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20:
			fmt.Fprintf(b, `\u%04x`, r)
		default:
			b.WriteRune(r) // U+2028, <, >, & and all non-ASCII stay raw
		}
	}
	b.WriteByte('"')
	return nil
}

// encodeNumber writes an integer in [-(2^53)+1, 2^53-1] plainly; -0 and
// 1e10 are integers too. Fractions are outside canonical JSON.
func encodeNumber(b *bytes.Buffer, s string) error {
	f, _, err := big.ParseFloat(s, 10, 200, big.ToNearestEven)
	if err != nil {
		return fmt.Errorf("canonical json: number %s: %w", s, err)
	}
	if !f.IsInt() {
		return fmt.Errorf("canonical json: %s is not an integer", s)
	}
	i, _ := f.Int(nil)
	if i.CmpAbs(big.NewInt(1<<53-1)) > 0 {
		return fmt.Errorf("canonical json: %s is outside the integer range", s)
	}
	b.WriteString(i.String())
	return nil
}

// EncodeBase64 is unpadded standard base64.
func EncodeBase64(b []byte) string { return base64.RawStdEncoding.EncodeToString(b) }

// DecodeBase64 accepts unpadded (or padded) base64 in the standard or the
// URL-safe alphabet (v1.15 lets ephemeral keys use either).
func DecodeBase64(s string) ([]byte, error) {
	s = strings.TrimRight(s, "=")
	if strings.ContainsAny(s, "-_") {
		return base64.RawURLEncoding.DecodeString(s)
	}
	return base64.RawStdEncoding.DecodeString(s)
}

// LookupHash is the v2 lookup's sha256 algorithm: the URL-safe unpadded
// base64 of SHA-256("<address> <medium> <pepper>").
func LookupHash(address, medium, pepper string) string {
	sum := sha256.Sum256([]byte(address + " " + medium + " " + pepper))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// Key is an ed25519 signing key with its key ID ("ed25519:…").
type Key struct {
	ID   string
	Priv ed25519.PrivateKey
}

// NewKey makes a random key.
func NewKey(id string) (Key, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return Key{}, fmt.Errorf("generate key: %w", err)
	}
	return Key{ID: id, Priv: priv}, nil
}

// KeyFromSeed makes the key of an unpadded base64 seed.
func KeyFromSeed(id, seed string) (Key, error) {
	b, err := DecodeBase64(seed)
	if err != nil || len(b) != ed25519.SeedSize {
		return Key{}, fmt.Errorf("seed of %s is not 32 bytes of base64", id)
	}
	return Key{ID: id, Priv: ed25519.NewKeyFromSeed(b)}, nil
}

// Public is the public key.
func (k Key) Public() ed25519.PublicKey { return k.Priv.Public().(ed25519.PublicKey) }

// PublicBase64 is the public key in unpadded base64.
func (k Key) PublicBase64() string { return EncodeBase64(k.Public()) }

// Signature is the unpadded base64 signature of obj's canonical JSON
// without its signatures and unsigned members.
func Signature(obj map[string]any, k Key) (string, error) {
	msg, err := signable(obj)
	if err != nil {
		return "", err
	}
	return EncodeBase64(ed25519.Sign(k.Priv, msg)), nil
}

func signable(obj map[string]any) ([]byte, error) {
	rest := make(map[string]any, len(obj))
	for k, v := range obj {
		if k != "signatures" && k != "unsigned" {
			rest[k] = v
		}
	}
	return Canonical(rest)
}

// SignJSON returns a copy of obj with entity's signature by k added to the
// signatures it already has.
func SignJSON(obj map[string]any, entity string, k Key) (map[string]any, error) {
	sig, err := Signature(obj, k)
	if err != nil {
		return nil, err
	}
	out := make(map[string]any, len(obj)+1)
	for kk, v := range obj {
		out[kk] = v
	}
	sigs := map[string]any{}
	if old, ok := obj["signatures"].(map[string]any); ok {
		for e, v := range old {
			sigs[e] = v
		}
	}
	ent := map[string]any{}
	if old, ok := sigs[entity].(map[string]any); ok {
		for id, v := range old {
			ent[id] = v
		}
	}
	ent[k.ID] = sig
	sigs[entity] = ent
	out["signatures"] = sigs
	return out, nil
}

// VerifyJSON checks that obj carries at least one ed25519 signature by
// entity and that every ed25519 signature by entity whose key is in keys
// verifies; a signature by a key not in keys is an error.
func VerifyJSON(obj map[string]any, entity string, keys map[string]ed25519.PublicKey) error {
	sigs, _ := obj["signatures"].(map[string]any)
	ent, _ := sigs[entity].(map[string]any)
	if len(ent) == 0 {
		return fmt.Errorf("no signature by %s", entity)
	}
	msg, err := signable(obj)
	if err != nil {
		return err
	}
	checked := 0
	for id, v := range ent {
		if !strings.HasPrefix(id, "ed25519:") {
			continue
		}
		pub, ok := keys[id]
		if !ok {
			return fmt.Errorf("signature by unknown key %s", id)
		}
		s, _ := v.(string)
		sig, err := DecodeBase64(s)
		if err != nil || len(sig) != ed25519.SignatureSize || len(pub) != ed25519.PublicKeySize {
			return fmt.Errorf("signature %s by %s is not unpadded base64 ed25519", id, entity)
		}
		if !ed25519.Verify(pub, msg, sig) {
			return fmt.Errorf("signature %s by %s does not verify over %s", id, entity, short(msg))
		}
		checked++
	}
	if checked == 0 {
		return fmt.Errorf("no ed25519 signature by %s", entity)
	}
	return nil
}

func short(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "…"
	}
	return string(b)
}
