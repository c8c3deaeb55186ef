// Package conformance is the logic of sigil-conformance: a black-box test
// of any Matrix identity server against the OpenAPI document Sigil is
// built from (gen/openapi.json) and the Matrix rules the document cannot
// state. It speaks HTTP to the server under test only, and runs its own
// loopback SMTP sink and fake homeserver for the flows that need them.
package conformance

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/sigil-matrix/sigil/gen"
)

func init() {
	// GET submitToken may answer an HTML page; validate it as text.
	openapi3filter.RegisterBodyDecoder("text/html", openapi3filter.PlainBodyDecoder)
}

// DefaultTokenPattern finds the validation token in a mail: the token
// query parameter of the link (Sydent's and Sigil's mails both carry one).
const DefaultTokenPattern = `[?&]token=([^&\s"'<>]+)`

// Config is one run.
type Config struct {
	// BaseURL is the server under test, e.g. http://127.0.0.1:8090.
	BaseURL string
	// ServerName is the name the server signs as; empty: learnt from the
	// first signed association (which must then carry exactly one entity).
	ServerName string
	Mailbox    Mailbox
	// SMS, if set, is where the server's text messages arrive (the SMS
	// sink); without it the phone flows stop at requestToken.
	SMS        Mailbox
	Homeserver *Homeserver
	// TokenPattern finds the token in a validation mail; its first group
	// (or the whole match) is the token.
	TokenPattern *regexp.Regexp
	// SMSTokenPattern finds the code in a text message (DefaultSMSTokenPattern).
	SMSTokenPattern *regexp.Regexp
	// Only and Skip select cases by "operation/case" (regular expressions).
	Only, Skip []*regexp.Regexp
	// MailTimeout bounds the wait for a mail or an onbind callback.
	MailTimeout time.Duration
	// Quiet is how long to wait to be sure a mail was NOT sent.
	Quiet time.Duration
	HTTP  *http.Client
	// Progress, if set, receives one line per finished case.
	Progress io.Writer
	// Profile is ProfileSpec (the default: only what the spec text
	// justifies) or ProfileStrict (also Sigil's stricter choices).
	Profile string
	// ShortLifetime, when set, is the validation token and session
	// lifetime the server under test was configured with (-short-lifetimes):
	// the run is then the expiry cases only. Zero: they are skipped.
	ShortLifetime time.Duration
}

// Profiles.
const (
	ProfileSpec   = "spec"
	ProfileStrict = "strict"
)

// Status of a case.
type Status string

const (
	Pass Status = "pass"
	Fail Status = "fail"
	Skip Status = "skip"
	// XFail is a failure listed in the expected-failures file.
	XFail Status = "xfail"
	// XPass is a case listed as expected to fail that passed: the list is
	// out of date, and the run fails until it is updated.
	XPass Status = "xpass"
)

// Result is one case's outcome.
type Result struct {
	Op, Case string
	Status   Status
	Reason   string
	Elapsed  time.Duration
	// Cite is the spec text the case checks; Area groups it for the
	// summary; Cause classifies a failure.
	Cite, Area, Cause string
	// Expected is the reason the expected-failures file gives, if listed.
	Expected string
}

// ID is the case's identifier, "operation/case", as -only, -skip and the
// expected-failures file match it.
func (r Result) ID() string { return r.Op + "/" + r.Case }

// Runner runs the cases of one Config.
type Runner struct {
	cfg     Config
	doc     *openapi3.T
	router  routers.Router
	results []Result
	run     string // random suffix that keeps this run's addresses apart

	// What earlier cases learnt.
	v1, v2     bool
	listed     []string
	serverName string
	// Transport problems by operation, judged by their own cases (so a
	// wrong header does not hide the operation's logic).
	transport  map[string]*transportTally
	keys       map[string]ed25519.PublicKey
	failedStep map[string]string // step name → why, for the cases that needed it
	unreported map[string]Result // failed steps -only left out, until a case needs them
}

