package conformance

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/sigil-matrix/sigil/cmd/sigil-conformance/internal/mxjson"
)

// Homeserver key ID and the federation paths the fake homeserver serves.
const (
	HomeserverKeyID = "ed25519:conformance"
	keysPath        = "/_matrix/key/v2/server"
	userInfoPath    = "/_matrix/federation/v1/openid/userinfo"
	onBindPath      = "/_matrix/federation/v1/3pid/onbind"
)

// Homeserver is the runner's fake Matrix homeserver: HTTPS on loopback with
// a certificate from a CA generated at start (the server under test must
// trust CAPEM), serving its federation signing keys, OpenID userinfo for the
// tokens the runner hands out, and recording onbind callbacks.
type Homeserver struct {
	// Name is "127.0.0.1:PORT", an IP literal with a port: Matrix server
	// discovery uses it as is.
	Name  string
	Key   mxjson.Key
	CAPEM []byte

	srv *http.Server

	mu      sync.Mutex
	tokens  map[string]string // OpenID token → sub
	onbinds []json.RawMessage
}

// StartHomeserver listens on addr ("127.0.0.1:0" for any free port).
func StartHomeserver(addr string) (*Homeserver, error) {
	key, err := mxjson.NewKey(HomeserverKeyID)
	if err != nil {
		return nil, err
	}
	caPEM, cert, err := newCA()
	if err != nil {
		return nil, fmt.Errorf("homeserver CA: %w", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("homeserver: listen: %w", err)
	}
	h := &Homeserver{Name: ln.Addr().String(), Key: key, CAPEM: caPEM, tokens: map[string]string{}}
	h.srv = &http.Server{
		Handler:           http.HandlerFunc(h.serveHTTP),
		ReadHeaderTimeout: 10 * time.Second,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	go func() { _ = h.srv.ServeTLS(ln, "", "") }()
	return h, nil
}

// URL is the homeserver's base URL.
func (h *Homeserver) URL() string { return "https://" + h.Name }

// Close stops the homeserver.
func (h *Homeserver) Close() error { return h.srv.Close() }

// WriteCA writes the CA certificate (PEM) the server under test must trust.
func (h *Homeserver) WriteCA(path string) error {
	return os.WriteFile(path, h.CAPEM, 0o644)
}

// AddOpenIDToken makes userinfo answer {"sub": sub} for token.
func (h *Homeserver) AddOpenIDToken(token, sub string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.tokens[token] = sub
}

// OnBinds returns the onbind bodies received so far.
func (h *Homeserver) OnBinds() []json.RawMessage {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]json.RawMessage(nil), h.onbinds...)
}

// SignRequest returns an X-Matrix Authorization header signing a request
// to the identity server destination as Synapse signs its unbinds.
func (h *Homeserver) SignRequest(method, uri, destination string, content []byte) (string, error) {
	obj := map[string]any{"method": method, "uri": uri, "origin": h.Name, "destination_is": destination}
	if content != nil {
		obj["content"] = json.RawMessage(content)
	}
	sig, err := mxjson.Signature(obj, h.Key)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf(`X-Matrix origin="%s",key="%s",sig="%s",destination="%s"`, h.Name, h.Key.ID, sig, destination), nil
}

func (h *Homeserver) serveHTTP(w http.ResponseWriter, r *http.Request) {
	switch strings.TrimSuffix(r.URL.Path, "/") {
	case keysPath:
		obj := map[string]any{
			"server_name":     h.Name,
			"valid_until_ts":  time.Now().Add(time.Hour).UnixMilli(),
			"verify_keys":     map[string]any{h.Key.ID: map[string]any{"key": h.Key.PublicBase64()}},
			"old_verify_keys": map[string]any{},
		}
		signed, err := mxjson.SignJSON(obj, h.Name, h.Key)
		if err != nil {
			writeJSON(w, 500, map[string]any{"errcode": "M_UNKNOWN", "error": err.Error()})
			return
		}
		writeJSON(w, 200, signed)
	case userInfoPath:
		h.mu.Lock()
		sub, ok := h.tokens[r.URL.Query().Get("access_token")]
		h.mu.Unlock()
		if !ok {
			writeJSON(w, 401, map[string]any{"errcode": "M_UNKNOWN_TOKEN", "error": "Invalid access token passed."})
			return
		}
		writeJSON(w, 200, map[string]any{"sub": sub})
	case onBindPath:
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil || !json.Valid(body) {
			writeJSON(w, 400, map[string]any{"errcode": "M_NOT_JSON", "error": "Content not JSON."})
			return
		}
		h.mu.Lock()
		h.onbinds = append(h.onbinds, body)
		h.mu.Unlock()
		writeJSON(w, 200, map[string]any{})
	default:
		writeJSON(w, 404, map[string]any{"errcode": "M_UNRECOGNIZED", "error": "Unrecognized request"})
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

// newCA makes a CA for this run and a certificate it signs for 127.0.0.1,
// ::1 and localhost. Both live only as long as the runner.
func newCA() (caPEM []byte, leaf tls.Certificate, err error) {
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, leaf, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "sigil-conformance CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(48 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, leaf, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, leaf, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, leaf, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(48 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, leaf, err
	}
	leaf = tls.Certificate{Certificate: [][]byte{der, caDER}, PrivateKey: key}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), leaf, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		panic(err)
	}
	return n
}
