package sms

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"text/template"
	"time"
)

// Defaults for HTTPConfig.
const (
	DefaultMethod      = http.MethodPost
	DefaultContentType = "application/x-www-form-urlencoded"
	DefaultTimeout     = 10 * time.Second
	// DefaultFormBody is the body used for form requests when HTTPConfig.Body
	// is empty; it has the shape of Twilio's Messages API.
	DefaultFormBody = `To={{urlquery .ToE164}}&From={{urlquery .From}}&Body={{urlquery .Text}}`
)

const (
	maxResponseBody = 64 << 10 // bytes of a provider response read at most
	maxErrorBody    = 200      // bytes of a provider response quoted in errors
)

// HTTPConfig configures an HTTPProvider: one HTTP request per message to a
// provider API such as Twilio's or Vonage's.
type HTTPConfig struct {
	// URL is the absolute http(s) endpoint, e.g.
	// https://api.twilio.com/2010-04-01/Accounts/ACxxx/Messages.json.
	// It must not carry credentials (use Username/Password).
	URL string
	// Method is the HTTP method; empty means POST.
	Method string
	// Username and Password, if Username is set, are sent as HTTP basic
	// auth (Twilio: account SID and auth token).
	Username, Password string
	// BearerToken, if set, is sent as "Authorization: Bearer <token>". It
	// cannot be combined with Username/Password.
	BearerToken string
	// Headers are extra request headers. Host, Content-Length,
	// Transfer-Encoding and Content-Type (see ContentType) cannot be set
	// here, nor Authorization when Username or BearerToken is set.
	Headers map[string]string
	// ContentType of the request body; empty means
	// "application/x-www-form-urlencoded". Use "application/json" for JSON
	// APIs (Body is then required).
	ContentType string
	// Body is a text/template for the request body, executed with
	//
	//	{{.To}}      the MSISDN, without '+'
	//	{{.ToE164}}  the MSISDN with a leading '+'
	//	{{.From}}    From below
	//	{{.Text}}    the message text
	//
	// Values must be escaped for the body's format: use the built-in
	// urlquery function for form bodies ({{urlquery .Text}}) and json for
	// JSON bodies ({{json .Text}} renders a quoted JSON string). Empty means
	// DefaultFormBody for form bodies; other content types need a Body.
	Body string
	// From is the sender ID or number handed to the template.
	From string
	// Timeout bounds each request, including reading the response; zero
	// means 10s. It applies whatever http.Client is used.
	Timeout time.Duration
}

// HTTPProvider is a Sender posting each message to an HTTP API as described
// by an HTTPConfig. It is safe for concurrent use.
type HTTPProvider struct {
	client      *http.Client
	url         string
	logURL      string // url without query, for errors
	method      string
	contentType string
	username    string
	password    string
	bearer      string
	headers     http.Header
	body        *template.Template
	from        string
	timeout     time.Duration
}

// templateData is what HTTPConfig.Body is executed with.
type templateData struct {
	To, ToE164, From, Text string
}

