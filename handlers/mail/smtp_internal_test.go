package mail

import (
	"strings"
	"testing"
	"time"
)

func TestNewSMTPSenderDefaults(t *testing.T) {
	tests := []struct {
		tls      string
		port     int
		wantTLS  string
		wantPort int
	}{
		{"", 0, TLSStartTLS, 587},
		{"starttls", 0, TLSStartTLS, 587},
		{"implicit", 0, TLSImplicit, 465},
		{"none", 0, TLSNone, 587},
		{"Implicit", 2465, TLSImplicit, 2465},
	}
	for _, tc := range tests {
		s, err := NewSMTPSender(SMTPConfig{Host: "smtp.example.org", TLS: tc.tls, Port: tc.port, From: "noreply@example.org"})
		if err != nil {
			t.Fatalf("%q: %v", tc.tls, err)
		}
		if s.cfg.TLS != tc.wantTLS || s.cfg.Port != tc.wantPort || s.cfg.Timeout != 30*time.Second {
			t.Errorf("TLS %q port %d: got %q %d %s", tc.tls, tc.port, s.cfg.TLS, s.cfg.Port, s.cfg.Timeout)
		}
	}
}

func TestFoldHeader(t *testing.T) {
	tests := []struct {
		value   string
		want    string
		wantErr bool
	}{
		{"short", "Subject: short\r\n", false},
		{"", "Subject: \r\n", false},
		{
			strings.Repeat("word ", 20) + "end",
			"Subject:" + strings.Repeat(" word", 14) + "\r\n" + strings.Repeat(" word", 6) + " end\r\n",
			false,
		},
		{"a  b", "Subject: a  b\r\n", false},
		{strings.Repeat("x", 1200), "", true},
	}
	for _, tc := range tests {
		got, err := foldHeader("Subject", tc.value)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("foldHeader(%q) = %q, %v; want %q, err %v", tc.value, got, err, tc.want, tc.wantErr)
		}
		// Unfolding (dropping CRLF) must give back the value.
		if err == nil && strings.TrimSuffix(strings.ReplaceAll(got, "\r\n ", " "), "\r\n") != "Subject: "+tc.value {
			t.Errorf("foldHeader(%q) does not unfold to the value: %q", tc.value, got)
		}
	}
}
