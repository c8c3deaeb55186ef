package convert

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"unicode"
)

// resolveFileRefs is the loader step for relative file $refs
// (`definitions/sid.yaml`, `../client-server/definitions/errors/error.yaml`,
// `definitions/security.yaml#/accessTokenBearer`): each is read relative to
// the file that holds it, wherever the tree sits.
//
//   - A $ref where a schema is expected becomes a named schema of the
//     document (`definitions` in Swagger 2.0, `components/schemas` in
//     OpenAPI 3) and a local $ref to it. The name comes from the target's
//     `title`, or else its file's base name (and the pointer's last part):
//     never from the path on disk, so the generated types do not change
//     with the checkout directory. A name already taken by another target
//     gets the target's folder name in front, then a number.
//   - Any other $ref (securityDefinitions, a parameter, a response) is
//     replaced by a copy of its target.
//
// Keywords beside such a $ref are kept: for an inlined target they
// override its keywords (reported); beside a schema $ref they are left for
// the ref-siblings fix-up.
func resolveFileRefs(doc map[string]any, file, specRoot string, v3 bool) ([]string, error) {
	r := &refResolver{
		specRoot: specRoot,
		root:     filepath.Dir(file), cache: map[string]any{}, names: map[string]string{},
		byTarget: map[string]string{}, resolving: map[string]bool{}, defs: map[string]any{},
	}
	r.prefix, r.defsAt = "#/definitions/", []string{"definitions"}
	if v3 {
		r.prefix, r.defsAt = "#/components/schemas/", []string{"components", "schemas"}
	}
	existing, _ := lookupPath(doc, r.defsAt...).(map[string]any)
	for name := range existing {
		r.names[name] = "" // the document's own
	}
	r.file = file
	out, err := r.walk(doc, file, "", false)
	if err != nil {
		return nil, err
	}
	for k, v := range out.(map[string]any) {
		doc[k] = v
	}
	if len(r.defs) > 0 {
		into := doc
		for _, k := range r.defsAt {
			next, _ := into[k].(map[string]any)
			if next == nil {
				next = map[string]any{}
				into[k] = next
			}
			into = next
		}
		for _, name := range sortedKeys(r.defs) {
			into[name] = r.defs[name]
		}
	}
	sort.Strings(r.changes)
	return r.changes, nil
}

type refResolver struct {
	specRoot  string // the spec directory ("" if unknown)
	file      string // the document
	root      string // its folder: messages name files relative to it
	prefix    string
	defsAt    []string
	cache     map[string]any    // parsed files by absolute path
	names     map[string]string // schema name -> target ("" for the document's own)
	byTarget  map[string]string // target -> schema name
	resolving map[string]bool   // targets being inlined (cycle check)
	defs      map[string]any    // hoisted schemas
	changes   []string
}

// Where schemas are: schemaKeys hold one (or, for items, a list),
// schemaMaps map names to schemas, schemaLists list schemas; dataKeys hold
// data (examples, defaults), never resolved.
var (
	schemaKeys  = map[string]bool{"items": true, "additionalProperties": true, "not": true}
	schemaMaps  = map[string]bool{"properties": true, "patternProperties": true, "definitions": true, "$defs": true}
	schemaLists = map[string]bool{"allOf": true, "anyOf": true, "oneOf": true, "prefixItems": true}
	dataKeys    = map[string]bool{"example": true, "examples": true, "x-example": true, "default": true, "enum": true, "const": true}
)