// Run runs every selected case and returns the results in order.
func Run(ctx context.Context, cfg Config) ([]Result, error) {
	if cfg.HTTP == nil {
		cfg.HTTP = &http.Client{Timeout: 30 * time.Second}
	}
	// Redirects (GET submitToken's next_link) are answers to check, not to follow.
	c := *cfg.HTTP
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	cfg.HTTP = &c
	if cfg.TokenPattern == nil {
		cfg.TokenPattern = regexp.MustCompile(DefaultTokenPattern)
	}
	if cfg.SMSTokenPattern == nil {
		cfg.SMSTokenPattern = regexp.MustCompile(DefaultSMSTokenPattern)
	}
	if cfg.MailTimeout <= 0 {
		cfg.MailTimeout = 15 * time.Second
	}
	if cfg.Quiet <= 0 {
		cfg.Quiet = 1500 * time.Millisecond
	}
	cfg.BaseURL = strings.TrimSuffix(cfg.BaseURL, "/")
	if cfg.Mailbox == nil || cfg.Homeserver == nil {
		return nil, errors.New("conformance: a mailbox and a homeserver are required")
	}
	doc, err := gen.GetSwagger()
	if err != nil {
		return nil, fmt.Errorf("embedded document: %w", err)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}
	r := &Runner{cfg: cfg, doc: doc, router: router, run: strings.ToLower(randomString(8)),
		keys: map[string]ed25519.PublicKey{}, failedStep: map[string]string{}, serverName: cfg.ServerName,
		transport: map[string]*transportTally{}, unreported: map[string]Result{}}
	if r.cfg.Profile == "" {
		r.cfg.Profile = ProfileSpec
	}
	r.all(ctx)
	return r.results, nil
}

// selected reports whether op/name passes --only and --skip.
func (r *Runner) selected(op, name string) bool {
	if r.excluded(op, name) {
		return false
	}
	key := op + "/" + name
	if len(r.cfg.Only) == 0 {
		return true
	}
	for _, re := range r.cfg.Only {
		if re.MatchString(key) {
			return true
		}
	}
	return false
}

// excluded reports whether op/name matches a --skip pattern.
func (r *Runner) excluded(op, name string) bool {
	for _, re := range r.cfg.Skip {
		if re.MatchString(op + "/" + name) {
			return true
		}
	}
	return false
}

// T is the handle a case gets: it records failures and can stop the case.
type T struct {
	r        *Runner
	ctx      context.Context
	op, name string
	failures []string
	skip     string
}

type stopCase struct{}

// Errorf records a failure; the case goes on.
func (t *T) Errorf(format string, a ...any) {
	t.failures = append(t.failures, fmt.Sprintf(format, a...))
}

// Fatalf records a failure and ends the case.
func (t *T) Fatalf(format string, a ...any) {
	t.Errorf(format, a...)
	panic(stopCase{})
}

// Skipf ends the case as skipped.
func (t *T) Skipf(format string, a ...any) {
	t.skip = fmt.Sprintf(format, a...)
	panic(stopCase{})
}

// Need skips the case if an earlier step it depends on did not succeed.
func (t *T) Need(steps ...string) {
	for _, s := range steps {
		if res, hidden := t.r.unreported[s]; hidden {
			// A step -only left out failed: report it, so that the
			// failure does not hide behind the skips it causes.
			delete(t.r.unreported, s)
			t.r.record(res)
		}
		if why, failed := t.r.failedStep[s]; failed {
			t.Skipf("needs %s, which did not succeed: %s", s, why)
		}
	}
}

// Case runs a check if it is selected and records its result.
func (r *Runner) Case(ctx context.Context, op, name string, fn func(*T)) {
	if !r.selected(op, name) {
		return
	}
	r.exec(ctx, op, name, true, fn)
}

// Step runs a case later cases depend on: even when --only leaves it out
// (so that --only can pick a later case), then unrecorded; not when --skip
// names it. A step that fails, skips or is skipped makes the cases that
// Need it skip.
func (r *Runner) Step(ctx context.Context, op, name string, fn func(*T)) bool {
	if r.excluded(op, name) {
		r.failedStep[op+"/"+name] = "skip: excluded by -skip"
		return false
	}
	return r.exec(ctx, op, name, r.selected(op, name), fn)
}

// SkipCase records a case as skipped without running it.
func (r *Runner) SkipCase(op, name, reason string) {
	if r.selected(op, name) {
		r.record(Result{Op: op, Case: name, Status: Skip, Reason: reason})
	}
}

func (r *Runner) exec(ctx context.Context, op, name string, report bool, fn func(*T)) (ok bool) {
	t := &T{r: r, ctx: ctx, op: op, name: name}
	start := time.Now()
	func() {
		defer func() {
			if p := recover(); p != nil {
				if _, stop := p.(stopCase); !stop {
					t.Errorf("runner panic: %v", p)
				}
			}
		}()
		fn(t)
	}()
	res := Result{Op: op, Case: name, Status: Pass, Elapsed: time.Since(start)}
	switch {
	case len(t.failures) > 0:
		res.Status, res.Reason = Fail, strings.Join(t.failures, "; ")
	case t.skip != "":
		res.Status, res.Reason = Skip, t.skip
	}
	if res.Status != Pass {
		r.failedStep[op+"/"+name] = string(res.Status) + ": " + res.Reason
	}
	if report {
		r.record(res)
	} else if res.Status == Fail {
		r.unreported[op+"/"+name] = res
	}
	return res.Status == Pass
}

