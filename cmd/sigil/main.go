// Command sigil is the Sigil identity server and its operator's tools.
//
//	sigil [-config FILE] COMMAND [ARGS]    (sigil help lists the commands)
//
// Exit codes: 0 success, 1 failure, 2 usage or configuration error,
// 3 not found (bindings, invites, onbind: nothing matched).
package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/sigil-matrix/sigil/handlers"
	"github.com/sigil-matrix/sigil/handlers/federation"
	"github.com/sigil-matrix/sigil/handlers/identity"
	"github.com/sigil-matrix/sigil/handlers/mail"
	"github.com/sigil-matrix/sigil/handlers/metrics"
	"github.com/sigil-matrix/sigil/handlers/signing"
	"github.com/sigil-matrix/sigil/handlers/sms"
	"github.com/sigil-matrix/sigil/store"
)

func main() {
	os.Exit(run(os.Args[1:], os.Environ(), os.Stdout, os.Stderr))
}

// app is the wired server, shared by serve, the commands and the tests.
type app struct {
	store *store.Store
	http  http.Handler
	// identity is the operations, for the commands and the onbind worker.
	identity *identity.Service
	metrics  *metrics.Metrics
	key      signing.Key
	mail     mail.Sender
}

func (a *app) Close() { _ = a.store.Close() }

// openApp wires everything but the HTTP stack: the store, the key, mail,
// SMS, homeservers and the identity operations. Only the server loads the
// lookup index (withIndex); a command answers from the database instead
// of reading every binding first.
func openApp(ctx context.Context, cfg Config, log *slog.Logger, withIndex bool) (*app, error) {
	opts := []store.Option{store.WithLogger(log)}
	if !withIndex {
		opts = append(opts, store.WithoutLookupIndex())
	}
	st, err := store.Open(ctx, cfg.Database, opts...)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	a := &app{store: st, metrics: metrics.New()}
	if err := a.wire(cfg, log); err != nil {
		st.Close()
		return nil, err
	}
	return a, nil
}

func (a *app) wire(cfg Config, log *slog.Logger) error {
	key, err := signing.LoadOrCreateKeyFile(cfg.SigningKey)
	if err != nil {
		return fmt.Errorf("signing key: %w", err)
	}
	tlsConfig, err := federationTLS(cfg.Federation, log)
	if err != nil {
		return err
	}
	fed := federation.NewClient(federation.ClientOptions{
		AllowPrivate: cfg.Federation.AllowPrivateAddresses, Timeout: cfg.Federation.Timeout.Duration, UserAgent: "Sigil",
		TLSConfig: tlsConfig, Logger: log,
	})
	texts, err := sms.NewSender(sms.HTTPConfig{
		URL: cfg.SMS.URL, Method: cfg.SMS.Method, Username: cfg.SMS.Username, Password: cfg.SMS.Password,
		BearerToken: cfg.SMS.BearerToken, Headers: cfg.SMS.Headers, ContentType: cfg.SMS.ContentType,
		Body: cfg.SMS.Body, From: cfg.SMS.From,
	}, fed.HTTP(), log)
	if err != nil {
		return fmt.Errorf("sms: %w", err)
	}
	sender, err := newMailSender(cfg, log)
	if err != nil {
		return err
	}
	tmpl, err := mail.LoadTemplates(cfg.TemplatesDir)
	if err != nil {
		return fmt.Errorf("templates: %w", err)
	}
	svc, err := identity.New(identity.Config{
		ServerName: cfg.ServerName, PublicBaseURL: strings.TrimSuffix(cfg.PublicBaseURL, "/"),
		TokenLifetime: cfg.Sessions.TokenLifetime.Duration, SessionLifetime: cfg.Sessions.SessionLifetime.Duration,
		NextLinkHosts: cfg.NextLinkHosts, MailEvery: cfg.Limits.MailEvery.Duration, MailBurst: cfg.Limits.MailBurst,
		MaxLookupAddresses: cfg.Lookup.MaxAddresses, RegisterAllowedServers: cfg.Register.AllowedServers,
		Terms: policies(cfg.Terms),
		Retention: identity.Retention{
			ExpiredSessions: cfg.Retention.ExpiredSessions.Duration, Invites: cfg.Retention.Invites.Duration,
			OnBinds: cfg.Retention.OnBindDeliveries.Duration, Every: cfg.Retention.PurgeEvery.Duration,
		},
	}, identity.Deps{
		Store: a.store, Key: key, Mail: a.metrics.Mail(sender), SMS: a.metrics.SMS(texts), Templates: tmpl,
		Logger: log, Federation: fed, OnBindObserver: a.metrics.OnBind,
	})
	if err != nil {
		return err
	}
	svc.ConfigureOnBind(identity.OnBindOptions{
		Concurrency: cfg.Federation.OnBindConcurrency, PerDestination: cfg.Federation.OnBindPerDestination,
	})
	a.identity, a.key, a.mail = svc, key, sender
	a.metrics.WatchStore(a.store, log)
	return nil
}

