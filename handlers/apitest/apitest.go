// Package apitest runs the real server for tests: the whole HTTP stack on a
// loopback port, a SQLite file, an in-process SMTP server and real keys. Every
// response a test receives is checked against the OpenAPI document, and a
// non-conforming one fails the test.
package apitest

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/sigil-matrix/sigil/gen"
	"github.com/sigil-matrix/sigil/handlers"
	"github.com/sigil-matrix/sigil/handlers/federation"
	"github.com/sigil-matrix/sigil/handlers/identity"
	"github.com/sigil-matrix/sigil/handlers/mail"
	"github.com/sigil-matrix/sigil/handlers/mail/mailtest"
	"github.com/sigil-matrix/sigil/handlers/signing"
	"github.com/sigil-matrix/sigil/handlers/sms"
	"github.com/sigil-matrix/sigil/store"
)

func init() {
	// The GET submitToken pages are HTML; validate them as text.
	openapi3filter.RegisterBodyDecoder("text/html", openapi3filter.PlainBodyDecoder)
}

// ServerName is what test servers sign as.
const ServerName = "id.sigil.test"

// Clock is real time plus an offset tests move to expire sessions.
type Clock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *Clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return time.Now().Add(c.offset) }

// Advance moves the clock forward.
func (c *Clock) Advance(d time.Duration) { c.mu.Lock(); c.offset += d; c.mu.Unlock() }

// Env is one running server and what it talks to.
type Env struct {
	T     testing.TB
	URL   string
	Store *store.Store
	Mail  *mailtest.Server
	SMS   *SMSGateway
	Key   signing.Key
	Clock *Clock
	// Identity is the service behind the HTTP stack, for tests that call
	// an operation directly (rotate the pepper, tune onbind retries).
	Identity *identity.Service
	Config   identity.Config
	HTTP     *http.Client
	// DSN is the database, for a second server on the same data.
	DSN string

	router routers.Router
}

// Setup is what a test may change before the server starts.
type Setup struct {
	Config identity.Config
	HTTP   handlers.HTTPOptions
	// DSN overrides the SQLite file, e.g. to run on PostgreSQL.
	DSN string
	// Templates overrides the built-in mail templates.
	TemplatesDir string
	// Federation is the client for homeservers; by default it may reach
	// loopback and skips certificate checks, for fedtest homeservers.
	Federation *federation.Client
	// Wire runs after the server is built and before it serves, for
	// components other issues add (onbind delivery, accounts...).
	Wire func(*Env)
	// Log receives the server's log instead of t.Log (a fuzz target may
	// not log through its *testing.F).
	Log io.Writer
}

// New starts a server for t, with options applied to the default setup.
func New(t testing.TB, options ...func(*Setup)) *Env {
	t.Helper()
	s := Setup{Config: identity.Config{
		ServerName: ServerName, TokenLifetime: 24 * time.Hour, SessionLifetime: 24 * time.Hour,
		MailEvery: time.Millisecond, MailBurst: 1000,
	}}
	for _, o := range options {
		o(&s)
	}
	dir := t.TempDir()
	if s.DSN == "" {
		s.DSN = filepath.Join(dir, "sigil.db")
	}
	ctx := context.Background()
	var logTo io.Writer = testWriter{t}
	if s.Log != nil {
		logTo = s.Log
	}
	log := slog.New(slog.NewTextHandler(logTo, &slog.HandlerOptions{Level: slog.LevelWarn}))
	st, err := store.Open(ctx, s.DSN, store.WithLogger(log))
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	key, err := signing.LoadOrCreateKeyFile(filepath.Join(dir, "signing.key"))
	if err != nil {
		t.Fatalf("signing key: %v", err)
	}
	smtpd := mailtest.Start(t)
	sender, err := mail.NewSMTPSender(smtpd.Config())
	if err != nil {
		t.Fatalf("smtp sender: %v", err)
	}
	tmpl, err := mail.LoadTemplates(s.TemplatesDir)
	if err != nil {
		t.Fatalf("templates: %v", err)
	}
	clock := &Clock{}

	gateway := StartSMSGateway(t)
	texts, err := sms.NewHTTPProvider(gateway.Config(), nil)
	if err != nil {
		t.Fatalf("sms provider: %v", err)
	}
	e := &Env{T: t, Store: st, Mail: smtpd, SMS: gateway, Key: key, Clock: clock, DSN: s.DSN}
	ts := httptest.NewUnstartedServer(nil)
	ts.Listener = handlers.Guard(ts.Config, ts.Listener)
	e.URL = "http://" + ts.Listener.Addr().String()
	if s.Config.PublicBaseURL == "" {
		s.Config.PublicBaseURL = e.URL
	}
	e.Config = s.Config
	if s.Federation == nil {
		s.Federation = federation.NewClient(federation.ClientOptions{
			AllowPrivate: true, TLSConfig: &tls.Config{InsecureSkipVerify: true}, Timeout: 5 * time.Second,
		})
	}
	svc, err := identity.New(s.Config, identity.Deps{
		Store: st, Key: key, Mail: sender, SMS: texts, Templates: tmpl, Logger: log, Now: clock.Now, Federation: s.Federation,
	})
	if err != nil {
		t.Fatalf("identity: %v", err)
	}
	e.Identity = svc
	if s.Wire != nil {
		s.Wire(e)
	}
	h, err := handlers.NewHTTP(handlers.New(svc, log), s.HTTP)
	if err != nil {
		t.Fatalf("http: %v", err)
	}
	ts.Config.Handler = h
	ts.Start()
	t.Cleanup(ts.Close)
	workerCtx, stopWorker := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); svc.RunOnBindWorker(workerCtx) }()
	t.Cleanup(func() { stopWorker(); <-done })
	e.HTTP = &http.Client{
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	e.router = Router(t)
	return e
}

