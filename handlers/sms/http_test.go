package sms_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sigil-matrix/sigil/handlers/sms"
)

// captured is what the test server saw of one request.
type captured struct {
	method, path, rawQuery string
	header                 http.Header
	body                   string
}

// recorder is a loopback test server recording requests and answering with
// status and body.
func recorder(t *testing.T, status int, body string) (*httptest.Server, <-chan captured) {
	t.Helper()
	ch := make(chan captured, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("reading request body: %v", err)
		}
		ch <- captured{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Clone(), string(b)}
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv, ch
}

// hanging is a test server that never answers until the request is
// abandoned (or the test ends). It counts requests.
func hanging(t *testing.T) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var n atomic.Int32
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // runs before srv.Close
	return srv, &n
}

const trickyText = "He said \"hi\" & left.\nCode: 123 456\t<b>+=%;ü€ 🙂\r\nbye\\"

func TestHTTPProviderSend(t *testing.T) {
	tests := []struct {
		name   string
		cfg    sms.HTTPConfig // URL is prefixed with the server's
		msg    sms.Message
		status int
		check  func(t *testing.T, c captured)
	}{
		{
			name: "Twilio form with basic auth",
			cfg: sms.HTTPConfig{
				URL:      "/2010-04-01/Accounts/AC123/Messages.json",
				Username: "AC123", Password: "s3cret:token",
				From: "+15005550006",
			},
			msg:    sms.Message{To: "447400123456", Text: trickyText},
			status: http.StatusCreated,
			check: func(t *testing.T, c captured) {
				if c.method != http.MethodPost || c.path != "/2010-04-01/Accounts/AC123/Messages.json" {
					t.Errorf("request %s %s", c.method, c.path)
				}
				if got := c.header.Get("Content-Type"); got != "application/x-www-form-urlencoded" {
					t.Errorf("Content-Type = %q", got)
				}
				r := &http.Request{Header: c.header}
				if u, p, ok := r.BasicAuth(); !ok || u != "AC123" || p != "s3cret:token" {
					t.Errorf("basic auth = %q, %q, %v", u, p, ok)
				}
				form, err := url.ParseQuery(c.body)
				if err != nil {
					t.Fatalf("body %q: %v", c.body, err)
				}
				want := url.Values{"To": {"+447400123456"}, "From": {"+15005550006"}, "Body": {trickyText}}
				if len(form) != len(want) {
					t.Errorf("form = %v, want %v", form, want)
				}
				for k, v := range want {
					if form.Get(k) != v[0] || len(form[k]) != 1 {
						t.Errorf("form[%s] = %q, want %q", k, form[k], v)
					}
				}
			},
		},
		{
			name: "JSON body with bearer token and extra headers",
			cfg: sms.HTTPConfig{
				URL:         "/v1/messages",
				BearerToken: "tok-123",
				Headers:     map[string]string{"X-Api-Key": "key 1", "x-lower": "v2"},
				ContentType: "application/json",
				Body:        `{"to":{{json .ToE164}},"text":{{json .Text}}}`,
			},
			msg:    sms.Message{To: "12015550123", Text: trickyText},
			status: http.StatusOK,
			check: func(t *testing.T, c captured) {
				if c.method != http.MethodPost || c.path != "/v1/messages" {
					t.Errorf("request %s %s", c.method, c.path)
				}
				for k, v := range map[string]string{
					"Authorization": "Bearer tok-123",
					"Content-Type":  "application/json",
					"X-Api-Key":     "key 1",
					"X-Lower":       "v2",
				} {
					if got := c.header.Get(k); got != v {
						t.Errorf("%s = %q, want %q", k, got, v)
					}
				}
				var got map[string]string
				if err := json.Unmarshal([]byte(c.body), &got); err != nil {
					t.Fatalf("body %q: %v", c.body, err)
				}
				if len(got) != 2 || got["to"] != "+12015550123" || got["text"] != trickyText {
					t.Errorf("body decoded to %q", got)
				}
			},
		},
		{
			name: "method, query and custom form body",
			cfg: sms.HTTPConfig{
				URL:    "/sms/json?type=unicode",
				Method: http.MethodPut,
				Body:   `api_key=k&to={{.To}}&from={{urlquery .From}}&text={{urlquery .Text}}`,
				From:   "Sigil ID",
			},
			msg:    sms.Message{To: "447400123456", Text: "a&b=c"},
			status: http.StatusNoContent,
			check: func(t *testing.T, c captured) {
				if c.method != http.MethodPut || c.path != "/sms/json" || c.rawQuery != "type=unicode" {
					t.Errorf("request %s %s?%s", c.method, c.path, c.rawQuery)
				}
				if c.header.Get("Authorization") != "" {
					t.Errorf("unexpected Authorization %q", c.header.Get("Authorization"))
				}
				form, err := url.ParseQuery(c.body)
				if err != nil {
					t.Fatalf("body %q: %v", c.body, err)
				}
				if form.Get("to") != "447400123456" || form.Get("from") != "Sigil ID" || form.Get("text") != "a&b=c" || form.Get("api_key") != "k" {
					t.Errorf("form = %v", form)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, ch := recorder(t, tt.status, `{"sid":"SM1"}`)
			cfg := tt.cfg
			cfg.URL = srv.URL + cfg.URL
			p, err := sms.NewHTTPProvider(cfg, srv.Client())
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Send(context.Background(), tt.msg); err != nil {
				t.Fatalf("Send: %v", err)
			}
			tt.check(t, <-ch)
		})
	}
}

func TestHTTPProviderStatusErrors(t *testing.T) {
	long := strings.Repeat("x", 200) + "TAIL-NOT-QUOTED"
	tests := []struct {
		name       string
		status     int
		body       string
		wantInErr  []string
		notInError []string
	}{
		{"bad request", http.StatusBadRequest, `{"code":21211,"message":"Invalid 'To' Phone Number"}`,
			[]string{"400 Bad Request", "Invalid 'To' Phone Number"}, nil},
		{"unauthorized", http.StatusUnauthorized, "", []string{"401"}, []string{"api_secret", "hunter2"}},
		{"server error, long body", http.StatusInternalServerError, long,
			[]string{"500", strings.Repeat("x", 200)}, []string{"TAIL"}},
		{"redirect not followed", http.StatusFound, "", []string{"302"}, nil},
		{"not modified", http.StatusNotModified, "", []string{"304"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, ch := recorder(t, tt.status, tt.body)
			// nil client: the default one must not follow redirects.
			p, err := sms.NewHTTPProvider(sms.HTTPConfig{URL: srv.URL + "/send?api_secret=hunter2"}, nil)
			if err != nil {
				t.Fatal(err)
			}
			err = p.Send(context.Background(), sms.Message{To: "447400123456", Text: "hi"})
			<-ch
			if err == nil {
				t.Fatal("Send succeeded")
			}
			for _, s := range tt.wantInErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
			for _, s := range tt.notInError {
				if strings.Contains(err.Error(), s) {
					t.Errorf("error %q mentions %q", err, s)
				}
			}
		})
	}
}

func TestHTTPProviderConnectionErrorHidesQuery(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	u := srv.URL
	srv.Close() // nothing listens any more
	p, err := sms.NewHTTPProvider(sms.HTTPConfig{URL: u + "/send?api_secret=hunter2", Timeout: 5 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = p.Send(context.Background(), sms.Message{To: "447400123456", Text: "hi"})
	if err == nil {
		t.Fatal("Send to a closed server succeeded")
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error %q leaks the URL query", err)
	}
}

func TestHTTPProviderTimeout(t *testing.T) {
	const short = 100 * time.Millisecond
	tests := []struct {
		name    string
		timeout time.Duration
		client  *http.Client
		ctx     func() (context.Context, context.CancelFunc)
	}{
		{"Timeout, default client", short, nil, nil},
		{"Timeout, caller's client without timeout", short, &http.Client{}, nil},
		{"caller's context deadline", 0, &http.Client{}, func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), short)
		}},
		{"caller's context cancelled", 0, nil, func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(short, cancel)
			return ctx, cancel
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, n := hanging(t)
			p, err := sms.NewHTTPProvider(sms.HTTPConfig{URL: srv.URL, Timeout: tt.timeout}, tt.client)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			if tt.ctx != nil {
				var cancel context.CancelFunc
				ctx, cancel = tt.ctx()
				defer cancel()
			}
			start := time.Now()
			err = p.Send(ctx, sms.Message{To: "447400123456", Text: "hi"})
			elapsed := time.Since(start)
			if err == nil {
				t.Fatal("Send to a hanging server succeeded")
			}
			if elapsed > 5*time.Second {
				t.Errorf("Send took %v", elapsed)
			}
			if n.Load() != 1 {
				t.Errorf("server saw %d requests", n.Load())
			}
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				var ne interface{ Timeout() bool }
				if !errors.As(err, &ne) || !ne.Timeout() {
					t.Errorf("error %v is neither a timeout nor a cancellation", err)
				}
			}
		})
	}
}

