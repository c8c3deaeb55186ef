package convert

import (
	"context"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/oapi-codegen/oapi-codegen/v2/pkg/codegen"
	"github.com/oapi-codegen/oapi-codegen/v2/pkg/util"
)

// Fixture trees for the constructs of the identity API as matrix-org
// publishes it (issue 10), one per construct, written by the tests. Each is
// regenerated into a temporary directory: converted, the merged document
// validated, Go generated as gen/generate.go does, and the same tree
// somewhere else must give byte-identical output.

// tree writes files (relative path -> text) under a new directory and
// returns the directory that plays spec/.
func tree(t *testing.T, files map[string]string) string {
	t.Helper()
	return treeAt(t, t.TempDir(), files)
}

func treeAt(t *testing.T, root string, files map[string]string) string {
	t.Helper()
	spec := filepath.Join(root, "spec")
	for name, text := range files {
		p := filepath.Join(spec, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(strings.TrimLeft(text, "\n")), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return spec
}

// output is what `make generate` writes: the document and the Go code.
type output struct {
	res  *Result
	json []byte
	code string
}

// regenerate runs both steps of `make generate` on the tree at spec into
// a temporary gen/ directory.
func regenerate(t *testing.T, spec string) (output, error) {
	t.Helper()
	srcs, err := ReadDir(spec)
	if err != nil {
		return output{}, err
	}
	res, err := Convert(context.Background(), srcs, DocumentInfo)
	if err != nil {
		return output{}, err
	}
	data, err := Marshal(res.Doc)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "openapi.json")
	if err := os.WriteFile(out, data, 0o644); err != nil {
		t.Fatal(err)
	}
	// As the oapi-codegen command run by gen/generate.go does, with the
	// settings of gen/oapi-codegen.yaml.
	doc, err := util.LoadSwagger(out)
	if err != nil {
		t.Fatalf("oapi-codegen cannot load the document: %v", err)
	}
	code, err := codegen.Generate(doc, codegen.Configuration{
		PackageName:   "gen",
		Generate:      codegen.GenerateOptions{Models: true, EchoServer: true, Strict: true, EmbeddedSpec: true},
		OutputOptions: codegen.OutputOptions{SkipPrune: true},
	})
	if err != nil {
		t.Fatalf("generate: %v", err)
	}
	if _, err := parser.ParseFile(token.NewFileSet(), "gen.go", code, 0); err != nil {
		t.Fatalf("generated code does not parse: %v", err)
	}
	return output{res: res, json: data, code: code}, nil
}

// mustRegenerate regenerates the tree, then the same tree placed deeper in
// another directory, and requires byte-identical output.
func mustRegenerate(t *testing.T, files map[string]string) output {
	t.Helper()
	a, err := regenerate(t, tree(t, files))
	if err != nil {
		t.Fatal(err)
	}
	b, err := regenerate(t, treeAt(t, filepath.Join(t.TempDir(), "elsewhere", "checkout"), files))
	if err != nil {
		t.Fatal(err)
	}
	if string(a.json) != string(b.json) {
		t.Error("openapi.json differs when the tree sits in another directory")
	}
	if a.code != b.code {
		t.Error("generated Go differs when the tree sits in another directory")
	}
	if strings.Contains(string(a.json), os.TempDir()) || strings.Contains(a.code, os.TempDir()) {
		t.Error("the output names the checkout directory")
	}
	return a
}

// strictMethods lists the methods of the generated StrictServerInterface:
// what the compiler asks handlers.Server to implement.
func strictMethods(code string) string {
	i := strings.Index(code, "type StrictServerInterface interface {")
	if i < 0 {
		return ""
	}
	j := strings.Index(code[i:], "\n}\n")
	return code[i : i+j]
}

func schemaOf(t *testing.T, doc *openapi3.T, method, path string) *openapi3.Schema {
	t.Helper()
	item := doc.Paths.Value(path)
	if item == nil || item.GetOperation(method) == nil {
		t.Fatalf("no %s %s in\n%s", method, path, Summary(doc))
	}
	return item.GetOperation(method).RequestBody.Value.Content.Get("application/json").Schema.Value
}

func visit(t *testing.T, s *openapi3.Schema, body any) error {
	t.Helper()
	return s.VisitJSON(body)
}

// A Swagger 2.0 document in upstream's style: basePath, produces, error
// responses through refs that leave the identity folder.
const upstreamLookup = `
swagger: '2.0'
info:
  title: "Matrix Identity Service Lookup API"
  version: "1.0.0"
host: localhost:8090
schemes:
  - https
basePath: /_matrix/identity/api/v1
consumes:
  - application/json
produces:
  - application/json
paths:
  "/bulk_lookup":
    post:
      summary: Lookup Matrix user IDs for a list of 3pids.
      operationId: lookupUsers
      parameters:
        - in: body
          name: body
          schema:
            type: object
            properties:
              threepids:
                type: array
                items:
                  type: array
                  items:
                    - type: string
                    - type: string
            required: ["threepids"]
      responses:
        200:
          description: Mappings.
          schema:
            $ref: "definitions/mappings.yaml"
        400:
          description: Bad request.
          schema:
            $ref: "../client-server/definitions/errors/error.yaml"
  "/sign":
    post:
      operationId: signThing
      parameters:
        - in: body
          name: body
          schema:
            type: object
            properties:
              signed:
                allOf:
                  - $ref: "../../schemas/server-signatures.yaml"
      responses:
        200:
          description: Signed.
          schema:
            type: object
`

var upstreamFragments = map[string]string{
	"api/identity/definitions/mappings.yaml": `
type: object
properties:
  threepids:
    type: array
    items:
      type: array
      items:
        - type: string
        - type: string
        - type: string
`,
	"api/client-server/definitions/errors/error.yaml": `
type: object
title: Error
description: A Matrix-level Error
properties:
  errcode:
    type: string
  error:
    type: string
required: ["errcode"]
`,
	"schemas/server-signatures.yaml": `
type: object
properties:
  signatures:
    type: object
    additionalProperties:
      type: object
      additionalProperties:
        type: string
`,
	// Not API documents: skipped wherever they are.
	"api/identity/definitions/sid.yaml": "type: object\nproperties:\n  sid: {type: string}\n",
	"notes.yaml":                        "- just\n- a list\n",
	"api/README.yaml":                   "title: not an API\n",
}

func withFiles(base map[string]string, more map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range base {
		out[k] = v
	}
	for k, v := range more {
		out[k] = v
	}
	return out
}

func TestTreeFileRefsAndStableNames(t *testing.T) {
	files := withFiles(upstreamFragments, map[string]string{"api/identity/lookup.yaml": upstreamLookup})
	out := mustRegenerate(t, files)
	doc := out.res.Doc
	for _, name := range []string{"Error", "Mappings", "ServerSignatures"} {
		if doc.Components.Schemas[name] == nil {
			t.Errorf("no schema %q (from the file's title or base name): %v", name, sortedKeys(doc.Components.Schemas))
		}
	}
	// Refs that left the identity folder resolved relative to their file.
	resp := doc.Paths.Value("/_matrix/identity/api/v1/bulk_lookup").Post.Responses.Value("400").Value
	if ref := resp.Content.Get("application/json").Schema.Ref; ref != "#/components/schemas/Error" {
		t.Errorf("400 schema ref %q", ref)
	}
	for _, typ := range []string{"type Error struct", "type Mappings struct", "type ServerSignatures struct"} {
		if !strings.Contains(out.code, typ) {
			t.Errorf("generated code lacks %q", typ)
		}
	}
	if !strings.Contains(strictMethods(out.code), "LookupUsers(ctx context.Context") {
		t.Errorf("the compiler would not name LookupUsers:\n%s", strictMethods(out.code))
	}
}

func TestTreeMissingRefNamesFileAndRef(t *testing.T) {
	// The tree dropped flat without what its refs leave the folder for.
	_, err := regenerate(t, tree(t, map[string]string{"lookup.yaml": upstreamLookup, "definitions/mappings.yaml": upstreamFragments["api/identity/definitions/mappings.yaml"]}))
	if err == nil || !strings.Contains(err.Error(), "lookup.yaml") || !strings.Contains(err.Error(), "../client-server/definitions/errors/error.yaml") {
		t.Errorf("err = %v", err)
	}
}

func TestTreeTupleItems(t *testing.T) {
	files := withFiles(upstreamFragments, map[string]string{"upstream/api/identity/lookup.yaml": upstreamLookup})
	for k, v := range upstreamFragments {
		files["upstream/"+k] = v
		delete(files, k)
	}
	out := mustRegenerate(t, files)
	s := schemaOf(t, out.res.Doc, "POST", "/_matrix/identity/api/v1/bulk_lookup")
	pair := s.Properties["threepids"].Value.Items.Value
	if !pair.Items.Value.Type.Is("string") || pair.MinItems != 2 || *pair.MaxItems != 2 {
		t.Errorf("tuple not translated: %+v", pair)
	}
	if visit(t, s, map[string]any{"threepids": []any{[]any{"email", "a@b.c"}}}) != nil ||
		visit(t, s, map[string]any{"threepids": []any{[]any{"email"}}}) == nil {
		t.Error("the translated schema does not check [medium, address]")
	}
	if !strings.Contains(out.code, "Threepids [][]string") {
		t.Error("the pair list is not [][]string in Go")
	}
}

func TestTreeSecurityDefinitionsRef(t *testing.T) {
	out := mustRegenerate(t, map[string]string{
		"definitions/security.yaml": `
accessToken:
  type: apiKey
  in: header
  name: Authorization
  description: The access token.
`,
		"v2_account.yaml": `
swagger: '2.0'
info: {title: Account, version: "1"}
basePath: /_matrix/identity/v2
produces: [application/json]
securityDefinitions:
  $ref: definitions/security.yaml
paths:
  "/account":
    get:
      operationId: getAccount
      security:
        - accessToken: []
      responses:
        200:
          description: The account.
          schema: {type: object, properties: {user_id: {type: string}}}
`,
	})
	ss := out.res.Doc.Components.SecuritySchemes["accessToken"]
	if ss == nil || ss.Value.Name != "Authorization" {
		t.Fatalf("security scheme lost: %v", out.res.Doc.Components.SecuritySchemes)
	}
	if sec := out.res.Doc.Paths.Value("/_matrix/identity/v2/account").Get.Security; sec == nil || len(*sec) != 1 {
		t.Error("operation security lost")
	}
}

func TestTreeStringExampleOnArray(t *testing.T) {
	out := mustRegenerate(t, map[string]string{"v2_terms.yaml": `
swagger: '2.0'
info: {title: Terms, version: "1"}
basePath: /_matrix/identity/v2
paths:
  "/terms":
    post:
      operationId: agreeToTerms
      parameters:
        - in: body
          name: body
          schema:
            type: object
            properties:
              user_accepts:
                type: array
                items:
                  type: string
                example: "https://example.org/somewhere/terms-2.0-en.html"
            required: ["user_accepts"]
      responses:
        200:
          description: Accepted.
          schema: {type: object}
`})
	ex := schemaOf(t, out.res.Doc, "POST", "/_matrix/identity/v2/terms").Properties["user_accepts"].Value.Example
	if l, ok := ex.([]any); !ok || len(l) != 1 || l[0] != "https://example.org/somewhere/terms-2.0-en.html" {
		t.Errorf("example %#v", ex)
	}
}

func TestTreeRefSiblings(t *testing.T) {
	out := mustRegenerate(t, map[string]string{"things.yaml": `
swagger: '2.0'
info: {title: Things, version: "1"}
basePath: /_matrix/identity/v2
definitions:
  Name:
    type: string
paths:
  "/thing":
    post:
      operationId: postThing
      parameters:
        - in: body
          name: body
          schema:
            type: object
            properties:
              name:
                $ref: "#/definitions/Name"
                minLength: 3
                description: At least three characters.
              other:
                $ref: "definitions/other.yaml"
                description: Said of the other.
            required: ["name"]
      responses:
        200:
          description: OK.
          schema: {type: object}
`, "definitions/other.yaml": "type: string\nmaxLength: 4\n"})
	s := schemaOf(t, out.res.Doc, "POST", "/_matrix/identity/v2/thing")
	if visit(t, s, map[string]any{"name": "ab"}) == nil {
		t.Error("minLength beside $ref was dropped")
	}
	if visit(t, s, map[string]any{"name": "abc", "other": "abcde"}) == nil {
		t.Error("the file ref's own maxLength was lost")
	}
	var kept, dropped bool
	for _, c := range out.res.Changes {
		kept = kept || strings.Contains(c, "ref-siblings") && strings.Contains(c, "minLength") && strings.Contains(c, "kept")
		dropped = dropped || strings.Contains(c, "ref-siblings") && strings.Contains(c, "dropped")
	}
	if !kept || !dropped {
		t.Errorf("siblings not reported: %v", out.res.Changes)
	}
}

func TestTreeFindsDocumentsRecursivelySkippingOthers(t *testing.T) {
	ping := func(base, id string) string {
		return "swagger: '2.0'\ninfo: {title: P, version: '1'}\nbasePath: " + base +
			"\npaths:\n  /:\n    get:\n      operationId: " + id + "\n      responses:\n        200: {description: OK, schema: {type: object}}\n"
	}
	out := mustRegenerate(t, map[string]string{
		"ping.yaml":              ping("/_matrix/identity/api/v1", "pingV1"),
		"a/b/c/ping.yml":         ping("/_matrix/identity/v2", "pingV2"),
		"a/definitions/x.yaml":   "type: object\n",
		"list.yaml":              "- 1\n- 2\n",
		"testdata/ping.yaml":     ping("/_matrix/identity/v3", "pingV3"), // Go's testdata: not searched
		".hidden/ping.yaml":      ping("/_matrix/identity/v4", "pingV4"),
		"schemas/no-paths.yaml":  "swagger: '2.0'\ninfo: {title: Q, version: '1'}\n",
		"examples/example.yaml":  "{}\n",
		"definitions/empty.yaml": "",
		"templates/broken.yaml":  "{{ .Name }}: [\n",
	})
	// A document that says it is one and does not parse is an error.
	if _, err := regenerate(t, tree(t, map[string]string{"ping.yaml": ping("/_matrix/identity/api/v1", "pingV1"), "bad.yaml": "swagger: '2.0'\npaths: [\n"})); err == nil || !strings.Contains(err.Error(), "bad.yaml") {
		t.Errorf("broken API document: %v", err)
	}
	sum := Summary(out.res.Doc)
	if !strings.Contains(sum, "pingV1") || !strings.Contains(sum, "pingV2") || strings.Contains(sum, "pingV3") || strings.Contains(sum, "pingV4") {
		t.Errorf("operations:\n%s", sum)
	}
}

const openapi31 = `
openapi: 3.1.0
info:
  title: Matrix Identity Service Lookup API
  version: 2.0.0
  license: {name: Apache-2.0, identifier: Apache-2.0}
paths:
  /lookup:
    post:
      operationId: lookupUsersV2
      security:
        - accessTokenBearer: []
      requestBody:
        content:
          application/json:
            schema:
              type: object
              properties:
                algorithm:
                  type: string
                  const: sha256
                pepper:
                  type: [string, "null"]
                  examples: [matrixrocks]
                count:
                  type: integer
                  exclusiveMinimum: 0
                addresses:
                  type: array
                  items:
                    type: string
                  example: [abc]
              required: [algorithm, addresses]
      responses:
        "200":
          description: The associations.
          content:
            application/json:
              schema:
                type: object
                properties:
                  mappings:
                    type: object
                    additionalProperties:
                      type: string
        "400":
          description: Bad.
          content:
            application/json:
              schema:
                $ref: ../client-server/definitions/errors/error.yaml
servers:
  - url: "{protocol}://{hostname}{basePath}"
    variables:
      protocol:
        enum: [http, https]
        default: https
      hostname:
        default: localhost:8090
      basePath:
        default: /_matrix/identity/v2
components:
  securitySchemes:
    accessTokenBearer:
      $ref: definitions/security.yaml#/accessTokenBearer
`

var openapi31Files = map[string]string{
	"data/api/identity/v2_lookup.yaml":                     openapi31,
	"data/api/identity/definitions/security.yaml":          "accessTokenBearer:\n  type: http\n  scheme: bearer\n",
	"data/api/client-server/definitions/errors/error.yaml": upstreamFragments["api/client-server/definitions/errors/error.yaml"],
}

func TestTreeOpenAPI31(t *testing.T) {
	out := mustRegenerate(t, openapi31Files)
	doc := out.res.Doc
	s := schemaOf(t, doc, "POST", "/_matrix/identity/v2/lookup")
	if !s.Properties["pepper"].Value.Nullable || s.Properties["pepper"].Value.Example != "matrixrocks" {
		t.Errorf("type [string, null] / examples not translated: %+v", s.Properties["pepper"].Value)
	}
	if visit(t, s, map[string]any{"algorithm": "md5", "addresses": []any{}}) == nil {
		t.Error("const not kept as an enum")
	}
	if visit(t, s, map[string]any{"algorithm": "sha256", "addresses": []any{}, "count": 0}) == nil {
		t.Error("numeric exclusiveMinimum lost")
	}
	if doc.Components.SecuritySchemes["accessTokenBearer"] == nil || doc.Components.Schemas["Error"] == nil {
		t.Errorf("components: %v %v", doc.Components.SecuritySchemes, sortedKeys(doc.Components.Schemas))
	}
	if len(doc.Servers) != 0 {
		t.Error("servers kept")
	}
	if !strings.Contains(strictMethods(out.code), "LookupUsersV2(ctx context.Context") {
		t.Error("the compiler would not name LookupUsersV2")
	}
}

func TestTreeOpenAPI31RefusesWhatItCannotTranslate(t *testing.T) {
	for construct, replace := range map[string][2]string{
		"prefixItems":           {"items:\n                    type: string\n                  example: [abc]", "prefixItems: [{type: string}]"},
		"type [string integer]": {"type: [string, \"null\"]", "type: [string, integer]"},
		"if":                    {"const: sha256", "if: {const: x}"},
	} {
		files := withFiles(openapi31Files, map[string]string{
			"data/api/identity/v2_lookup.yaml": strings.Replace(openapi31, replace[0], replace[1], 1),
		})
		_, err := regenerate(t, tree(t, files))
		want := strings.Fields(construct)[0]
		if err == nil || !strings.Contains(err.Error(), "data/api/identity/v2_lookup.yaml") || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v", construct, err)
		}
	}
	for _, version := range []string{"openapi: 3.2.0", "openapi: 4.0.0", "swagger: '1.2'"} {
		files := map[string]string{"x.yaml": version + "\ninfo: {title: X, version: '1'}\npaths: {}\n"}
		if _, err := regenerate(t, tree(t, files)); err == nil || !strings.Contains(err.Error(), "x.yaml") {
			t.Errorf("%s: err = %v", version, err)
		}
	}
}

