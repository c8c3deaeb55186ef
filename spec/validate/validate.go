// Package validate checks every request against the embedded OpenAPI
// document before it reaches the generated router, and turns whatever is
// wrong into a Matrix error. It also bounds request bodies and turns the
// deprecated application/x-www-form-urlencoded bodies into typed JSON, so
// nothing downstream ever sees anything but a valid JSON request.
package validate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"mime"
	"net/http"
	"net/url"
	"reflect"
	"sort"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/bytedance/sonic"
	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/labstack/echo/v4"

	"github.com/sigil-matrix/sigil/spec/matrixerr"
)

// DefaultMaxBodyBytes bounds request bodies: a bulk lookup of 10,000
// threepids is well under 1 MiB.
const DefaultMaxBodyBytes = 1 << 20

// Validator validates requests for the operations of one document.
type Validator struct {
	// routes maps the routes Echo serves (method and /echo/:path, from the
	// generated router: see Bind) to their operations.
	routes map[routeKey]*routers.Route
	// outside are the routes declared to serve no API operation (see
	// Outside): the server's own pages outside /_matrix.
	outside map[routeKey]bool
	// byID holds every operation of the document by its operationId.
	byID map[string]*routers.Route
	// checked is the route kin-openapi validates against: the same
	// operation without its security requirements, which the auth
	// middleware enforces (it needs the database).
	checked map[*routers.Route]*routers.Route
	fast    map[*routers.Route]*fastSchema
	// simple holds the operations whose parameters the fast path checks
	// (simpleparams.go).
	simple map[*routers.Route]simpleParams
	// taped are the operations whose accepted bodies get a Tape (see
	// Tokenize).
	taped   map[*routers.Route]bool
	maxBody int64
	options *openapi3filter.Options
	// paramsOnly validates all but the body, for bodies the compiled
	// schema already accepted.
	paramsOnly *openapi3filter.Options
}

// New indexes doc's operations by the route pattern Echo matches them with.
func New(doc *openapi3.T, maxBodyBytes int64) (*Validator, error) {
	if maxBodyBytes <= 0 {
		maxBodyBytes = DefaultMaxBodyBytes
	}
	v := &Validator{
		routes:  map[routeKey]*routers.Route{},
		outside: map[routeKey]bool{},
		byID:    map[string]*routers.Route{},
		checked: map[*routers.Route]*routers.Route{},
		fast:    map[*routers.Route]*fastSchema{},
		simple:  map[*routers.Route]simpleParams{},
		taped:   map[*routers.Route]bool{},
		maxBody: maxBodyBytes,
		options: &openapi3filter.Options{
			MultiError: true,
			// Authentication is checked by the v2 auth middleware, which
			// needs the database; here only the shape of requests matters.
			AuthenticationFunc: openapi3filter.NoopAuthenticationFunc,
		},
		paramsOnly: &openapi3filter.Options{
			ExcludeRequestBody: true,
			MultiError:         true,
			AuthenticationFunc: openapi3filter.NoopAuthenticationFunc,
		},
	}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			r := &routers.Route{Spec: doc, Path: path, PathItem: item, Method: method, Operation: op}
			if op.OperationID == "" {
				return nil, fmt.Errorf("%s %s has no operationId", method, path)
			}
			v.byID[op.OperationID] = r
			if sp, ok := compileSimpleParams(item, op); ok {
				v.simple[r] = sp
			}
			bare := *op
			bare.Security = &openapi3.SecurityRequirements{}
			v.checked[r] = &routers.Route{Spec: doc, Path: path, PathItem: item, Method: method, Operation: &bare}
			if op.RequestBody != nil && op.RequestBody.Value != nil {
				if mt := op.RequestBody.Value.Content.Get(echo.MIMEApplicationJSON); mt != nil {
					if f, err := compileFast(mt.Schema); err == nil {
						v.fast[r] = f
					}
				}
			}
		}
	}
	return v, nil
}

// EchoPath converts an OpenAPI path template to Echo's (`{id}` → `:id`), the
// same way oapi-codegen registers the generated handlers.
func EchoPath(p string) string {
	var b strings.Builder
	for {
		i := strings.IndexByte(p, '{')
		if i < 0 {
			b.WriteString(p)
			return b.String()
		}
		j := strings.IndexByte(p[i:], '}')
		if j < 0 {
			b.WriteString(p)
			return b.String()
		}
		b.WriteString(p[:i])
		b.WriteByte(':')
		b.WriteString(p[i+1 : i+j])
		p = p[i+j+1:]
	}
}

