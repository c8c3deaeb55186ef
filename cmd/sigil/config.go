package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sigil-matrix/sigil/handlers/federation"
)

// Config is the whole configuration: defaults, then the YAML file, then
// SIGIL_* environment variables, each overriding the one before.
type Config struct {
	// ServerName is the name signatures are made under. Homeservers look
	// the signature up under the id_server their users typed, so it must be
	// that exact host[:port].
	ServerName string `yaml:"server_name"`
	// PublicBaseURL is how clients reach the server; used in emailed links
	// and in the key_validity_url of invites. Empty: derived (derivePublicBaseURL).
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
	// LogLevel is debug, info (one access-log line per request), warn or
	// error; LogFormat is text or json. One logger serves every package.
	LogLevel  string `yaml:"log_level"`
	LogFormat string `yaml:"log_format"`
	// MetricsListen, if set, serves Prometheus metrics at /metrics on a
	// listener of its own, apart from the API.
	MetricsListen string `yaml:"metrics_listen"`
	// Docs serves the OpenAPI document and an interactive page of it.
	Docs DocsConfig `yaml:"docs"`
	// ShutdownTimeout is how long requests in flight may take to finish
	// after SIGTERM; what is left then (a slow upload) is cut.
	ShutdownTimeout Duration `yaml:"shutdown_timeout"`

	// warnings are what LoadConfig found suspicious but not wrong (an
	// inconsistent public_base_url, a SIGIL_* variable of another tool),
	// logged at start-up and printed by `sigil check`.
	warnings []string
	// derivedBaseURL is set when public_base_url was derived, not given.
	derivedBaseURL bool

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
	// CAFile adds the PEM certificates in this file to the system's roots
	// for calls to homeservers (a private CA).
	CAFile string `yaml:"ca_file"`
	// InsecureSkipVerify accepts any certificate from homeservers: for
	// test setups only; Sigil warns at every start.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
	// OnBindConcurrency is how many onbind calls (invites delivered when
	// their 3PID is bound) run at once, to all homeservers together.
	OnBindConcurrency int `yaml:"onbind_concurrency"`
	// OnBindPerDestination is how many of them may go to one homeserver at
	// once: a homeserver that does not answer holds this many of the
	// onbind_concurrency slots and no more, so the others' invites are not
	// held up behind it.
	OnBindPerDestination int `yaml:"onbind_per_destination"`
}

// DocsConfig is the API documentation (outside /_matrix).
type DocsConfig struct {
	// Enabled serves /docs/openapi.json and the page at /docs/.
	Enabled bool `yaml:"enabled"`
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
		if n.Line == 1 && n.Column == 1 { // a variable's value
			return fmt.Errorf("%q is not a duration like 24h or 15m", n.Value)
		}
		return fmt.Errorf("line %d: %q is not a duration like 24h or 15m", n.Line, n.Value)
	}
	d.Duration = v
	return nil
}

// Defaults are what a newcomer gets with no configuration at all.
func Defaults() Config {
	return Config{
		ServerName:      "localhost:8090",
		PublicBaseURL:   "", // derived from server_name and listen
		Listen:          "127.0.0.1:8090",
		Database:        "data/sigil.db",
		SigningKey:      "data/signing.key",
		LogLevel:        "info",
		LogFormat:       "text",
		Docs:            DocsConfig{Enabled: true},
		Sessions:        SessionConfig{TokenLifetime: Duration{24 * time.Hour}, SessionLifetime: Duration{24 * time.Hour}},
		SMTP:            SMTPConfig{Port: 587, TLS: "starttls", From: "Sigil <noreply@localhost>"},
		Limits:          LimitConfig{MaxBodyBytes: 1 << 20, MailEvery: Duration{time.Minute}, MailBurst: 5},
		API:             APIConfig{V1: true},
		Lookup:          LookupConfig{MaxAddresses: 10000},
		Federation:      FederationConfig{Timeout: Duration{10 * time.Second}, OnBindConcurrency: 16, OnBindPerDestination: 2},
		ShutdownTimeout: Duration{10 * time.Second},
		Retention: RetentionConfig{
			ExpiredSessions: Duration{time.Hour}, Invites: Duration{30 * 24 * time.Hour},
			OnBindDeliveries: Duration{7 * 24 * time.Hour}, PurgeEvery: Duration{10 * time.Minute},
		},
	}
}