const pingDoc = `
swagger: '2.0'
info: {title: Ping, version: "1"}
basePath: /_matrix/identity/v2
paths:
  "/ping":
    get:
      operationId: %s
      summary: %s
      responses:
        200: {description: OK, schema: {type: object}}
`

func ping(id, summary string) string {
	return strings.Replace(strings.Replace(pingDoc, "%s", id, 1), "%s", summary, 1)
}

func TestTreeDuplicateOperations(t *testing.T) {
	// Identical definitions merge.
	out := mustRegenerate(t, map[string]string{"ping.yaml": ping("ping", "Ping."), "upstream/ping.yaml": ping("ping", "Ping.")})
	if n := len(out.res.Doc.Paths.Value("/_matrix/identity/v2/ping").Operations()); n != 1 {
		t.Errorf("%d operations", n)
	}
	// Conflicting ones are an error naming both files and the operation.
	conflict := map[string]string{"ping.yaml": ping("ping", "Ours."), "upstream/api/ping.yaml": ping("pingV2", "Theirs.")}
	_, err := regenerate(t, tree(t, conflict))
	if err == nil || !strings.Contains(err.Error(), "ping.yaml") || !strings.Contains(err.Error(), "upstream/api/ping.yaml") ||
		!strings.Contains(err.Error(), "GET /_matrix/identity/v2/ping") {
		t.Errorf("err = %v", err)
	}
	// The project's files declared to take precedence win.
	conflict[ConfigFile] = "prefer: [\"*.yaml\"]\n"
	out = mustRegenerate(t, conflict)
	if op := out.res.Doc.Paths.Value("/_matrix/identity/v2/ping").Get; op.Summary != "Ours" || op.OperationID != "ping" {
		t.Errorf("kept %q %q", op.OperationID, op.Summary)
	}
	// Two operations under one operationId are an error naming both.
	clash := map[string]string{"a.yaml": ping("ping", "A"), "b.yaml": strings.Replace(ping("ping", "B"), "/ping", "/other", 1)}
	if _, err := regenerate(t, tree(t, clash)); err == nil || !strings.Contains(err.Error(), "a.yaml") || !strings.Contains(err.Error(), "b.yaml") {
		t.Errorf("operationId clash: %v", err)
	}
}