// Bind takes the route table from the generated router: each Echo route
// whose handler is the generated wrapper method of an operation (oapi-codegen
// names it after the operationId, as in the embedded document) serves that
// operation, at that route's method and path. It returns the routes that
// serve no operation of the document ("METHOD path handler"); Middleware
// refuses requests to them.
func (v *Validator) Bind(routes []*echo.Route) (unbound []string) {
	for _, r := range routes {
		if v.outside[routeKey{r.Method, r.Path}] {
			continue
		}
		op := v.byID[wrapperMethod(r.Name)]
		if op == nil || op.Method != r.Method || EchoPath(op.Path) != r.Path {
			unbound = append(unbound, r.Method+" "+r.Path+" "+r.Name)
			continue
		}
		v.routes[routeKey{r.Method, r.Path}] = op
	}
	sort.Strings(unbound)
	return unbound
}

// Tokenize has the bodies of these operations that the compiled schema
// accepts keep the tokens the schema walk found (Body.Tape), for their
// decoders.
func (v *Validator) Tokenize(operationIDs ...string) error {
	for _, id := range operationIDs {
		r := v.byID[id]
		if r == nil || v.fast[r] == nil {
			return fmt.Errorf("validate: no operation %q with a compiled body schema to tokenize", id)
		}
		v.taped[r] = true
	}
	return nil
}

// Outside declares routes that deliberately serve no operation of the
// document (documentation, health checks): Bind does not count them as
// unbound and Middleware passes them through unvalidated. Only paths
// outside /_matrix may be declared, so no API route can be waved through.
func (v *Validator) Outside(routes ...*echo.Route) error {
	for _, r := range routes {
		if r.Path == "/_matrix" || strings.HasPrefix(r.Path, "/_matrix/") {
			return fmt.Errorf("validate: %s %s is under /_matrix: it must be an operation of the API description", r.Method, r.Path)
		}
		v.outside[routeKey{r.Method, r.Path}] = true
	}
	return nil
}

// wrapperMethod returns X of a handler named
// "….(*ServerInterfaceWrapper).X-fm", the generated router's handler of
// operation X, or "".
func wrapperMethod(handler string) string {
	const recv = ".(*ServerInterfaceWrapper)."
	i := strings.LastIndex(handler, recv)
	if i < 0 {
		return ""
	}
	return strings.TrimSuffix(handler[i+len(recv):], "-fm")
}

// Route looks up the operation of the route Echo matched (nil for none),
// for middleware that acts on what the spec says (security, the access
// log's operation, HTML error pages). A look-up each time: keeping it in
// Echo's context store cost a map a request.
func (v *Validator) Route(c echo.Context) *routers.Route {
	return v.routes[routeKey{c.Request().Method, c.Path()}]
}

// routeKey is a route of Echo's: a struct, not "METHOD path", whose
// concatenation cost an allocation per look-up (three a request).
type routeKey struct{ method, path string }

// unrouted reports whether Echo found no route for the request (its 404
// and 405 handlers answer it).
func unrouted(c echo.Context) bool {
	h := reflect.ValueOf(c.Handler()).Pointer()
	return h == notFound || h == methodNotAllowed
}

var (
	notFound         = reflect.ValueOf(echo.NotFoundHandler).Pointer()
	methodNotAllowed = reflect.ValueOf(echo.MethodNotAllowedHandler).Pointer()
)

// Middleware validates the request of every operation. Requests Echo could
// not route pass through untouched so its 404/405 handlers answer; a route
// Echo serves that is bound to no operation (see Bind) is refused, never
// served unvalidated and unauthenticated.
func (v *Validator) Middleware() echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			route := v.Route(c)
			if route == nil {
				if unrouted(c) || v.outside[routeKey{c.Request().Method, c.Path()}] {
					return next(c)
				}
				return matrixerr.Unknown(fmt.Errorf("route %s %s serves no operation of the API description", c.Request().Method, c.Path()))
			}
			if err := v.validate(c, route); err != nil {
				return err
			}
			err := next(c)
			if b, ok := c.Request().Body.(*Body); ok && err == nil && b.recycle() {
				c.Request().GetBody = nil // it would read the reused buffer
			}
			return err
		}
	}
}

