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
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/getkin/kin-openapi/openapi2"
	"github.com/getkin/kin-openapi/openapi2conv"
	"github.com/getkin/kin-openapi/openapi3"
	"gopkg.in/yaml.v3"
)

// Source is one Swagger 2.0 file.
type Source struct {
	Name string
	Data []byte
}

// Result is the merged document and every change the fixups made.
type Result struct {
	Doc     *openapi3.T
	Changes []string
}

// ReadDir reads every *.yaml and *.yml file in dir, sorted by name.
func ReadDir(dir string) ([]Source, error) {
	var names []string
	for _, pat := range []string{"*.yaml", "*.yml"} {
		m, err := filepath.Glob(filepath.Join(dir, pat))
		if err != nil {
			return nil, err
		}
		names = append(names, m...)
	}
	sort.Strings(names)
	var srcs []Source
	for _, n := range names {
		data, err := os.ReadFile(n)
		if err != nil {
			return nil, fmt.Errorf("read spec: %w", err)
		}
		srcs = append(srcs, Source{Name: filepath.Base(n), Data: data})
	}
	if len(srcs) == 0 {
		return nil, fmt.Errorf("no Swagger files in %s", dir)
	}
	return srcs, nil
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

// ConvertFile repairs and converts one Swagger 2.0 file.
func ConvertFile(src Source) (*openapi3.T, []string, error) {
	doc, err := ParseYAML(src.Data)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", src.Name, err)
	}
	if v, _ := doc["swagger"].(string); v != "2.0" {
		return nil, nil, fmt.Errorf("%s: not a Swagger 2.0 document (swagger: %v)", src.Name, doc["swagger"])
	}
	changes := ApplyFixups(doc)
	for i := range changes {
		changes[i] = src.Name + ": " + changes[i]
	}
	buf, err := json.Marshal(doc)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", src.Name, err)
	}
	var doc2 openapi2.T
	if err := json.Unmarshal(buf, &doc2); err != nil {
		return nil, nil, fmt.Errorf("%s: parse Swagger 2.0: %w", src.Name, err)
	}
	doc3, err := openapi2conv.ToV3(&doc2)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: convert: %w", src.Name, err)
	}
	return doc3, changes, nil
}

// Convert converts every source and merges them into one validated document.
func Convert(ctx context.Context, srcs []Source, info openapi3.Info) (*Result, error) {
	merged := &openapi3.T{
		OpenAPI:    "3.0.3",
		Info:       &info,
		Paths:      openapi3.NewPaths(),
		Components: &openapi3.Components{Schemas: openapi3.Schemas{}, SecuritySchemes: openapi3.SecuritySchemes{}},
	}
	res := &Result{Doc: merged}
	opIDs := map[string]string{}
	for _, src := range srcs {
		doc, changes, err := ConvertFile(src)
		if err != nil {
			return nil, err
		}
		res.Changes = append(res.Changes, changes...)
		if err := merge(merged, doc, src.Name, opIDs); err != nil {
			return nil, err
		}
	}
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

// merge adds doc's paths and components to into, refusing clashes: two files
// defining the same operation or reusing an operationId would otherwise
// silently replace one another.
func merge(into, doc *openapi3.T, name string, opIDs map[string]string) error {
	for path, item := range doc.Paths.Map() {
		existing := into.Paths.Value(path)
		if existing == nil {
			existing = &openapi3.PathItem{}
			into.Paths.Set(path, existing)
		}
		for method, op := range item.Operations() {
			if existing.GetOperation(method) != nil {
				return fmt.Errorf("%s: %s %s is already defined by another file", name, method, path)
			}
			if op.OperationID != "" {
				if other, dup := opIDs[op.OperationID]; dup {
					return fmt.Errorf("%s: operationId %q already used by %s", name, op.OperationID, other)
				}
				opIDs[op.OperationID] = name
			}
			existing.SetOperation(method, op)
		}
		existing.Parameters = append(existing.Parameters, item.Parameters...)
	}
	if doc.Components == nil {
		return nil
	}
	for k, s := range doc.Components.Schemas {
		if prev, ok := into.Components.Schemas[k]; ok {
			a, _ := json.Marshal(prev)
			b, _ := json.Marshal(s)
			if string(a) != string(b) {
				return fmt.Errorf("%s: definition %q differs from another file's", name, k)
			}
			continue
		}
		into.Components.Schemas[k] = s
	}
	for k, s := range doc.Components.SecuritySchemes {
		into.Components.SecuritySchemes[k] = s
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