func newMailSender(cfg Config, log *slog.Logger) (mail.Sender, error) {
	sender, err := mail.NewSender(mail.SMTPConfig{
		Host: cfg.SMTP.Host, Port: cfg.SMTP.Port, TLS: cfg.SMTP.TLS,
		Username: cfg.SMTP.Username, Password: cfg.SMTP.Password, From: cfg.SMTP.From,
	}, log)
	if err != nil {
		return nil, fmt.Errorf("smtp: %w", err)
	}
	return sender, nil
}

// federationTLS is the TLS configuration for calls to homeservers: the
// system's roots plus federation.ca_file, or no verification at all when
// federation.insecure_skip_verify is set (loudly: it is for test setups).
func federationTLS(fc FederationConfig, log *slog.Logger) (*tls.Config, error) {
	if fc.CAFile == "" && !fc.InsecureSkipVerify {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if fc.CAFile != "" {
		pem, err := os.ReadFile(fc.CAFile)
		if err != nil {
			return nil, fmt.Errorf("federation.ca_file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("federation.ca_file: %s holds no PEM certificate", fc.CAFile)
		}
		c.RootCAs = pool
	}
	if fc.InsecureSkipVerify {
		c.InsecureSkipVerify = true //nolint:gosec // opt-in, for test setups, warned about below
		log.Warn("INSECURE: federation.insecure_skip_verify is set: Sigil accepts ANY certificate from homeservers, " +
			"so anyone on the network path can impersonate them. Never use this outside a test setup.")
	}
	return c, nil
}

// build is openApp plus the HTTP stack and the configured pepper: what
// serve runs.
func build(ctx context.Context, cfg Config, log *slog.Logger) (*app, error) {
	pages, err := handlers.LoadPages(cfg.TemplatesDir)
	if err != nil {
		return nil, err
	}
	a, err := openApp(ctx, cfg, log, true)
	if err != nil {
		return nil, err
	}
	e, err := handlers.NewHTTP(handlers.New(a.identity, log), handlers.HTTPOptions{
		MaxBodyBytes: cfg.Limits.MaxBodyBytes, DisableV1: !cfg.API.V1, TrustForwardedFor: cfg.Federation.TrustForwardedFor,
		Observer: a.metrics, Docs: cfg.Docs.Enabled, Pages: pages, AccessLog: accessLogOf(log),
	})
	if err != nil {
		a.Close()
		return nil, err
	}
	a.http = e
	if err := applyConfiguredPepper(ctx, a, cfg.Lookup.Pepper, log); err != nil {
		a.Close()
		return nil, err
	}
	return a, nil
}

// configuredPepperKey records (as a hash) the lookup.pepper last applied
// from the configuration, so that the two ways of setting the pepper
// cannot silently undo each other: a configured pepper is applied once,
// and if `sigil rotate-pepper` replaces it afterwards, starting again with
// the same configured pepper is an error instead of a silent roll-back.
const configuredPepperKey = "lookup.configured_pepper_sha256"

func pepperDigest(p string) string {
	sum := sha256.Sum256([]byte(p))
	return hex.EncodeToString(sum[:])
}

// errPepperConflict is the start refused because the configured pepper
// was replaced by rotate-pepper since it was applied.
var errPepperConflict = errors.New("lookup.pepper is set in the configuration, but `sigil rotate-pepper` replaced " +
	"that pepper since it was applied; remove lookup.pepper from the configuration (the rotated pepper stays) " +
	"or set it to a new value")

func applyConfiguredPepper(ctx context.Context, a *app, pepper string, log *slog.Logger) error {
	if pepper == "" {
		return nil
	}
	current, err := a.store.Setting(ctx, identity.PepperKey)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("lookup pepper: %w", err)
	}
	applied, err := a.store.Setting(ctx, configuredPepperKey)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("lookup pepper: %w", err)
	}
	switch {
	case current == pepper:
	case applied == pepperDigest(pepper):
		return errPepperConflict
	default:
		n, err := a.identity.RotatePepper(ctx, pepper)
		if err != nil {
			return fmt.Errorf("lookup pepper: %w", err)
		}
		log.Info("lookup pepper replaced from the configuration", "rehashed", n)
	}
	if applied != pepperDigest(pepper) {
		if err := a.store.SetSetting(ctx, configuredPepperKey, pepperDigest(pepper)); err != nil {
			return fmt.Errorf("lookup pepper: %w", err)
		}
	}
	return nil
}

