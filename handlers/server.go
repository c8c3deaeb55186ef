// Package handlers implements the generated strict server interface: thin
// methods that take typed, already-validated requests, call the domain code
// and return typed responses or *matrixerr.Error values.
package handlers

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"time"

	"github.com/sigil-matrix/sigil/gen"
	"github.com/sigil-matrix/sigil/handlers/federation"
	"github.com/sigil-matrix/sigil/handlers/mail"
	"github.com/sigil-matrix/sigil/handlers/ratelimit"
	"github.com/sigil-matrix/sigil/handlers/signing"
	"github.com/sigil-matrix/sigil/handlers/sms"
	"github.com/sigil-matrix/sigil/store"
)

var _ gen.StrictServerInterface = (*Server)(nil)

// Config is what the handlers need to know about the deployment.
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
}

// Deps are the components the handlers drive.
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
}

// Server implements gen.StrictServerInterface.
type Server struct {
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
	onbind     *onBindState // the onbind delivery worker's state
}

// New builds a Server.
func New(cfg Config, d Deps) (*Server, error) {
	cfg.defaults()
	if cfg.ServerName == "" {
		return nil, fmt.Errorf("handlers: server name is required")
	}
	if d.Store == nil || d.Mail == nil || d.Key.Private == nil {
		return nil, fmt.Errorf("handlers: store, mail sender and signing key are required")
	}
	if d.Templates == nil {
		t, err := mail.LoadTemplates("")
		if err != nil {
			return nil, err
		}
		d.Templates = t
	}
	if d.SMS == nil {
		d.SMS = sms.NewLogSender(d.Logger)
	}
	if d.Federation == nil {
		d.Federation = federation.NewClient(federation.ClientOptions{})
	}
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	srv := &Server{
		cfg: cfg, store: d.Store, key: d.Key, mail: d.Mail, templates: d.Templates,
		log: d.Logger, now: d.Now, fed: d.Federation, sms: d.SMS,
		tokenTries: ratelimit.New(time.Minute, 10),
		mailByAddr: ratelimit.New(cfg.MailEvery, cfg.MailBurst),
		mailByIP:   ratelimit.New(cfg.MailEvery/10, cfg.MailBurst*10),
	}
	srv.onbind = newOnBindState()
	return srv, nil
}

type ctxKey int

const (
	clientIPKey ctxKey = iota
	httpRequestKey
)

func withClientIP(ctx context.Context, ip string) context.Context {
	return context.WithValue(ctx, clientIPKey, ip)
}

// httpRequest is the request being handled, for the few handlers that need
// more than the typed input (the X-Matrix signature covers the raw URI and
// body). Its GetBody returns the body bytes as received.
func httpRequest(ctx context.Context) *http.Request {
	r, _ := ctx.Value(httpRequestKey).(*http.Request)
	return r
}

func clientIP(ctx context.Context) string {
	ip, _ := ctx.Value(clientIPKey).(string)
	return ip
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
