package handlers_test

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sigil-matrix/sigil/handlers/apitest"
)

const v1 = "/_matrix/identity/api/v1"

var linkRE = regexp.MustCompile(`https?://\S+/validate/email/submitToken\?\S+`)

// requestToken asks for a validation mail and returns the sid and the link
// the mail carries.
func requestToken(t *testing.T, env *apitest.Env, email, secret string, attempt int) (sid string, link *url.URL) {
	t.Helper()
	before := len(env.Mail.Messages())
	r := env.Post(v1+"/validate/email/requestToken", map[string]any{"client_secret": secret, "email": email, "send_attempt": attempt})
	if r.Status != 200 || r.String("sid") == "" {
		t.Fatalf("requestToken: %d %s", r.Status, r.Body)
	}
	msgs := env.Mail.WaitFor(t, before+1, 5*time.Second)
	m := msgs[len(msgs)-1]
	raw := linkRE.FindString(m.Text)
	if raw == "" {
		t.Fatalf("no validation link in the mail:\n%s", m.Text)
	}
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return r.String("sid"), u
}

// validate runs the whole email flow up to a validated session.
func validate(t *testing.T, env *apitest.Env, email, secret string) string {
	t.Helper()
	sid, link := requestToken(t, env, email, secret, 1)
	r := env.Post(v1+"/validate/email/submitToken", map[string]any{
		"sid": sid, "client_secret": secret, "token": link.Query().Get("token"),
	})
	if r.Status != 200 || r.JSON()["success"] != true {
		t.Fatalf("submitToken: %d %s", r.Status, r.Body)
	}
	return sid
}

func TestEmailFlowByLink(t *testing.T) {
	env := apitest.New(t)
	sid, link := requestToken(t, env, "Alice@Example.ORG", "s3cret", 1)

	m := env.Mail.Messages()[0]
	if len(m.To) != 1 || m.To[0] != "alice@example.org" {
		t.Errorf("mail went to %v, want the case-folded address", m.To)
	}
	if !strings.Contains(m.HTML, link.Query().Get("token")) {
		t.Error("the HTML part lacks the token")
	}
	if link.Query().Get("sid") != sid || link.Query().Get("client_secret") != "s3cret" {
		t.Errorf("link %s does not carry the session", link)
	}

	r := env.Get(v1 + "/3pid/getValidated3pid?sid=" + sid + "&client_secret=s3cret")
	if r.Status != 400 || r.Errcode() != "M_SESSION_NOT_VALIDATED" {
		t.Fatalf("before validation: %d %s", r.Status, r.Body)
	}

	// The person clicks the link: a page for humans.
	r = env.Get(link.RequestURI())
	if r.Status != 200 || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/html") || !strings.Contains(string(r.Body), "verified") {
		t.Fatalf("link: %d %q %s", r.Status, r.Header.Get("Content-Type"), r.Body)
	}
	r = env.Get(v1 + "/3pid/getValidated3pid?sid=" + sid + "&client_secret=s3cret")
	if r.Status != 200 || r.String("medium") != "email" || r.String("address") != "alice@example.org" {
		t.Fatalf("getValidated3pid: %d %s", r.Status, r.Body)
	}
	if at, _ := r.JSON()["validated_at"].(float64); int64(at) < time.Now().Add(-time.Minute).UnixMilli() {
		t.Errorf("validated_at %v is not a recent ms timestamp", at)
	}
	// Clicking again is harmless.
	if r := env.Get(link.RequestURI()); r.Status != 200 {
		t.Errorf("second click: %d", r.Status)
	}
}

func TestSendAttempt(t *testing.T) {
	env := apitest.New(t)
	sid, _ := requestToken(t, env, "bob@example.org", "secret", 1)
	r := env.Post(v1+"/validate/email/requestToken", map[string]any{"client_secret": "secret", "email": "bob@example.org", "send_attempt": 1})
	if r.String("sid") != sid {
		t.Fatalf("retry got sid %q, want %q", r.String("sid"), sid)
	}
	time.Sleep(100 * time.Millisecond)
	if n := len(env.Mail.Messages()); n != 1 {
		t.Fatalf("a retry with the same send_attempt sent mail: %d messages", n)
	}
	sid2, _ := requestToken(t, env, "bob@example.org", "secret", 2)
	if sid2 != sid {
		t.Errorf("a new send_attempt got a new sid %q, want %q", sid2, sid)
	}
	if n := len(env.Mail.Messages()); n != 2 {
		t.Errorf("a higher send_attempt sent %d mails in all, want 2", n)
	}
	// Another client secret is another session.
	if sid3, _ := requestToken(t, env, "bob@example.org", "other", 1); sid3 == sid {
		t.Error("another client_secret reused the session")
	}
}