func policies(in []PolicyConfig) []identity.Policy {
	out := make([]identity.Policy, 0, len(in))
	for _, p := range in {
		docs := make(map[string]identity.PolicyDoc, len(p.Languages))
		for lang, d := range p.Languages {
			docs[lang] = identity.PolicyDoc{Name: d.Name, URL: d.URL}
		}
		out = append(out, identity.Policy{ID: p.ID, Version: p.Version, Languages: docs})
	}
	return out
}

func mailMode(cfg Config) string {
	if cfg.SMTP.Host == "" {
		return "log (no smtp.host configured)"
	}
	return fmt.Sprintf("smtp %s:%d", cfg.SMTP.Host, cfg.SMTP.Port)
}

func cmdServe(c *cli, fs *flag.FlagSet) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		if err := noArgs(args); err != nil {
			return err
		}
		tuneGC(os.LookupEnv)
		return serve(ctx, c.cfg, c.log)
	}
}

func serve(ctx context.Context, cfg Config, log *slog.Logger) error {
	// The port first: a busy one is refused before anything else runs,
	// and "sigil ready" below is never logged for a server that cannot
	// serve.
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s (listen): %w", cfg.Listen, err)
	}
	if cfg.derivedBaseURL {
		// Derived from the port actually bound (listen: 127.0.0.1:0).
		bound := cfg
		bound.Listen, bound.PublicBaseURL = ln.Addr().String(), ""
		bound.derivePublicBaseURL()
		cfg.PublicBaseURL = bound.PublicBaseURL
	}
	a, err := build(ctx, cfg, log)
	if err != nil {
		_ = ln.Close()
		return err
	}
	defer a.Close()
	hs := &http.Server{
		Handler:           a.http,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	ln = handlers.Guard(hs, ln)
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	if cfg.DebugListen != "" {
		stop, err := serveDebug(cfg.DebugListen, log)
		if err != nil {
			return err
		}
		defer stop()
	}
	if cfg.MetricsListen != "" {
		stop, err := serveMetrics(cfg.MetricsListen, a.metrics, log)
		if err != nil {
			return err
		}
		defer stop()
	}
	// The onbind worker stops taking work when the shutdown starts; the
	// calls it has in flight get until shutdown_timeout, like requests,
	// and are cut (with that reason in the log) only then.
	workerCtx, stopWorker := context.WithCancel(context.Background())
	callsCtx, cutCalls := context.WithCancelCause(context.Background())
	defer cutCalls(nil)
	workerDone := make(chan struct{})
	go func() { defer close(workerDone); a.identity.RunOnBindDeliveries(workerCtx, callsCtx) }()
	purgeDone := make(chan struct{})
	go func() { defer close(purgeDone); a.identity.RunPurger(workerCtx) }()
	defer func() { stopWorker(); <-purgeDone }()
	defer func() { stopWorker(); cutCalls(errors.New("sigil is stopping")); <-workerDone }()
	log.Info("listening", "addr", ln.Addr().String(), "public_base_url", cfg.PublicBaseURL)
	log.Info("sigil ready", "addr", ln.Addr().String(), "server_name", cfg.ServerName, "database", a.store.Dialect(),
		"key", a.key.ID, "public_key", a.key.PublicBase64(), "mail", mailMode(cfg))
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	timeout := cfg.ShutdownTimeout.Duration
	deadline := time.Now().Add(timeout)
	stopWorker()
	err = shutdown(hs, timeout, log)
	select {
	case <-workerDone:
	case <-time.After(time.Until(deadline)):
		log.Warn("onbind calls still in flight at the shutdown deadline: cut, retried after the restart", "deadline", timeout)
		cutCalls(fmt.Errorf("shutdown_timeout (%s) reached", timeout))
		<-workerDone
	}
	return err
}

