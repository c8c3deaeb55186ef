package convert

import (
	"fmt"
	"net/url"
	"strings"
)

// V3Fixups repair OpenAPI 3 documents (matrix-spec's identity files have
// been OpenAPI 3.1 since 2023) into the OpenAPI 3.0 the generator and the
// validator take. translate-3.1 refuses what it cannot translate.
var V3Fixups = []struct {
	Name  string
	Apply func(doc map[string]any) ([]string, error)
}{
	{"unescape-quotes", noErr(fixEscapedQuotes)},
	{"status-ranges", noErr(fixStatusRanges)},
	{"translate-3.1", translate31},
	{"tuple-items", noErr(fixTupleItems)},
	{"array-examples", noErr(fixArrayExamples)},
	{"ref-siblings", noErr(fixRefSiblings)},
	{"fold-servers", foldServers},
	{"v3-error-schemas", noErr(fixV3Errors)},
}

func noErr(f func(map[string]any) []string) func(map[string]any) ([]string, error) {
	return func(doc map[string]any) ([]string, error) { return f(doc), nil }
}

// refused31 are the JSON Schema 2020-12 keywords OpenAPI 3.1 allows that
// have no OpenAPI 3.0 equivalent the generator could use.
var refused31 = []string{
	"$defs", "$id", "$anchor", "$dynamicRef", "$dynamicAnchor", "$schema", "$comment",
	"prefixItems", "if", "then", "else", "dependentSchemas", "dependentRequired",
	"unevaluatedProperties", "unevaluatedItems", "patternProperties", "propertyNames",
	"contains", "minContains", "maxContains",
}

// translate31 rewrites the OpenAPI 3.1 constructs the upstream files use
// into OpenAPI 3.0 and refuses any other, naming where it is:
//   - `type: [T, "null"]` → `type: T, nullable: true`;
//   - `examples: [..]` in a schema → `example` (the first);
//   - `const: v` → `enum: [v]`;
//   - numeric `exclusiveMinimum`/`exclusiveMaximum` → `minimum`/`maximum`
//     with the boolean form;
//   - `info.summary`, `info.license.identifier`, `jsonSchemaDialect` (the
//     default dialect) dropped; `openapi: 3.1.x` → `3.0.3`.
//
// A 3.0 document passes through untouched.
func translate31(doc map[string]any) ([]string, error) {
	v, _ := doc["openapi"].(string)
	if !strings.HasPrefix(v, "3.1.") {
		return nil, nil
	}
	var changes []string
	var err error
	fail := func(at, what string) {
		if err == nil {
			err = fmt.Errorf("%s: OpenAPI 3.1 construct %s has no OpenAPI 3.0 translation", at, what)
		}
	}
	doc["openapi"] = "3.0.3"
	changes = append(changes, "openapi "+v+" -> 3.0.3")
	if d, ok := doc["jsonSchemaDialect"]; ok {
		if d != "https://spec.openapis.org/oas/3.1/dialect/base" {
			fail("/jsonSchemaDialect", fmt.Sprintf("%v", d))
		}
		delete(doc, "jsonSchemaDialect")
	}
	if w, ok := doc["webhooks"].(map[string]any); ok && len(w) > 0 {
		fail("/webhooks", "webhooks")
	}
	delete(doc, "webhooks")
	if c, ok := doc["components"].(map[string]any); ok {
		if _, ok := c["pathItems"]; ok {
			fail("/components/pathItems", "pathItems")
		}
		if ss, ok := c["securitySchemes"].(map[string]any); ok {
			for _, name := range sortedKeys(ss) {
				if s, _ := ss[name].(map[string]any); s["type"] == "mutualTLS" {
					fail("/components/securitySchemes/"+name, "mutualTLS")
				}
			}
		}
	}
	if info, ok := doc["info"].(map[string]any); ok {
		delete(info, "summary")
		if l, ok := info["license"].(map[string]any); ok {
			delete(l, "identifier")
		}
	}
	visitSchemas(doc, func(s map[string]any, at string) {
		for _, k := range refused31 {
			if _, ok := s[k]; ok {
				fail(at, k)
			}
		}
		if types, ok := s["type"].([]any); ok {
			var kept []any
			null := false
			for _, t := range types {
				if t == "null" {
					null = true
				} else {
					kept = append(kept, t)
				}
			}
			switch len(kept) {
			case 0:
				fail(at, `type "null"`)
			case 1:
				s["type"] = kept[0]
			default:
				fail(at, fmt.Sprintf("type %v", types))
			}
			if null {
				s["nullable"] = true
			}
			changes = append(changes, fmt.Sprintf("%s: type %v", at, types))
		}
		if ex, ok := s["examples"].([]any); ok {
			delete(s, "examples")
			if len(ex) > 0 {
				if _, has := s["example"]; !has {
					s["example"] = ex[0]
				}
			}
			changes = append(changes, at+": examples -> example")
		}
		if c, ok := s["const"]; ok {
			delete(s, "const")
			s["enum"] = []any{c}
			changes = append(changes, at+": const -> enum")
		}
		for _, b := range [][2]string{{"exclusiveMinimum", "minimum"}, {"exclusiveMaximum", "maximum"}} {
			if n, ok := s[b[0]].(float64); ok {
				s[b[1]], s[b[0]] = n, true
				changes = append(changes, fmt.Sprintf("%s: numeric %s", at, b[0]))
			} else if n, ok := s[b[0]].(int); ok {
				s[b[1]], s[b[0]] = n, true
				changes = append(changes, fmt.Sprintf("%s: numeric %s", at, b[0]))
			}
		}
	})
	return changes, err
}

