package validate

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/bits"
	"regexp"
	"slices"
	"strconv"

	"github.com/getkin/kin-openapi/openapi3"
)

// A fastSchema is a request-body schema from the document compiled into a
// checker over JSON bytes. It answers only "valid or not", without
// allocating: request bodies that pass skip kin-openapi's slower generic
// body validation, and bodies that fail are validated again by kin-openapi,
// which then produces the detailed error. So kin-openapi stays the judge of
// every rejection, and TestFastSchemaAgreesWithKin keeps the two in step.
type fastSchema struct {
	types        typeSet
	nullable     bool
	properties   map[string]*fastSchema
	required     []string
	additional   *fastSchema // nil with allowAdditional: anything goes
	noAdditional bool
	items        *fastSchema
	minItems     uint64
	maxItems     *uint64
	minLength    uint64
	maxLength    *uint64
	pattern      *regexp.Regexp
	enum         []any
	minimum      *float64
	maximum      *float64
	exclusiveMin bool
	exclusiveMax bool
	uniqueItems  bool
}

// compileFast compiles s, or reports why it cannot: schemas using keywords
// it does not implement are left to kin-openapi alone.
func compileFast(ref *openapi3.SchemaRef) (*fastSchema, error) {
	if ref == nil || ref.Value == nil {
		return &fastSchema{}, nil
	}
	s := ref.Value
	if len(s.AllOf) > 0 || len(s.AnyOf) > 0 || len(s.OneOf) > 0 || s.Not != nil ||
		s.Format != "" && s.Format != "int64" && s.Format != "int32" ||
		s.MinProps != 0 || s.MaxProps != nil || s.MultipleOf != nil || s.Discriminator != nil ||
		s.ReadOnly || s.WriteOnly || s.Default != nil ||
		s.ExclusiveMin.Value != nil || s.ExclusiveMax.Value != nil || len(s.Required) > 63 {
		return nil, fmt.Errorf("unsupported schema keywords")
	}
	f := &fastSchema{
		nullable:     s.Nullable,
		required:     s.Required,
		minItems:     s.MinItems,
		maxItems:     s.MaxItems,
		minLength:    s.MinLength,
		maxLength:    s.MaxLength,
		enum:         s.Enum,
		minimum:      s.Min,
		maximum:      s.Max,
		exclusiveMin: s.ExclusiveMin.IsTrue(),
		exclusiveMax: s.ExclusiveMax.IsTrue(),
		uniqueItems:  s.UniqueItems,
	}
	if s.Type != nil {
		for _, t := range *s.Type {
			f.types |= typeBit(t)
		}
		if f.types == 0 { // only unknown type names
			return nil, fmt.Errorf("unsupported type %v", *s.Type)
		}
	}
	if s.Pattern != "" {
		re, err := regexp.Compile(s.Pattern)
		if err != nil {
			return nil, err
		}
		f.pattern = re
	}
	if len(s.Properties) > 0 {
		f.properties = make(map[string]*fastSchema, len(s.Properties))
		for name, p := range s.Properties {
			c, err := compileFast(p)
			if err != nil {
				return nil, err
			}
			f.properties[name] = c
		}
	}
	if s.AdditionalProperties.Has != nil && !*s.AdditionalProperties.Has {
		f.noAdditional = true
	}
	if s.AdditionalProperties.Schema != nil {
		c, err := compileFast(s.AdditionalProperties.Schema)
		if err != nil {
			return nil, err
		}
		f.additional = c
	}
	if s.Items != nil {
		c, err := compileFast(s.Items)
		if err != nil {
			return nil, err
		}
		f.items = c
	}
	return f, nil
}

// typeSet is a set of JSON schema types; empty means any type.
type typeSet uint8

const (
	tNull typeSet = 1 << iota
	tBoolean
	tObject
	tArray
	tNumber
	tString
	tInteger
)

var typeNames = map[string]typeSet{
	"null": tNull, "boolean": tBoolean, "object": tObject, "array": tArray,
	"number": tNumber, "string": tString, "integer": tInteger,
}

func typeBit(t string) typeSet { return typeNames[t] }

func (f *fastSchema) allows(t typeSet) bool {
	return f.types == 0 || f.types&t != 0
}

