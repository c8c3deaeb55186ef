package handlers

import (
	"bytes"
	"encoding/binary"
	"math/bits"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"

	"github.com/sigil-matrix/sigil/gen"
	"github.com/sigil-matrix/sigil/spec/validate"
)

// The bodies of the two 1,000-item lookups are decoded by hand. sonic spent
// a fifth of a bulk lookup allocating one []string per pair and collecting
// them again; here all the strings of a body share one []string, and
// point into the body itself, as sonic's did (see bodyReader). The body
// has passed the spec validator (syntax, UTF-8, schema, no repeated key),
// yet nothing below relies on it: whatever the decoder does not handle (a
// key with escapes, null, a number where a string is expected, invalid
// UTF-8, broken syntax) makes it give up, and Deserialize decodes the
// body as before. When it succeeds it gives what
// encoding/json gives with exact (case-sensitive) keys, the last of a
// repeated key winning (TestHandDecoderMatchesEncodingJSON,
// FuzzHandDecoder).

// decodeHot decodes data into i when i is the body of a hot lookup and
// data holds nothing unusual; it reports whether it did. i is left
// untouched when it did not.
func decodeHot(data []byte, i any) bool {
	switch v := i.(type) {
	case *gen.BulkLookupJSONRequestBody:
		return decodeBulkLookup(data, v)
	case *gen.LookupV2JSONRequestBody:
		return decodeLookupV2(data, v)
	}
	return false
}

// decodeBulkLookup decodes {"threepids":[[medium, address], ...]}.
func decodeBulkLookup(data []byte, out *gen.BulkLookupJSONRequestBody) bool {
	r := newBodyReader(data)
	var body gen.BulkLookupJSONRequestBody
	ok := r.object(func(key []byte) bool {
		if string(key) != "threepids" {
			return r.skip()
		}
		var ok bool
		body.Threepids, ok = r.stringTable()
		return ok
	})
	if ok {
		*out = body
	}
	return ok
}

// decodeLookupV2 decodes {"algorithm": a, "pepper": p, "addresses": [...]}.
func decodeLookupV2(data []byte, out *gen.LookupV2JSONRequestBody) bool {
	r := newBodyReader(data)
	var body gen.LookupV2JSONRequestBody
	ok := r.object(func(key []byte) bool {
		var ok bool
		switch string(key) {
		case "algorithm":
			var s string
			s, ok = r.str()
			body.Algorithm = gen.LookupV2JSONBodyAlgorithm(s)
		case "pepper":
			body.Pepper, ok = r.str()
		case "addresses":
			body.Addresses, ok = r.strings()
		default:
			ok = r.skip()
		}
		return ok
	})
	if ok {
		*out = body
	}
	return ok
}

// bodyReader is a read position in a JSON body. The strings without
// escapes it decodes are the body's own bytes, not copies: validate.Body
// holds a buffer allocated for its request alone and never written nor
// reused (its Bytes contract; TestBodyBufferIsTheRequests), as sonic's
// UnmarshalFromString relied on before. Copying the body cost as much
// CPU as sonic's whole decode of a 1,000-hash body. The reader never
// writes to the body: a string with escapes is decoded into its own
// buffer (TestHandDecoderNeverWritesTheBody).
type bodyReader struct {
	b []byte
	i int
}

func newBodyReader(data []byte) *bodyReader {
	return &bodyReader{b: data}
}

// peek skips white space and returns the next byte, 0 at the end.
func (r *bodyReader) peek() byte {
	for r.i < len(r.b) {
		switch c := r.b[r.i]; c {
		case ' ', '\t', '\n', '\r':
			r.i++
		default:
			return c
		}
	}
	return 0
}

// eat consumes c, after white space, if it comes next.
func (r *bodyReader) eat(c byte) bool {
	if r.peek() != c {
		return false
	}
	r.i++
	return true
}

// object reads the top-level object, calling member for each key (raw, as
// it stands between the quotes) with the reader at its value; member must
// consume the value. Keys with escapes are not handled: they are rare and
// would need decoding before they could be matched.
func (r *bodyReader) object(member func(key []byte) bool) bool {
	if !r.eat('{') {
		return false
	}
	if r.eat('}') {
		return r.end()
	}
	for {
		if r.peek() != '"' {
			return false
		}
		key, escaped, ok := r.scan()
		if !ok || escaped || !r.eat(':') || !member(key) {
			return false
		}
		if r.eat(',') {
			continue
		}
		return r.eat('}') && r.end()
	}
}

// end reports whether only white space is left.
func (r *bodyReader) end() bool {
	r.peek()
	return r.i == len(r.b)
}

// stringTable reads an array of arrays of strings. All the strings share
// one backing array sized from the quotes left in the body (at least two
// per string), so appending never moves them.
func (r *bodyReader) stringTable() ([][]string, bool) {
	if !r.eat('[') {
		return nil, false
	}
	rest := r.b[r.i:]
	strs := make([]string, 0, bytes.Count(rest, quote)/2)
	rows := make([][]string, 0, bytes.Count(rest, leftBracket))
	if r.eat(']') {
		return rows, true
	}
	for {
		from := len(strs)
		var ok bool
		if strs, ok = r.appendStrings(strs); !ok {
			return nil, false
		}
		rows = append(rows, strs[from:len(strs):len(strs)])
		if r.eat(',') {
			continue
		}
		return rows, r.eat(']')
	}
}