// LoadConfig reads path (if not empty) over the defaults, then the SIGIL_*
// variables of environ ("KEY=value" strings, as os.Environ gives them).
func LoadConfig(path string, environ []string) (Config, error) {
	cfg := Defaults()
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return cfg, fmt.Errorf("config: %w", err)
		}
		if err := decodeYAML(data, &cfg); err != nil {
			return cfg, fmt.Errorf("config %s: %w", path, err)
		}
	}
	if err := applyEnv(&cfg, environ); err != nil {
		return cfg, err
	}
	cfg.derivePublicBaseURL()
	if err := cfg.Validate(); err != nil {
		return cfg, err
	}
	cfg.warnings = append(cfg.warnings, cfg.baseURLWarnings()...)
	return cfg, nil
}

// Warnings are the configuration's doubtful points, for the log at start
// and for `sigil check`.
func (c Config) Warnings() []string { return c.warnings }

// derivePublicBaseURL fills in an unset public_base_url. For a local
// server_name (localhost, a loopback address) it is http:// on the port
// Sigil listens on: a try on one machine, where changing listen alone must
// move the mail links with it. For any other server_name it is
// https://server_name: server_name is the id_server clients and
// homeservers use, and they reach an identity server over https (TLS in
// front of Sigil), whatever the port Sigil itself listens on.
func (c *Config) derivePublicBaseURL() {
	if c.PublicBaseURL != "" {
		return
	}
	c.derivedBaseURL = true
	host, _, err := net.SplitHostPort(c.ServerName)
	if err != nil {
		host = strings.Trim(c.ServerName, "[]")
	}
	if !isLoopbackHost(host) {
		c.PublicBaseURL = "https://" + c.ServerName
		return
	}
	_, port, err := net.SplitHostPort(c.Listen)
	if err != nil {
		c.PublicBaseURL = "http://" + c.ServerName
		return
	}
	c.PublicBaseURL = "http://" + net.JoinHostPort(host, port)
}

// baseURLWarnings names a public_base_url that mail links would follow to
// the wrong place: a loopback URL on another port than the loopback one
// Sigil listens on, a loopback URL for a public server_name, or another
// host than server_name's.
func (c Config) baseURLWarnings() []string {
	u, err := url.Parse(c.PublicBaseURL)
	if err != nil || c.derivedBaseURL {
		return nil
	}
	var out []string
	nameHost, _, err := net.SplitHostPort(c.ServerName)
	if err != nil {
		nameHost = strings.Trim(c.ServerName, "[]")
	}
	listenHost, listenPort, _ := net.SplitHostPort(c.Listen)
	urlPort := u.Port()
	if urlPort == "" {
		urlPort = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	switch {
	case isLoopbackHost(u.Hostname()) && (isLoopbackHost(listenHost) || listenHost == "" || net.ParseIP(listenHost).IsUnspecified()) &&
		urlPort != listenPort:
		out = append(out, fmt.Sprintf("public_base_url %s is port %s of this machine, but Sigil listens on %s: "+
			"the links in validation mails will not reach it (unset public_base_url to derive it from listen, or correct it)",
			c.PublicBaseURL, urlPort, c.Listen))
	case isLoopbackHost(u.Hostname()) && !isLoopbackHost(nameHost):
		out = append(out, fmt.Sprintf("public_base_url %s is a loopback address, but server_name %s is public: "+
			"the links in validation mails only work on this machine (unset public_base_url for https://%s)",
			c.PublicBaseURL, c.ServerName, c.ServerName))
	case !isLoopbackHost(u.Hostname()) && !isLoopbackHost(nameHost) && !strings.EqualFold(u.Hostname(), nameHost):
		out = append(out, fmt.Sprintf("public_base_url %s is not on server_name's host %s: mail links and "+
			"key_validity_url point at another host than the one homeservers know this server as", c.PublicBaseURL, nameHost))
	}
	return out
}

func isLoopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(h, "[]"))
	return ip != nil && ip.IsLoopback()
}

// decodeYAML decodes data over cfg. Unknown keys are errors naming their
// path (smtp.hots), not Go's type names.
func decodeYAML(data []byte, cfg *Config) error {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return err
	}
	if len(root.Content) == 0 { // an empty file is fine
		return nil
	}
	if unknown := unknownKeys(&root, reflect.TypeOf(*cfg), ""); len(unknown) > 0 {
		return fmt.Errorf("unknown setting %s", strings.Join(unknown, ", "))
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return namePaths(err, &root)
	}
	return nil
}