func TestSubmitTokenErrors(t *testing.T) {
	env := apitest.New(t)
	sid, link := requestToken(t, env, "carol@example.org", "secret", 1)
	token := link.Query().Get("token")
	tests := []struct {
		name, sid, secret, token, code string
	}{
		{"wrong token", sid, "secret", "nope", "M_TOKEN_INCORRECT"},
		{"unknown session", "nosuchsid", "secret", token, "M_INVALID_PARAM"},
		{"wrong client secret", sid, "other", token, "M_INVALID_PARAM"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := env.Post(v1+"/validate/email/submitToken", map[string]any{"sid": tt.sid, "client_secret": tt.secret, "token": tt.token})
			if r.Status != 400 || r.Errcode() != tt.code {
				t.Errorf("got %d %s, want 400 %s", r.Status, r.Body, tt.code)
			}
		})
	}
	// A failed link click is a page, not JSON.
	r := env.Get(v1 + "/validate/email/submitToken?sid=" + sid + "&client_secret=secret&token=nope")
	if r.Status != 400 || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/html") || !strings.Contains(string(r.Body), "M_TOKEN_INCORRECT") {
		t.Errorf("bad link: %d %q %s", r.Status, r.Header.Get("Content-Type"), r.Body)
	}
	env.Clock.Advance(25 * time.Hour)
	r = env.Post(v1+"/validate/email/submitToken", map[string]any{"sid": sid, "client_secret": "secret", "token": token})
	if r.Status != 400 || r.Errcode() != "M_SESSION_EXPIRED" {
		t.Errorf("expired token: %d %s", r.Status, r.Body)
	}
	r = env.Get(v1 + "/3pid/getValidated3pid?sid=" + sid + "&client_secret=secret")
	if r.Status != 400 || r.Errcode() != "M_SESSION_EXPIRED" {
		t.Errorf("expired session: %d %s", r.Status, r.Body)
	}
}

func TestValidatedSessionExpires(t *testing.T) {
	env := apitest.New(t)
	sid := validate(t, env, "dave@example.org", "secret")
	tests := []struct {
		name, query string
		status      int
		code        string
	}{
		{"unknown sid", "sid=zzz&client_secret=secret", 404, "M_NO_VALID_SESSION"},
		{"wrong secret", "sid=" + sid + "&client_secret=wrong", 404, "M_NO_VALID_SESSION"},
		{"malformed secret", "sid=" + sid + "&client_secret=bad%20secret", 400, "M_INVALID_PARAM"},
		{"missing secret", "sid=" + sid, 400, "M_MISSING_PARAMS"},
	}
	for _, tt := range tests {
		r := env.Get(v1 + "/3pid/getValidated3pid?" + tt.query)
		if r.Status != tt.status || r.Errcode() != tt.code {
			t.Errorf("%s: got %d %s, want %d %s", tt.name, r.Status, r.Body, tt.status, tt.code)
		}
	}
	env.Clock.Advance(23 * time.Hour)
	if r := env.Get(v1 + "/3pid/getValidated3pid?sid=" + sid + "&client_secret=secret"); r.Status != 200 {
		t.Fatalf("within the session lifetime: %d %s", r.Status, r.Body)
	}
	env.Clock.Advance(2 * time.Hour)
	r := env.Post(v1+"/3pid/bind", map[string]any{"sid": sid, "client_secret": "secret", "mxid": "@dave:example.org"})
	if r.Status != 400 || r.Errcode() != "M_SESSION_EXPIRED" {
		t.Errorf("bind after the session lifetime: %d %s", r.Status, r.Body)
	}
}