// A provider streaming an endless response must not keep Send waiting: only
// a bounded prefix of the body is read.
func TestHTTPProviderBoundedResponseRead(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		chunk := strings.Repeat("y", 32<<10)
		for range 4 { // 128 KiB, more than is read
			if _, err := io.WriteString(w, chunk); err != nil {
				return
			}
		}
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })

	p, err := sms.NewHTTPProvider(sms.HTTPConfig{URL: srv.URL, Timeout: 5 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := p.Send(context.Background(), sms.Message{To: "447400123456", Text: "hi"}); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("Send took %v: it read the whole response", d)
	}
}

func TestHTTPProviderRejectsBadRecipient(t *testing.T) {
	srv, n := hanging(t)
	p, err := sms.NewHTTPProvider(sms.HTTPConfig{URL: srv.URL}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, to := range badRecipients {
		err := p.Send(context.Background(), sms.Message{To: to, Text: "x"})
		if !errors.Is(err, sms.ErrInvalidNumber) {
			t.Errorf("Send(To=%q) = %v, want ErrInvalidNumber", to, err)
		}
	}
	if n.Load() != 0 {
		t.Errorf("provider received %d requests for invalid recipients", n.Load())
	}
}

func TestNewHTTPProviderInvalidConfig(t *testing.T) {
	const u = "https://sms.example.org/send"
	tests := []struct {
		name string
		cfg  sms.HTTPConfig
	}{
		{"empty URL", sms.HTTPConfig{}},
		{"relative URL", sms.HTTPConfig{URL: "/send"}},
		{"no scheme", sms.HTTPConfig{URL: "sms.example.org/send"}},
		{"ftp scheme", sms.HTTPConfig{URL: "ftp://sms.example.org/send"}},
		{"no host", sms.HTTPConfig{URL: "https:///send"}},
		{"unparsable URL", sms.HTTPConfig{URL: "https://sms.example.org/%zz"}},
		{"credentials in URL", sms.HTTPConfig{URL: "https://user:pw@sms.example.org/send"}},
		{"bad method", sms.HTTPConfig{URL: u, Method: "PO ST"}},
		{"template syntax error", sms.HTTPConfig{URL: u, Body: "To={{.To"}},
		{"template unknown field", sms.HTTPConfig{URL: u, Body: "To={{.Nope}}"}},
		{"template unknown function", sms.HTTPConfig{URL: u, Body: "To={{xml .To}}"}},
		{"JSON without Body", sms.HTTPConfig{URL: u, ContentType: "application/json"}},
		{"bad content type", sms.HTTPConfig{URL: u, ContentType: "not a type/"}},
		{"negative timeout", sms.HTTPConfig{URL: u, Timeout: -time.Second}},
		{"password without username", sms.HTTPConfig{URL: u, Password: "pw"}},
		{"basic and bearer", sms.HTTPConfig{URL: u, Username: "u", BearerToken: "t"}},
		{"bad header name", sms.HTTPConfig{URL: u, Headers: map[string]string{"X Bad": "v"}}},
		{"header value with newline", sms.HTTPConfig{URL: u, Headers: map[string]string{"X-A": "v\r\nX-B: w"}}},
		{"Content-Type header", sms.HTTPConfig{URL: u, Headers: map[string]string{"content-type": "text/plain"}}},
		{"Host header", sms.HTTPConfig{URL: u, Headers: map[string]string{"Host": "evil.example"}}},
		{"Authorization header with bearer", sms.HTTPConfig{URL: u, BearerToken: "t", Headers: map[string]string{"Authorization": "x"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if p, err := sms.NewHTTPProvider(tt.cfg, nil); err == nil {
				t.Errorf("NewHTTPProvider(%+v) = %v, want an error", tt.cfg, p)
			}
		})
	}
}

func TestNewHTTPProviderValidConfig(t *testing.T) {
	for _, cfg := range []sms.HTTPConfig{
		{URL: "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages.json", Username: "AC1", Password: "t"},
		{URL: "http://127.0.0.1:8080/send", Method: "PUT"},
		{URL: "HTTPS://rest.nexmo.com/sms/json", Body: "to={{.To}}&text={{urlquery .Text}}"},
		{URL: "https://example.org/", ContentType: "application/json; charset=utf-8", Body: `{"t":{{json .Text}}}`},
		{URL: "https://example.org/", Username: "only-user", Headers: map[string]string{"X-Api-Key": "k"}},
		{URL: "https://example.org/", Headers: map[string]string{"Authorization": "App abc"}},
	} {
		if _, err := sms.NewHTTPProvider(cfg, nil); err != nil {
			t.Errorf("NewHTTPProvider(%+v): %v", cfg, err)
		}
	}
}
