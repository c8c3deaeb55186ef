package main

import (
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"
)

func noEnv(string) (string, bool) { return "", false }

func envMap(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestDefaultsNeedNoConfiguration(t *testing.T) {
	cfg, err := LoadConfig("", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:8090" || cfg.Database != "data/sigil.db" || cfg.SMTP.Host != "" || !cfg.API.V1 {
		t.Errorf("defaults %+v", cfg)
	}
}

func TestExampleConfigLoads(t *testing.T) {
	cfg, err := LoadConfig("sigil.example.yaml", noEnv)
	if err != nil {
		t.Fatalf("the documented example does not load: %v", err)
	}
	if cfg.Sessions.TokenLifetime.Duration != 24*time.Hour || cfg.Limits.MailBurst != 5 {
		t.Errorf("example %+v", cfg)
	}
}

func TestEnvOverridesFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(path, []byte("server_name: from.file\nsmtp:\n  host: mail.example.org\n"), 0o600)
	cfg, err := LoadConfig(path, envMap(map[string]string{
		"SIGIL_SERVER_NAME": "from.env", "SIGIL_TOKEN_LIFETIME": "15m", "SIGIL_SMTP_PORT": "2525", "SIGIL_API_V1": "false",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ServerName != "from.env" || cfg.SMTP.Host != "mail.example.org" || cfg.SMTP.Port != 2525 ||
		cfg.Sessions.TokenLifetime.Duration != 15*time.Minute || cfg.API.V1 {
		t.Errorf("merged %+v", cfg)
	}
}

func TestBadConfigIsExplained(t *testing.T) {
	tests := []struct {
		name, yaml string
		env        map[string]string
		want       string
	}{
		{"misspelt key", "sever_name: x\n", nil, "sever_name"},
		{"bad duration", "sessions:\n  token_lifetime: tomorrow\n", nil, "not a duration"},
		{"bad base url", "public_base_url: ftp://x\n", nil, "public_base_url"},
		{"bad listen", "listen: 8090\n", nil, "listen"},
		{"bad tls", "smtp:\n  host: m\n  tls: maybe\n", nil, "smtp.tls"},
		{"bad env", "", map[string]string{"SIGIL_SMTP_PORT": "many"}, "SIGIL_SMTP_PORT"},
		{"several at once", "listen: x\nlog_level: loud\n", nil, "log_level"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.yaml")
			os.WriteFile(path, []byte(tt.yaml), 0o600)
			_, err := LoadConfig(path, envMap(tt.env))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}

func TestTuneGC(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	tuneGC(func(string) (string, bool) { return "", false })
	if got := debug.SetGCPercent(100); got != defaultGCPercent {
		t.Errorf("GC percent %d without GOGC, want %d", got, defaultGCPercent)
	}
	tuneGC(func(k string) (string, bool) { return "100", k == "GOGC" })
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("GC percent %d with GOGC=100 set, want it left alone", got)
	}
}

func TestTuneGCBoundsTheHeap(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(math.MaxInt64))
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	tuneGC(noEnv)
	if got := debug.SetMemoryLimit(-1); got != defaultMemoryLimit {
		t.Errorf("memory limit %d without GOMEMLIMIT, want %d", got, defaultMemoryLimit)
	}
	debug.SetMemoryLimit(math.MaxInt64)
	tuneGC(envMap(map[string]string{"GOMEMLIMIT": "1GiB"}))
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Errorf("memory limit %d with GOMEMLIMIT set, want it left alone", got)
	}
}