// walk returns v with every file $ref resolved. base is the file v comes
// from; inSchema tells whether v is a schema.
func (r *refResolver) walk(v any, base, at string, inSchema bool) (any, error) {
	switch t := v.(type) {
	case map[string]any:
		if ref, ok := t["$ref"].(string); ok {
			return r.ref(t, ref, base, at, inSchema)
		}
		out := make(map[string]any, len(t))
		for _, k := range sortedKeys(t) {
			child, where := t[k], at+"/"+escapePointer(k)
			var err error
			switch {
			case dataKeys[k]:
				out[k] = child
			case inSchema && schemaMaps[k], !inSchema && at == "" && k == "definitions",
				!inSchema && at == "/components" && k == "schemas":
				out[k], err = r.walkEach(child, base, where)
			case inSchema && (schemaKeys[k] || schemaLists[k]), !inSchema && k == "schema":
				out[k], err = r.walk(child, base, where, true)
			default:
				out[k], err = r.walk(child, base, where, false)
			}
			if err != nil {
				return nil, err
			}
		}
		return out, nil
	case []any:
		out := make([]any, len(t))
		for i := range t {
			var err error
			if out[i], err = r.walk(t[i], base, fmt.Sprintf("%s/%d", at, i), inSchema); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return v, nil
}

// walkEach resolves a map of schemas.
func (r *refResolver) walkEach(v any, base, at string) (any, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return v, nil
	}
	out := make(map[string]any, len(m))
	for _, name := range sortedKeys(m) {
		var err error
		if out[name], err = r.walk(m[name], base, at+"/"+escapePointer(name), true); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (r *refResolver) ref(m map[string]any, ref, base, at string, inSchema bool) (any, error) {
	file, frag, _ := strings.Cut(ref, "#")
	if file == "" && base == r.file {
		return m, nil // a local ref of the document itself
	}
	target := base
	if file != "" {
		if filepath.IsAbs(file) || strings.Contains(file, "://") {
			return nil, fmt.Errorf("%s: $ref %q: only relative file references are supported", at, ref)
		}
		target = filepath.Join(filepath.Dir(base), filepath.FromSlash(file))
	}
	target = r.inside(target, file)
	content, err := r.load(target, frag)
	if err != nil {
		return nil, fmt.Errorf("%s (in %s): $ref %q: %w", at, r.rel(base), ref, err)
	}
	key := target + "#" + frag
	siblings := map[string]any{}
	for k, v := range m {
		if k != "$ref" {
			siblings[k] = v
		}
	}
	if inSchema {
		name, err := r.hoist(key, target, frag, content)
		if err != nil {
			return nil, err
		}
		out := map[string]any{"$ref": r.prefix + name}
		for k, v := range siblings {
			if out[k], err = r.walk(v, base, at+"/"+k, true); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	if r.resolving[key] {
		return nil, fmt.Errorf("%s: $ref %q refers to itself", at, ref)
	}
	r.resolving[key] = true
	resolved, err := r.walk(content, target, at, false)
	delete(r.resolving, key)
	if err != nil {
		return nil, err
	}
	if len(siblings) == 0 {
		return resolved, nil
	}
	obj, ok := resolved.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s: $ref %q has keywords beside it but its target is not an object", at, ref)
	}
	for _, k := range sortedKeys(siblings) {
		obj[k] = siblings[k]
		r.changes = append(r.changes, fmt.Sprintf("ref-siblings: %s: %s beside $ref %s overrides the target's", at, k, ref))
	}
	return obj, nil
}

// inside keeps every read within the spec directory, so the output
// depends on nothing outside it: a ref that leaves spec/ (upstream's
// `../client-server/...` and `../../schemas/...` from api/identity, when
// the identity files are dropped flat) is looked up inside spec/ with its
// leading `../` removed (spec/client-server/..., spec/schemas/...).
func (r *refResolver) inside(target, ref string) string {
	if r.specRoot == "" {
		return target
	}
	if rel, err := filepath.Rel(r.specRoot, target); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return target
	}
	trimmed := filepath.ToSlash(ref)
	for strings.HasPrefix(trimmed, "../") {
		trimmed = trimmed[3:]
	}
	r.changes = append(r.changes, fmt.Sprintf("file-refs: %s leaves spec/: read from spec/%s", ref, trimmed))
	return filepath.Join(r.specRoot, filepath.FromSlash(trimmed))
}

// hoist makes the target a named schema of the document, once.
func (r *refResolver) hoist(key, target, frag string, content any) (string, error) {
	if name, ok := r.byTarget[key]; ok {
		return name, nil
	}
	name := r.name(target, frag, content)
	r.byTarget[key] = name
	r.names[name] = key
	resolved, err := r.walk(content, target, r.prefix+name, true)
	if err != nil {
		return "", err
	}
	r.defs[name] = resolved
	r.changes = append(r.changes, fmt.Sprintf("file-refs: %s%s -> %s%s", r.rel(target), fragSuffix(frag), r.prefix, name))
	return name, nil
}

func fragSuffix(frag string) string {
	if frag == "" {
		return ""
	}
	return "#" + frag
}

// name picks a stable, readable schema name for a target.
func (r *refResolver) name(target, frag string, content any) string {
	var base string
	if m, ok := content.(map[string]any); ok {
		if t, ok := m["title"].(string); ok {
			base = identifier(t)
		}
	}
	if base == "" {
		base = identifier(strings.TrimSuffix(filepath.Base(target), filepath.Ext(target)))
		if frag != "" {
			parts := strings.Split(strings.Trim(frag, "/"), "/")
			base += identifier(parts[len(parts)-1])
		}
	}
	if base == "" {
		base = "Schema"
	}
	cands := []string{base, identifier(filepath.Base(filepath.Dir(target))) + base}
	for _, c := range cands {
		if _, taken := r.names[c]; !taken {
			return c
		}
	}
	for i := 2; ; i++ {
		c := base + strconv.Itoa(i)
		if _, taken := r.names[c]; !taken {
			return c
		}
	}
}

// identifier turns "3PID mappings" or "request_email_validation" into
// "3PIDMappings" and "RequestEmailValidation".
func identifier(s string) string {
	var b strings.Builder
	up := true
	for _, c := range s {
		if !unicode.IsLetter(c) && !unicode.IsDigit(c) || c > unicode.MaxASCII {
			up = true
			continue
		}
		if up {
			c = unicode.ToUpper(c)
			up = false
		}
		b.WriteRune(c)
	}
	return b.String()
}

// load reads a file (once) and returns the part frag points to.
func (r *refResolver) load(file, frag string) (any, error) {
	doc, ok := r.cache[file]
	if !ok {
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("cannot read %s (resolved relative to the referring file; a ref that leaves spec/ is read inside spec/ without its leading ../)", r.rel(file))
		}
		parsed, err := parseAny(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", r.rel(file), err)
		}
		r.cache[file] = parsed
		doc = parsed
	}
	if frag == "" || frag == "/" {
		return deepCopy(doc), nil
	}
	v := doc
	for _, p := range strings.Split(strings.TrimPrefix(frag, "/"), "/") {
		p = strings.ReplaceAll(strings.ReplaceAll(p, "~1", "/"), "~0", "~")
		m, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s has nothing at #%s", r.rel(file), frag)
		}
		if v, ok = m[p]; !ok {
			return nil, fmt.Errorf("%s has nothing at #%s", r.rel(file), frag)
		}
	}
	return deepCopy(v), nil
}

// rel names a file relative to the document's folder, for messages.
func (r *refResolver) rel(file string) string {
	if rel, err := filepath.Rel(r.root, file); err == nil {
		return filepath.ToSlash(rel)
	}
	return filepath.Base(file)
}

func deepCopy(v any) any {
	switch t := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(t))
		for k, val := range t {
			m[k] = deepCopy(val)
		}
		return m
	case []any:
		l := make([]any, len(t))
		for i := range t {
			l[i] = deepCopy(t[i])
		}
		return l
	}
	return v
}

// lookupPath follows keys through nested maps.
func lookupPath(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// escapePointer escapes a key for a JSON pointer ("/3pid/bind" → "~13pid~1bind").
func escapePointer(k string) string {
	return strings.ReplaceAll(strings.ReplaceAll(k, "~", "~0"), "/", "~1")
}
