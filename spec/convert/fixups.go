package convert

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// A Fixup repairs one real-world quirk of the Swagger 2.0 sources before they
// are handed to kin-openapi's converter. Each returns a description of every
// change it made, so the generator can report them and tests can pin them.
type Fixup struct {
	Name  string
	Apply func(doc map[string]any) []string
}

// Fixups lists every repair, in the order they run. Order matters only in
// that example placement is fixed before error schemas are added.
var Fixups = []Fixup{
	{"unescape-quotes", fixEscapedQuotes},
	{"status-ranges", fixStatusRanges},
	{"response-examples", fixResponseExamples},
	{"default-consumes", fixConsumes},
	{"required-bodies", fixRequiredBodies},
	{"error-schemas", fixErrorSchemas},
	{"default-errors", fixDefaultErrors},
	{"parameter-examples", fixParameterExamples},
	{"fold-base-path", foldBasePath},
	{"tuple-items", fixTupleItems},
	{"array-examples", fixArrayExamples},
	{"ref-siblings", fixRefSiblings},
}

// ApplyFixups runs every fixup on doc and returns what was changed.
func ApplyFixups(doc map[string]any) []string {
	var changes []string
	for _, f := range Fixups {
		for _, c := range f.Apply(doc) {
			changes = append(changes, f.Name+": "+c)
		}
	}
	return changes
}

// MatrixErrorName is the shared schema every error response without one gets.
const MatrixErrorName = "MatrixError"

// matrixErrorSchema is the standard error body. Extra keys (mxid,
// lookup_pepper, ...) are allowed, as the spec says.
func matrixErrorSchema() map[string]any {
	return map[string]any{
		"type":        "object",
		"description": "A Matrix error.",
		"required":    []any{"errcode", "error"},
		"properties": map[string]any{
			"errcode": map[string]any{"type": "string", "description": "An error code, e.g. M_UNKNOWN."},
			"error":   map[string]any{"type": "string", "description": "A human-readable error message."},
		},
		"additionalProperties": true,
	}
}

var httpMethods = []string{"get", "put", "post", "delete", "options", "head", "patch"}

// operation is one operation with enough context for fixups to name it.
type operation struct {
	path, method string
	op           map[string]any
}

func (o operation) String() string { return strings.ToUpper(o.method) + " " + o.path }

