// Package signing implements Matrix canonical JSON, ed25519 JSON signing and
// verification, the identity server's long-term key file, and the v2 lookup
// hash. It depends on the standard library only.
//
// Canonical JSON is produced by a dedicated encoder over a generic value tree
// (map[string]any, []any, string, json.Number, bool, nil) because
// encoding/json escapes <, >, & and U+2028/U+2029, emits floats, and does not
// sort struct fields, all of which would change the bytes being signed.
package signing

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"unicode/utf8"
)

// maxSafeInteger is 2^53-1, the largest integer Matrix canonical JSON allows
// (it must round-trip through an IEEE-754 double in every implementation).
const maxSafeInteger = 1<<53 - 1

// maxDepth bounds nesting so that a self-referencing map[string]any cannot
// recurse forever; it matches encoding/json's decoder limit.
const maxDepth = 10000

var (
	// ErrInvalidNumber reports a number that canonical JSON cannot represent:
	// non-integral, outside [-(2^53)+1, 2^53-1], NaN/Inf, or malformed.
	ErrInvalidNumber = errors.New("signing: number not allowed in canonical JSON")
	// ErrInvalidJSON reports input that is not a single well-formed JSON value.
	ErrInvalidJSON = errors.New("signing: invalid JSON")
	// ErrTooDeep reports nesting beyond maxDepth (or a cyclic value).
	ErrTooDeep = errors.New("signing: JSON nesting too deep")
)

// Canonical returns the Matrix canonical JSON encoding of v. Generic trees
// (maps, slices, strings, json.Number, bool, nil, Go numbers) are encoded
// directly; anything else is first marshalled with encoding/json, so struct
// tags and MarshalJSON methods are honoured. json.RawMessage values are
// parsed and re-encoded.
func Canonical(v any) ([]byte, error) {
	return appendValue(make([]byte, 0, 256), v, 0)
}

// CanonicalBytes re-encodes the JSON document raw in canonical form.
func CanonicalBytes(raw []byte) ([]byte, error) {
	tree, err := decodeJSON(raw)
	if err != nil {
		return nil, err
	}
	return appendValue(make([]byte, 0, len(raw)), tree, 0)
}

// decodeJSON parses exactly one JSON value, keeping numbers as json.Number so
// large integers are not rounded through float64.
func decodeJSON(raw []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidJSON, err)
	}
	// Trailing data would otherwise be silently ignored, letting two
	// different byte strings verify as the same signed object.
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: trailing data after JSON value", ErrInvalidJSON)
	}
	return v, nil
}

// viaEncodingJSON is the slow path for values the encoder does not know: let
// encoding/json decide their JSON shape, then encode that canonically.
func viaEncodingJSON(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("signing: marshal %T: %w", v, err)
	}
	return decodeJSON(b)
}

func appendValue(dst []byte, v any, depth int) ([]byte, error) {
	if depth > maxDepth {
		return dst, ErrTooDeep
	}
	switch x := v.(type) {
	case nil:
		return append(dst, "null"...), nil
	case bool:
		if x {
			return append(dst, "true"...), nil
		}
		return append(dst, "false"...), nil
	case string:
		return appendString(dst, x), nil
	case json.Number:
		return appendNumber(dst, string(x))
	case map[string]any:
		return appendObject(dst, x, depth, false)
	case []any:
		return appendArray(dst, x, depth)
	case map[string]string:
		return appendObject(dst, x, depth, false)
	case []string:
		return appendArray(dst, x, depth)
	case map[string]map[string]string: // shape of "signatures"
		return appendObject(dst, x, depth, false)
	case []map[string]any:
		return appendArray(dst, x, depth)
	case json.RawMessage:
		if x == nil { // encoding/json marshals a nil RawMessage as null
			return append(dst, "null"...), nil
		}
		tree, err := decodeJSON(x)
		if err != nil {
			return dst, err
		}
		return appendValue(dst, tree, depth)
	case int:
		return appendInt(dst, int64(x))
	case int8:
		return appendInt(dst, int64(x))
	case int16:
		return appendInt(dst, int64(x))
	case int32:
		return appendInt(dst, int64(x))
	case int64:
		return appendInt(dst, x)
	case uint:
		return appendUint(dst, uint64(x))
	case uint8:
		return appendUint(dst, uint64(x))
	case uint16:
		return appendUint(dst, uint64(x))
	case uint32:
		return appendUint(dst, uint64(x))
	case uint64:
		return appendUint(dst, x)
	case float64:
		return appendFloat(dst, x)
	case float32:
		return appendFloat(dst, float64(x))
	default:
		tree, err := viaEncodingJSON(v)
		if err != nil {
			return dst, err
		}
		return appendValue(dst, tree, depth)
	}
}

// appendObject writes m with keys in code point order. Byte-wise string
// order equals code point order for valid UTF-8, so a plain sort suffices.
// skipSigned drops the top-level "signatures" and "unsigned" keys, which is
// what signing and verification need, without copying the map.
func appendObject[V any](dst []byte, m map[string]V, depth int, skipSigned bool) ([]byte, error) {
	var stack [16]string
	keys := stack[:0]
	for k := range m {
		if skipSigned && (k == "signatures" || k == "unsigned") {
			continue
		}
		if !utf8.ValidString(k) {
			// encoding/json rewrites invalid bytes to U+FFFD, which can
			// change order and even merge keys; defer to it for this rare case.
			tree, err := viaEncodingJSON(m)
			if err != nil {
				return dst, err
			}
			obj, _ := tree.(map[string]any)
			return appendObject(dst, obj, depth, skipSigned)
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	dst = append(dst, '{')
	var err error
	for i, k := range keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, k)
		dst = append(dst, ':')
		if dst, err = appendValue(dst, any(m[k]), depth+1); err != nil {
			return dst, err
		}
	}
	return append(dst, '}'), nil
}