// validJSON reports whether data, which must be UTF-8, is JSON (RFC 8259)
// and conforms. It walks the bytes once without building a tree:
// fastjson's tree cost as much as the lookups it guarded, mostly in
// allocation and in clearing its value cache (write barriers while the
// GC runs). It checks the syntax as it goes, so that a body it accepts
// needs no separate syntax check (sonic.Valid was a fifth of validating a
// bulk lookup); whatever it cannot vouch for it refuses, and checkJSON
// then decides as before.
func (f *fastSchema) validJSON(data []byte) bool {
	ok, _ := f.validTape(data, false)
	return ok
}

// validTape is validJSON, also returning the tape of an accepted body
// when taping (and the body is short enough for one).
func (f *fastSchema) validTape(data []byte, taping bool) (bool, Tape) {
	w := walker{b: data}
	if taping && len(data) <= tapeMax {
		w.taping, w.tape = true, newTape()
	}
	if !f.check(&w) || w.ws() != len(w.b) {
		if w.taping {
			PutTape(w.tape)
		}
		return false, nil
	}
	return true, w.tape
}

// walker is a read position in syntactically valid JSON.
type walker struct {
	b []byte
	i int
	// dup is set when an object repeats a key: decoders keep one of the
	// values (encoding/json and sonic the last), so what a handler got
	// could differ from what was validated. Such bodies are refused.
	dup bool
	// scanOnly accepts every scalar: the walk only looks for duplicate keys.
	scanOnly bool
	// depth is the nesting at w.i. Past maxDepth the schema walk gives up
	// (recursion is the stack's) and sonic.Valid and kin-openapi decide.
	depth int
	// anyKeys lets objects repeat keys (Tokenize: the decoders keep the
	// last value, as encoding/json does).
	anyKeys bool
	// taping records the tokens into tape (tape.go).
	taping bool
	tape   Tape
}

const maxDepth = 256

// next reports whether the byte at w.i, after white space, is c, and if
// so consumes it.
func (w *walker) next(c byte) bool {
	if w.ws() < len(w.b) && w.b[w.i] == c {
		w.i++
		return true
	}
	return false
}

// literal consumes word (true, false, null) if it comes next.
func (w *walker) literal(word string) bool {
	if len(w.b)-w.i < len(word) || string(w.b[w.i:w.i+len(word)]) != word {
		return false
	}
	w.i += len(word)
	return true
}

// number consumes a JSON number (RFC 8259 §6: -?(0|[1-9][0-9]*)(.[0-9]+)?
// ([eE][+-]?[0-9]+)?) and returns its text, or ok false.
func (w *walker) number() (text []byte, ok bool) {
	start := w.i
	w.skipByte('-')
	switch {
	case w.skipByte('0'):
	case w.digits() == 0:
		return nil, false
	}
	if w.skipByte('.') && w.digits() == 0 {
		return nil, false
	}
	if w.skipByte('e') || w.skipByte('E') {
		if !w.skipByte('+') {
			w.skipByte('-')
		}
		if w.digits() == 0 {
			return nil, false
		}
	}
	return w.b[start:w.i], true
}

// scalar consumes word (true, false, null) if it comes next, recording it.
func (w *walker) scalar(word string) bool {
	ok := w.literal(word)
	if ok && w.taping {
		w.token(TokScalar, false, w.i-len(word), w.i)
	}
	return ok
}

func (w *walker) skipByte(c byte) bool {
	if w.i < len(w.b) && w.b[w.i] == c {
		w.i++
		return true
	}
	return false
}

// digits consumes decimal digits and returns how many.
func (w *walker) digits() int {
	start := w.i
	for w.i < len(w.b) && w.b[w.i] >= '0' && w.b[w.i] <= '9' {
		w.i++
	}
	return w.i - start
}

// hasDuplicateKeys reports whether the valid JSON in data has an object
// that repeats a key.
func hasDuplicateKeys(data []byte) bool {
	w := walker{b: data, scanOnly: true}
	anything.check(&w)
	return w.dup
}

// keySet holds the keys of one object; most have a few, kept on the stack.
type keySet struct {
	small [8][]byte
	n     int
	more  map[string]struct{}
}