// operations returns the document's operations in a stable order.
func operations(doc map[string]any) []operation {
	paths, _ := doc["paths"].(map[string]any)
	var ops []operation
	for _, p := range sortedKeys(paths) {
		item, _ := paths[p].(map[string]any)
		for _, m := range httpMethods {
			if op, ok := item[m].(map[string]any); ok {
				ops = append(ops, operation{p, m, op})
			}
		}
	}
	return ops
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// fixEscapedQuotes: the seed writes `user\'s` inside plain and block scalars,
// where YAML keeps the backslash literally; the authors meant an apostrophe.
func fixEscapedQuotes(doc map[string]any) []string {
	var changes []string
	var walk func(v any, at string) any
	walk = func(v any, at string) any {
		switch t := v.(type) {
		case string:
			if strings.Contains(t, `\'`) {
				changes = append(changes, at)
				return strings.ReplaceAll(t, `\'`, "'")
			}
		case map[string]any:
			for _, k := range sortedKeys(t) {
				t[k] = walk(t[k], at+"/"+k)
			}
		case []any:
			for i := range t {
				t[i] = walk(t[i], fmt.Sprintf("%s/%d", at, i))
			}
		}
		return v
	}
	walk(doc, "")
	return changes
}

// fixStatusRanges: Swagger 2.0 has no status ranges, yet the seed uses "3xx"
// and "4xx". OpenAPI 3 spells them "3XX"/"4XX", which is what they meant.
func fixStatusRanges(doc map[string]any) []string {
	var changes []string
	for _, o := range operations(doc) {
		responses, _ := o.op["responses"].(map[string]any)
		for _, code := range sortedKeys(responses) {
			if len(code) == 3 && strings.HasSuffix(code, "xx") {
				up := strings.ToUpper(code)
				responses[up] = responses[code]
				delete(responses, code)
				changes = append(changes, fmt.Sprintf("%s %s -> %s", o, code, up))
			}
		}
	}
	return changes
}

// fixResponseExamples: the seed puts `example:` where Swagger wants
// `examples: {mime: value}`, once on a response and once inside a response's
// schema with a mime-keyed value. Both become response-level examples.
func fixResponseExamples(doc map[string]any) []string {
	var changes []string
	for _, o := range operations(doc) {
		responses, _ := o.op["responses"].(map[string]any)
		for _, code := range sortedKeys(responses) {
			resp, _ := responses[code].(map[string]any)
			if resp == nil {
				continue
			}
			if ex, ok := resp["example"]; ok {
				delete(resp, "example")
				setExample(resp, ex)
				changes = append(changes, fmt.Sprintf("%s %s: response example -> examples", o, code))
			}
			schema, _ := resp["schema"].(map[string]any)
			if ex, ok := schema["example"].(map[string]any); ok && isMimeKeyed(ex) {
				delete(schema, "example")
				setExample(resp, ex)
				changes = append(changes, fmt.Sprintf("%s %s: mime-keyed schema example -> examples", o, code))
			}
		}
	}
	return changes
}

func isMimeKeyed(m map[string]any) bool {
	if len(m) == 0 {
		return false
	}
	for k := range m {
		if !strings.Contains(k, "/") {
			return false
		}
	}
	return true
}

// setExample stores ex as the response's examples; an example that is not
// already keyed by mime type is taken to be JSON.
func setExample(resp map[string]any, ex any) {
	if m, ok := ex.(map[string]any); ok && isMimeKeyed(m) {
		resp["examples"] = m
		return
	}
	resp["examples"] = map[string]any{"application/json": ex}
}

// fixConsumes: none of the seed files declares `consumes`, and without it
// kin-openapi's converter drops every request body. All bodies are JSON (the
// deprecated form encoding is turned into JSON before validation).
func fixConsumes(doc map[string]any) []string {
	if _, ok := doc["consumes"]; ok {
		return nil
	}
	doc["consumes"] = []any{"application/json"}
	return []string{"consumes: [application/json]"}
}

// fixRequiredBodies: a body parameter whose schema requires fields cannot be
// absent, but the seed never marks the parameter itself required.
func fixRequiredBodies(doc map[string]any) []string {
	var changes []string
	for _, o := range operations(doc) {
		params, _ := o.op["parameters"].([]any)
		for _, p := range params {
			param, _ := p.(map[string]any)
			if param["in"] != "body" {
				continue
			}
			if _, set := param["required"]; set {
				continue
			}
			schema, _ := param["schema"].(map[string]any)
			if req, _ := schema["required"].([]any); len(req) > 0 {
				param["required"] = true
				changes = append(changes, o.String())
			}
		}
	}
	return changes
}

// fixErrorSchemas: most error responses carry only a description or an
// example. Every JSON error response gets the shared Matrix error schema, so
// the generated code has a type for it and responses can be validated.
func fixErrorSchemas(doc map[string]any) []string {
	var changes []string
	added := false
	for _, o := range operations(doc) {
		if !producesJSON(doc, o.op) {
			continue
		}
		responses, _ := o.op["responses"].(map[string]any)
		for _, code := range sortedKeys(responses) {
			resp, _ := responses[code].(map[string]any)
			if resp == nil || !isErrorStatus(code) {
				continue
			}
			if _, ok := resp["schema"]; ok {
				continue
			}
			resp["schema"] = map[string]any{"$ref": "#/definitions/" + MatrixErrorName}
			added = true
			changes = append(changes, fmt.Sprintf("%s %s", o, code))
		}
	}
	if added {
		ensureMatrixError(doc)
	}
	return changes
}

func ensureMatrixError(doc map[string]any) {
	defs, _ := doc["definitions"].(map[string]any)
	if defs == nil {
		defs = map[string]any{}
		doc["definitions"] = defs
	}
	if _, ok := defs[MatrixErrorName]; !ok {
		defs[MatrixErrorName] = matrixErrorSchema()
	}
}

// fixDefaultErrors: the spec's API standards let any endpoint fail with a
// Matrix error (M_NOT_JSON, M_MISSING_PARAMS, M_LIMIT_EXCEEDED, M_UNKNOWN,
// ...), but the files list only the endpoint-specific ones. A `default`
// response with the Matrix error schema states the general rule, so such
// answers are typed and validate.
func fixDefaultErrors(doc map[string]any) []string {
	var changes []string
	for _, o := range operations(doc) {
		if !producesJSON(doc, o.op) {
			continue
		}
		responses, _ := o.op["responses"].(map[string]any)
		if responses == nil {
			continue
		}
		if _, ok := responses["default"]; ok {
			continue
		}
		responses["default"] = map[string]any{
			"description": "Any other failure, as a standard Matrix error.",
			"schema":      map[string]any{"$ref": "#/definitions/" + MatrixErrorName},
		}
		ensureMatrixError(doc)
		changes = append(changes, o.String())
	}
	return changes
}

func isErrorStatus(code string) bool {
	return len(code) == 3 && (code[0] == '4' || code[0] == '5')
}

func producesJSON(doc, op map[string]any) bool {
	produces, ok := op["produces"].([]any)
	if !ok {
		produces, _ = doc["produces"].([]any)
	}
	if len(produces) == 0 {
		return true
	}
	for _, p := range produces {
		if s, _ := p.(string); strings.HasPrefix(s, "application/json") {
			return true
		}
	}
	return false
}

// fixParameterExamples: `x-example` is the Swagger 2.0 vendor spelling of a
// parameter example; the seed gives `x-example: 1234` (an integer) for string
// parameters. It becomes a string example of the declared type.
func fixParameterExamples(doc map[string]any) []string {
	var changes []string
	for _, o := range operations(doc) {
		params, _ := o.op["parameters"].([]any)
		for _, p := range params {
			param, _ := p.(map[string]any)
			ex, ok := param["x-example"]
			if !ok {
				continue
			}
			if param["type"] == "string" {
				if _, isString := ex.(string); !isString {
					param["x-example"] = fmt.Sprint(ex)
					changes = append(changes, fmt.Sprintf("%s %v: x-example %v -> %q", o, param["name"], ex, fmt.Sprint(ex)))
				}
			}
		}
	}
	return changes
}

// foldPaths prefixes every path of doc with base (no trailing slash) and
// reports whether it changed anything. Swagger's basePath and OpenAPI 3's
// server paths both go this way, so the merged document serves wherever it
// is deployed.
func foldPaths(doc map[string]any, base string) bool {
	paths, ok := doc["paths"].(map[string]any)
	if !ok || base == "" {
		return false
	}
	folded := make(map[string]any, len(paths))
	for _, p := range sortedKeys(paths) {
		full := base + p
		if p == "/" {
			full = base
		}
		folded[full] = paths[p]
	}
	doc["paths"] = folded
	return true
}

// foldBasePath: the seed pins `host: localhost:8090` and a basePath, which the
// converter would turn into absolute `servers` that match no real deployment.
// Paths become absolute and the host/scheme/basePath go, so the one merged
// document serves wherever it is deployed.
func foldBasePath(doc map[string]any) []string {
	var changes []string
	base, _ := doc["basePath"].(string)
	base = strings.TrimSuffix(base, "/")
	if foldPaths(doc, base) {
		changes = append(changes, "basePath "+base+" folded into paths")
	}
	for _, k := range []string{"host", "basePath", "schemes"} {
		if v, ok := doc[k]; ok {
			delete(doc, k)
			changes = append(changes, fmt.Sprintf("removed %s %v", k, v))
		}
	}
	return changes
}

// visitSchemas calls fn on every schema of doc (Swagger 2.0 or OpenAPI
// 3), depth first, parents before children, with its JSON pointer.
func visitSchemas(doc map[string]any, fn func(s map[string]any, at string)) {
	var walk func(v any, at string, inSchema bool)
	walk = func(v any, at string, inSchema bool) {
		switch t := v.(type) {
		case map[string]any:
			if inSchema {
				fn(t, at)
			}
			for _, k := range sortedKeys(t) {
				child, where := t[k], at+"/"+escapePointer(k)
				switch {
				case dataKeys[k]:
				case inSchema && schemaMaps[k], !inSchema && at == "" && k == "definitions",
					!inSchema && at == "/components" && k == "schemas":
					if m, ok := child.(map[string]any); ok {
						for _, name := range sortedKeys(m) {
							walk(m[name], where+"/"+escapePointer(name), true)
						}
					}
				case inSchema && (schemaKeys[k] || schemaLists[k]), !inSchema && k == "schema":
					walk(child, where, true)
				default:
					walk(child, where, false)
				}
			}
		case []any:
			for i := range t {
				walk(t[i], fmt.Sprintf("%s/%d", at, i), inSchema)
			}
		}
	}
	walk(doc, "", false)
}

// fixTupleItems: Swagger 2.0 and OpenAPI 3.0 take one schema for `items`,
// but upstream's bulk_lookup writes the tuple form `items: [{type:
// string}, {type: string}]` (JSON Schema draft 4), which kin-openapi cannot
// decode. Identical item schemas become that one schema with the tuple's
// length as minItems/maxItems (unless stated); differing ones become
// `anyOf` of them, which keeps every item valid that was.
func fixTupleItems(doc map[string]any) []string {
	var changes []string
	visitSchemas(doc, func(s map[string]any, at string) {
		list, ok := s["items"].([]any)
		if !ok {
			return
		}
		n := len(list)
		same := n > 0
		for _, it := range list[1:] {
			same = same && fmt.Sprint(it) == fmt.Sprint(list[0])
		}
		switch {
		case n == 0:
			delete(s, "items")
		case same:
			s["items"] = list[0]
		default:
			s["items"] = map[string]any{"anyOf": list}
		}
		if _, ok := s["minItems"]; !ok {
			s["minItems"] = n
		}
		if _, ok := s["maxItems"]; !ok {
			s["maxItems"] = n
		}
		changes = append(changes, fmt.Sprintf("%s: tuple of %d items -> items with minItems/maxItems", at, n))
	})
	return changes
}

// fixArrayExamples: a string `example` on an array schema (v2_terms.yaml's
// user_accepts) fails example validation. It becomes a one-item list, or
// the list it spells when it is a JSON array.
func fixArrayExamples(doc map[string]any) []string {
	var changes []string
	visitSchemas(doc, func(s map[string]any, at string) {
		ex, ok := s["example"].(string)
		if !ok || !hasType(s, "array") {
			return
		}
		var list []any
		if err := json.Unmarshal([]byte(ex), &list); err != nil {
			list = []any{ex}
		}
		s["example"] = list
		changes = append(changes, fmt.Sprintf("%s: string example -> list", at))
	})
	return changes
}

func hasType(s map[string]any, name string) bool {
	switch t := s["type"].(type) {
	case string:
		return t == name
	case []any:
		for _, x := range t {
			if x == name {
				return true
			}
		}
	}
	return false
}

// annotations are keywords that describe and do not constrain.
var annotations = map[string]bool{
	"description": true, "title": true, "example": true, "examples": true, "summary": true,
	"readOnly": true, "writeOnly": true, "deprecated": true, "externalDocs": true,
}

// fixRefSiblings: keywords beside a `$ref` are ignored by Swagger 2.0,
// OpenAPI 3.0 and kin-openapi, so the converter dropped them silently.
// Beside a schema $ref, constraining keywords (nullable, pattern, enum...)
// keep their meaning: the schema becomes `allOf: [{$ref}]` with them. Mere
// annotations (description, example...) are dropped, and every drop is
// reported.
func fixRefSiblings(doc map[string]any) []string {
	var changes []string
	visitSchemas(doc, func(s map[string]any, at string) {
		ref, ok := s["$ref"]
		if !ok || len(s) == 1 {
			return
		}
		var kept, dropped []string
		for _, k := range sortedKeys(s) {
			switch {
			case k == "$ref":
			case annotations[k] || strings.HasPrefix(k, "x-"):
				dropped = append(dropped, k)
				delete(s, k)
			default:
				kept = append(kept, k)
			}
		}
		if len(kept) > 0 {
			delete(s, "$ref")
			s["allOf"] = []any{map[string]any{"$ref": ref}}
			changes = append(changes, fmt.Sprintf("%s: %s beside $ref %v kept (allOf)", at, strings.Join(kept, ", "), ref))
		}
		if len(dropped) > 0 {
			changes = append(changes, fmt.Sprintf("%s: %s beside $ref %v dropped (annotations)", at, strings.Join(dropped, ", "), ref))
		}
	})
	return changes
}
