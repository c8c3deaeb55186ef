// Package convert turns the Swagger 2.0 sources in spec/ into the single
// OpenAPI 3 document the server is generated from and validated against.
//
// kin-openapi's openapi2conv does the conversion; this package repairs the
// quirks of real-world files first (see Fixups), folds each file's base path
// into its paths, and merges the files into one document.
package convert

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/getkin/kin-openapi/openapi2"
	"github.com/getkin/kin-openapi/openapi2conv"
	"github.com/getkin/kin-openapi/openapi3"
	"gopkg.in/yaml.v3"
)

// Source is one API document: Swagger 2.0 or OpenAPI 3.
type Source struct {
	// Name is the file's path relative to the spec directory: it is what
	// messages and the output ever mention.
	Name string
	Data []byte
	// Path is the file on disk, against which its relative $refs are
	// resolved ("" for a document without file refs).
	Path string
	// Prefer: its operations (and schemas, security schemes) take
	// precedence over another file's conflicting definition of the same
	// (see ConfigFile).
	Prefer bool
	// Root is the spec directory Path lies in, if known.
	Root string
}

// DocumentInfo describes the merged document `make generate` writes.
var DocumentInfo = openapi3.Info{
	Title:       "Sigil: Matrix Identity Service API",
	Version:     "1.0.0",
	Description: Description,
}

// Result is the merged document and every change the fixups made.
type Result struct {
	Doc     *openapi3.T
	Changes []string
}

// ParseYAML decodes a YAML document into plain JSON-compatible values: maps
// with string keys (the seed mixes `200:` and `"200":`), slices and scalars.
func ParseYAML(data []byte) (map[string]any, error) {
	var raw any
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return nil, err
	}
	doc, ok := normalize(raw).(map[string]any)
	if !ok {
		return nil, fmt.Errorf("top level is not a mapping")
	}
	return doc, nil
}

// parseAny decodes a YAML (or JSON) file of any shape.
func parseAny(data []byte) (any, error) {
	var raw any
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return nil, err
	}
	return normalize(raw), nil
}

func normalize(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, val := range t {
			t[k] = normalize(val)
		}
		return t
	case map[any]any:
		m := make(map[string]any, len(t))
		for k, val := range t {
			m[fmt.Sprint(k)] = normalize(val)
		}
		return m
	case []any:
		for i := range t {
			t[i] = normalize(t[i])
		}
		return t
	}
	return v
}

// ConvertFile repairs and converts one API document: its file $refs are
// resolved, then the fix-ups of its version run (Fixups for Swagger 2.0,
// V3Fixups for OpenAPI 3.0 and 3.1) and it is converted (openapi2conv) or
// loaded (kin-openapi) as OpenAPI 3.0.
func ConvertFile(src Source) (*openapi3.T, []string, error) {
	doc, err := ParseYAML(src.Data)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", src.Name, err)
	}
	swagger, _ := doc["swagger"].(string)
	openapi, _ := doc["openapi"].(string)
	v3 := strings.HasPrefix(openapi, "3.0.") || strings.HasPrefix(openapi, "3.1.")
	if swagger != "2.0" && !v3 {
		return nil, nil, fmt.Errorf("%s: not a Swagger 2.0 or OpenAPI 3.0/3.1 document (swagger: %v, openapi: %v)", src.Name, doc["swagger"], doc["openapi"])
	}
	var changes []string
	if src.Path != "" {
		c, err := resolveFileRefs(doc, src.Path, src.Root, v3)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", src.Name, err)
		}
		changes = append(changes, c...)
	}
	var doc3 *openapi3.T
	if v3 {
		for _, f := range V3Fixups {
			c, err := f.Apply(doc)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %w", src.Name, err)
			}
			for _, x := range c {
				changes = append(changes, f.Name+": "+x)
			}
		}
		buf, err := json.Marshal(doc)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", src.Name, err)
		}
		loader := openapi3.NewLoader()
		if doc3, err = loader.LoadFromData(buf); err != nil {
			return nil, nil, fmt.Errorf("%s: load OpenAPI 3: %w", src.Name, err)
		}
	} else {
		changes = append(changes, ApplyFixups(doc)...)
		buf, err := json.Marshal(doc)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", src.Name, err)
		}
		var doc2 openapi2.T
		if err := json.Unmarshal(buf, &doc2); err != nil {
			return nil, nil, fmt.Errorf("%s: parse Swagger 2.0: %w", src.Name, err)
		}
		if doc3, err = openapi2conv.ToV3(&doc2); err != nil {
			return nil, nil, fmt.Errorf("%s: convert: %w", src.Name, err)
		}
	}
	for i := range changes {
		changes[i] = src.Name + ": " + changes[i]
	}
	return doc3, changes, nil
}

