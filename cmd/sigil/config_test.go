package main

import (
	"reflect"
	"regexp"
	"strconv"

	"gopkg.in/yaml.v3"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"
)

var noEnv []string

func envMap(m map[string]string) []string {
	var out []string
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	return out
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
		{"misspelt key", "sever_name: x\n", nil, "unknown setting sever_name (line 1)"},
		{"misspelt nested key", "smtp:\n  hots: x\n", nil, "unknown setting smtp.hots (line 2)"},
		{"misspelt key in a list", "terms:\n  - id: a\n    verison: 1\n", nil, "unknown setting terms[0].verison"},
		{"misspelt variable", "", map[string]string{"SIGIL_SMTP_HOTS": "x"}, "SIGIL_SMTP_HOTS names no setting (did you mean SIGIL_SMTP_HOST, smtp.host?)"},
		{"bad variable value", "", map[string]string{"SIGIL_LIMITS_MAIL_BURST": "lots"}, "SIGIL_LIMITS_MAIL_BURST (limits.mail_burst)"},
		{"bad server name", "server_name: id_example!org\n", nil, "server_name must be a Matrix server name"},
		{"bad server port", "server_name: host:99999\n", nil, "server_name must be a Matrix server name"},
		{"bad log format", "log_format: xml\n", nil, "log_format"},
		{"bad duration", "sessions:\n  token_lifetime: tomorrow\n", nil, "not a duration"},
		{"wrong type names the setting", "smtp:\n  host: m\n  port: many\n", nil, "smtp.port (line 3): cannot unmarshal"},
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

// sampleValue is a valid variable text for a setting's type, and a check
// that it arrived.
func sampleValue(t *testing.T, s setting) string {
	switch s.typ {
	case durationType:
		return "17m"
	}
	switch s.typ.Kind() {
	case reflect.String:
		return "" // strings: the test uses a per-setting value
	case reflect.Bool:
		return "true"
	case reflect.Int, reflect.Int64:
		return "4242"
	case reflect.Slice:
		if s.typ.Elem().Kind() == reflect.String {
			return "a.example, b.example"
		}
		return "[{id: privacy, version: '2', languages: {en: {name: Privacy, url: 'https://x.example/p'}}}]"
	case reflect.Map:
		return "{X-Test: yes}"
	}
	t.Fatalf("no sample value for %s (%s): teach the test and setFromEnv this type", s.Path, s.typ)
	return ""
}

// Every setting of Config can be set from its variable: the list is
// derived from the struct, so a new field is covered without anyone
// remembering to add it.
func TestEverySettingFromTheEnvironment(t *testing.T) {
	valid := map[string]string{ // strings that must pass Validate
		"server_name": "id.example.org", "public_base_url": "https://id.example.org", "listen": "127.0.0.1:1",
		"debug_listen": "127.0.0.1:2", "metrics_listen": "127.0.0.1:3", "log_level": "debug", "log_format": "json",
		"smtp.tls": "none", "lookup.pepper": "abc123", "smtp.from": "a@b.example",
	}
	for _, s := range Settings() {
		t.Run(s.Path, func(t *testing.T) {
			v := sampleValue(t, s)
			if s.typ.Kind() == reflect.Bool {
				v = strconv.FormatBool(!reflect.ValueOf(Defaults()).FieldByIndex(s.index).Bool())
			}
			if s.Path == "federation.onbind_per_destination" {
				v = "3" // at most onbind_concurrency (16 by default)
			}
			if s.typ.Kind() == reflect.String {
				v = valid[s.Path]
				if v == "" {
					v = "from-env-" + strings.ReplaceAll(s.Path, ".", "-")
				}
			}
			cfg, err := LoadConfig("", []string{s.Env + "=" + v})
			if err != nil {
				t.Fatalf("%s=%s: %v", s.Env, v, err)
			}
			got := reflect.ValueOf(cfg).FieldByIndex(s.index)
			if reflect.DeepEqual(got.Interface(), reflect.ValueOf(Defaults()).FieldByIndex(s.index).Interface()) {
				t.Errorf("%s=%s left %s at its default %v", s.Env, v, s.Path, got)
			}
		})
	}
}

func TestOldVariableNamesStillWork(t *testing.T) {
	cfg, err := LoadConfig("", envMap(map[string]string{"SIGIL_TOKEN_LIFETIME": "5m", "SIGIL_FEDERATION_ALLOW_PRIVATE": "true"}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Sessions.TokenLifetime.Duration != 5*time.Minute || !cfg.Federation.AllowPrivateAddresses {
		t.Errorf("aliases not applied: %+v", cfg)
	}
}

// The example configuration lists every setting, so it documents them all.
func TestExampleListsEverySetting(t *testing.T) {
	data, err := os.ReadFile("sigil.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		t.Fatal(err)
	}
	present := map[string]bool{}
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		if n.Kind == yaml.DocumentNode {
			walk(n.Content[0], path)
			return
		}
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			p := join(path, n.Content[i].Value)
			present[p] = true
			walk(n.Content[i+1], p)
		}
	}
	walk(&root, "")
	for _, s := range Settings() {
		if !present[s.Path] {
			t.Errorf("sigil.example.yaml does not list %s (%s)", s.Path, s.Env)
		}
	}
}

// The variables the example names are settings' variables.
func TestExampleNamesRealVariables(t *testing.T) {
	data, err := os.ReadFile("sigil.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{ignoreEnv: true}
	for _, s := range Settings() {
		known[s.Env] = true
	}
	for _, name := range regexp.MustCompile(`SIGIL_[A-Z0-9_]*[A-Z0-9]`).FindAllString(string(data), -1) {
		if !known[name] {
			t.Errorf("sigil.example.yaml names %s, which is no setting's variable", name)
		}
	}
}

func TestTuneGCBoundsTheHeap(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(math.MaxInt64))
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	tuneGC(func(string) (string, bool) { return "", false })
	if got := debug.SetMemoryLimit(-1); got != defaultMemoryLimit {
		t.Errorf("memory limit %d without GOMEMLIMIT, want %d", got, defaultMemoryLimit)
	}
	debug.SetMemoryLimit(math.MaxInt64)
	tuneGC(func(k string) (string, bool) { return "1GiB", k == "GOMEMLIMIT" })
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Errorf("memory limit %d with GOMEMLIMIT set, want it left alone", got)
	}
}

