package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is the whole configuration: defaults, then the YAML file, then
// SIGIL_* environment variables, each overriding the one before.
type Config struct {
	// ServerName is the name signatures are made under. Homeservers look
	// the signature up under the id_server their users typed, so it must be
	// that exact host[:port].
	ServerName string `yaml:"server_name"`
	// PublicBaseURL is how clients reach the server; used in emailed links
	// and in the key_validity_url of invites.
	PublicBaseURL string `yaml:"public_base_url"`
	// Listen is the address the HTTP server binds.
	Listen string `yaml:"listen"`
	// DebugListen, if set, serves Go's /debug/pprof/ profiles on a second
	// listener. Keep it on loopback: profiles reveal memory contents.
	DebugListen string `yaml:"debug_listen"`
	// Database is a SQLite file path or a postgres:// URL.
	Database string `yaml:"database"`
	// SigningKey is the long-term ed25519 key file, created on first start.
	SigningKey string `yaml:"signing_key"`
	// TemplatesDir overrides the built-in mail templates file by file.
	TemplatesDir string `yaml:"templates_dir"`
	LogLevel     string `yaml:"log_level"`
	// ShutdownTimeout is how long requests in flight may take to finish
	// after SIGTERM; what is left then (a slow upload) is cut.
	ShutdownTimeout Duration `yaml:"shutdown_timeout"`

	Sessions   SessionConfig    `yaml:"sessions"`
	SMTP       SMTPConfig       `yaml:"smtp"`
	SMS        SMSConfig        `yaml:"sms"`
	Limits     LimitConfig      `yaml:"limits"`
	API        APIConfig        `yaml:"api"`
	Lookup     LookupConfig     `yaml:"lookup"`
	Federation FederationConfig `yaml:"federation"`
	Register   RegisterConfig   `yaml:"register"`
	Retention  RetentionConfig  `yaml:"retention"`
	Terms      []PolicyConfig   `yaml:"terms"`
	// NextLinkHosts, if set, limits the hosts next_link may redirect to.
	NextLinkHosts []string `yaml:"next_link_hosts"`
}

type SessionConfig struct {
	TokenLifetime   Duration `yaml:"token_lifetime"`
	SessionLifetime Duration `yaml:"session_lifetime"`
}

type SMTPConfig struct {
	Host     string `yaml:"host"`
	Port     int    `yaml:"port"`
	TLS      string `yaml:"tls"`
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	From     string `yaml:"from"`
}

// SMSConfig sends SMS through any HTTP API; no url means the log.
type SMSConfig struct {
	URL         string            `yaml:"url"`
	Method      string            `yaml:"method"`
	Username    string            `yaml:"username"`
	Password    string            `yaml:"password"`
	BearerToken string            `yaml:"bearer_token"`
	Headers     map[string]string `yaml:"headers"`
	ContentType string            `yaml:"content_type"`
	Body        string            `yaml:"body"`
	From        string            `yaml:"from"`
}

type LookupConfig struct {
	// MaxAddresses caps bulk_lookup and v2 lookup requests.
	MaxAddresses int `yaml:"max_addresses"`
	// Pepper, when set and different from the stored one, replaces it at
	// start and every stored hash is recomputed.
	Pepper string `yaml:"pepper"`
}

type FederationConfig struct {
	// AllowPrivateAddresses lets Sigil call homeservers on loopback and
	// private networks (tests, single-host setups). Off by default.
	AllowPrivateAddresses bool     `yaml:"allow_private_addresses"`
	Timeout               Duration `yaml:"timeout"`
	// TrustForwardedFor takes the client IP from X-Forwarded-For (behind a
	// reverse proxy you control).
	TrustForwardedFor bool `yaml:"trust_forwarded_for"`
}

// RetentionConfig is how long finished data is kept before the purge
// deletes it; a negative duration keeps it for ever.
type RetentionConfig struct {
	// ExpiredSessions: how long a session is kept once it has expired.
	ExpiredSessions Duration `yaml:"expired_sessions"`
	// Invites: how long a third-party invite is kept, delivered or not.
	Invites Duration `yaml:"invites"`
	// OnBindDeliveries: how long a delivered or abandoned onbind is kept.
	OnBindDeliveries Duration `yaml:"onbind_deliveries"`
	// PurgeEvery: how often the purge runs.
	PurgeEvery Duration `yaml:"purge_every"`
}

type RegisterConfig struct {
	// AllowedServers limits which homeservers' users may register.
	AllowedServers []string `yaml:"allowed_servers"`
}