func (r *Runner) record(res Result) {
	res.Cite, res.Area = citation(res.Op, res.Case), area(res.Op, res.Case)
	if res.Status == Fail {
		res.Cause = cause(res.Reason)
	}
	r.results = append(r.results, res)
	if r.cfg.Progress != nil {
		fmt.Fprintf(r.cfg.Progress, "%-4s %s / %s %s\n     [%s]\n", res.Status, res.Op, res.Case, short(res.Reason, 200), res.Cite)
	}
}

// strict reports whether Sigil's stricter choices are checked too.
func (r *Runner) strict() bool { return r.cfg.Profile == ProfileStrict }

// Req is a request to the server under test.
type Req struct {
	Method string
	Path   string
	Query  url.Values
	// Body: nil, []byte sent as is (JSON), or anything else encoded as JSON.
	Body        any
	ContentType string // default application/json when there is a body; "none" sends none
	Token       string // Authorization: Bearer
	Header      http.Header
	// NoCheck skips the document check (for requests the document does not
	// describe, e.g. wrong methods, which are checked as bare Matrix errors).
	NoCheck bool
	// Raw skips every check (CORS pre-flights, which answer no JSON).
	Raw bool
}

// Resp is the answer.
type Resp struct {
	Status int
	Header http.Header
	Body   []byte
	obj    map[string]any
}

// Obj is the body as a JSON object (nil if it is not one).
func (r *Resp) Obj() map[string]any {
	if r.obj == nil {
		d := json.NewDecoder(bytes.NewReader(r.Body))
		d.UseNumber()
		_ = d.Decode(&r.obj)
	}
	return r.obj
}

// Str is a string field of the body.
func (r *Resp) Str(key string) string { s, _ := r.Obj()[key].(string); return s }

// Errcode is the body's errcode.
func (r *Resp) Errcode() string { return r.Str("errcode") }

func (r *Resp) String() string { return fmt.Sprintf("%d %s", r.Status, short(string(r.Body), 300)) }

// Do sends req and checks the answer against the document and the Matrix
// error rules; a non-conforming answer is a failure of the case.
func (t *T) Do(req Req) *Resp {
	hreq, err := t.r.newRequest(t.ctx, req)
	if err != nil {
		t.Fatalf("build request: %v", err)
	}
	resp, err := t.r.cfg.HTTP.Do(hreq)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.Path, err)
	}
	defer resp.Body.Close()
	out := &Resp{Status: resp.StatusCode, Header: resp.Header}
	if out.Body, err = io.ReadAll(io.LimitReader(resp.Body, 16<<20)); err != nil {
		t.Fatalf("%s %s: read body: %v", req.Method, req.Path, err)
	}
	tally := t.r.tally(t.op)
	// CORS headers are for the spec's routes ("for that route", §Web
	// browser clients); answers to wrong methods and unknown routes count
	// only under strict.
	if t.r.strict() || t.r.documented(hreq, req) {
		tally.answers++
	}
	if out.Header.Get("Access-Control-Allow-Origin") == "" && (t.r.strict() || t.r.documented(hreq, req)) {
		tally.noCORS++
		if tally.noCORSExample == "" {
			tally.noCORSExample = req.Method + " " + req.Path
		}
	}
	if req.Raw {
		return out
	}
	if ct := out.Header.Get("Content-Type"); len(out.Body) > 0 && json.Valid(out.Body) && !strings.HasPrefix(ct, "application/json") {
		// A JSON answer with the wrong content type: its own case judges
		// that (transportCases); the logic is judged as if it were right.
		tally.badCT++
		if tally.badCTExample == "" {
			tally.badCTExample = fmt.Sprintf("%s %s answered %q", req.Method, req.Path, ct)
		}
		out.Header = out.Header.Clone()
		out.Header.Set("Content-Type", "application/json")
	}
	if err := t.r.checkResponse(hreq, out, req.NoCheck); err != nil {
		t.Errorf("%s %s: %v (got %s)", req.Method, req.Path, err, out)
	}
	return out
}

// documented reports whether req is an operation of the document.
func (r *Runner) documented(hreq *http.Request, req Req) bool {
	if req.NoCheck || req.Raw {
		return false
	}
	_, _, err := r.router.FindRoute(hreq)
	return err == nil
}

