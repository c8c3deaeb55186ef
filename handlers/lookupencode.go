package handlers

import (
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
	"unicode/utf8"

	"github.com/sigil-matrix/sigil/handlers/identity"
	"github.com/sigil-matrix/sigil/spec/validate"
)

// The answers of the two 1,000-item lookups are encoded by hand into one
// pooled buffer sized up front, and written once with their length: they
// are a list of string triples and a map of strings, and sonic's generic
// encoder (reflection over the answer, a stream buffer) cost as much as
// the lookups themselves. TestAnswerEncodersRoundTrip and FuzzHandDecoder
// parse what they write back with encoding/json.

// bulkAnswer is the bulk_lookup answer, {"threepids":[[m, a, mxid], ...]}:
// the pairs in that are bound, mxids[i] being in[i]'s MXID or "".
type bulkAnswer struct {
	in [][]string
	m  *identity.MXIDs // from answerPool, back to it once written
}

func (a bulkAnswer) VisitBulkLookupResponse(w http.ResponseWriter) error {
	return writePooled(w, a.m, a.size(), a.appendTo)
}

// size guesses, as mappingsAnswer.size does: a pair and its MXID are
// rarely longer, and the pooled buffer has the room after the first
// answers anyway.
func (a bulkAnswer) size() int {
	return len(`{"threepids":[]}`+"\n") + len(a.in)*80
}

func (a bulkAnswer) appendTo(b []byte) []byte {
	return appendFound(b, a, `{"threepids":[`, "]}\n", a.m.List, bulkAnswer.appendTriple)
}

// appendTriple appends [medium, address, mxid] of in[i].
func (a bulkAnswer) appendTriple(b []byte, i int, mxid string) []byte {
	b = append(b, '[')
	b = appendMedium(b, a.in[i][0])
	b = append(b, ',')
	b = appendJSONString(b, a.in[i][1])
	b = append(b, ',')
	b = appendJSONString(b, mxid)
	return append(b, ']')
}

// appendFound appends open, then item's encoding of every MXID found
// (list[i] not ""), comma-separated, then close: the frame of both lookup
// answers. item is a method expression, so no closure is allocated.
func appendFound[A any](b []byte, a A, open, close string, list []string, item func(A, []byte, int, string) []byte) []byte {
	b = append(b, open...)
	first := true
	for i, m := range list {
		if m == "" {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = item(a, b, i, m)
	}
	return append(b, close...)
}

// appendMedium is appendJSONString, the two media the spec names
// appended as constants (a third of the strings of a bulk answer).
func appendMedium(b []byte, m string) []byte {
	switch m {
	case "email":
		return append(b, `"email"`...)
	case "msisdn":
		return append(b, `"msisdn"`...)
	}
	return appendJSONString(b, m)
}

// mappingsAnswer is the v2 lookup answer, {"mappings":{hash: mxid, ...}}:
// the hashes asked that are bound, m.List[i] being hashes[i]'s MXID or ""
// (repeats are "": identity.HashedLookup), in the order asked.
type mappingsAnswer struct {
	hashes []string
	m      *identity.MXIDs // from answerPool, back to it once written
}

func (a mappingsAnswer) VisitLookupV2Response(w http.ResponseWriter) error {
	return writePooled(w, a.m, a.size(), a.appendTo)
}

// writePooled is writeAnswer for an answer built from m, which goes back
// to answerPool once written.
func writePooled(w http.ResponseWriter, m *identity.MXIDs, size int, appendTo func([]byte) []byte) error {
	err := writeAnswer(w, size, appendTo)
	if m.Cap() <= maxPooledAnswers {
		answerPool.Put(m)
	}
	return err
}

// size guesses: a sha256 mapping is 43 bytes of hash and an MXID.
func (a mappingsAnswer) size() int {
	return len(`{"mappings":{}}`+"\n") + len(a.hashes)*80
}

func (a mappingsAnswer) appendTo(b []byte) []byte {
	return appendFound(b, a, `{"mappings":{`, "}}\n", a.m.List, mappingsAnswer.appendMapping)
}

// appendMapping appends "hash":"mxid" of hashes[i].
func (a mappingsAnswer) appendMapping(b []byte, i int, mxid string) []byte {
	b = appendJSONString(b, a.hashes[i])
	b = append(b, ':')
	return appendJSONString(b, mxid)
}

// answerBufs holds answer buffers for reuse; the writer has copied the
// bytes (to its own buffer or the connection) when Write returns.
var answerBufs = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledAnswer bounds the buffers kept: a 10,000-item answer is about
// 600 KB, and an occasional one should not pin that much per P.
const maxPooledAnswer = 256 << 10

// writeAnswer writes the 200 answer appendTo encodes, size bytes or about.
func writeAnswer(w http.ResponseWriter, size int, appendTo func([]byte) []byte) error {
	p := answerBufs.Get().(*[]byte)
	b := *p
	if cap(b) < size {
		b = make([]byte, 0, size)
	}
	b = appendTo(b[:0])
	h := w.Header()
	setJSON(h)
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	_, err := w.Write(b)
	if cap(b) <= maxPooledAnswer {
		*p = b
		answerBufs.Put(p)
	}
	return err
}

// appendJSONString appends s as a JSON string. Most strings need no escape
// and are copied whole after a check 8 bytes at a time; others have the
// quote, backslash and control characters escaped, and the rest of their
// UTF-8 passes through. Invalid UTF-8 (never in the answers: the addresses
// were validated, the MXIDs checked at bind time) is left to
// encoding/json, which writes U+FFFD for it.
func appendJSONString(b []byte, s string) []byte {
	plain, ascii := jsonPlain(s)
	if !ascii && !utf8.ValidString(s) {
		q, _ := json.Marshal(s) // a string always marshals
		return append(b, q...)
	}
	b = append(b, '"')
	if plain {
		b = append(b, s...)
		return append(b, '"')
	}
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[start:i]...)
		b = appendEscape(b, c)
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// jsonPlain reports whether s needs no escape in JSON, and whether it is
// all ASCII.
func jsonPlain(s string) (plain, ascii bool) {
	plain, ascii = true, true
	i := 0
	for ; i+8 <= len(s); i += 8 {
		x := le64(s[i : i+8])
		if x&0x8080808080808080 != 0 {
			ascii = false
		}
		if validate.Special8(x) != 0 {
			plain = false
		}
	}
	for ; i < len(s); i++ {
		switch c := s[i]; {
		case c >= utf8.RuneSelf:
			ascii = false
		case c < 0x20 || c == '"' || c == '\\':
			plain = false
		}
	}
	return plain, ascii
}

const hexDigits = "0123456789abcdef"

// appendEscape appends the escape of c, a quote, backslash or control
// character.
func appendEscape(b []byte, c byte) []byte {
	switch c {
	case '"', '\\':
		return append(b, '\\', c)
	case '\n':
		return append(b, '\\', 'n')
	case '\r':
		return append(b, '\\', 'r')
	case '\t':
		return append(b, '\\', 't')
	}
	return append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
}

// le64 reads the first 8 bytes of s little endian (one load: the compiler
// merges the byte reads, as in binary.LittleEndian.Uint64).
func le64(s string) uint64 {
	_ = s[7]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}