func TestNextLink(t *testing.T) {
	env := apitest.New(t, func(s *apitest.Setup) { s.Config.NextLinkHosts = []string{"app.example.org"} })
	r := env.Post(v1+"/validate/email/requestToken", map[string]any{
		"client_secret": "secret", "email": "erin@example.org", "send_attempt": 1,
		"next_link": "https://app.example.org/done?x=1",
	})
	if r.Status != 200 {
		t.Fatalf("requestToken: %d %s", r.Status, r.Body)
	}
	msgs := env.Mail.WaitFor(t, 1, 5*time.Second)
	link, _ := url.Parse(linkRE.FindString(msgs[0].Text))
	if strings.Contains(link.RawQuery, "app.example.org") {
		t.Error("next_link travels in the emailed link; it must only come from the stored session")
	}
	r = env.Get(link.RequestURI())
	if r.Status != http.StatusFound || r.Header.Get("Location") != "https://app.example.org/done?x=1" {
		t.Fatalf("redirect: %d Location=%q", r.Status, r.Header.Get("Location"))
	}
	for _, bad := range []string{"javascript:alert(1)", "file:///etc/passwd", "//evil.example/x", "https://evil.example/", "not a url"} {
		r := env.Post(v1+"/validate/email/requestToken", map[string]any{
			"client_secret": "secret2", "email": "erin@example.org", "send_attempt": 1, "next_link": bad,
		})
		if r.Status != 400 || r.Errcode() != "M_INVALID_PARAM" {
			t.Errorf("next_link %q: %d %s", bad, r.Status, r.Body)
		}
	}
}

func TestRequestTokenRejectsBadAddresses(t *testing.T) {
	env := apitest.New(t)
	for _, email := range []string{
		"alice@example.org\r\nBcc: eve@example.org",
		"Alice <alice@example.org>",
		"alice@example.org, eve@example.org",
		"not-an-address",
		"",
	} {
		r := env.Post(v1+"/validate/email/requestToken", map[string]any{"client_secret": "s", "email": email, "send_attempt": 1})
		if r.Status != 400 || r.Errcode() != "M_INVALID_EMAIL" {
			t.Errorf("email %q: %d %s", email, r.Status, r.Body)
		}
	}
	r := env.Post(v1+"/validate/email/requestToken", map[string]any{"client_secret": "not ok!", "email": "a@example.org", "send_attempt": 1})
	if r.Status != 400 || r.Errcode() != "M_INVALID_PARAM" {
		t.Errorf("bad client_secret: %d %s", r.Status, r.Body)
	}
	time.Sleep(50 * time.Millisecond)
	if n := len(env.Mail.Messages()); n != 0 {
		t.Errorf("%d mails sent for refused requests", n)
	}
}

func TestMailRateLimit(t *testing.T) {
	env := apitest.New(t, func(s *apitest.Setup) { s.Config.MailEvery, s.Config.MailBurst = time.Hour, 2 })
	for i := 1; i <= 2; i++ {
		requestToken(t, env, "frank@example.org", "secret", i)
	}
	r := env.Post(v1+"/validate/email/requestToken", map[string]any{"client_secret": "secret", "email": "frank@example.org", "send_attempt": 3})
	if r.Status != 429 || r.Errcode() != "M_LIMIT_EXCEEDED" {
		t.Fatalf("third mail within the hour: %d %s", r.Status, r.Body)
	}
	if ms, _ := r.JSON()["retry_after_ms"].(float64); ms <= 0 {
		t.Errorf("retry_after_ms = %v", r.JSON()["retry_after_ms"])
	}
	// Another address is not affected.
	requestToken(t, env, "grace@example.org", "secret", 1)
}

func TestDeprecatedFormBodies(t *testing.T) {
	env := apitest.New(t)
	r := env.Do(apitest.Request{Method: "POST", Path: v1 + "/validate/email/requestToken", Body: url.Values{
		"client_secret": {"formsecret"}, "email": {"heidi@example.org"}, "send_attempt": {"1"},
	}})
	if r.Status != 200 || r.String("sid") == "" {
		t.Fatalf("form requestToken: %d %s", r.Status, r.Body)
	}
	r = env.Do(apitest.Request{Method: "POST", Path: v1 + "/validate/email/requestToken", Body: url.Values{
		"client_secret": {"formsecret"}, "email": {"heidi@example.org"}, "send_attempt": {"one"},
	}})
	if r.Status != 400 || r.Errcode() != "M_INVALID_PARAM" || !strings.Contains(r.String("error"), "send_attempt") {
		t.Errorf("form with a non-integer send_attempt: %d %s", r.Status, r.Body)
	}
	r = env.Do(apitest.Request{Method: "POST", Path: v1 + "/3pid/bind", Body: url.Values{"sid": {"x"}}})
	if r.Status != 400 || r.Errcode() != "M_MISSING_PARAMS" || !strings.Contains(r.String("error"), "client_secret, mxid") {
		t.Errorf("form missing fields: %d %s", r.Status, r.Body)
	}
}