// add reports whether k is new.
func (s *keySet) add(k []byte) bool {
	if s.more != nil {
		if _, ok := s.more[string(k)]; ok {
			return false
		}
		s.more[string(k)] = struct{}{}
		return true
	}
	for _, prev := range s.small[:s.n] {
		if string(prev) == string(k) {
			return false
		}
	}
	if s.n < len(s.small) {
		s.small[s.n] = k
		s.n++
		return true
	}
	s.more = make(map[string]struct{}, 2*len(s.small))
	for _, prev := range s.small {
		s.more[string(prev)] = struct{}{}
	}
	s.more[string(k)] = struct{}{}
	return true
}

// ws skips white space and returns the new position.
func (w *walker) ws() int {
	for w.i < len(w.b) {
		switch w.b[w.i] {
		case ' ', '\t', '\n', '\r':
			w.i++
		default:
			return w.i
		}
	}
	return w.i
}

// str reads the string at w.i (its opening quote) and returns its raw
// contents and whether they hold escapes; ok is false for a control
// character, which JSON forbids in strings but sonic.Valid lets through.
// It looks at 8 bytes at a time for the bytes that matter (SWAR): a
// byte loop was a third of validating a 1,000-hash body.
func (w *walker) str() (raw []byte, escaped, ok bool) {
	start := w.i + 1
	j := start
	for {
		for j+8 <= len(w.b) {
			if m := Special8(binary.LittleEndian.Uint64(w.b[j:])); m != 0 {
				j += bits.TrailingZeros64(m) / 8 // the lowest flag is never false
				break
			}
			j += 8
		}
		if j >= len(w.b) {
			w.i = len(w.b)
			return nil, false, false
		}
		switch c := w.b[j]; {
		case c == '"':
			w.i = j + 1
			return w.b[start:j], escaped, true
		case c == '\\':
			escaped = true
			j += 2
		case c < 0x20:
			return nil, false, false
		default:
			j++
		}
	}
}

// Special8 is non-zero when one of the 8 bytes of x (little endian) is a
// quote, a backslash or a control character: the bytes a JSON string
// scanner must stop at. Bytes above the first such one may be flagged
// falsely (scanners look at them one by one). Shared with the lookup
// body decoder and answer encoder in handlers.
func Special8(x uint64) uint64 {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	q, b := x^(lo*'"'), x^(lo*'\\')
	return ((x-lo*0x20) & ^x | (q-lo) & ^q | (b-lo) & ^b) & hi
}

// text returns the decoded string at w.i, recording it on the tape as a
// token of kind k; ok is false when it is not a valid JSON string.
func (w *walker) text(k int) ([]byte, bool) {
	if w.i >= len(w.b) || w.b[w.i] != '"' {
		return nil, false
	}
	from := w.i
	raw, escaped, ok := w.str()
	if ok && w.taping {
		w.token(k, escaped, from+1, w.i-1)
	}
	if !ok || !escaped {
		return raw, ok
	}
	// Rare: encoding/json decodes the escapes, and rejects bad ones.
	var s string
	if err := json.Unmarshal(w.b[from:w.i], &s); err != nil {
		return nil, false
	}
	return []byte(s), true
}

// check consumes one value and reports whether it conforms to f.
func (f *fastSchema) check(w *walker) bool {
	if w.ws() >= len(w.b) {
		return false
	}
	switch c := w.b[w.i]; {
	case c == '{':
		return f.allows(tObject) && f.checkObject(w)
	case c == '[':
		return f.allows(tArray) && f.checkArray(w)
	case c == '"':
		b, ok := w.text(TokString)
		return ok && (w.scanOnly || f.allows(tString) && f.stringOK(b))
	case c == 't':
		return w.scalar("true") && (w.scanOnly || f.allows(tBoolean) && f.enumOK(true))
	case c == 'f':
		return w.scalar("false") && (w.scanOnly || f.allows(tBoolean) && f.enumOK(false))
	case c == 'n':
		return w.scalar("null") && (w.scanOnly || f.nullable || f.allows(tNull))
	default:
		text, ok := w.number()
		if ok && w.taping {
			w.token(TokScalar, false, w.i-len(text), w.i)
		}
		if !ok || w.scanOnly {
			return ok
		}
		x, err := strconv.ParseFloat(string(text), 64)
		return err == nil && f.numberOK(x)
	}
}

