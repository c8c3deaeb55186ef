// Package identity holds the rules of an identity server, apart from any
// transport: validation sessions, bindings and their lookup hashes, unbind,
// third-party invites and their delivery to homeservers, accounts and terms,
// lookups. The HTTP handlers and the commands in cmd/ call the same
// operations; each operation that writes is one store transaction, so what
// must agree commits together or not at all.
//
// Errors are *matrixerr.Error values, ready for any adapter to show;
// unexpected failures are matrixerr.Unknown with the cause kept for the log.
// The package knows the store, signing, mail, SMS and the homeserver client;
// it knows neither HTTP servers nor generated API types.
package identity

import (
	"crypto/rand"
	"fmt"
	"log/slog"
	"math/big"
	"time"

	"github.com/sigil-matrix/sigil/handlers/federation"
	"github.com/sigil-matrix/sigil/handlers/mail"
	"github.com/sigil-matrix/sigil/handlers/ratelimit"
	"github.com/sigil-matrix/sigil/handlers/signing"
	"github.com/sigil-matrix/sigil/handlers/sms"
	"github.com/sigil-matrix/sigil/store"
)

// Config is what the identity rules need to know about the deployment.
type Config struct {
	// ServerName is the name the server signs as. Homeservers look up the
	// signature under the id_server they were given, so it must be exactly
	// that host[:port].
	ServerName string
	// PublicBaseURL is where clients reach this server, e.g.
	// "https://id.example.org"; used in emailed links and key_validity_url.
	PublicBaseURL string
	// TokenLifetime is how long a validation token may be submitted after
	// it was requested.
	TokenLifetime time.Duration
	// SessionLifetime is how long a validated session may be used to bind.
	SessionLifetime time.Duration
	// Terms are the policies users must accept before using the v2 API.
	Terms []Policy
	// RegisterAllowedServers, when set, are the only homeservers whose
	// users may register.
	RegisterAllowedServers []string
	// MaxLookupAddresses caps bulk_lookup and v2 lookup (default 10,000).
	MaxLookupAddresses int
	// NextLinkHosts, when set, is the only hosts next_link may redirect to.
	NextLinkHosts []string
	// MailEvery and MailBurst limit mail per destination address and per
	// client IP (the IP gets ten times the burst).
	MailEvery time.Duration
	MailBurst int
	// RegisterEvery and RegisterBurst limit account/register per client IP
	// (default: bursts of 20, then one a second).
	RegisterEvery time.Duration
	RegisterBurst int
	// Retention is how long finished data is kept (see Purge).
	Retention Retention
}

func (c *Config) defaults() {
	if c.TokenLifetime <= 0 {
		c.TokenLifetime = 24 * time.Hour
	}
	if c.SessionLifetime <= 0 {
		c.SessionLifetime = 24 * time.Hour
	}
	if c.MailBurst <= 0 {
		c.MailBurst = 3
	}
	c.Retention.defaults()
	if c.RegisterEvery == 0 {
		c.RegisterEvery = time.Second
	}
	if c.RegisterBurst <= 0 {
		c.RegisterBurst = 20
	}
	if c.MaxLookupAddresses <= 0 {
		c.MaxLookupAddresses = defaultMaxLookup
	}
}

// Deps are the components the operations drive.
type Deps struct {
	Store     *store.Store
	Key       signing.Key
	Mail      mail.Sender
	Templates *mail.Templates
	// SMS sends phone validation codes; defaults to writing them to the log.
	SMS sms.Sender
	// Federation talks to homeservers (key fetches, onbind, OpenID); its
	// guard refuses private addresses unless configured otherwise.
	Federation *federation.Client
	Logger     *slog.Logger
	// Now is the clock; tests move it to expire sessions.
	Now func() time.Time
	// OnBindObserver, if set, is told the outcome of every onbind attempt
	// (one of OnBindOutcomes) and its number (1 for the first): the
	// metrics.
	OnBindObserver func(outcome string, attempt int)
}

// Service is the identity server's operations over one store.
type Service struct {
	cfg       Config
	store     *store.Store
	key       signing.Key
	mail      mail.Sender
	sms       sms.Sender
	templates *mail.Templates
	log       *slog.Logger
	now       func() time.Time
	fed       *federation.Client
	peppers   pepperCache
	// tokenTries bounds submitToken calls per session, so a six-digit SMS
	// code cannot be guessed by brute force.
	tokenTries *ratelimit.Limiter
	mailByAddr *ratelimit.Limiter
	mailByIP   *ratelimit.Limiter
	// registerByIP bounds account/register, which calls the homeserver.
	registerByIP *ratelimit.Limiter
	onbind       *onBindState // the onbind delivery worker's state
	// onBindObserver is Deps.OnBindObserver.
	onBindObserver func(outcome string, attempt int)
	auth           *authCache // recent token checks, for outages
}

// New builds a Service.
func New(cfg Config, d Deps) (*Service, error) {
	cfg.defaults()
	if cfg.ServerName == "" {
		return nil, fmt.Errorf("identity: server name is required")
	}
	if d.Store == nil || d.Mail == nil || d.Key.Private == nil {
		return nil, fmt.Errorf("identity: store, mail sender and signing key are required")
	}
	if d.Templates == nil {
		t, err := mail.LoadTemplates("")
		if err != nil {
			return nil, err
		}
		d.Templates = t
	}
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	if d.SMS == nil {
		d.SMS = sms.NewLogSender(d.Logger)
	}
	if d.Federation == nil {
		d.Federation = federation.NewClient(federation.ClientOptions{})
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	return &Service{
		cfg: cfg, store: d.Store, key: d.Key, mail: d.Mail, templates: d.Templates,
		log: d.Logger, now: d.Now, fed: d.Federation, sms: d.SMS,
		tokenTries:     ratelimit.New(time.Minute, 10),
		mailByAddr:     ratelimit.New(cfg.MailEvery, cfg.MailBurst),
		mailByIP:       ratelimit.New(cfg.MailEvery/10, cfg.MailBurst*10),
		registerByIP:   ratelimit.New(cfg.RegisterEvery, cfg.RegisterBurst),
		onbind:         newOnBindState(),
		onBindObserver: d.OnBindObserver,
		auth:           &authCache{},
	}, nil
}

// ServerName is the name the service signs as.
func (s *Service) ServerName() string { return s.cfg.ServerName }

// API is a version of the identity API; links and key_validity_urls point
// at the version the client used, so they keep working when the other one
// is switched off.
type API string

// The API versions and their path prefixes.
const (
	V1 API = "/_matrix/identity/api/v1"
	V2 API = "/_matrix/identity/v2"
)

// url is the public URL of path under this API version.
func (s *Service) url(api API, path string) string {
	return s.cfg.PublicBaseURL + string(api) + path
}

const alphanumeric = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

// randomString returns n characters from alphabet, drawn with crypto/rand.
func randomString(n int, alphabet string) string {
	b := make([]byte, n)
	max := big.NewInt(int64(len(alphabet)))
	for i := range b {
		x, err := rand.Int(rand.Reader, max)
		if err != nil {
			// crypto/rand does not fail on supported platforms; carrying on
			// with a predictable token would be worse than stopping.
			panic(fmt.Sprintf("crypto/rand: %v", err))
		}
		b[i] = alphabet[x.Int64()]
	}
	return string(b)
}
