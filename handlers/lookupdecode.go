package handlers

import (
	"bytes"
	"sync"
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
// point into the body itself, as sonic's did (see tapeReader). The
// decoder reads the tokens the validator's schema walk recorded
// (validate.Tape) rather than the bytes: scanning the body a second time
// was a sixth of a bulk lookup. The body has passed the spec validator
// (syntax, UTF-8, schema, no repeated key), yet nothing below relies on
// the schema: whatever the decoder does not handle (a key with escapes,
// null, a number where a string is expected) makes it give up, and
// Deserialize decodes the body as before. When it succeeds it gives what
// encoding/json gives with exact (case-sensitive) keys, the last of a
// repeated key winning (TestHandDecoderMatchesEncodingJSON,
// FuzzHandDecoder).

// decodeHot decodes b into i when i is the body of a hot lookup and b
// holds nothing unusual; it reports whether it did. i is left untouched
// when it did not. The slices holding the strings come from a pool, and
// go back to it with the body's buffer once the handler has answered
// (validate.Body.RecycleAfter): the lookup handlers copy into their
// answers whatever they keep of the strings, and keep nothing after.
func decodeHot(b *validate.Body, i any) bool {
	switch i.(type) {
	case *gen.BulkLookupJSONRequestBody, *gen.LookupV2JSONRequestBody:
	default:
		return false
	}
	t, text := b.Tape()
	if t == nil { // a body the schema walk did not accept (rewritten, say)
		var ok bool
		if t, ok = validate.Tokenize(b.Bytes()); !ok {
			return false
		}
		text = b.Bytes()
		defer validate.PutTape(t)
	}
	a := arenas.Get().(*lookupArena)
	ok := decodeTape(t, text, a, i)
	if ok {
		b.RecycleAfter(a)
	} else {
		a.Recycle()
	}
	return ok
}

// decodeInto is decodeHot for data, its slices taken from a.
func decodeInto(data []byte, a *lookupArena, i any) bool {
	t, ok := validate.Tokenize(data)
	if !ok {
		return false
	}
	defer validate.PutTape(t)
	return decodeTape(t, data, a, i)
}

// decodeTape decodes the body t is the tape of.
func decodeTape(t validate.Tape, data []byte, a *lookupArena, i any) bool {
	r := &tapeReader{t: t, b: data}
	switch v := i.(type) {
	case *gen.BulkLookupJSONRequestBody:
		return decodeBulkLookup(r, a, v)
	case *gen.LookupV2JSONRequestBody:
		return decodeLookupV2(r, a, v)
	}
	return false
}

// lookupArena holds the decoded strings of one lookup body, for reuse by
// later bodies: its slices, about 56 KB for a 1,000-pair bulk lookup, cost
// zeroing when allocated and scanning when collected.
type lookupArena struct {
	rows [][]string
	strs []string
}

var arenas = sync.Pool{New: func() any { return new(lookupArena) }}

// maxArenaStrings bounds what a pooled arena keeps (a 10,000-pair bulk
// lookup needs 20,000 strings).
const maxArenaStrings = 4096

// Recycle implements validate.Recycler. The strings are left in place:
// clearing them would cost what pooling saves, and what they point to is
// the body buffer pooled with them.
func (a *lookupArena) Recycle() {
	if cap(a.strs) <= maxArenaStrings && cap(a.rows) <= maxArenaStrings {
		arenas.Put(a)
	}
}

// strings returns a.strs emptied, with room for n.
func (a *lookupArena) strings(n int) []string {
	if a.strs == nil || cap(a.strs) < n {
		a.strs = make([]string, 0, n)
	}
	return a.strs[:0]
}

// table returns a.rows emptied, with room for n.
func (a *lookupArena) table(n int) [][]string {
	if a.rows == nil || cap(a.rows) < n {
		a.rows = make([][]string, 0, n)
	}
	return a.rows[:0]
}

// decodeBulkLookup decodes {"threepids":[[medium, address], ...]}.
func decodeBulkLookup(r *tapeReader, a *lookupArena, out *gen.BulkLookupJSONRequestBody) bool {
	var body gen.BulkLookupJSONRequestBody
	ok := r.object(func(key []byte) bool {
		if string(key) != "threepids" {
			return r.skip()
		}
		var ok bool
		body.Threepids, ok = r.stringTable(a)
		return ok
	})
	if ok {
		*out = body
	}
	return ok
}

// decodeLookupV2 decodes {"algorithm": a, "pepper": p, "addresses": [...]}.
func decodeLookupV2(r *tapeReader, a *lookupArena, out *gen.LookupV2JSONRequestBody) bool {
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
			body.Addresses, ok = r.strings(a)
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

// tapeReader reads a body through its tape. The strings without escapes
// it decodes are the body's own bytes, not copies: validate.Body holds a
// buffer no other request holds, written by no one while the request
// runs, and reused only after RecycleAfter (its Bytes contract;
// TestBodyBufferIsTheRequests), as sonic's UnmarshalFromString relied on
// before. Copying the body cost as much CPU as sonic's whole decode of a
// 1,000-hash body. The reader never writes to the body: a string with
// escapes is decoded into its own buffer
// (TestHandDecoderNeverWritesTheBody).
type tapeReader struct {
	t validate.Tape
	b []byte
	i int // the next token
}

// kind is the kind of the next token, 0 at the end.
func (r *tapeReader) kind() int {
	if r.i >= len(r.t) {
		return 0
	}
	return r.t.Kind(r.i)
}

// object reads the top-level object, calling member for each key (raw, as
// it stands between the quotes) with the reader at its value; member must
// consume the value. Keys with escapes are not handled: they are rare and
// would need decoding before they could be matched.
func (r *tapeReader) object(member func(key []byte) bool) bool {
	if r.kind() != validate.TokObject {
		return false
	}
	end := r.t.Next(r.i)
	for r.i++; r.i < end; {
		if r.kind() != validate.TokKey || r.t.Escaped(r.i) {
			return false
		}
		from, to := r.t.Span(r.i)
		r.i++
		if !member(r.b[from:to]) {
			return false
		}
	}
	return r.i == end && end == len(r.t)
}

// stringTable reads an array of arrays of strings. All the strings share
// one backing array sized from the tokens in the array (more than the
// strings), so appending never moves them.
func (r *tapeReader) stringTable(a *lookupArena) ([][]string, bool) {
	if r.kind() != validate.TokArray {
		return nil, false
	}
	end := r.t.Next(r.i)
	strs := a.strings(end - r.i)
	rows := a.table(end - r.i)
	for r.i++; r.i < end; {
		from := len(strs)
		var ok bool
		if strs, ok = r.appendStrings(strs); !ok {
			return nil, false
		}
		rows = append(rows, strs[from:len(strs):len(strs)])
	}
	return rows, true
}

// strings reads an array of strings.
func (r *tapeReader) strings(a *lookupArena) ([]string, bool) {
	if r.kind() != validate.TokArray {
		return nil, false
	}
	return r.appendStrings(a.strings(r.t.Next(r.i) - r.i))
}

// appendStrings reads an array of strings onto dst.
func (r *tapeReader) appendStrings(dst []string) ([]string, bool) {
	if r.kind() != validate.TokArray {
		return nil, false
	}
	end := r.t.Next(r.i)
	for r.i++; r.i < end; {
		s, ok := r.str()
		if !ok {
			return nil, false
		}
		dst = append(dst, s)
	}
	return dst, true
}

// str reads a string value, decoding its escapes into a buffer of its own.
func (r *tapeReader) str() (string, bool) {
	if r.kind() != validate.TokString {
		return "", false
	}
	from, to := r.t.Span(r.i)
	escaped := r.t.Escaped(r.i)
	r.i++
	if escaped {
		return unescape(bytes.Clone(r.b[from:to]))
	}
	return asString(r.b[from:to]), true
}

// asString returns b, bytes that are never written again, as a string
// without copying them.
func asString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// skip consumes one value of a member the decoder ignores.
func (r *tapeReader) skip() bool {
	if r.kind() == 0 {
		return false
	}
	r.i = r.t.Next(r.i)
	return true
}

// unescape decodes s, the contents of a string with escapes (valid UTF-8,
// no control characters: the tokenizer checked), in place, exactly as encoding/json
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