func TestMalformedRequests(t *testing.T) {
	env := apitest.New(t, func(s *apitest.Setup) { s.HTTP.MaxBodyBytes = 4096 })
	huge := `{"client_secret":"s","email":"a@example.org","pad":"` + strings.Repeat("x", 5000) + `"}`
	tests := []struct {
		name   string
		req    apitest.Request
		status int
		code   string
		want   string // in the error message
	}{
		{"not JSON", apitest.Request{Method: "POST", Path: v1 + "/3pid/bind", Body: "{nope"}, 400, "M_NOT_JSON", ""},
		{"empty body", apitest.Request{Method: "POST", Path: v1 + "/3pid/bind", Body: ""}, 400, "M_NOT_JSON", ""},
		{"array body", apitest.Request{Method: "POST", Path: v1 + "/3pid/bind", Body: "[1,2]"}, 400, "M_BAD_JSON", ""},
		// Regressions: sonic.Valid, the first syntax check, does not look
		// inside strings.
		{"bad escape", apitest.Request{Method: "POST", Path: v1 + "/bulk_lookup", Body: `{"threepids":[["email","a\x"]]}`}, 400, "M_NOT_JSON", ""},
		{"control character", apitest.Request{Method: "POST", Path: v1 + "/bulk_lookup", Body: "{\"threepids\":[[\"email\",\"a\x01b\"]]}"}, 400, "M_NOT_JSON", ""},
		{"control character, long string", apitest.Request{Method: "POST", Path: v1 + "/bulk_lookup", Body: "{\"threepids\":[[\"email\",\"abcdefghijklmnopqrstuvwxyz\tb\"]]}"}, 400, "M_NOT_JSON", ""},
		{"short unicode escape", apitest.Request{Method: "POST", Path: v1 + "/3pid/bind", Body: `{"sid":"\u12","client_secret":"s","mxid":"@a:b"}`}, 400, "M_NOT_JSON", ""},
		{"all fields missing", apitest.Request{Method: "POST", Path: v1 + "/3pid/bind", Body: "{}"}, 400, "M_MISSING_PARAMS", "client_secret, mxid, sid"},
		{"wrong type", apitest.Request{Method: "POST", Path: v1 + "/3pid/bind", Body: `{"sid":1,"client_secret":"s","mxid":"@a:b"}`}, 400, "M_INVALID_PARAM", "sid"},
		{"missing query", apitest.Request{Method: "GET", Path: v1 + "/3pid/getValidated3pid"}, 400, "M_MISSING_PARAMS", "client_secret, sid"},
		{"unknown route", apitest.Request{Method: "GET", Path: v1 + "/nope"}, 404, "M_UNRECOGNIZED", ""},
		{"unknown prefix", apitest.Request{Method: "GET", Path: "/"}, 404, "M_UNRECOGNIZED", ""},
		{"wrong method", apitest.Request{Method: "GET", Path: v1 + "/3pid/bind"}, 405, "M_UNRECOGNIZED", ""},
		{"wrong method with body", apitest.Request{Method: "PUT", Path: v1 + "/store-invite", Body: "{}"}, 405, "M_UNRECOGNIZED", ""},
		{"huge body", apitest.Request{Method: "POST", Path: v1 + "/validate/email/requestToken", Body: huge}, 413, "M_TOO_LARGE", ""},
		{"no content type", apitest.Request{Method: "POST", Path: v1 + "/3pid/bind", Body: "{}", Header: http.Header{"Content-Type": {""}}}, 400, "M_MISSING_PARAMS", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := env.Do(tt.req)
			if r.Status != tt.status || r.Errcode() != tt.code || !strings.Contains(r.String("error"), tt.want) {
				t.Errorf("got %d %s, want %d %s containing %q", r.Status, r.Body, tt.status, tt.code, tt.want)
			}
		})
	}
}

func TestPreflightAndCORS(t *testing.T) {
	env := apitest.New(t)
	for _, path := range []string{v1 + "/3pid/bind", "/unknown"} {
		r := env.Do(apitest.Request{Method: "OPTIONS", Path: path, Header: http.Header{
			"Origin": {"https://app.element.io"}, "Access-Control-Request-Method": {"POST"},
		}})
		if r.Status != 200 || !strings.Contains(r.Header.Get("Access-Control-Allow-Headers"), "Authorization") {
			t.Errorf("pre-flight %s: %d %v", path, r.Status, r.Header)
		}
	}
}
