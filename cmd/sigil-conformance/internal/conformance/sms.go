package conformance

import (
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// DefaultSMSTokenPattern finds the code in a text message.
const DefaultSMSTokenPattern = `(?i)code(?: is)?:?\s*([A-Za-z0-9]+)`

// SMSSink is an HTTP "SMS provider" on loopback: every request to it is a
// text message; the runner searches it (query, form fields and body) for
// the phone number and the code. Identity servers that send SMS through a
// configurable HTTP API (Sigil's sms.url, Twilio-like APIs) point there.
type SMSSink struct {
	URL string

	srv  *http.Server
	mu   sync.Mutex
	msgs []Mail
}

// StartSMSSink listens on addr ("127.0.0.1:0" for any free port).
func StartSMSSink(addr string) (*SMSSink, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("sms sink: listen: %w", err)
	}
	s := &SMSSink{URL: "http://" + ln.Addr().String() + "/sms"}
	s.srv = &http.Server{Handler: http.HandlerFunc(s.serveHTTP), ReadHeaderTimeout: 10 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// Close stops the sink.
func (s *SMSSink) Close() error { return s.srv.Close() }

// Messages returns the texts received so far; Text holds everything the
// request carried, decoded, and To is empty (the number is in Text).
func (s *SMSSink) Messages() []Mail {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Mail(nil), s.msgs...)
}

func (s *SMSSink) serveHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	parts := []string{r.URL.RawQuery, string(body)}
	for _, raw := range []string{r.URL.RawQuery, string(body)} {
		if form, err := url.ParseQuery(raw); err == nil {
			for k, vs := range form {
				parts = append(parts, k+"="+strings.Join(vs, ","))
			}
		}
	}
	s.mu.Lock()
	s.msgs = append(s.msgs, Mail{Text: strings.Join(parts, "\n")})
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"status":"queued"}`)
}