// NewHTTPProvider validates cfg and returns a provider sending through
// client. A nil client means a client with cfg.Timeout that does not follow
// redirects (a redirect is reported as an error). The server passes a client
// guarding against requests to internal addresses.
func NewHTTPProvider(cfg HTTPConfig, client *http.Client) (*HTTPProvider, error) {
	p := &HTTPProvider{
		method:      cfg.Method,
		contentType: cfg.ContentType,
		username:    cfg.Username,
		password:    cfg.Password,
		bearer:      cfg.BearerToken,
		from:        cfg.From,
		timeout:     cfg.Timeout,
		headers:     make(http.Header),
	}
	if p.method == "" {
		p.method = DefaultMethod
	}
	if p.contentType == "" {
		p.contentType = DefaultContentType
	}
	if p.timeout == 0 {
		p.timeout = DefaultTimeout
	}
	if p.timeout < 0 {
		return nil, fmt.Errorf("sms: negative timeout %v", cfg.Timeout)
	}

	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("sms: provider URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("sms: provider URL %q is not an absolute http(s) URL", cfg.URL)
	}
	if u.Host == "" {
		return nil, errors.New("sms: provider URL has no host")
	}
	if u.User != nil {
		return nil, errors.New("sms: provider URL must not contain credentials; use Username and Password")
	}
	u.Fragment, u.RawFragment = "", ""
	p.url = u.String()
	p.logURL = (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath}).String()
	// Let net/http check the method (and the URL once more).
	if _, err := http.NewRequest(p.method, p.url, nil); err != nil {
		return nil, fmt.Errorf("sms: %w", err)
	}

	mediaType, _, err := mime.ParseMediaType(p.contentType)
	if err != nil {
		return nil, fmt.Errorf("sms: content type %q: %w", p.contentType, err)
	}
	bodyText := cfg.Body
	if bodyText == "" {
		if mediaType != DefaultContentType {
			return nil, fmt.Errorf("sms: a Body template is required for content type %q", p.contentType)
		}
		bodyText = DefaultFormBody
	}

	if p.password != "" && p.username == "" {
		return nil, errors.New("sms: Password set without Username")
	}
	if p.username != "" && p.bearer != "" {
		return nil, errors.New("sms: set either Username/Password or BearerToken, not both")
	}
	for k, v := range cfg.Headers {
		if !validHeaderName(k) {
			return nil, fmt.Errorf("sms: invalid header name %q", k)
		}
		if strings.ContainsAny(v, "\r\n\x00") {
			return nil, fmt.Errorf("sms: invalid value for header %q", k)
		}
		ck := http.CanonicalHeaderKey(k)
		switch ck {
		case "Host", "Content-Length", "Transfer-Encoding":
			return nil, fmt.Errorf("sms: header %q cannot be configured", k)
		case "Content-Type":
			return nil, errors.New("sms: set the Content-Type header through ContentType")
		case "Authorization":
			if p.username != "" || p.bearer != "" {
				return nil, errors.New("sms: Authorization header conflicts with Username/BearerToken")
			}
		}
		p.headers.Set(ck, v)
	}

	p.body, err = template.New("body").
		Option("missingkey=error").
		Funcs(template.FuncMap{"json": jsonString}).
		Parse(bodyText)
	if err != nil {
		return nil, fmt.Errorf("sms: Body template: %w", err)
	}
	// Catch templates that parse but cannot execute (e.g. {{.Nope}}) now
	// rather than on the first message.
	sample := templateData{To: "15555550100", ToE164: "+15555550100", From: p.from, Text: "test"}
	if err := p.body.Execute(io.Discard, sample); err != nil {
		return nil, fmt.Errorf("sms: Body template: %w", err)
	}

	if client == nil {
		client = &http.Client{
			Timeout: p.timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		}
	}
	p.client = client
	return p, nil
}

// Send renders the request for m and sends it to the provider. To must be an
// MSISDN (1 to 15 digits, no '+'), else the error wraps ErrInvalidNumber.
// Responses other than 2xx yield an error with the status and the start of
// the response body.
func (p *HTTPProvider) Send(ctx context.Context, m Message) error {
	if err := checkTo(m.To); err != nil {
		return err
	}
	var body bytes.Buffer
	data := templateData{To: m.To, ToE164: "+" + m.To, From: p.from, Text: m.Text}
	if err := p.body.Execute(&body, data); err != nil {
		return fmt.Errorf("sms: rendering request body: %w", err)
	}

	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, p.method, p.url, &body)
	if err != nil {
		return fmt.Errorf("sms: %w", err)
	}
	for k, v := range p.headers {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", p.contentType)
	switch {
	case p.username != "":
		req.SetBasicAuth(p.username, p.password)
	case p.bearer != "":
		req.Header.Set("Authorization", "Bearer "+p.bearer)
	}

	resp, err := p.client.Do(req)
	if err != nil {
		// *url.Error would print the full URL, query (possibly holding an
		// API key) included.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("sms: %s %s: %w", p.method, p.logURL, err)
	}
	defer resp.Body.Close()
	// Reading (a bounded amount of) the body lets the connection be reused.
	respBody, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))
	if resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		return nil
	}
	if len(respBody) > maxErrorBody {
		respBody = respBody[:maxErrorBody]
	}
	return fmt.Errorf("sms: %s %s: provider returned %s: %q", p.method, p.logURL, resp.Status, respBody)
}

// jsonString is the template function "json": v as JSON (a quoted string for
// strings), without HTML escaping.
func jsonString(v any) (string, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return "", err
	}
	return strings.TrimSuffix(b.String(), "\n"), nil
}

// validHeaderName reports whether s is a non-empty RFC 9110 token.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