// shutdown stops accepting connections and lets the requests in flight
// finish for up to timeout; then it cuts what is left (a slow upload, a
// client that stopped reading). Either way the shutdown was orderly: the
// database is closed by the caller and the exit status is 0.
func shutdown(hs *http.Server, timeout time.Duration, log *slog.Logger) error {
	log.Info("shutting down: no new connections; finishing requests in flight", "deadline", timeout)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := hs.Shutdown(ctx)
	switch {
	case err == nil, errors.Is(err, http.ErrServerClosed):
		log.Info("shut down")
	case errors.Is(err, context.DeadlineExceeded):
		log.Warn("requests still in flight at the shutdown deadline: cut", "deadline", timeout)
		_ = hs.Close()
	default:
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// serveMetrics serves /metrics on addr, apart from the API.
func serveMetrics(addr string, m *metrics.Metrics, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	log.Info("metrics listener", "addr", ln.Addr().String())
	return func() { _ = hs.Close() }, nil
}

func cmdRotatePepper(c *cli, fs *flag.FlagSet) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		if len(args) > 1 {
			return usagef("at most one argument, the new pepper")
		}
		if c.cfg.Lookup.Pepper != "" {
			// The configuration would otherwise undo the rotation, or
			// refuse to start, at the next start.
			return usagef("lookup.pepper is set in the configuration: change it there instead (or remove it, then rotate)")
		}
		a, err := openApp(ctx, c.cfg, c.log, false)
		if err != nil {
			return err
		}
		defer a.Close()
		n, err := a.identity.RotatePepper(ctx, strings.Join(args, ""))
		if err != nil {
			return err
		}
		fmt.Fprintf(c.out, "lookup pepper rotated; %d bindings rehashed\n", n)
		return nil
	}
}

// serveDebug serves net/http/pprof on addr, apart from the API so that
// profiles are never reachable through it.
func serveDebug(addr string, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("debug listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	log.Info("debug listener (pprof)", "addr", ln.Addr().String())
	return func() { _ = hs.Close() }, nil
}

// defaultGCPercent is the GC's heap growth when GOGC is not set. The
// lookup index lives off the Go heap, so the live heap is small (about
// 8 MB) while a 1,000-address lookup allocates a few hundred KB: at Go's
// default of 100 the collector ran every 30 or so such requests and took
// a fifth of their CPU. 300 lets the heap reach about 32 MB between
// collections, which stays well inside the memory a 1,000,000-binding
// server needs anyway (see README, Performance).
const defaultGCPercent = 300

// defaultMemoryLimit is the Go runtime's soft memory limit when
// GOMEMLIMIT is not set: under a burst of large requests the heap may
// not grow past it however far GOGC would let it (the lookup index and
// SQLite's page cache are outside it). The live heap is far smaller, so
// the collector only works harder during such bursts.
const defaultMemoryLimit = 48 << 20

// tuneGC applies defaultGCPercent and defaultMemoryLimit unless the
// operator set GOGC or GOMEMLIMIT.
func tuneGC(env func(string) (string, bool)) {
	if _, set := env("GOGC"); !set {
		debug.SetGCPercent(defaultGCPercent)
	}
	if _, set := env("GOMEMLIMIT"); !set {
		debug.SetMemoryLimit(defaultMemoryLimit)
	}
}
