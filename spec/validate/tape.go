package validate

import (
	"sync"
	"unicode/utf8"
)

// A Tape is what a walk over a JSON text found: one token per value and
// per object key, in document order, each pointing into the text. The
// schema walk writes it as it goes for the operations named with
// Tokenize, so that their decoders read the tokens instead of scanning
// the body a second time (decoding a 1,000-pair bulk lookup from the
// bytes was a sixth of its cost).
//
// A token is a uint64: its kind in the top 3 bits, then a bit set when a
// string holds escapes, then two 30-bit numbers: for strings, keys and
// other scalars the byte offsets of the raw text (a string's between its
// quotes); for objects and arrays the offset of the bracket and the index
// of the token after the container's last one.
type Tape []uint64

// Token kinds.
const (
	TokObject = iota + 1
	TokArray
	TokString
	TokKey
	TokScalar // number, true, false or null
)

const (
	tapeKindShift = 61
	tapeEscaped   = 1 << 60
	tapeMax       = 1<<30 - 1
)

// Kind is the kind of token i.
func (t Tape) Kind(i int) int { return int(t[i] >> tapeKindShift) }

// Span is the text of token i: a string's or key's raw contents, without
// the quotes.
func (t Tape) Span(i int) (start, end int) {
	return int(t[i] >> 30 & tapeMax), int(t[i] & tapeMax)
}

// Escaped reports whether string or key i holds escapes.
func (t Tape) Escaped(i int) bool { return t[i]&tapeEscaped != 0 }

// Next is the index of the token after value i and everything in it.
func (t Tape) Next(i int) int {
	switch t.Kind(i) {
	case TokObject, TokArray:
		return int(t[i] & tapeMax)
	}
	return i + 1
}

// Tokenize returns the tape of data, or ok false when data is not JSON
// (RFC 8259) in valid UTF-8, nests deeper than encoding/json allows
// (10,000), or is too long for a tape (1 GiB). It is the schema walk's
// tokenizer without a schema, for bodies the validator did not tokenize;
// objects may repeat keys. The tape comes from a pool: give it back with
// PutTape once read, or drop it.
func Tokenize(data []byte) (t Tape, ok bool) {
	if len(data) > tapeMax || !utf8.Valid(data) {
		return nil, false
	}
	w := walker{b: data, scanOnly: true, anyKeys: true, taping: true, tape: newTape()}
	if !anything.check(&w) || w.ws() != len(w.b) {
		return nil, false
	}
	return w.tape, true
}

// tapes holds tapes for reuse.
var tapes = sync.Pool{New: func() any { return new(Tape) }}

// maxPooledTape bounds the tapes kept (about 4,000 tokens a 1,000-pair
// bulk lookup).
const maxPooledTape = 16 << 10

func newTape() Tape { return (*tapes.Get().(*Tape))[:0] }

// PutTape keeps t for reuse. Nothing may read it afterwards.
func PutTape(t Tape) {
	if t == nil || cap(t) > maxPooledTape {
		return
	}
	tapes.Put(&t)
}

// token appends a token of kind k spanning b[start:end].
func (w *walker) token(k int, escaped bool, start, end int) {
	tok := uint64(k)<<tapeKindShift | uint64(start)<<30 | uint64(end)
	if escaped {
		tok |= tapeEscaped
	}
	w.tape = append(w.tape, tok)
}

// open appends the token of a container starting at w.i and returns its
// index, for close.
func (w *walker) open(k int) int {
	if !w.taping {
		return 0
	}
	w.tape = append(w.tape, uint64(k)<<tapeKindShift|uint64(w.i)<<30)
	return len(w.tape) - 1
}

// close records where the container of token i ends.
func (w *walker) close(i int) {
	if w.taping {
		w.tape[i] |= uint64(len(w.tape))
	}
}
