package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuffer is a log destination shared by the server's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// startServer builds the server as serve does and serves its API with
// httptest; log receives everything at debug level, in JSON.
func startServer(t *testing.T, s *testSetup, log io.Writer) (*app, string) {
	t.Helper()
	cfg, err := LoadConfig(s.config, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Limits.MailBurst = 2
	logger, err := newLogger("debug", "json", log)
	if err != nil {
		t.Fatal(err)
	}
	a, err := build(context.Background(), cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	ts := httptest.NewServer(a.http)
	t.Cleanup(ts.Close)
	return a, ts.URL
}

func do(t *testing.T, method, u, body string, header ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

const (
	v2 = "/_matrix/identity/v2"
)

// The requests of a short session: status, a mail validation (with its
// secret and token), a refused v2 call with an access token, a 404 and
// requests beyond the mail limit.
func exercise(t *testing.T, s *testSetup, base string) (secrets []string) {
	t.Helper()
	const clientSecret, accessToken = "SuperSecretClientSecret42", "syt_AccessTokenValue_9876"
	const address = "mallory.secret@example.org"
	do(t, "GET", base+v2, "")
	do(t, "GET", base+"/_matrix/identity/nothing-here", "")
	resp := do(t, "POST", base+v1+"/validate/email/requestToken",
		`{"client_secret":"`+clientSecret+`","email":"`+address+`","send_attempt":1}`)
	if resp.StatusCode != 200 {
		t.Fatalf("requestToken: %d", resp.StatusCode)
	}
	msg := s.smtp.WaitFor(t, 1, 5*time.Second)[0]
	link := regexp.MustCompile(`https?://\S+submitToken\S+`).FindString(msg.Text)
	u, err := url.Parse(link)
	if err != nil || u.Query().Get("token") == "" {
		t.Fatalf("no link in the mail: %q", msg.Text)
	}
	token, sid := u.Query().Get("token"), u.Query().Get("sid")
	do(t, "GET", base+u.RequestURI(), "")
	do(t, "GET", base+v2+"/account", "", "Authorization", "Bearer "+accessToken)
	do(t, "GET", base+v2+"/hash_details?access_token="+accessToken, "")
	for i := 2; i <= 5; i++ { // the mail limit (burst 2) refuses some of these
		do(t, "POST", base+v1+"/validate/email/requestToken",
			`{"client_secret":"`+clientSecret+`x","email":"`+address+`","send_attempt":`+string(rune('0'+i))+`}`)
	}
	return []string{clientSecret, accessToken, address, "mallory", token, sid}
}

// The access log has one line per request, with operation, status,
// duration and request id, and never a token, a secret or an address;
// that holds at debug level too, where refused requests are logged.
func TestAccessLogCarriesNoSecrets(t *testing.T) {
	s := newSetup(t, "")
	var log lockedBuffer
	_, base := startServer(t, s, &log)
	secrets := exercise(t, s, base)

	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(log.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line is not JSON (log_format json): %q", l)
		}
		if m["msg"] == "request" {
			lines = append(lines, m)
		}
	}
	if len(lines) != 10 {
		t.Errorf("%d access-log lines for 10 requests:\n%s", len(lines), log.String())
	}
	ops := map[string]bool{}
	for _, l := range lines {
		for _, k := range []string{"request_id", "op", "status", "duration_ms"} {
			if _, ok := l[k]; !ok {
				t.Errorf("access-log line without %s: %v", k, l)
			}
		}
		if _, ok := l["duration_ms"].(float64); !ok {
			t.Errorf("duration_ms is not a number of milliseconds: %v", l["duration_ms"])
		}
		ops[l["op"].(string)] = true
	}
	for _, op := range []string{"EmailRequestToken", "EmailSubmitTokenGet", "unrouted"} {
		if !ops[op] {
			t.Errorf("no access-log line for %s: %v", op, ops)
		}
	}
	for _, secret := range secrets {
		if strings.Contains(strings.ToLower(log.String()), strings.ToLower(secret)) {
			t.Errorf("the log contains %q:\n%s", secret, log.String())
		}
	}
	// Client errors are not errors of the server.
	if strings.Contains(log.String(), `"level":"ERROR"`) {
		t.Errorf("client errors logged at ERROR:\n%s", log.String())
	}
}

func TestRequestIDIsKeptOrMade(t *testing.T) {
	s := newSetup(t, "")
	_, base := startServer(t, s, io.Discard)
	if id := do(t, "GET", base+v2, "", "X-Request-Id", "abc-123").Header.Get("X-Request-Id"); id != "abc-123" {
		t.Errorf("proxy's request id not kept: %q", id)
	}
	if id := do(t, "GET", base+v2, "", "X-Request-Id", "evil\"id x").Header.Get("X-Request-Id"); id == "" || strings.Contains(id, "evil") {
		t.Errorf("a forged request id was kept: %q", id)
	}
}

// A scrape after a few requests shows the series an operator graphs.
func TestMetricsScrape(t *testing.T) {
	s := newSetup(t, "")
	a, base := startServer(t, s, io.Discard)
	exercise(t, s, base)
	ms := httptest.NewServer(a.metrics.Handler())
	defer ms.Close()
	resp, err := http.Get(ms.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	text := string(body)
	for _, want := range []string{
		`sigil_http_requests_total{operation="EmailRequestToken",status="200"} 2`,
		`sigil_http_requests_total{operation="EmailRequestToken",status="429"} 3`,
		`sigil_http_requests_total{operation="unrouted",status="404"} 1`,
		`sigil_http_requests_total{operation="GetAccount",status="401"} 1`,
		`sigil_http_request_duration_seconds_count{operation="EmailSubmitTokenGet"} 1`,
		`sigil_http_request_duration_seconds_bucket{operation="EmailRequestToken",le="+Inf"} 5`,
		`sigil_mail_total{result="sent"} 2`,
		`sigil_mail_total{result="failed"} 0`,
		`sigil_sms_total{result="sent"} 0`,
		`sigil_rate_limited_total{operation="EmailRequestToken"} 3`,
		`sigil_onbind_queue_depth 0`,
		`sigil_onbind_oldest_age_seconds 0`,
		`sigil_onbind_failed 0`,
		`sigil_lookup_index_entries 0`,
		`go_sql_open_connections{db_name="read"}`,
		`go_sql_open_connections{db_name="write"}`,
		`go_goroutines`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if t.Failed() {
		t.Log(grepLines(text, "sigil_"))
	}
	if strings.Contains(text, "mallory") {
		t.Error("an address in the metrics")
	}
}

func grepLines(text, prefix string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

var _ = slog.Default

// One logger for every package: the store's own lines come out in the
// configured format and level, like the access log.
func TestOneLoggerForEveryPackage(t *testing.T) {
	for _, level := range []string{"info", "warn"} {
		t.Run(level, func(t *testing.T) {
			s := newSetup(t, "")
			cfg, _ := LoadConfig(s.config, nil)
			var log lockedBuffer
			logger, _ := newLogger(level, "json", &log)
			a, err := build(context.Background(), cfg, logger)
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			if err := a.store.WaitIndex(context.Background()); err != nil {
				t.Fatal(err)
			}
			ts := httptest.NewServer(a.http)
			defer ts.Close()
			do(t, "GET", ts.URL+v2, "")
			text := log.String()
			storeLine := strings.Contains(text, `"msg":"store: lookup index loaded"`)
			accessLine := strings.Contains(text, `"msg":"request"`)
			if level == "info" && (!storeLine || !accessLine) {
				t.Errorf("at info, store line %v, access line %v:\n%s", storeLine, accessLine, text)
			}
			if level == "warn" && text != "" {
				t.Errorf("at warn, lines were written:\n%s", text)
			}
		})
	}
}

// serve end to end: the API and the metrics on listeners of their own,
// and a clean stop when the context ends.
func TestServeWithMetricsListener(t *testing.T) {
	s := newSetup(t, "listen: 127.0.0.1:0\nmetrics_listen: 127.0.0.1:0\n")
	cfg, err := LoadConfig(s.config, nil)
	if err != nil {
		t.Fatal(err)
	}
	var log lockedBuffer
	logger, _ := newLogger("info", "text", &log)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, logger) }()
	addrOf := func(msg string) string {
		re := regexp.MustCompile(`msg="?` + msg + `"? addr=(\S+)`)
		for i := 0; i < 200; i++ {
			if m := re.FindStringSubmatch(log.String()); m != nil {
				return m[1]
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("no %q line:\n%s", msg, log.String())
		return ""
	}
	api, metricsAddr := addrOf("listening"), addrOf("metrics listener")
	if api == metricsAddr {
		t.Fatal("metrics share the API's listener")
	}
	do(t, "GET", "http://"+api+v2, "")
	if r := do(t, "GET", "http://"+api+"/metrics", ""); r.StatusCode != 404 {
		t.Errorf("/metrics on the API listener: %d", r.StatusCode)
	}
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `sigil_http_requests_total{operation="GetPingV2",status="200"} 1`) {
		t.Errorf("scrape:\n%s", grepLines(string(body), "sigil_http_requests_total"))
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not stop")
	}
}

// Every counter exists at 0 before anything happened, so a rate or an
// alert on it works from the start: rate-limit refusals of every
// operation, onbind attempts and deliveries by result.
func TestMetricsExistFromTheStart(t *testing.T) {
	s := newSetup(t, "")
	a, _ := startServer(t, s, io.Discard)
	ms := httptest.NewServer(a.metrics.Handler())
	defer ms.Close()
	resp, err := http.Get(ms.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	text := string(body)
	for _, want := range []string{
		`sigil_rate_limited_total{operation="EmailRequestToken"} 0`,
		`sigil_rate_limited_total{operation="MsisdnRequestToken"} 0`,
		`sigil_rate_limited_total{operation="RegisterAccount"} 0`,
		`sigil_onbind_attempts_total{result="delivered"} 0`,
		`sigil_onbind_attempts_total{result="retry"} 0`,
		`sigil_onbind_attempts_total{result="failed"} 0`,
		`sigil_onbind_attempts_total{result="interrupted"} 0`,
		`sigil_onbind_deliveries_total{first_attempt="yes",result="delivered"} 0`,
		`sigil_onbind_deliveries_total{first_attempt="no",result="delivered"} 0`,
		`sigil_onbind_deliveries_total{first_attempt="no",result="failed"} 0`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if t.Failed() {
		t.Log(grepLines(text, "sigil_"))
	}
}
