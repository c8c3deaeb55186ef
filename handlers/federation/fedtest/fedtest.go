// Package fedtest runs a fake Matrix homeserver over real HTTPS on
// 127.0.0.1 for tests of code that talks federation to homeservers: it
// serves its signing keys, answers OpenID userinfo for registered tokens,
// records onbind callbacks, and signs X-Matrix requests the way Synapse
// signs identity-server unbinds.
package fedtest

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sigil-matrix/sigil/handlers/signing"
)

// KeyID is the ID of every fake homeserver's federation signing key.
const KeyID = "ed25519:fed1"

// Paths served by the fake homeserver.
const (
	KeysPath     = "/_matrix/key/v2/server"
	UserInfoPath = "/_matrix/federation/v1/openid/userinfo"
	OnBindPath   = "/_matrix/federation/v1/3pid/onbind"
)

// Homeserver is a running fake homeserver.
type Homeserver struct {
	// Name is the server name, "127.0.0.1:PORT": an IP literal with an
	// explicit port, so discovery uses it directly.
	Name string
	// URL is "https://127.0.0.1:PORT".
	URL string
	// Key is the federation signing key, ID KeyID.
	Key signing.Key

	cert *x509.Certificate

	mu           sync.Mutex
	srv          *httptest.Server // nil while stopped
	closed       bool
	tokens       map[string]string // OpenID token → sub
	onbinds      []json.RawMessage
	onbindStatus int
	notify       chan struct{} // closed and replaced on every recorded onbind
	requests     map[string]int
	overrides    map[string]http.Handler
}

// Start starts a fake homeserver; it is closed on t.Cleanup.
func Start(t testing.TB) *Homeserver {
	t.Helper()
	key, err := signing.GenerateKey(KeyID)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &Homeserver{
		Name:      ln.Addr().String(),
		Key:       key,
		tokens:    map[string]string{},
		notify:    make(chan struct{}),
		requests:  map[string]int{},
		overrides: map[string]http.Handler{},
	}
	h.URL = "https://" + h.Name
	h.serveOn(ln)
	h.cert = h.srv.Certificate()
	t.Cleanup(h.Close)
	return h
}

func (h *Homeserver) serveOn(ln net.Listener) {
	s := httptest.NewUnstartedServer(http.HandlerFunc(h.serveHTTP))
	s.Listener.Close()
	s.Listener = ln
	s.StartTLS()
	h.srv = s
}

// CertificatePEM is the homeserver's certificate in PEM, as an operator
// would put it in federation.ca_file.
func (h *Homeserver) CertificatePEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: h.cert.Raw})
}

// ClientTLS returns a TLS configuration trusting the homeserver's
// certificate (valid for 127.0.0.1, ::1, example.com and *.example.com).
// The certificate survives Stop/Restart.
func (h *Homeserver) ClientTLS() *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(h.cert)
	return &tls.Config{RootCAs: pool}
}

// Stop shuts the server down; its port then refuses connections. Restart
// brings it back on the same address with the same key and state.
func (h *Homeserver) Stop() {
	h.mu.Lock()
	s := h.srv
	h.srv = nil
	h.mu.Unlock()
	if s != nil {
		s.CloseClientConnections()
		s.Close()
	}
}

// Restart listens on the same address again after Stop. It panics if the
// port cannot be re-bound within a few seconds.
func (h *Homeserver) Restart() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		panic("fedtest: Restart after Close")
	}
	if h.srv != nil {
		return
	}
	var err error
	deadline := time.Now().Add(5 * time.Second)
	for {
		var ln net.Listener
		if ln, err = net.Listen("tcp", h.Name); err == nil {
			h.serveOn(ln)
			return
		}
		if time.Now().After(deadline) {
			panic(fmt.Sprintf("fedtest: re-listen on %s: %v", h.Name, err))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Close stops the server for good. It is idempotent and runs on t.Cleanup.
func (h *Homeserver) Close() {
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
	h.Stop()
}

// AddOpenIDToken makes userinfo answer {"sub":"@localpart:<Name>"} for token.
func (h *Homeserver) AddOpenIDToken(token, localpart string) {
	h.AddOpenIDTokenSub(token, "@"+localpart+":"+h.Name)
}

// AddOpenIDTokenSub makes userinfo answer {"sub": sub} for token, whatever
// server sub names (for testing that foreign user IDs are refused).
func (h *Homeserver) AddOpenIDTokenSub(token, sub string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.tokens[token] = sub
}

// SetOnBindStatus makes onbind answer code (e.g. 503 to simulate downtime)
// without recording the body; 0 or 200 restores normal behaviour.
func (h *Homeserver) SetOnBindStatus(code int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.onbindStatus = code
}

// OnBinds returns the onbind bodies accepted so far, oldest first.
func (h *Homeserver) OnBinds() []json.RawMessage {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]json.RawMessage(nil), h.onbinds...)
}

// WaitOnBinds waits until at least n onbinds were accepted and returns them;
// it fails t after timeout.
func (h *Homeserver) WaitOnBinds(t testing.TB, n int, timeout time.Duration) []json.RawMessage {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		h.mu.Lock()
		got, ch := len(h.onbinds), h.notify
		h.mu.Unlock()
		if got >= n {
			return h.OnBinds()
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("fedtest: %d onbind(s) after %v, want %d", got, timeout, n)
			return nil
		}
	}
}

// Requests returns how many requests for path (without query) were served.
func (h *Homeserver) Requests(path string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.requests[path]
}