func (f *fastSchema) checkObject(w *walker) bool {
	if len(f.enum) > 0 {
		return false // enum on objects: let kin-openapi decide
	}
	var seen uint64 // bit i: required[i] present
	var keys keySet
	if !w.enter() {
		return false
	}
	defer w.leave()
	at := w.open(TokObject)
	w.i++ // {
	if w.next('}') {
		w.close(at)
		return f.allRequired(seen)
	}
	for {
		w.ws()
		key, ok := w.text(TokKey)
		if !ok {
			return false
		}
		if !w.anyKeys && !keys.add(key) {
			w.dup = true
			return false
		}
		for i, name := range f.required {
			if name == string(key) {
				seen |= 1 << i
			}
		}
		if !w.next(':') {
			return false
		}
		sub, known := f.properties[string(key)]
		switch {
		case known:
		case f.noAdditional:
			return false
		case f.additional != nil:
			sub = f.additional
		default:
			sub = anything
		}
		if !sub.check(w) {
			return false
		}
		if w.next('}') {
			w.close(at)
			return f.allRequired(seen)
		}
		if !w.next(',') {
			return false
		}
	}
}

// enter notes one more level of nesting; false past maxDepth, except for
// the duplicate scan, which must see everything (it runs on bodies
// sonic.Valid accepted), and Tokenize, which stops where encoding/json
// does (maxTokenizeDepth).
func (w *walker) enter() bool {
	w.depth++
	switch {
	case w.scanOnly && w.taping:
		return w.depth <= maxTokenizeDepth
	case w.scanOnly:
		return true
	}
	return w.depth <= maxDepth
}

// maxTokenizeDepth is encoding/json's nesting limit: the validator
// refuses deeper bodies before any decoder runs.
const maxTokenizeDepth = 10000

func (w *walker) leave() { w.depth-- }

func (f *fastSchema) allRequired(seen uint64) bool {
	return seen == 1<<len(f.required)-1
}

// anything accepts any value.
var anything = &fastSchema{}

func (f *fastSchema) checkArray(w *walker) bool {
	if len(f.enum) > 0 || f.uniqueItems {
		return false // enum and uniqueItems on arrays: let kin-openapi decide
	}
	items := f.items
	if items == nil {
		items = anything
	}
	if !w.enter() {
		return false
	}
	defer w.leave()
	at := w.open(TokArray)
	var n uint64
	w.i++ // [
	if !w.next(']') {
		for {
			if !items.check(w) {
				return false
			}
			n++
			if w.next(']') {
				break
			}
			if !w.next(',') {
				return false
			}
		}
	}
	w.close(at)
	return n >= f.minItems && (f.maxItems == nil || n <= *f.maxItems)
}

func (f *fastSchema) stringOK(b []byte) bool {
	// A string has at most as many characters as bytes: counting them,
	// a byte loop over every string of the body (a tenth of validating a
	// bulk lookup), is needed only when the byte length alone cannot
	// decide.
	if f.minLength > 0 || f.maxLength != nil && uint64(len(b)) > *f.maxLength {
		n := uint64(utf8Count(b))
		if n < f.minLength || f.maxLength != nil && n > *f.maxLength {
			return false
		}
	}
	if f.pattern != nil && !f.pattern.Match(b) {
		return false
	}
	if len(f.enum) > 0 {
		return slices.ContainsFunc(f.enum, func(e any) bool { s, ok := e.(string); return ok && s == string(b) })
	}
	return true
}

func utf8Count(b []byte) int {
	n := 0
	for _, c := range b {
		if c&0xC0 != 0x80 {
			n++
		}
	}
	return n
}

func (f *fastSchema) numberOK(x float64) bool {
	if math.IsInf(x, 0) || math.IsNaN(x) {
		return false
	}
	integral := x == math.Trunc(x)
	if !(f.allows(tNumber) || f.allows(tInteger) && integral) {
		return false
	}
	if f.minimum != nil && (x < *f.minimum || f.exclusiveMin && x == *f.minimum) {
		return false
	}
	if f.maximum != nil && (x > *f.maximum || f.exclusiveMax && x == *f.maximum) {
		return false
	}
	if len(f.enum) > 0 {
		return slices.ContainsFunc(f.enum, func(e any) bool { n, ok := e.(float64); return ok && n == x })
	}
	return true
}

func (f *fastSchema) enumOK(b bool) bool {
	if len(f.enum) == 0 {
		return true
	}
	return slices.ContainsFunc(f.enum, func(e any) bool { x, ok := e.(bool); return ok && x == b })
}