// Router is a kin-openapi router over the embedded document.
func Router(t testing.TB) routers.Router {
	doc, err := gen.GetSwagger()
	if err != nil {
		t.Fatalf("embedded spec: %v", err)
	}
	r, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatalf("router: %v", err)
	}
	return r
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// Response is what the server answered.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body as an object.
func (r *Response) JSON() map[string]any {
	var m map[string]any
	_ = json.Unmarshal(r.Body, &m)
	return m
}

// Errcode is the body's errcode, if any.
func (r *Response) Errcode() string {
	s, _ := r.JSON()["errcode"].(string)
	return s
}

// String returns a field of the body as a string.
func (r *Response) String(key string) string {
	s, _ := r.JSON()[key].(string)
	return s
}

// Request is a request to send.
type Request struct {
	Method string
	Path   string // with query
	// Body: nil, a string or []byte sent as is, url.Values sent as a form,
	// or anything else sent as JSON.
	Body   any
	Header http.Header
}

// Do sends r and checks the answer against the spec.
func (e *Env) Do(r Request) *Response {
	e.T.Helper()
	var body io.Reader
	ct := ""
	switch b := r.Body.(type) {
	case nil:
	case string:
		body, ct = strings.NewReader(b), "application/json"
	case []byte:
		body, ct = bytes.NewReader(b), "application/json"
	case url.Values:
		body, ct = strings.NewReader(b.Encode()), "application/x-www-form-urlencoded"
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			e.T.Fatalf("encode body: %v", err)
		}
		body, ct = bytes.NewReader(raw), "application/json"
	}
	req, err := http.NewRequest(r.Method, e.URL+r.Path, body)
	if err != nil {
		e.T.Fatalf("new request: %v", err)
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	for k, vs := range r.Header {
		req.Header[k] = vs
	}
	resp, err := e.HTTP.Do(req)
	if err != nil {
		e.T.Fatalf("%s %s: %v", r.Method, r.Path, err)
	}
	defer resp.Body.Close()
	out := &Response{Status: resp.StatusCode, Header: resp.Header}
	if out.Body, err = io.ReadAll(resp.Body); err != nil {
		e.T.Fatalf("read body: %v", err)
	}
	if err := CheckResponse(e.router, req, out); err != nil {
		e.T.Errorf("%s %s: response does not conform to the spec: %v\nstatus %d body %s", r.Method, r.Path, err, out.Status, out.Body)
	}
	return out
}

// Get, Post: shorthands.
func (e *Env) Get(path string) *Response {
	e.T.Helper()
	return e.Do(Request{Method: "GET", Path: path})
}
func (e *Env) Post(path string, body any) *Response {
	e.T.Helper()
	return e.Do(Request{Method: "POST", Path: path, Body: body})
}

// CheckResponse validates a response against the operation the request
// matched. Requests that match no operation (unknown routes, wrong
// methods, pre-flights) must still get a well-formed Matrix JSON answer.
func CheckResponse(router routers.Router, req *http.Request, r *Response) error {
	if r.Header.Get("Access-Control-Allow-Origin") != "*" {
		return fmt.Errorf("no CORS header")
	}
	route, params, err := router.FindRoute(req)
	if err != nil || req.Method == http.MethodOptions {
		return checkBareMatrix(r)
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{
			Request: req, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
		},
		Status: r.Status,
		Header: r.Header,
		Body:   io.NopCloser(bytes.NewReader(r.Body)),
		Options: &openapi3filter.Options{
			IncludeResponseStatus: true,
			MultiError:            true,
		},
	}
	if err := openapi3filter.ValidateResponse(req.Context(), in); err != nil {
		return err
	}
	if r.Status >= 400 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		return checkBareMatrix(r)
	}
	return nil
}

func checkBareMatrix(r *Response) error {
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		return fmt.Errorf("content type %q, want application/json", r.Header.Get("Content-Type"))
	}
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		return fmt.Errorf("body is not a JSON object: %v", err)
	}
	if r.Status >= 400 {
		code, ok1 := m["errcode"].(string)
		_, ok2 := m["error"].(string)
		if !ok1 || !ok2 || !strings.HasPrefix(code, "M_") {
			return fmt.Errorf("error body lacks errcode/error: %s", r.Body)
		}
	}
	return nil
}

// Schema-level access for tests that need the document.
func Doc(t testing.TB) *openapi3.T {
	doc, err := gen.GetSwagger()
	if err != nil {
		t.Fatal(err)
	}
	return doc
}