// PolicyConfig is one terms-of-service document.
type PolicyConfig struct {
	ID        string                   `yaml:"id"`
	Version   string                   `yaml:"version"`
	Languages map[string]PolicyDocYAML `yaml:"languages"`
}

type PolicyDocYAML struct {
	Name string `yaml:"name"`
	URL  string `yaml:"url"`
}

type LimitConfig struct {
	MaxBodyBytes int64    `yaml:"max_body_bytes"`
	MailEvery    Duration `yaml:"mail_every"`
	MailBurst    int      `yaml:"mail_burst"`
}

type APIConfig struct {
	V1 bool `yaml:"v1"`
}

// Duration reads "24h", "90m" and the like.
type Duration struct{ time.Duration }

func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration like 24h or 15m", n.Line, n.Value)
	}
	d.Duration = v
	return nil
}

// Defaults are what a newcomer gets with no configuration at all.
func Defaults() Config {
	return Config{
		ServerName:      "localhost:8090",
		PublicBaseURL:   "http://localhost:8090",
		Listen:          "127.0.0.1:8090",
		Database:        "data/sigil.db",
		SigningKey:      "data/signing.key",
		LogLevel:        "info",
		ShutdownTimeout: Duration{10 * time.Second},
		Sessions:        SessionConfig{TokenLifetime: Duration{24 * time.Hour}, SessionLifetime: Duration{24 * time.Hour}},
		SMTP:            SMTPConfig{Port: 587, TLS: "starttls", From: "Sigil <noreply@localhost>"},
		Limits:          LimitConfig{MaxBodyBytes: 1 << 20, MailEvery: Duration{time.Minute}, MailBurst: 5},
		API:             APIConfig{V1: true},
		Lookup:          LookupConfig{MaxAddresses: 10000},
		Federation:      FederationConfig{Timeout: Duration{10 * time.Second}},
		Retention: RetentionConfig{
			ExpiredSessions: Duration{time.Hour}, Invites: Duration{30 * 24 * time.Hour},
			OnBindDeliveries: Duration{7 * 24 * time.Hour}, PurgeEvery: Duration{10 * time.Minute},
		},
	}
}

// LoadConfig reads path (if not empty) over the defaults, then env.
func LoadConfig(path string, env func(string) (string, bool)) (Config, error) {
	cfg := Defaults()
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return cfg, fmt.Errorf("config: %w", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)                                               // a misspelt key is an error, not a silent default
		if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) { // an empty file is fine
			return cfg, fmt.Errorf("config %s: %w", path, err)
		}
	}
	if err := applyEnv(&cfg, env); err != nil {
		return cfg, err
	}
	return cfg, cfg.Validate()
}

// envVars maps each SIGIL_* variable to the setting it overrides.
var envVars = []struct {
	name string
	set  func(c *Config, v string) error
}{
	{"SIGIL_SERVER_NAME", func(c *Config, v string) error { c.ServerName = v; return nil }},
	{"SIGIL_PUBLIC_BASE_URL", func(c *Config, v string) error { c.PublicBaseURL = v; return nil }},
	{"SIGIL_LISTEN", func(c *Config, v string) error { c.Listen = v; return nil }},
	{"SIGIL_DEBUG_LISTEN", func(c *Config, v string) error { c.DebugListen = v; return nil }},
	{"SIGIL_DATABASE", func(c *Config, v string) error { c.Database = v; return nil }},
	{"SIGIL_SIGNING_KEY", func(c *Config, v string) error { c.SigningKey = v; return nil }},
	{"SIGIL_TEMPLATES_DIR", func(c *Config, v string) error { c.TemplatesDir = v; return nil }},
	{"SIGIL_LOG_LEVEL", func(c *Config, v string) error { c.LogLevel = v; return nil }},
	{"SIGIL_TOKEN_LIFETIME", durationVar(func(c *Config) *Duration { return &c.Sessions.TokenLifetime })},
	{"SIGIL_SESSION_LIFETIME", durationVar(func(c *Config) *Duration { return &c.Sessions.SessionLifetime })},
	{"SIGIL_SMTP_HOST", func(c *Config, v string) error { c.SMTP.Host = v; return nil }},
	{"SIGIL_SMTP_PORT", func(c *Config, v string) (err error) { c.SMTP.Port, err = strconv.Atoi(v); return err }},
	{"SIGIL_SMTP_TLS", func(c *Config, v string) error { c.SMTP.TLS = v; return nil }},
	{"SIGIL_SMTP_USERNAME", func(c *Config, v string) error { c.SMTP.Username = v; return nil }},
	{"SIGIL_SMTP_PASSWORD", func(c *Config, v string) error { c.SMTP.Password = v; return nil }},
	{"SIGIL_SMTP_FROM", func(c *Config, v string) error { c.SMTP.From = v; return nil }},
	{"SIGIL_SMS_URL", func(c *Config, v string) error { c.SMS.URL = v; return nil }},
	{"SIGIL_SMS_USERNAME", func(c *Config, v string) error { c.SMS.Username = v; return nil }},
	{"SIGIL_SMS_PASSWORD", func(c *Config, v string) error { c.SMS.Password = v; return nil }},
	{"SIGIL_SMS_FROM", func(c *Config, v string) error { c.SMS.From = v; return nil }},
	{"SIGIL_LOOKUP_PEPPER", func(c *Config, v string) error { c.Lookup.Pepper = v; return nil }},
	{"SIGIL_FEDERATION_ALLOW_PRIVATE", func(c *Config, v string) (err error) {
		c.Federation.AllowPrivateAddresses, err = strconv.ParseBool(v)
		return err
	}},
	{"SIGIL_API_V1", func(c *Config, v string) (err error) { c.API.V1, err = strconv.ParseBool(v); return err }},
}

