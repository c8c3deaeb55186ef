// Command sigil is the Sigil identity server.
//
//	sigil [-config sigil.yaml]          serve (the default)
//	sigil -config sigil.yaml check      validate the configuration and exit
//	sigil rotate-pepper [PEPPER]        replace the lookup pepper (random if not given) and rehash
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/sigil-matrix/sigil/handlers"
	"github.com/sigil-matrix/sigil/handlers/federation"
	"github.com/sigil-matrix/sigil/handlers/identity"
	"github.com/sigil-matrix/sigil/handlers/mail"
	"github.com/sigil-matrix/sigil/handlers/signing"
	"github.com/sigil-matrix/sigil/handlers/sms"
	"github.com/sigil-matrix/sigil/store"
)

func main() {
	configPath := flag.String("config", os.Getenv("SIGIL_CONFIG"), "YAML configuration file (optional; env SIGIL_CONFIG)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: sigil [-config file] [serve | check | rotate-pepper [pepper]]\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	cfg, err := LoadConfig(*configPath, os.LookupEnv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sigil:", err)
		os.Exit(2)
	}
	log := newLogger(cfg.LogLevel)
	cmd := flag.Arg(0)
	switch cmd {
	case "", "serve":
		tuneGC(os.LookupEnv)
		ctx, stop := onSignals(log)
		defer stop()
		err = serve(ctx, cfg, log)
	case "check":
		fmt.Println("configuration is valid")
	case "rotate-pepper":
		err = rotatePepper(context.Background(), cfg, log, flag.Arg(1))
	default:
		flag.Usage()
		os.Exit(2)
	}
	if err != nil {
		log.Error("sigil stopped", "err", err)
		os.Exit(1)
	}
}

// onSignals returns a context that ends at the first SIGTERM or SIGINT,
// which starts a graceful shutdown; a second signal exits at once.
func onSignals(log *slog.Logger) (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		sig := <-sigs
		log.Info("signal received: shutting down (a second signal exits at once)", "signal", sig.String())
		cancel()
		sig = <-sigs
		log.Warn("second signal: exiting now", "signal", sig.String())
		os.Exit(1)
	}()
	return ctx, func() { signal.Stop(sigs); cancel() }
}

func newLogger(level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(strings.ToUpper(level)))
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}

// app is the wired server, shared by serve and the tests.
type app struct {
	store *store.Store
	http  http.Handler
	// identity is the operations, for the commands and the onbind worker.
	identity *identity.Service
}

func build(ctx context.Context, cfg Config, log *slog.Logger) (*app, error) {
	st, err := store.Open(ctx, cfg.Database)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	key, err := signing.LoadOrCreateKeyFile(cfg.SigningKey)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("signing key: %w", err)
	}
	fed := federation.NewClient(federation.ClientOptions{
		AllowPrivate: cfg.Federation.AllowPrivateAddresses, Timeout: cfg.Federation.Timeout.Duration, UserAgent: "Sigil",
	})
	texts, err := sms.NewSender(sms.HTTPConfig{
		URL: cfg.SMS.URL, Method: cfg.SMS.Method, Username: cfg.SMS.Username, Password: cfg.SMS.Password,
		BearerToken: cfg.SMS.BearerToken, Headers: cfg.SMS.Headers, ContentType: cfg.SMS.ContentType,
		Body: cfg.SMS.Body, From: cfg.SMS.From,
	}, fed.HTTP(), log)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("sms: %w", err)
	}
	sender, err := mail.NewSender(mail.SMTPConfig{
		Host: cfg.SMTP.Host, Port: cfg.SMTP.Port, TLS: cfg.SMTP.TLS,
		Username: cfg.SMTP.Username, Password: cfg.SMTP.Password, From: cfg.SMTP.From,
	}, log)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("smtp: %w", err)
	}
	tmpl, err := mail.LoadTemplates(cfg.TemplatesDir)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("templates: %w", err)
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
	}, identity.Deps{Store: st, Key: key, Mail: sender, SMS: texts, Templates: tmpl, Logger: log, Federation: fed})
	if err != nil {
		st.Close()
		return nil, err
	}
	e, err := handlers.NewHTTP(handlers.New(svc, log), handlers.HTTPOptions{
		MaxBodyBytes: cfg.Limits.MaxBodyBytes, DisableV1: !cfg.API.V1, TrustForwardedFor: cfg.Federation.TrustForwardedFor,
	})
	if err != nil {
		st.Close()
		return nil, err
	}
	if cfg.Lookup.Pepper != "" {
		if current, _ := st.Setting(ctx, identity.PepperKey); current != cfg.Lookup.Pepper {
			n, err := svc.RotatePepper(ctx, cfg.Lookup.Pepper)
			if err != nil {
				st.Close()
				return nil, fmt.Errorf("lookup pepper: %w", err)
			}
			log.Info("lookup pepper replaced from the configuration", "rehashed", n)
		}
	}
	log.Info("sigil ready", "server_name", cfg.ServerName, "database", st.Dialect(),
		"key", key.ID, "public_key", key.PublicBase64(), "mail", mailMode(cfg))
	return &app{store: st, http: e, identity: svc}, nil
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

func serve(ctx context.Context, cfg Config, log *slog.Logger) error {
	a, err := build(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer a.store.Close()
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
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
	workerCtx, stopWorker := context.WithCancel(context.Background())
	workerDone := make(chan struct{})
	go func() { defer close(workerDone); a.identity.RunOnBindWorker(workerCtx) }()
	purgeDone := make(chan struct{})
	go func() { defer close(purgeDone); a.identity.RunPurger(workerCtx) }()
	defer func() { stopWorker(); <-purgeDone }()
	defer func() { stopWorker(); <-workerDone }()
	log.Info("listening", "addr", ln.Addr().String(), "public_base_url", cfg.PublicBaseURL)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	return shutdown(hs, cfg.ShutdownTimeout.Duration, log)
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

// rotatePepper replaces the lookup pepper of the configured database. A
// running server picks the new pepper up within seconds.
func rotatePepper(ctx context.Context, cfg Config, log *slog.Logger, pepper string) error {
	a, err := build(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer a.store.Close()
	n, err := a.identity.RotatePepper(ctx, pepper)
	if err != nil {
		return err
	}
	fmt.Printf("lookup pepper rotated; %d bindings rehashed\n", n)
	return nil
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