// Another tool's SIGIL_* variable does not stop Sigil: one that looks like
// no setting is ignored with a warning, one listed in SIGIL_IGNORE
// silently; a misspelt setting is still refused.
func TestOtherToolsVariablesDoNotStopSigil(t *testing.T) {
	tests := []struct {
		name     string
		env      map[string]string
		err      string // "" for a start
		warnings []string
	}{
		{"another tool's variable: warned", map[string]string{"SIGIL_SRC": "/src"}, "", []string{"SIGIL_SRC names no setting and is ignored"}},
		{"listed in SIGIL_IGNORE: silent", map[string]string{"SIGIL_SRC": "/src", "SIGIL_IGNORE": "SIGIL_OTHER, SIGIL_SRC"}, "", nil},
		{"close to a setting: refused", map[string]string{"SIGIL_LISTN": "x"}, "SIGIL_LISTN names no setting (did you mean SIGIL_LISTEN", nil},
		{"under a section: refused", map[string]string{"SIGIL_SMTP_HOSTNAME_X": "x"}, "SIGIL_SMTP_HOSTNAME_X names no setting", nil},
		{"close, but listed in SIGIL_IGNORE", map[string]string{"SIGIL_LISTN": "x", "SIGIL_IGNORE": "SIGIL_LISTN"}, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := LoadConfig("", envMap(tt.env))
			switch {
			case tt.err == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
				t.Fatalf("error %v, want one mentioning %q", err, tt.err)
			case tt.err != "":
				return
			}
			got := strings.Join(cfg.Warnings(), "\n")
			if len(tt.warnings) == 0 && got != "" {
				t.Errorf("warnings %q, want none", got)
			}
			for _, w := range tt.warnings {
				if !strings.Contains(got, w) {
					t.Errorf("warnings %q, want one mentioning %q", got, w)
				}
			}
		})
	}
}