func durationVar(field func(*Config) *Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("%q is not a duration like 24h or 15m", v)
		}
		field(c).Duration = d
		return nil
	}
}

func applyEnv(cfg *Config, env func(string) (string, bool)) error {
	for _, ev := range envVars {
		if v, ok := env(ev.name); ok {
			if err := ev.set(cfg, v); err != nil {
				return fmt.Errorf("config: %s: %w", ev.name, err)
			}
		}
	}
	return nil
}

// Validate reports every problem at once, each naming its setting.
func (c Config) Validate() error {
	var errs []string
	bad := func(f string, a ...any) { errs = append(errs, fmt.Sprintf(f, a...)) }
	if c.ServerName == "" || strings.ContainsAny(c.ServerName, "/ ") {
		bad("server_name must be a host or host:port, got %q", c.ServerName)
	}
	if u, err := url.Parse(c.PublicBaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("public_base_url must be an absolute http(s) URL, got %q", c.PublicBaseURL)
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		bad("listen must be host:port, got %q", c.Listen)
	}
	if _, _, err := net.SplitHostPort(c.DebugListen); c.DebugListen != "" && err != nil {
		bad("debug_listen must be host:port, got %q", c.DebugListen)
	}
	if c.Database == "" {
		bad("database must be a SQLite path or a postgres:// URL")
	}
	if c.SigningKey == "" {
		bad("signing_key must be a file path")
	}
	if c.Sessions.TokenLifetime.Duration <= 0 || c.Sessions.SessionLifetime.Duration <= 0 {
		bad("sessions.token_lifetime and sessions.session_lifetime must be positive")
	}
	if c.SMTP.Host != "" {
		switch c.SMTP.TLS {
		case "starttls", "implicit", "none":
		default:
			bad("smtp.tls must be starttls, implicit or none, got %q", c.SMTP.TLS)
		}
		if c.SMTP.Port <= 0 || c.SMTP.Port > 65535 {
			bad("smtp.port must be 1-65535, got %d", c.SMTP.Port)
		}
		if c.SMTP.From == "" {
			bad("smtp.from is required when smtp.host is set")
		}
	}
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		bad("log_level must be debug, info, warn or error, got %q", c.LogLevel)
	}
	if c.Lookup.MaxAddresses <= 0 {
		bad("lookup.max_addresses must be positive")
	}
	for _, r := range c.Lookup.Pepper {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9') {
			bad("lookup.pepper must match [a-zA-Z0-9]+")
			break
		}
	}
	for i, p := range c.Terms {
		if p.ID == "" || p.Version == "" || len(p.Languages) == 0 {
			bad("terms[%d] needs an id, a version and at least one language", i)
		}
		for lang, d := range p.Languages {
			if u, err := url.Parse(d.URL); err != nil || u.Host == "" || d.Name == "" {
				bad("terms[%d].languages.%s needs a name and an absolute url", i, lang)
			}
		}
	}
	if c.ShutdownTimeout.Duration <= 0 {
		bad("shutdown_timeout must be positive")
	}
	if c.Retention.PurgeEvery.Duration <= 0 {
		bad("retention.purge_every must be positive")
	}
	if c.Limits.MaxBodyBytes <= 0 {
		bad("limits.max_body_bytes must be positive")
	}
	if len(errs) > 0 {
		return fmt.Errorf("config: %s", strings.Join(errs, "; "))
	}
	return nil
}