// Convert converts every source and merges them into one validated
// document. Two sources defining the same operation (method and path) merge
// when the definitions are identical; otherwise the one whose Source.Prefer
// is set wins, and without exactly one such the conflict is an error naming
// both files and the operation. An operationId used by two different
// operations, and a schema or security scheme defined differently, are
// errors too.
func Convert(ctx context.Context, srcs []Source, info openapi3.Info) (*Result, error) {
	merged := &openapi3.T{
		OpenAPI:    "3.0.3",
		Info:       &info,
		Paths:      openapi3.NewPaths(),
		Components: &openapi3.Components{Schemas: openapi3.Schemas{}, SecuritySchemes: openapi3.SecuritySchemes{}},
	}
	res := &Result{Doc: merged}
	m := &merger{into: merged, ops: map[string]mergedOp{}, opIDs: map[string]string{}, comps: map[string]Source{}}
	for _, src := range srcs {
		doc, changes, err := ConvertFile(src)
		if err != nil {
			return nil, err
		}
		res.Changes = append(res.Changes, changes...)
		if err := m.add(doc, src); err != nil {
			return nil, err
		}
	}
	res.Changes = append(res.Changes, m.changes...)
	if err := m.finish(); err != nil {
		return nil, err
	}
	res.Changes = append(res.Changes, groupOperations(merged)...)
	if len(merged.Components.SecuritySchemes) == 0 {
		merged.Components.SecuritySchemes = nil
	}
	// Round-trip through JSON so the document is exactly what a reader of the
	// written file would load (and refs are resolved the same way).
	buf, err := json.Marshal(merged)
	if err != nil {
		return nil, err
	}
	loader := openapi3.NewLoader()
	final, err := loader.LoadFromData(buf)
	if err != nil {
		return nil, fmt.Errorf("reload merged document: %w", err)
	}
	if err := final.Validate(ctx, openapi3.EnableExamplesValidation()); err != nil {
		return nil, fmt.Errorf("merged document is invalid: %w", err)
	}
	res.Doc = final
	return res, nil
}

type mergedOp struct {
	op     *openapi3.Operation
	params openapi3.Parameters // the path item's
	src    Source
	json   string
}

// merger collects operations and components from the sources in order.
type merger struct {
	into    *openapi3.T
	ops     map[string]mergedOp // "METHOD path"
	opIDs   map[string]string   // operationId -> "METHOD path"
	comps   map[string]Source   // "schema X" -> the file whose definition is kept
	changes []string
}

