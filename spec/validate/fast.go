package validate

import (
	"fmt"
	"math"
	"regexp"
	"slices"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/valyala/fastjson"
)

// A fastSchema is a request-body schema from the document compiled into a
// checker over fastjson values. It answers only "valid or not", without
// allocating: request bodies that pass skip kin-openapi's slower generic
// body validation, and bodies that fail are validated again by kin-openapi,
// which then produces the detailed error. So kin-openapi stays the judge of
// every rejection, and TestFastSchemaAgreesWithKin keeps the two in step.
type fastSchema struct {
	types        []string // empty: any type
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
		s.ExclusiveMin.Value != nil || s.ExclusiveMax.Value != nil {
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
		f.types = slices.Clone(*s.Type)
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

func (f *fastSchema) allows(t string) bool {
	return len(f.types) == 0 || slices.Contains(f.types, t)
}

// valid reports whether v conforms.
func (f *fastSchema) valid(v *fastjson.Value) bool {
	switch v.Type() {
	case fastjson.TypeNull:
		return f.nullable || f.allows("null")
	case fastjson.TypeTrue, fastjson.TypeFalse:
		return f.allows("boolean") && f.enumOK(v)
	case fastjson.TypeString:
		return f.allows("string") && f.stringOK(v)
	case fastjson.TypeNumber:
		return f.numberOK(v)
	case fastjson.TypeArray:
		return f.allows("array") && f.arrayOK(v)
	case fastjson.TypeObject:
		return f.allows("object") && f.objectOK(v)
	}
	return false
}

func (f *fastSchema) stringOK(v *fastjson.Value) bool {
	b, err := v.StringBytes()
	if err != nil {
		return false
	}
	if f.minLength > 0 || f.maxLength != nil {
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

func (f *fastSchema) numberOK(v *fastjson.Value) bool {
	x, err := v.Float64()
	if err != nil || math.IsInf(x, 0) || math.IsNaN(x) {
		return false
	}
	integral := x == math.Trunc(x)
	if !(f.allows("number") || f.allows("integer") && integral) {
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

func (f *fastSchema) enumOK(v *fastjson.Value) bool {
	if len(f.enum) == 0 {
		return true
	}
	b := v.Type() == fastjson.TypeTrue
	return slices.ContainsFunc(f.enum, func(e any) bool { x, ok := e.(bool); return ok && x == b })
}

func (f *fastSchema) arrayOK(v *fastjson.Value) bool {
	a, _ := v.Array()
	n := uint64(len(a))
	if n < f.minItems || f.maxItems != nil && n > *f.maxItems || len(f.enum) > 0 || f.uniqueItems {
		return false // enum and uniqueItems on arrays: let kin-openapi decide
	}
	if f.items != nil {
		for _, x := range a {
			if !f.items.valid(x) {
				return false
			}
		}
	}
	return true
}

func (f *fastSchema) objectOK(v *fastjson.Value) bool {
	o, _ := v.Object()
	if len(f.enum) > 0 {
		return false
	}
	for _, name := range f.required {
		if o.Get(name) == nil {
			return false
		}
	}
	ok := true
	o.Visit(func(k []byte, x *fastjson.Value) {
		if !ok {
			return
		}
		if p, known := f.properties[string(k)]; known {
			ok = p.valid(x)
			return
		}
		switch {
		case f.noAdditional:
			ok = false
		case f.additional != nil:
			ok = f.additional.valid(x)
		}
	})
	return ok
}