var lineRE = regexp.MustCompile(`line (\d+): `)

// namePaths adds the setting's path to yaml's "line N: cannot unmarshal"
// messages, which otherwise name Go types only.
func namePaths(err error, root *yaml.Node) error {
	paths := map[int]string{}
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, path)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				p := join(path, n.Content[i].Value)
				paths[n.Content[i+1].Line] = p
				walk(n.Content[i+1], p)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				p := fmt.Sprintf("%s[%d]", path, i)
				paths[c.Line] = p
				walk(c, p)
			}
		}
	}
	walk(root, "")
	msg := lineRE.ReplaceAllStringFunc(err.Error(), func(m string) string {
		line, _ := strconv.Atoi(lineRE.FindStringSubmatch(m)[1])
		if p, ok := paths[line]; ok {
			return fmt.Sprintf("%s (line %d): ", p, line)
		}
		return m
	})
	return errors.New(msg)
}

// unknownKeys lists the keys under n that t has no field for, as paths.
func unknownKeys(n *yaml.Node, t reflect.Type, path string) []string {
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		return unknownKeys(n.Content[0], t, path)
	}
	var out []string
	switch {
	case t.Kind() == reflect.Struct && t != durationType && n.Kind == yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i].Value
			f, ok := fieldByTag(t, k)
			if !ok {
				out = append(out, fmt.Sprintf("%s (line %d)", join(path, k), n.Content[i].Line))
				continue
			}
			out = append(out, unknownKeys(n.Content[i+1], f.Type, join(path, k))...)
		}
	case t.Kind() == reflect.Slice && n.Kind == yaml.SequenceNode:
		for i, c := range n.Content {
			out = append(out, unknownKeys(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i))...)
		}
	case t.Kind() == reflect.Map && n.Kind == yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			out = append(out, unknownKeys(n.Content[i+1], t.Elem(), join(path, n.Content[i].Value))...)
		}
	}
	return out
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

var durationType = reflect.TypeOf(Duration{})

func yamlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	return name
}

func fieldByTag(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		if f := t.Field(i); f.IsExported() && yamlName(f) == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// setting is one configurable value: its YAML path, its variable and
// where it sits in Config.
type setting struct {
	Path, Env string
	index     []int
	typ       reflect.Type
}

// Settings lists every setting of Config, derived from its yaml tags: a
// struct (other than Duration) is a section, anything else one setting.
// SIGIL_ + the path in upper case with dots as underscores is its
// variable (smtp.host: SIGIL_SMTP_HOST).
func Settings() []setting {
	var out []setting
	var walk func(t reflect.Type, path string, index []int)
	walk = func(t reflect.Type, path string, index []int) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name := yamlName(f)
			if !f.IsExported() || name == "" || name == "-" {
				continue
			}
			p, idx := join(path, name), append(append([]int(nil), index...), i)
			if f.Type.Kind() == reflect.Struct && f.Type != durationType {
				walk(f.Type, p, idx)
				continue
			}
			env := "SIGIL_" + strings.ToUpper(strings.ReplaceAll(p, ".", "_"))
			out = append(out, setting{Path: p, Env: env, index: idx, typ: f.Type})
		}
	}
	walk(reflect.TypeOf(Config{}), "", nil)
	return out
}

// envAliases are the variable names of earlier releases, still read.
var envAliases = map[string]string{
	"SIGIL_TOKEN_LIFETIME":           "SIGIL_SESSIONS_TOKEN_LIFETIME",
	"SIGIL_SESSION_LIFETIME":         "SIGIL_SESSIONS_SESSION_LIFETIME",
	"SIGIL_FEDERATION_ALLOW_PRIVATE": "SIGIL_FEDERATION_ALLOW_PRIVATE_ADDRESSES",
}

// notSettings are SIGIL_* variables that are not settings: the
// configuration file's path, and the test and load-benchmark knobs.
func notSetting(name string) bool {
	return name == "SIGIL_CONFIG" || strings.HasPrefix(name, "SIGIL_TEST_") || strings.HasPrefix(name, "SIGIL_LOAD_")
}

// ignoreEnv is the variable listing other tools' SIGIL_* variables that
// Sigil must leave alone (comma- or space-separated names).
const ignoreEnv = "SIGIL_IGNORE"