func (v *Validator) validate(c echo.Context, route *routers.Route) error {
	req := c.Request()
	opts := v.options
	bodyDone := true // no body, or the compiled schema accepted it
	if rb := route.Operation.RequestBody; rb != nil && rb.Value != nil {
		bodyOK, err := v.prepareBody(req, rb.Value, v.fast[route], v.taped[route])
		if err != nil {
			return err
		}
		bodyDone = bodyOK
		if bodyOK {
			opts = v.paramsOnly
		}
	}

	params := make(map[string]string, len(c.ParamNames()))
	for i, name := range c.ParamNames() {
		params[name] = c.ParamValues()[i]
	}
	if err := checkUTF8Params(c, params); err != nil {
		return err
	}
	if sp, ok := v.simple[route]; ok && bodyDone && sp.accepts(c, req) {
		return nil
	}
	in := &openapi3filter.RequestValidationInput{
		Request:    req,
		PathParams: params,
		Route:      v.checked[route],
		Options:    opts,
	}
	if err := openapi3filter.ValidateRequest(req.Context(), in); err != nil {
		return toMatrix(err)
	}
	return nil
}

// prepareBody reads the body within the size limit and leaves it as JSON:
// form bodies are converted using the schema's property types, and a body
// sent with no or another content type is taken to be JSON, as Matrix
// clients are not obliged to label it. It reports whether the compiled
// schema (if any) already accepted the body.
func (v *Validator) prepareBody(req *http.Request, rb *openapi3.RequestBody, fast *fastSchema, taping bool) (bool, error) {
	if req.ContentLength > v.maxBody {
		return false, matrixerr.TooLarge(fmt.Sprintf("Request body is larger than %d bytes", v.maxBody))
	}
	var data []byte
	if req.Body != nil && req.Body != http.NoBody {
		var err error
		data, err = readAll(req.Body, req.ContentLength, v.maxBody+1)
		req.Body.Close()
		if err != nil {
			return false, matrixerr.BadJSON("Could not read the request body").WithCause(err)
		}
		if int64(len(data)) > v.maxBody {
			return false, matrixerr.TooLarge(fmt.Sprintf("Request body is larger than %d bytes", v.maxBody))
		}
		// JSON is UTF-8 (RFC 8259 §8.1), and neither syntax check looks
		// at the bytes inside strings: PostgreSQL refuses them later.
		if !utf8.Valid(data) {
			return false, matrixerr.NotJSON("The request body is not valid UTF-8")
		}
	}
	ct, _, _ := mime.ParseMediaType(req.Header.Get(echo.HeaderContentType))
	trimmed := bytes.TrimSpace(data)
	isJSON, accepted, tape := checkJSON(trimmed, fast, taping)
	text := trimmed // what tape indexes
	if isJSON && !accepted && hasDuplicateKeys(trimmed) {
		// The value validated and the value decoded must be one value.
		return false, matrixerr.BadJSON("The request body repeats a key")
	}
	// curl and some scripts label JSON as a form; a body that is a JSON
	// object is JSON whatever its label says.
	isObject := isJSON && trimmed[0] == '{'
	switch {
	case ct == echo.MIMEApplicationForm && !isObject:
		converted, err := formToJSON(data, bodySchema(rb))
		if err != nil {
			return false, err
		}
		data = converted
		PutTape(tape)
		_, accepted, tape = checkJSON(data, fast, taping)
		text = data
	case len(trimmed) == 0:
		if rb.Required {
			return false, matrixerr.NotJSON("The request body must be a JSON object")
		}
	case !isJSON:
		return false, matrixerr.NotJSON("The request body is not valid JSON")
	case !isObject:
		return false, matrixerr.BadJSON("The request body must be a JSON object")
	case !accepted:
		if lenient, ok := numericStrings(data, bodySchema(rb)); ok {
			data = lenient
			_, accepted, tape = checkJSON(data, fast, taping)
			text = data
		}
	}
	req.Header.Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
	body := newBody(data)
	if tape != nil {
		body.tape, body.tapeText = tape, text
	}
	req.Body = body
	req.ContentLength = int64(len(data))
	req.GetBody = func() (io.ReadCloser, error) { return newBody(data), nil }
	return accepted, nil
}

