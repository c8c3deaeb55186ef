package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sigil-matrix/sigil/handlers/federation/fedtest"
)

// register asks the server to check an OpenID token with the homeserver
// over TLS and returns the status.
func registerStatus(t *testing.T, base string, hs *fedtest.Homeserver, token string) int {
	t.Helper()
	hs.AddOpenIDToken(token, "alice")
	return do(t, "POST", base+v2+"/account/register",
		`{"access_token":"`+token+`","matrix_server_name":"`+hs.Name+`"}`).StatusCode
}

func TestFederationTLSSettings(t *testing.T) {
	hs := fedtest.Start(t)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, hs.CertificatePEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, yaml string
		status     int
		warn       bool
	}{
		{"system roots only", "", 502, false},
		{"extra CA file", "  ca_file: " + ca + "\n", 200, false},
		{"verification skipped", "  insecure_skip_verify: true\n", 200, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSetup(t, "federation:\n  allow_private_addresses: true\n"+tt.yaml)
			var log lockedBuffer
			_, base := startServer(t, s, &log)
			if got := registerStatus(t, base, hs, "oid-"+strings.ReplaceAll(tt.name, " ", "-")); got != tt.status {
				t.Errorf("register: %d, want %d", got, tt.status)
			}
			if warned := strings.Contains(log.String(), "INSECURE: federation.insecure_skip_verify"); warned != tt.warn {
				t.Errorf("warning at start: %v, want %v\n%s", warned, tt.warn, log.String())
			}
		})
	}
	t.Run("a CA file without certificates", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "bad.pem")
		os.WriteFile(bad, []byte("not a certificate"), 0o600)
		s := newSetup(t, "federation:\n  ca_file: "+bad+"\n")
		code, out, _ := s.run("check")
		if code != exitFailure || !strings.Contains(out, "FAIL federation") || !strings.Contains(out, "holds no PEM certificate") {
			t.Errorf("check: exit %d\n%s", code, out)
		}
	})
}
