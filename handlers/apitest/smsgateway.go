package apitest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/sigil-matrix/sigil/handlers/sms"
)

// SMS is one text a gateway received.
type SMS struct{ To, Text string }

// SMSGateway is an in-process HTTP SMS provider that records what the
// server's real HTTPProvider sends it (a JSON API, like many providers').
type SMSGateway struct {
	URL    string
	mu     sync.Mutex
	msgs   []SMS
	status int
}

// StartSMSGateway serves until the test ends.
func StartSMSGateway(t testing.TB) *SMSGateway {
	g := &SMSGateway{status: http.StatusOK}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m SMS
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil || r.Header.Get("Authorization") != "Bearer gw-token" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		g.mu.Lock()
		status := g.status
		if status < 300 {
			g.msgs = append(g.msgs, m)
		}
		g.mu.Unlock()
		w.WriteHeader(status)
	}))
	t.Cleanup(ts.Close)
	g.URL = ts.URL
	return g
}

// Config is an HTTPProvider configuration pointing at the gateway.
func (g *SMSGateway) Config() sms.HTTPConfig {
	return sms.HTTPConfig{
		URL: g.URL + "/send", BearerToken: "gw-token", ContentType: "application/json",
		Body: `{"To":{{json .To}},"Text":{{json .Text}}}`,
	}
}

// SetStatus makes the gateway answer with status (e.g. 503).
func (g *SMSGateway) SetStatus(status int) { g.mu.Lock(); g.status = status; g.mu.Unlock() }

// Messages returns what arrived so far.
func (g *SMSGateway) Messages() []SMS {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]SMS(nil), g.msgs...)
}

// WaitFor waits until n texts arrived.
func (g *SMSGateway) WaitFor(t testing.TB, n int, timeout time.Duration) []SMS {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if m := g.Messages(); len(m) >= n {
			return m
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("waited %v for %d texts, got %d", timeout, n, len(g.Messages()))
	return nil
}