// foldServers: upstream documents carry `servers: [{url:
// "{protocol}://{hostname}{basePath}", variables: ...}]`; as with
// Swagger's basePath, the base path is folded into the paths and the
// host-pinned servers go.
func foldServers(doc map[string]any) ([]string, error) {
	servers, _ := doc["servers"].([]any)
	if len(servers) == 0 {
		return nil, nil
	}
	delete(doc, "servers")
	bases := map[string]bool{}
	var base string
	for _, sv := range servers {
		s, _ := sv.(map[string]any)
		u, _ := s["url"].(string)
		vars, _ := s["variables"].(map[string]any)
		for name, v := range vars {
			def, _ := v.(map[string]any)["default"].(string)
			u = strings.ReplaceAll(u, "{"+name+"}", def)
		}
		p := u
		if parsed, err := url.Parse(u); err == nil && parsed.Host != "" {
			p = parsed.Path
		}
		base = strings.TrimSuffix(p, "/")
		bases[base] = true
	}
	if len(bases) > 1 {
		return nil, fmt.Errorf("/servers: servers with different base paths %v", sortedKeys(bases))
	}
	changes := []string{"servers removed"}
	if foldPaths(doc, base) {
		changes = append(changes, "base path "+base+" folded into paths")
	}
	return changes, nil
}

// fixV3Errors is error-schemas and default-errors for OpenAPI 3: JSON
// operations get the Matrix error on error responses without a body and
// as their `default` response.
func fixV3Errors(doc map[string]any) []string {
	var changes []string
	errBody := func() map[string]any {
		return map[string]any{"application/json": map[string]any{
			"schema": map[string]any{"$ref": "#/components/schemas/" + MatrixErrorName}}}
	}
	for _, o := range operations(doc) {
		responses, _ := o.op["responses"].(map[string]any)
		if !v3JSON(responses) {
			continue
		}
		for _, code := range sortedKeys(responses) {
			resp, _ := responses[code].(map[string]any)
			if resp == nil || !isErrorStatus(code) || resp["content"] != nil {
				continue
			}
			resp["content"] = errBody()
			changes = append(changes, fmt.Sprintf("%s %s", o, code))
		}
		if _, ok := responses["default"]; !ok {
			responses["default"] = map[string]any{
				"description": "Any other failure, as a standard Matrix error.",
				"content":     errBody(),
			}
			changes = append(changes, o.String()+" default")
		}
	}
	if len(changes) > 0 {
		comps, _ := doc["components"].(map[string]any)
		if comps == nil {
			comps = map[string]any{}
			doc["components"] = comps
		}
		schemas, _ := comps["schemas"].(map[string]any)
		if schemas == nil {
			schemas = map[string]any{}
			comps["schemas"] = schemas
		}
		if _, ok := schemas[MatrixErrorName]; !ok {
			schemas[MatrixErrorName] = matrixErrorSchema()
		}
	}
	return changes
}

func v3JSON(responses map[string]any) bool {
	for _, r := range responses {
		content, _ := lookupPath(r, "content").(map[string]any)
		for ct := range content {
			if strings.HasPrefix(ct, "application/json") {
				return true
			}
		}
	}
	return false
}