// Handle serves path (exact match, any method) with handler instead of the
// built-in behaviour; a nil handler restores it. Use it to add endpoints or
// to simulate misbehaving servers.
func (h *Homeserver) Handle(path string, handler http.Handler) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if handler == nil {
		delete(h.overrides, path)
	} else {
		h.overrides[path] = handler
	}
}

// KeyResponse builds a /_matrix/key/v2/server answer publishing h.Key with
// the given server_name and valid_until_ts, signed by h.Key as serverName.
func (h *Homeserver) KeyResponse(serverName string, validUntil time.Time) map[string]any {
	obj := map[string]any{
		"server_name":     serverName,
		"valid_until_ts":  validUntil.UnixMilli(),
		"verify_keys":     map[string]any{h.Key.ID: map[string]any{"key": h.Key.PublicBase64()}},
		"old_verify_keys": map[string]any{},
	}
	signed, err := signing.SignJSON(obj, serverName, h.Key)
	if err != nil {
		panic(err)
	}
	return signed
}

// SignRequest returns an Authorization header value signing a request as
// Synapse signs identity-server requests: over {"method","uri","origin",
// "destination_is","content"} (content omitted when nil), with the header
// `X-Matrix origin="<Name>",key="ed25519:fed1",sig="...",destination="<destination>"`.
func (h *Homeserver) SignRequest(method, uri, destination string, content any) string {
	obj := map[string]any{
		"method":         method,
		"uri":            uri,
		"origin":         h.Name,
		"destination_is": destination,
	}
	if content != nil {
		switch c := content.(type) {
		case []byte:
			obj["content"] = json.RawMessage(c)
		case string:
			obj["content"] = json.RawMessage(c)
		default:
			obj["content"] = content
		}
	}
	sig, err := signing.Signature(obj, h.Key)
	if err != nil {
		panic(err)
	}
	return fmt.Sprintf(`X-Matrix origin="%s",key="%s",sig="%s",destination="%s"`, h.Name, h.Key.ID, sig, destination)
}

func (h *Homeserver) serveHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	h.requests[r.URL.Path]++
	override := h.overrides[r.URL.Path]
	h.mu.Unlock()
	if override != nil {
		override.ServeHTTP(w, r)
		return
	}
	switch strings.TrimSuffix(r.URL.Path, "/") {
	case KeysPath:
		if r.Method != http.MethodGet {
			writeError(w, http.StatusMethodNotAllowed, "M_UNRECOGNIZED", "Unrecognized request")
			return
		}
		writeJSON(w, http.StatusOK, h.KeyResponse(h.Name, time.Now().Add(time.Hour)))
	case UserInfoPath:
		h.serveUserInfo(w, r)
	case OnBindPath:
		h.serveOnBind(w, r)
	default:
		writeError(w, http.StatusNotFound, "M_UNRECOGNIZED", "Unrecognized request")
	}
}

func (h *Homeserver) serveUserInfo(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		writeError(w, http.StatusMethodNotAllowed, "M_UNRECOGNIZED", "Unrecognized request")
		return
	}
	token := r.URL.Query().Get("access_token")
	if token == "" {
		writeError(w, http.StatusBadRequest, "M_MISSING_PARAM", "Missing string query parameter 'access_token'")
		return
	}
	h.mu.Lock()
	sub, ok := h.tokens[token]
	h.mu.Unlock()
	if !ok {
		writeError(w, http.StatusUnauthorized, "M_UNKNOWN_TOKEN", "Invalid access token passed.")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"sub": sub})
}

// serveOnBind answers like Synapse's On3pidBindServlet: POST only, JSON
// body, every invite needs a "signed" object.
func (h *Homeserver) serveOnBind(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		writeError(w, http.StatusMethodNotAllowed, "M_UNRECOGNIZED", "Unrecognized request")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		writeError(w, http.StatusBadRequest, "M_UNKNOWN", err.Error())
		return
	}
	h.mu.Lock()
	status := h.onbindStatus
	h.mu.Unlock()
	if status != 0 && status != http.StatusOK {
		writeError(w, status, "M_UNKNOWN", "simulated onbind failure")
		return
	}
	var parsed struct {
		Invites []map[string]json.RawMessage `json:"invites"`
	}
	if err := json.Unmarshal(body, &parsed); err != nil {
		writeError(w, http.StatusBadRequest, "M_NOT_JSON", "Content not JSON.")
		return
	}
	for _, inv := range parsed.Invites {
		if s, ok := inv["signed"]; !ok || string(s) == "null" {
			writeError(w, http.StatusBadRequest, "M_UNKNOWN", "Rejecting received notification of third-party invite without signed: "+truncate(string(body), 200))
			return
		}
	}
	h.mu.Lock()
	h.onbinds = append(h.onbinds, json.RawMessage(body))
	close(h.notify)
	h.notify = make(chan struct{})
	h.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{})
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

func writeError(w http.ResponseWriter, code int, errcode, msg string) {
	writeJSON(w, code, map[string]any{"errcode": errcode, "error": msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(errors.Join(errors.New("fedtest: marshal"), err))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(b)
}

// InviteTokens reads an onbind call's body and returns the tokens of the
// invites it carries, for handlers that count deliveries per invite.
func InviteTokens(r *http.Request) ([]string, error) {
	var parsed struct {
		Invites []struct {
			Token string `json:"token"`
		} `json:"invites"`
	}
	if err := json.NewDecoder(r.Body).Decode(&parsed); err != nil {
		return nil, fmt.Errorf("onbind body: %w", err)
	}
	tokens := make([]string, 0, len(parsed.Invites))
	for _, inv := range parsed.Invites {
		tokens = append(tokens, inv.Token)
	}
	return tokens, nil
}