// checkJSON reports whether b is JSON, and whether the compiled schema (if
// any) accepted it. The schema walker checks the syntax as it goes, so a
// body it accepts is JSON; for the others sonic.Valid is the quick syntax
// check but does not look inside strings, and encoding/json decides.
// JSON is UTF-8, and neither
// sonic nor encoding/json refuses invalid bytes (the decoders would turn
// them into U+FFFD): b must be UTF-8 already. prepareBody checks the body
// as read, and the bodies it rewrites come from json.Marshal, which writes
// only UTF-8 (checking again here was a second pass over every body).
func checkJSON(b []byte, fast *fastSchema, taping bool) (isJSON, accepted bool, t Tape) {
	if fast != nil {
		if ok, t := fast.validTape(b, taping); ok {
			return true, true, t
		}
	}
	if !sonic.Valid(b) {
		return false, false, nil
	}
	return json.Valid(b), false, nil
}

// checkUTF8Params refuses query and path parameters that are not UTF-8
// once decoded (%FF): they would reach the database and the logs. The
// query is Echo's, parsed once per request and kept in its context (the
// generated handler binds from it too): parsing it here and again in
// simpleParams was 4 % of a v1 lookup's CPU.
func checkUTF8Params(c echo.Context, path map[string]string) error {
	req := c.Request()
	for name, v := range path {
		if u, err := url.PathUnescape(v); err == nil {
			v = u // Echo leaves a segment with escapes escaped
		}
		if !utf8.ValidString(v) {
			return matrixerr.InvalidParam(name + ": not valid UTF-8")
		}
	}
	if req.URL.RawQuery == "" {
		return nil
	}
	for name, vs := range c.QueryParams() {
		for _, v := range vs {
			if !utf8.ValidString(name) || !utf8.ValidString(v) {
				return matrixerr.InvalidParam("query parameters must be valid UTF-8")
			}
		}
	}
	return nil
}

// readAll reads at most limit bytes, sized up front when the length is
// known (io.ReadAll's growing buffer was a fifth of validation's cost).
func readAll(r io.Reader, length, limit int64) ([]byte, error) {
	if length <= 0 || length > limit {
		return io.ReadAll(io.LimitReader(r, limit))
	}
	buf := newBuffer(int(length) + 1)[:length]
	n, err := io.ReadFull(r, buf)
	if err == io.ErrUnexpectedEOF {
		return buf[:n], nil
	}
	if err != nil {
		return buf[:n], err
	}
	// Longer than announced: read on, still within the limit.
	rest, err := io.ReadAll(io.LimitReader(r, limit-length))
	return append(buf, rest...), err
}

func bodySchema(rb *openapi3.RequestBody) *openapi3.Schema {
	if mt := rb.Content.Get(echo.MIMEApplicationJSON); mt != nil && mt.Schema != nil {
		return mt.Schema.Value
	}
	return nil
}

// formToJSON turns a form body into a JSON object, typing each value by the
// schema: integers, numbers and booleans are parsed, arrays collect repeated
// keys, anything else stays a string. A value that does not parse stays a
// string, so schema validation reports it as the wrong type.
func formToJSON(data []byte, schema *openapi3.Schema) ([]byte, error) {
	values, err := url.ParseQuery(string(data))
	if err != nil {
		return nil, matrixerr.BadJSON("The form-encoded body could not be parsed")
	}
	obj := make(map[string]any, len(values))
	for key, vals := range values {
		var prop *openapi3.Schema
		if schema != nil {
			if p := schema.Properties[key]; p != nil {
				prop = p.Value
			}
		}
		obj[key] = typedFormValue(vals, prop)
	}
	return json.Marshal(obj)
}

func typedFormValue(vals []string, prop *openapi3.Schema) any {
	if prop != nil && prop.Type.Is("array") {
		out := make([]any, len(vals))
		var item *openapi3.Schema
		if prop.Items != nil {
			item = prop.Items.Value
		}
		for i, s := range vals {
			out[i] = typedScalar(s, item)
		}
		return out
	}
	return typedScalar(vals[len(vals)-1], prop)
}

func typedScalar(s string, prop *openapi3.Schema) any {
	if prop == nil {
		return s
	}
	switch {
	case prop.Type.Is("integer"), prop.Type.Is("number"):
		var n json.Number
		if err := json.Unmarshal([]byte(s), &n); err == nil {
			return n
		}
	case prop.Type.Is("boolean"):
		switch s {
		case "true":
			return true
		case "false":
			return false
		}
	}
	return s
}

// numericStringExt marks an integer property that clients may also send as
// a JSON string of decimal digits: matrix-js-sdk (Element) sends
// send_attempt as "1" (spec/README.md). The document states the leniency;
// this is the one place that applies it.
const numericStringExt = "x-numeric-string"