// public_base_url follows listen and server_name unless it is set, and a
// set one that mail links could not follow is warned about.
func TestPublicBaseURLFollowsListenAndServerName(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       string
		warning    string // "" for none
	}{
		{"defaults", "", "http://localhost:8090", ""},
		{"listen changed", "listen: 127.0.0.1:9000\n", "http://localhost:9000", ""},
		{"listen on every address", "listen: 0.0.0.0:9000\n", "http://localhost:9000", ""},
		{"loopback server_name", "server_name: 127.0.0.1:8091\nlisten: 127.0.0.1:8092\n", "http://127.0.0.1:8092", ""},
		{"public server_name behind a proxy", "server_name: id.example.org\nlisten: 127.0.0.1:8090\n", "https://id.example.org", ""},
		{"public server_name with a port", "server_name: id.example.org:8443\nlisten: 0.0.0.0:8443\n", "https://id.example.org:8443", ""},
		{"set and consistent", "server_name: id.example.org\npublic_base_url: https://id.example.org/\n", "https://id.example.org/", ""},
		{"set on the old port", "listen: 127.0.0.1:9000\npublic_base_url: http://localhost:8090\n", "http://localhost:8090",
			"Sigil listens on 127.0.0.1:9000"},
		{"loopback for a public name", "server_name: id.example.org\npublic_base_url: http://localhost:8090\n", "http://localhost:8090",
			"only work on this machine"},
		{"another host", "server_name: id.example.org\npublic_base_url: https://other.example.net\n", "https://other.example.net",
			"not on server_name's host"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.yaml")
			os.WriteFile(path, []byte(tt.yaml), 0o600)
			cfg, err := LoadConfig(path, noEnv)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.PublicBaseURL != tt.want {
				t.Errorf("public_base_url %q, want %q", cfg.PublicBaseURL, tt.want)
			}
			got := strings.Join(cfg.Warnings(), "\n")
			if (tt.warning == "") != (got == "") || !strings.Contains(got, tt.warning) {
				t.Errorf("warnings %q, want %q", got, tt.warning)
			}
		})
	}
}

// The onbind limits are checked: none, or more calls to one homeserver
// than in all (one hanging homeserver could then take every slot), is
// refused with the setting's name.
func TestOnBindConcurrencyValidated(t *testing.T) {
	for _, env := range []map[string]string{
		{"SIGIL_FEDERATION_ONBIND_CONCURRENCY": "0"},
		{"SIGIL_FEDERATION_ONBIND_PER_DESTINATION": "0"},
		{"SIGIL_FEDERATION_ONBIND_CONCURRENCY": "4", "SIGIL_FEDERATION_ONBIND_PER_DESTINATION": "5"},
	} {
		if _, err := LoadConfig("", envMap(env)); err == nil || !strings.Contains(err.Error(), "federation.onbind_") {
			t.Errorf("%v: %v, want an error naming federation.onbind_*", env, err)
		}
	}
	cfg, err := LoadConfig("", envMap(map[string]string{"SIGIL_FEDERATION_ONBIND_CONCURRENCY": "4", "SIGIL_FEDERATION_ONBIND_PER_DESTINATION": "4"}))
	if err != nil || cfg.Federation.OnBindConcurrency != 4 || cfg.Federation.OnBindPerDestination != 4 {
		t.Errorf("4 and 4: %v %+v", err, cfg.Federation)
	}
	if d := Defaults().Federation; d.OnBindConcurrency != 16 || d.OnBindPerDestination != 2 {
		t.Errorf("defaults %d/%d, want 16/2", d.OnBindConcurrency, d.OnBindPerDestination)
	}
}