func (m *merger) add(doc *openapi3.T, src Source) error {
	for _, path := range doc.Paths.InMatchingOrder() {
		item := doc.Paths.Value(path)
		for _, method := range sortedKeys(item.Operations()) {
			op := item.GetOperation(method)
			key := method + " " + path
			raw, err := json.Marshal(struct {
				Op     *openapi3.Operation
				Params openapi3.Parameters
			}{op, item.Parameters})
			if err != nil {
				return fmt.Errorf("%s: %s: %w", src.Name, key, err)
			}
			next := mergedOp{op: op, params: item.Parameters, src: src, json: string(raw)}
			prev, dup := m.ops[key]
			switch {
			case !dup:
			case prev.json == next.json:
				m.changes = append(m.changes, fmt.Sprintf("merge: %s: identical in %s and %s", key, prev.src.Name, src.Name))
				continue
			case prev.src.Prefer && !src.Prefer:
				m.changes = append(m.changes, fmt.Sprintf("merge: %s: %s takes precedence over %s", key, prev.src.Name, src.Name))
				continue
			case src.Prefer && !prev.src.Prefer:
				m.changes = append(m.changes, fmt.Sprintf("merge: %s: %s takes precedence over %s", key, src.Name, prev.src.Name))
			default:
				return fmt.Errorf("%s and %s define %s differently (declare the files that take precedence in %s)", prev.src.Name, src.Name, key, ConfigFile)
			}
			m.ops[key] = next
		}
	}
	if doc.Components == nil {
		return nil
	}
	for _, k := range sortedKeys(doc.Components.Schemas) {
		if err := m.component("schema", k, doc.Components.Schemas[k], src, func(v any) { m.into.Components.Schemas[k] = v.(*openapi3.SchemaRef) }, m.into.Components.Schemas[k]); err != nil {
			return err
		}
	}
	for _, k := range sortedKeys(doc.Components.SecuritySchemes) {
		if err := m.component("security scheme", k, doc.Components.SecuritySchemes[k], src, func(v any) { m.into.Components.SecuritySchemes[k] = v.(*openapi3.SecuritySchemeRef) }, m.into.Components.SecuritySchemes[k]); err != nil {
			return err
		}
	}
	return nil
}

// component adds a named component; the same name must mean the same,
// unless exactly one of the two files is preferred.
func (m *merger) component(kind, name string, v any, src Source, set func(any), prev any) error {
	key := kind + " " + name
	if other, ok := m.comps[key]; ok {
		a, _ := json.Marshal(prev)
		b, _ := json.Marshal(v)
		switch {
		case string(a) == string(b):
		case other.Prefer && !src.Prefer:
			m.changes = append(m.changes, fmt.Sprintf("merge: %s %q: %s takes precedence over %s", kind, name, other.Name, src.Name))
		case src.Prefer && !other.Prefer:
			m.changes = append(m.changes, fmt.Sprintf("merge: %s %q: %s takes precedence over %s", kind, name, src.Name, other.Name))
			m.comps[key] = src
			set(v)
		default:
			return fmt.Errorf("%s and %s define %s %q differently", other.Name, src.Name, kind, name)
		}
		return nil
	}
	m.comps[key] = src
	set(v)
	return nil
}

// finish writes the operations into the document, refusing an operationId
// used by two operations.
func (m *merger) finish() error {
	for _, key := range sortedKeys(m.ops) {
		o := m.ops[key]
		method, path, _ := strings.Cut(key, " ")
		if id := o.op.OperationID; id != "" {
			if other, dup := m.opIDs[id]; dup {
				return fmt.Errorf("%s: operationId %q of %s is already used by %s (%s)", o.src.Name, id, key, other, m.ops[other].src.Name)
			}
			m.opIDs[id] = key
		}
		item := m.into.Paths.Value(path)
		if item == nil {
			item = &openapi3.PathItem{}
			m.into.Paths.Set(path, item)
		}
		for _, p := range o.params {
			if item.Parameters.GetByInAndName(p.Value.In, p.Value.Name) == nil {
				item.Parameters = append(item.Parameters, p)
			}
		}
		item.SetOperation(method, o.op)
	}
	return nil
}

// Marshal renders the document deterministically (sorted keys, two-space
// indent, trailing newline) so regenerating an unchanged spec changes nothing.
func Marshal(doc *openapi3.T) ([]byte, error) {
	raw, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, err
	}
	out, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

// Summary lists the operations of doc, one "METHOD path operationId" a line.
func Summary(doc *openapi3.T) string {
	var lines []string
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			lines = append(lines, fmt.Sprintf("%-6s %s %s", method, path, op.OperationID))
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}