// numericStrings rewrites the top-level properties of a JSON object body
// that the schema marks numericStringExt and that hold a string of decimal
// digits into that integer, so validation and the typed decoding see the
// integer. It reports false (and changes nothing) when there is nothing to
// rewrite; any other string is left for validation to refuse.
func numericStrings(data []byte, schema *openapi3.Schema) ([]byte, bool) {
	if schema == nil {
		return nil, false
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(data, &obj) != nil {
		return nil, false
	}
	changed := false
	for name, ref := range schema.Properties {
		if ref == nil || ref.Value == nil || ref.Value.Extensions[numericStringExt] != true {
			continue
		}
		raw, ok := obj[name]
		if !ok || len(raw) < 3 || raw[0] != '"' {
			continue
		}
		var str string
		if json.Unmarshal(raw, &str) != nil || !decimalDigits(str) {
			continue
		}
		obj[name] = json.RawMessage(str)
		changed = true
	}
	if !changed {
		return nil, false
	}
	out, err := json.Marshal(obj)
	if err != nil {
		return nil, false
	}
	return out, true
}

// decimalDigits reports whether s is a plain non-negative integer that
// fits an int64 (no sign, no exponent, no leading zeros but "0").
func decimalDigits(s string) bool {
	if s == "" || len(s) > 18 || (len(s) > 1 && s[0] == '0') {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// toMatrix maps kin-openapi's validation errors to one Matrix error: every
// missing parameter is named together; otherwise the first problem is
// reported, with kin-openapi's reason but never the offending value.
func toMatrix(err error) error {
	var missing, invalid []string
	var notJSON bool
	for _, e := range flatten(err) {
		reqErr, ok := e.(*openapi3filter.RequestError)
		if !ok {
			invalid = append(invalid, "the request does not match the API description")
			continue
		}
		switch {
		case errors.Is(reqErr.Err, openapi3filter.ErrInvalidRequired) && reqErr.Parameter != nil:
			missing = append(missing, reqErr.Parameter.Name)
		case errors.Is(reqErr.Err, openapi3filter.ErrInvalidRequired):
			notJSON = true
		case reqErr.Parameter != nil:
			invalid = append(invalid, fmt.Sprintf("%s: %s", reqErr.Parameter.Name, paramReason(reqErr)))
		default:
			m, inv := schemaProblems(reqErr.Err)
			missing = append(missing, m...)
			invalid = append(invalid, inv...)
			if len(m) == 0 && len(inv) == 0 {
				invalid = append(invalid, reqErr.Reason)
			}
		}
	}
	switch {
	case len(missing) > 0:
		sort.Strings(missing)
		return matrixerr.MissingParams(dedupe(missing)...)
	case notJSON:
		return matrixerr.NotJSON("The request body must be a JSON object")
	case len(invalid) > 0:
		return matrixerr.InvalidParam(strings.Join(dedupe(invalid), "; "))
	}
	return matrixerr.InvalidParam("The request is invalid")
}

func paramReason(e *openapi3filter.RequestError) string {
	var se *openapi3.SchemaError
	if errors.As(e.Err, &se) {
		return se.Reason
	}
	if e.Reason != "" {
		return e.Reason
	}
	return "invalid value"
}

// schemaProblems splits body schema errors into missing fields (dotted
// paths) and other problems ("field: reason").
func schemaProblems(err error) (missing, invalid []string) {
	for _, e := range flattenCause(err) {
		var se *openapi3.SchemaError
		if !errors.As(e, &se) {
			continue
		}
		path := strings.Join(se.JSONPointer(), ".")
		if se.SchemaField == "required" {
			missing = append(missing, path)
			continue
		}
		if path == "" {
			path = "body"
		}
		invalid = append(invalid, path+": "+se.Reason)
	}
	return missing, invalid
}

// flatten expands kin-openapi's nested MultiErrors into RequestErrors that
// each carry one cause. Type switches, not errors.As: a RequestError unwraps
// to its cause, which must stay attached to it.
func flatten(err error) []error {
	switch e := err.(type) {
	case openapi3.MultiError:
		var out []error
		for _, inner := range e {
			out = append(out, flatten(inner)...)
		}
		return out
	case *openapi3filter.RequestError:
		if inner, ok := e.Err.(openapi3.MultiError); ok && len(inner) > 0 {
			var out []error
			for _, cause := range inner {
				for _, c := range flattenCause(cause) {
					cp := *e
					cp.Err = c
					out = append(out, &cp)
				}
			}
			return out
		}
	}
	return []error{err}
}

// flattenCause expands nested schema MultiErrors.
func flattenCause(err error) []error {
	if me, ok := err.(openapi3.MultiError); ok {
		var out []error
		for _, e := range me {
			out = append(out, flattenCause(e)...)
		}
		return out
	}
	return []error{err}
}

func dedupe(s []string) []string {
	seen := map[string]bool{}
	out := s[:0]
	for _, x := range s {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

// Body is the request body the middleware leaves behind: checked JSON,
// held in memory. Bytes lets a decoder use it without reading it again.
type Body struct {
	*bytes.Reader
	data []byte
	// lent is set by RecycleAfter: the decoder that called it, whose
	// values point into data.
	lent Recycler
	// tape is the schema walk's tokens of tapeText, data or a part of it
	// (see Tokenize).
	tape     Tape
	tapeText []byte
}

// Tape returns the tokens the schema walk found in the body, and the text
// they point into (a part of Bytes), or nil if it kept none.
func (b *Body) Tape() (Tape, []byte) { return b.tape, b.tapeText }

func newBody(data []byte) *Body { return &Body{Reader: bytes.NewReader(data), data: data} }

// Bytes returns the whole body; it must not be modified. The buffer is
// this request's alone (read into a buffer no other request holds, or the
// fresh output of a rewrite) and is never written by anyone else while
// this request runs, so decoders may keep strings that point into it
// instead of copying them (the lookup decoders in handlers do, as sonic
// does for the others). It is reused for another request only when a
// decoder says so with RecycleAfter. TestBodyBufferIsTheRequests.
func (b *Body) Bytes() []byte { return b.data }

// A Recycler is memory a decoder took for one request's values, such as
// the slices holding its strings.
type Recycler interface {
	// Recycle takes the memory back for another request. Nothing of
	// this request may be used afterwards.
	Recycle()
}

// RecycleAfter declares that the values decoded from the body, and
// everything made from them, are dropped once the handler has answered
// without error: the middleware then calls r.Recycle and reuses the
// body's buffer for the body of a later request. Allocating and zeroing
// those buffers, and the GC collecting them, was a tenth of a 1,000-item
// lookup. Only a decoder whose handlers copy what they keep may call it
// (the lookup decoders): a string pointing into the buffer would change
// under whoever kept it. After an error nothing is reused (an error may
// carry a value), and bodies whose decoder does not call it never are.
// TestRecycledBodyBuffer.
func (b *Body) RecycleAfter(r Recycler) { b.lent = r }

// recycle returns the buffer and the decoder's memory for reuse, if the
// decoder lent them, and reports whether it did.
func (b *Body) recycle() bool {
	if b.lent == nil {
		return false
	}
	b.lent.Recycle()
	putBuffer(b.data)
	PutTape(b.tape)
	b.lent, b.data, b.tape, b.tapeText = nil, nil, nil, nil
	b.Reader.Reset(nil)
	return true
}

// bodyBuffers holds body buffers for reuse (see RecycleAfter), by size
// class: class k holds buffers of at least minPooledBody<<k bytes. Small
// bodies are allocated: they cost little, and most of them are decoded by
// decoders that never recycle.
var bodyBuffers [6]sync.Pool // 4 KiB to 128 KiB: a 10,000-item lookup is about 300 KB

const minPooledBody = 4 << 10

// bufferClass is the class whose buffers all hold n bytes, or -1.
func bufferClass(n int) int {
	if n <= minPooledBody {
		return 0
	}
	k := bits.Len(uint(n-1)) - bits.Len(minPooledBody-1)
	if k >= len(bodyBuffers) {
		return -1
	}
	return k
}

// newBuffer returns a buffer of length 0 and capacity at least n,
// recycled if one is at hand.
func newBuffer(n int) []byte {
	if n < minPooledBody {
		return make([]byte, 0, n)
	}
	k := bufferClass(n)
	if k < 0 {
		return make([]byte, 0, n)
	}
	if p, _ := bodyBuffers[k].Get().(*[]byte); p != nil {
		return (*p)[:0]
	}
	return make([]byte, 0, minPooledBody<<k)
}

// putBuffer keeps b for newBuffer, in the largest class it can serve.
func putBuffer(b []byte) {
	if cap(b) < minPooledBody {
		return
	}
	k := bits.Len(uint(cap(b))) - bits.Len(minPooledBody)
	if k >= len(bodyBuffers) {
		return
	}
	bodyBuffers[k].Put(&b)
}

// Close implements io.Closer.
func (*Body) Close() error { return nil }
