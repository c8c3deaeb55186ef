package main

import (
	"crypto/tls"
	"encoding/pem"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// federation.ca_file makes Sigil trust a private CA for homeservers (e.g.
// sigil-conformance's fake homeserver), and a wrong file stops the start.
func TestFederationCAFileIsTrusted(t *testing.T) {
	hs := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer hs.Close()
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: hs.Certificate().Raw}), 0o644)

	conf, err := federationTLS(FederationConfig{CAFile: caFile}, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: conf}}
	resp, err := client.Get(hs.URL)
	if err != nil {
		t.Fatalf("the CA of federation.ca_file is not trusted: %v", err)
	}
	resp.Body.Close()

	// Without the setting, the system's CAs: the test certificate is refused.
	if conf, _ := federationTLS(FederationConfig{}, slog.Default()); conf != nil {
		t.Errorf("no ca_file gave %+v, want the system's CAs (nil)", conf)
	}
	if _, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{}}}).Get(hs.URL); err == nil {
		t.Error("the test certificate is trusted without ca_file: the check above proves nothing")
	}

	notPEM := filepath.Join(dir, "not.pem")
	os.WriteFile(notPEM, []byte("hello"), 0o644)
	for _, bad := range []string{notPEM, filepath.Join(dir, "missing.pem")} {
		if _, err := federationTLS(FederationConfig{CAFile: bad}, slog.Default()); err == nil || !strings.Contains(err.Error(), "federation.ca_file") {
			t.Errorf("%s: error %v, want one naming federation.ca_file", bad, err)
		}
	}
}
