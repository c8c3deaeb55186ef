// Command sigil is the Sigil identity server.
//
//	sigil [-config sigil.yaml]          serve (the default)
//	sigil -config sigil.yaml check      validate the configuration and exit
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/sigil-matrix/sigil/handlers"
	"github.com/sigil-matrix/sigil/handlers/mail"
	"github.com/sigil-matrix/sigil/handlers/signing"
	"github.com/sigil-matrix/sigil/store"
)

func main() {
	configPath := flag.String("config", os.Getenv("SIGIL_CONFIG"), "YAML configuration file (optional; env SIGIL_CONFIG)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: sigil [-config file] [serve|check]\n\n")
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
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		err = serve(ctx, cfg, log)
	case "check":
		fmt.Println("configuration is valid")
	default:
		flag.Usage()
		os.Exit(2)
	}
	if err != nil {
		log.Error("sigil stopped", "err", err)
		os.Exit(1)
	}
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
	srv, err := handlers.New(handlers.Config{
		ServerName: cfg.ServerName, PublicBaseURL: strings.TrimSuffix(cfg.PublicBaseURL, "/"),
		TokenLifetime: cfg.Sessions.TokenLifetime.Duration, SessionLifetime: cfg.Sessions.SessionLifetime.Duration,
		NextLinkHosts: cfg.NextLinkHosts, MailEvery: cfg.Limits.MailEvery.Duration, MailBurst: cfg.Limits.MailBurst,
	}, handlers.Deps{Store: st, Key: key, Mail: sender, Templates: tmpl, Logger: log})
	if err != nil {
		st.Close()
		return nil, err
	}
	e, err := handlers.NewHTTP(srv, handlers.HTTPOptions{MaxBodyBytes: cfg.Limits.MaxBodyBytes, DisableV1: !cfg.API.V1})
	if err != nil {
		st.Close()
		return nil, err
	}
	log.Info("sigil ready", "server_name", cfg.ServerName, "database", st.Dialect(),
		"key", key.ID, "public_key", key.PublicBase64(), "mail", mailMode(cfg))
	return &app{store: st, http: e}, nil
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
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	log.Info("listening", "addr", ln.Addr().String(), "public_base_url", cfg.PublicBaseURL)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	shutCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := hs.Shutdown(shutCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}