func TestTreeDroppedFlatWithItsFragmentFolders(t *testing.T) {
	// The identity files flat in spec/, and the folders their refs leave
	// for (client-server/..., schemas/...) dropped into spec/ too.
	out := mustRegenerate(t, map[string]string{
		"lookup.yaml":                                 upstreamLookup,
		"definitions/mappings.yaml":                   upstreamFragments["api/identity/definitions/mappings.yaml"],
		"client-server/definitions/errors/error.yaml": upstreamFragments["api/client-server/definitions/errors/error.yaml"],
		"schemas/server-signatures.yaml":              upstreamFragments["schemas/server-signatures.yaml"],
	})
	if out.res.Doc.Components.Schemas["Error"] == nil || out.res.Doc.Components.Schemas["ServerSignatures"] == nil {
		t.Errorf("schemas %v", sortedKeys(out.res.Doc.Components.Schemas))
	}
}

func TestTreePreferredComponents(t *testing.T) {
	sec := func(desc string) string {
		return strings.Replace(ping("ping", "P"), "paths:", "securityDefinitions:\n  accessToken: {type: apiKey, in: header, name: Authorization, description: "+desc+"}\npaths:", 1)
	}
	files := map[string]string{"ping.yaml": sec("Ours"), "upstream/ping.yaml": sec("Theirs")}
	if _, err := regenerate(t, tree(t, files)); err == nil || !strings.Contains(err.Error(), `security scheme "accessToken"`) {
		t.Errorf("err = %v", err)
	}
	files[ConfigFile] = "prefer: ['*.yaml']\n"
	out := mustRegenerate(t, files)
	if d := out.res.Doc.Components.SecuritySchemes["accessToken"].Value.Description; d != "Ours" {
		t.Errorf("kept %q", d)
	}
}