func (r *Runner) newRequest(ctx context.Context, req Req) (*http.Request, error) {
	u := r.cfg.BaseURL + req.Path
	if len(req.Query) > 0 {
		u += "?" + req.Query.Encode()
	}
	var body io.Reader
	var raw []byte
	switch b := req.Body.(type) {
	case nil:
	case []byte:
		raw = b
	case string:
		raw = []byte(b)
	default:
		var err error
		if raw, err = json.Marshal(b); err != nil {
			return nil, err
		}
	}
	if raw != nil {
		body = bytes.NewReader(raw)
	}
	hreq, err := http.NewRequestWithContext(ctx, req.Method, u, body)
	if err != nil {
		return nil, err
	}
	if raw != nil {
		switch ct := req.ContentType; ct {
		case "":
			hreq.Header.Set("Content-Type", "application/json")
		case "none":
		default:
			hreq.Header.Set("Content-Type", ct)
		}
	}
	if req.Token != "" {
		hreq.Header.Set("Authorization", "Bearer "+req.Token)
	}
	for k, vs := range req.Header {
		hreq.Header[k] = vs
	}
	return hreq, nil
}

// checkResponse validates an answer against the operation the request
// matches (status, content type, body schema), then the Matrix rules:
// every JSON error is {"errcode":"M_...","error":"..."}. Requests the
// document does not describe must get a Matrix JSON error.
func (r *Runner) checkResponse(req *http.Request, out *Resp, bare bool) error {
	route, params, err := r.router.FindRoute(req)
	if err != nil || bare {
		if out.Status < 400 {
			return fmt.Errorf("status %d for a request the document does not describe", out.Status)
		}
		return checkMatrixError(out)
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{
			Request: req, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
		},
		Status: out.Status,
		Header: out.Header,
		Body:   io.NopCloser(bytes.NewReader(out.Body)),
		Options: &openapi3filter.Options{
			IncludeResponseStatus: true,
			MultiError:            true,
		},
	}
	if err := openapi3filter.ValidateResponse(req.Context(), in); err != nil {
		return fmt.Errorf("response does not conform to the document: %s", short(oneLine(err.Error()), 400))
	}
	if out.Status >= 400 && strings.HasPrefix(out.Header.Get("Content-Type"), "application/json") {
		return checkMatrixError(out)
	}
	return nil
}

func checkMatrixError(out *Resp) error {
	if !strings.HasPrefix(out.Header.Get("Content-Type"), "application/json") {
		return fmt.Errorf("content type %q, want application/json", out.Header.Get("Content-Type"))
	}
	m := out.Obj()
	if m == nil {
		return errors.New("body is not a JSON object")
	}
	code, ok1 := m["errcode"].(string)
	_, ok2 := m["error"].(string)
	if !ok1 || !ok2 || !errcodeRE.MatchString(code) {
		return errors.New(`error body lacks a string "errcode" (M_...) and "error"`)
	}
	return nil
}

var errcodeRE = regexp.MustCompile(`^[A-Z0-9_]+_[A-Z0-9_]+$`)

// Expect fails the case unless resp has status and (if given) errcode.
func (t *T) Expect(resp *Resp, status int, errcode string) {
	if resp.Status != status || (errcode != "" && resp.Errcode() != errcode) {
		want := fmt.Sprint(status)
		if errcode != "" {
			want += " " + errcode
		}
		t.Fatalf("want %s, got %s", want, resp)
	}
}

// ExpectError fails the case unless resp is a Matrix error with one of the
// statuses (any 4xx if none given) and one of the errcodes (any if none).
func (t *T) ExpectError(resp *Resp, statuses []int, errcodes ...string) {
	okStatus := len(statuses) == 0 && resp.Status >= 400 && resp.Status < 500
	for _, s := range statuses {
		okStatus = okStatus || resp.Status == s
	}
	okCode := len(errcodes) == 0 && resp.Errcode() != ""
	for _, c := range errcodes {
		okCode = okCode || resp.Errcode() == c
	}
	if !okStatus || !okCode {
		want := "a 4xx error"
		if len(statuses) > 0 {
			want = fmt.Sprint(statuses)
		}
		if len(errcodes) > 0 {
			want += " " + strings.Join(errcodes, " or ")
		}
		t.Fatalf("want %s, got %s", want, resp)
	}
}

func short(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// listsAtLeast reports whether the server lists v1.minor or a later v1.x.
func (r *Runner) listsAtLeast(minor int) bool {
	for _, v := range r.listed {
		var n int
		if _, err := fmt.Sscanf(v, "v1.%d", &n); err == nil && n >= minor {
			return true
		}
	}
	return false
}