var quote, leftBracket = []byte{'"'}, []byte{'['}

// strings reads an array of strings.
func (r *bodyReader) strings() ([]string, bool) {
	if r.peek() != '[' {
		return nil, false
	}
	return r.appendStrings(make([]string, 0, bytes.Count(r.b[r.i:], quote)/2))
}

// appendStrings reads an array of strings onto dst.
func (r *bodyReader) appendStrings(dst []string) ([]string, bool) {
	if !r.eat('[') {
		return nil, false
	}
	if r.eat(']') {
		return dst, true
	}
	for {
		s, ok := r.str()
		if !ok {
			return nil, false
		}
		dst = append(dst, s)
		if r.eat(',') {
			continue
		}
		return dst, r.eat(']')
	}
}

// str reads a string value, decoding its escapes into the arena.
func (r *bodyReader) str() (string, bool) {
	if r.peek() != '"' {
		return "", false
	}
	raw, escaped, ok := r.scan()
	switch {
	case !ok:
		return "", false
	case escaped:
		return unescape(bytes.Clone(raw))
	}
	return asString(raw), true
}

// asString returns b, bytes that are never written again, as a string
// without copying them.
func asString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// scan reads the string at r.i (its opening quote) and returns its raw
// contents and whether they hold escapes. ok is false for a control
// character or invalid UTF-8 (encoding/json would replace it; the body is
// never such) or when the string does not end. It looks at 8 bytes at a
// time for the bytes that matter, as the validator does.
func (r *bodyReader) scan() (raw []byte, escaped, ok bool) {
	b := r.b // a local: r lives on the heap, and the loop is hot
	start := r.i + 1
	j, ascii := start, true
	for {
		for ; j+8 <= len(b); j += 8 {
			x := binary.LittleEndian.Uint64(b[j : j+8])
			m := validate.Special8(x)
			if ascii {
				m |= x & 0x8080808080808080
			}
			if m != 0 {
				j += bits.TrailingZeros64(m) / 8 // the lowest flag is never false
				break
			}
		}
		if j >= len(b) {
			return nil, false, false
		}
		switch c := b[j]; {
		case c == '"':
			raw = b[start:j]
			if !ascii && !utf8.Valid(raw) {
				return nil, false, false
			}
			r.i = j + 1
			return raw, escaped, true
		case c == '\\':
			escaped = true
			j += 2
		case c < 0x20:
			return nil, false, false
		case c >= utf8.RuneSelf:
			ascii = false
			j++
		default:
			j++
		}
	}
}

// unescape decodes s, the contents of a string with escapes (valid UTF-8,
// no control characters: scan checked), in place, exactly as encoding/json
// does: \u escapes of lone or broken surrogates become U+FFFD, a valid
// pair one rune. What it writes never overtakes what it reads: no escape
// decodes to more bytes than it takes.
func unescape(s []byte) (string, bool) {
	w := 0
	for j := 0; j < len(s); {
		c := s[j]
		if c != '\\' {
			s[w] = c
			w++
			j++
			continue
		}
		if j+1 >= len(s) {
			return "", false
		}
		switch e := s[j+1]; e {
		case '"', '\\', '/':
			s[w] = e
		case 'b':
			s[w] = '\b'
		case 'f':
			s[w] = '\f'
		case 'n':
			s[w] = '\n'
		case 'r':
			s[w] = '\r'
		case 't':
			s[w] = '\t'
		case 'u':
			rr := getu4(s[j:])
			if rr < 0 {
				return "", false
			}
			j += 6
			if utf16.IsSurrogate(rr) {
				if dec := utf16.DecodeRune(rr, getu4(s[j:])); dec != unicode.ReplacementChar {
					w += utf8.EncodeRune(s[w:], dec) // 4 bytes for 12
					j += 6
					continue
				}
				rr = unicode.ReplacementChar
			}
			w += utf8.EncodeRune(s[w:], rr) // at most 3 bytes for 6
			continue
		default:
			return "", false
		}
		w++
		j += 2
	}
	return asString(s[:w]), true
}

// getu4 decodes \uXXXX at the start of s, or returns -1 (encoding/json's).
func getu4(s []byte) rune {
	if len(s) < 6 || s[0] != '\\' || s[1] != 'u' {
		return -1
	}
	var r rune
	for _, c := range s[2:6] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r*16 + rune(c)
	}
	return r
}

// skip consumes one value of a member the decoder ignores. It checks
// little beyond the nesting: encoding/json would ignore the value too, and
// the validator has checked its syntax. A literal or number is taken up to
// the next delimiter.
func (r *bodyReader) skip() bool {
	depth := 0
	for {
		switch c := r.peek(); c {
		case 0:
			return false
		case '"':
			if _, _, ok := r.scan(); !ok {
				return false
			}
		case '{', '[':
			depth++
			r.i++
		case '}', ']':
			if depth == 0 {
				return false
			}
			depth--
			r.i++
		case ',', ':':
			if depth == 0 {
				return false
			}
			r.i++
		default:
			if !r.literal() {
				return false
			}
		}
		if depth == 0 {
			return true
		}
	}
}

// literal consumes a number, true, false or null.
func (r *bodyReader) literal() bool {
	from := r.i
	for r.i < len(r.b) {
		c := r.b[r.i]
		if c != '-' && c != '+' && c != '.' && (c < '0' || c > '9') && (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') {
			break
		}
		r.i++
	}
	return r.i > from
}