func TestTreeSchemaNameCollisions(t *testing.T) {
	errDoc := func(desc string) string {
		return "type: object\ntitle: Error\ndescription: " + desc + "\nproperties:\n  errcode: {type: string}\n"
	}
	out := mustRegenerate(t, map[string]string{
		"api/identity/things.yaml": `
swagger: '2.0'
info: {title: Things, version: "1"}
basePath: /_matrix/identity/v2
definitions:
  Sid: {type: string}
paths:
  "/a":
    get:
      operationId: getA
      responses:
        200: {description: A, schema: {$ref: "../client-server/errors/error.yaml"}}
        400: {description: B, schema: {$ref: "../federation/errors/error.yaml"}}
        401: {description: C, schema: {$ref: "../federation/errors/error.yaml"}}
        403: {description: D, schema: {$ref: "definitions/sid.yaml"}}
`,
		"api/client-server/errors/error.yaml": errDoc("client-server"),
		"api/federation/errors/error.yaml":    errDoc("federation"),
		"api/identity/definitions/sid.yaml":   "type: object\nproperties:\n  sid: {type: string}\n",
	})
	s := out.res.Doc.Components.Schemas
	if s["Error"] == nil || s["ErrorsError"] == nil || s["DefinitionsSid"] == nil || s["Sid"].Value.Type.Is("object") {
		t.Errorf("schemas %v", sortedKeys(s))
	}
	if s["Error"].Value.Description != "client-server" || s["ErrorsError"].Value.Description != "federation" {
		t.Error("names not given in the order the refs are met")
	}
}

func TestIdentifier(t *testing.T) {
	for in, want := range map[string]string{
		"3PID mappings": "3PIDMappings", "request_email_validation": "RequestEmailValidation",
		"server-signatures": "ServerSignatures", "Error": "Error", "naïve": "NaVe", "": "",
	} {
		if got := identifier(in); got != want {
			t.Errorf("identifier(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestTreeNeverReadsOutsideSpec(t *testing.T) {
	// The file a flat tree's ref points to exists outside spec/, beside
	// it: it is not read (the output depends on spec/ alone).
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "client-server", "definitions", "errors"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "client-server", "definitions", "errors", "error.yaml"), []byte("type: object\ntitle: Outside\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	spec := treeAt(t, root, map[string]string{
		"lookup.yaml":                    upstreamLookup,
		"definitions/mappings.yaml":      upstreamFragments["api/identity/definitions/mappings.yaml"],
		"schemas/server-signatures.yaml": upstreamFragments["schemas/server-signatures.yaml"],
	})
	if _, err := regenerate(t, spec); err == nil || !strings.Contains(err.Error(), "client-server/definitions/errors/error.yaml") {
		t.Errorf("a file outside spec/ was read: %v", err)
	}
}