// applyEnv sets every setting named by a SIGIL_* variable. A SIGIL_*
// variable that names no setting but looks like one (a setting's name at
// most 3 edits away, or a section's prefix: SIGIL_SMTP_HOTS) is an error:
// a misspelt setting would otherwise be silently ignored. Any other
// (another tool's SIGIL_SRC) is ignored with a warning, and the names
// listed in SIGIL_IGNORE are ignored silently, even close ones.
func applyEnv(cfg *Config, environ []string) error {
	byEnv := map[string]setting{}
	sections := map[string]bool{}
	for _, s := range Settings() {
		byEnv[s.Env] = s
		if sec, _, ok := strings.Cut(s.Path, "."); ok {
			sections["SIGIL_"+strings.ToUpper(sec)+"_"] = true
		}
	}
	ignored := map[string]bool{}
	for _, n := range strings.FieldsFunc(lookup(environ, ignoreEnv), func(r rune) bool { return r == ',' || r == ' ' }) {
		ignored[n] = true
	}
	var errs []string
	v := reflect.ValueOf(cfg).Elem()
	for _, kv := range environ {
		name, value, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "SIGIL_") || notSetting(name) || name == ignoreEnv || ignored[name] {
			continue
		}
		if alias, ok := envAliases[name]; ok {
			name = alias
		}
		s, ok := byEnv[name]
		if !ok {
			hint := suggest(name, byEnv)
			underSection := false
			for p := range sections {
				underSection = underSection || strings.HasPrefix(name, p)
			}
			if hint == "" && !underSection {
				cfg.warnings = append(cfg.warnings, fmt.Sprintf("%s names no setting and is ignored "+
					"(another tool's? list it in %s to silence this)", name, ignoreEnv))
				continue
			}
			errs = append(errs, fmt.Sprintf("%s names no setting%s (another tool's? list it in %s)", name, hint, ignoreEnv))
			continue
		}
		if err := setFromEnv(v.FieldByIndex(s.index), value); err != nil {
			errs = append(errs, fmt.Sprintf("%s (%s): %v", name, s.Path, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("config: %s", strings.Join(errs, "; "))
	}
	return nil
}

// suggest names the setting a misspelt variable probably meant.
func suggest(name string, byEnv map[string]setting) string {
	best, bestD := "", 4
	for env, s := range byEnv {
		if d := editDistance(name, env); d < bestD {
			best, bestD = fmt.Sprintf(" (did you mean %s, %s?)", env, s.Path), d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// setFromEnv sets one field from a variable's text: strings as they are,
// lists also as comma-separated words, anything else as YAML (numbers,
// booleans, durations, maps and lists in flow style: '{a: b}', '[x, y]').
func setFromEnv(f reflect.Value, value string) error {
	switch {
	case f.Kind() == reflect.String:
		f.SetString(value)
		return nil
	case f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.String && !strings.HasPrefix(strings.TrimSpace(value), "["):
		var list []string
		for _, w := range strings.Split(value, ",") {
			if w = strings.TrimSpace(w); w != "" {
				list = append(list, w)
			}
		}
		f.Set(reflect.ValueOf(list))
		return nil
	}
	p := reflect.New(f.Type())
	if err := yaml.Unmarshal([]byte(value), p.Interface()); err != nil {
		return err
	}
	f.Set(p.Elem())
	return nil
}

// Validate reports every problem at once, each naming its setting.
func (c Config) Validate() error {
	var errs []string
	bad := func(f string, a ...any) { errs = append(errs, fmt.Sprintf(f, a...)) }
	if !federation.ValidServerName(c.ServerName) {
		bad("server_name must be a Matrix server name (host or host:port, port 1-65535), got %q", c.ServerName)
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
	if _, _, err := net.SplitHostPort(c.MetricsListen); c.MetricsListen != "" && err != nil {
		bad("metrics_listen must be host:port, got %q", c.MetricsListen)
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		bad("log_format must be text or json, got %q", c.LogFormat)
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
	if c.Federation.OnBindConcurrency <= 0 {
		bad("federation.onbind_concurrency must be positive, got %d", c.Federation.OnBindConcurrency)
	}
	if c.Federation.OnBindPerDestination <= 0 || c.Federation.OnBindPerDestination > c.Federation.OnBindConcurrency {
		// More per homeserver than in all would let one homeserver that
		// does not answer take every slot: the others' invites would wait.
		bad("federation.onbind_per_destination must be between 1 and federation.onbind_concurrency (%d), got %d",
			c.Federation.OnBindConcurrency, c.Federation.OnBindPerDestination)
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