func appendArray[V any](dst []byte, a []V, depth int) ([]byte, error) {
	if a == nil { // encoding/json marshals a nil slice as null
		return append(dst, "null"...), nil
	}
	dst = append(dst, '[')
	var err error
	for i := range a {
		if i > 0 {
			dst = append(dst, ',')
		}
		if dst, err = appendValue(dst, any(a[i]), depth+1); err != nil {
			return dst, err
		}
	}
	return append(dst, ']'), nil
}

// noEscape[b] is true for ASCII bytes that are written verbatim. Everything
// >= 0x80 is handled separately (written raw if valid UTF-8).
var noEscape = func() (t [256]bool) {
	for b := 0x20; b < 0x80; b++ {
		t[b] = b != '"' && b != '\\'
	}
	return t
}()

const hexDigits = "0123456789abcdef"

// appendString writes s as a JSON string using only the escapes canonical
// JSON permits. Invalid UTF-8 bytes become U+FFFD, as encoding/json does, so
// Canonical(v) agrees with canonicalising json.Marshal(v).
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	valid := utf8.ValidString(s)
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		if noEscape[b] {
			i++
			continue
		}
		if b >= utf8.RuneSelf {
			if valid {
				i++
				continue
			}
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				dst = append(dst, s[start:i]...)
				dst = append(dst, "\uFFFD"...)
				i++
				start = i
				continue
			}
			i += size
			continue
		}
		dst = append(dst, s[start:i]...)
		switch b {
		case '"', '\\':
			dst = append(dst, '\\', b)
		case '\b':
			dst = append(dst, '\\', 'b')
		case '\t':
			dst = append(dst, '\\', 't')
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\f':
			dst = append(dst, '\\', 'f')
		case '\r':
			dst = append(dst, '\\', 'r')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xf])
		}
		i++
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

func appendInt(dst []byte, n int64) ([]byte, error) {
	if n > maxSafeInteger || n < -maxSafeInteger {
		return dst, fmt.Errorf("%w: %d out of range", ErrInvalidNumber, n)
	}
	return strconv.AppendInt(dst, n, 10), nil
}

func appendUint(dst []byte, n uint64) ([]byte, error) {
	if n > maxSafeInteger {
		return dst, fmt.Errorf("%w: %d out of range", ErrInvalidNumber, n)
	}
	return strconv.AppendUint(dst, n, 10), nil
}

func appendFloat(dst []byte, f float64) ([]byte, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) || f != math.Trunc(f) || math.Abs(f) > maxSafeInteger {
		return dst, fmt.Errorf("%w: %v", ErrInvalidNumber, f)
	}
	return strconv.AppendInt(dst, int64(f), 10), nil // -0 becomes 0 here
}

// appendNumber canonicalises a JSON number literal exactly, in decimal, so
// that e.g. "1.00000000000000001" is rejected rather than rounded to 1 as a
// float64 round-trip would do.
func appendNumber(dst []byte, s string) ([]byte, error) {
	bad := func(why string) ([]byte, error) {
		return dst, fmt.Errorf("%w: %q %s", ErrInvalidNumber, s, why)
	}
	i := 0
	neg := false
	if i < len(s) && s[i] == '-' {
		neg = true
		i++
	}
	// Integer part: "0" or [1-9][0-9]*, per the JSON grammar.
	intStart := i
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	intDigits := s[intStart:i]
	if len(intDigits) == 0 || (len(intDigits) > 1 && intDigits[0] == '0') {
		return bad("is not a JSON number")
	}
	var fracDigits string
	if i < len(s) && s[i] == '.' {
		i++
		fs := i
		for i < len(s) && isDigit(s[i]) {
			i++
		}
		if fs == i {
			return bad("is not a JSON number")
		}
		fracDigits = s[fs:i]
	}
	exp := 0
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		expNeg := false
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			expNeg = s[i] == '-'
			i++
		}
		es := i
		for i < len(s) && isDigit(s[i]) {
			// Saturate: anything this large is out of range or non-integral
			// anyway, and it keeps the arithmetic below overflow-free.
			if exp < 1_000_000 {
				exp = exp*10 + int(s[i]-'0')
			}
			i++
		}
		if es == i {
			return bad("is not a JSON number")
		}
		if expNeg {
			exp = -exp
		}
	}
	if i != len(s) {
		return bad("is not a JSON number")
	}

	// value = digits(int ++ frac) * 10^(exp - len(frac)); normalise by
	// dropping leading zeros and folding trailing zeros into the exponent.
	exp -= len(fracDigits)
	var digitBuf [40]byte
	digits := append(append(digitBuf[:0], intDigits...), fracDigits...)
	for len(digits) > 0 && digits[0] == '0' {
		digits = digits[1:]
	}
	if len(digits) == 0 {
		return append(dst, '0'), nil // covers -0, 0.0, 0e5
	}
	for digits[len(digits)-1] == '0' {
		digits = digits[:len(digits)-1]
		exp++
	}
	if exp < 0 {
		return bad("is not an integer")
	}
	if len(digits)+exp > 16 { // 2^53-1 has 16 digits
		return bad("is out of range")
	}
	var n uint64
	for _, d := range digits {
		n = n*10 + uint64(d-'0')
	}
	for ; exp > 0; exp-- {
		n *= 10
	}
	if n > maxSafeInteger {
		return bad("is out of range")
	}
	if neg {
		dst = append(dst, '-')
	}
	return strconv.AppendUint(dst, n, 10), nil
}

func isDigit(b byte) bool { return b >= '0' && b <= '9' }
