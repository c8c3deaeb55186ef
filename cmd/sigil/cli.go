package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"github.com/sigil-matrix/sigil/handlers"
)

// Exit codes.
const (
	exitOK       = 0
	exitFailure  = 1
	exitUsage    = 2
	exitNotFound = 3
)

// usageError is a mistake on the command line (exit 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(f string, a ...any) error { return usageError{fmt.Sprintf(f, a...)} }

// notFound is an operator's command that matched nothing (exit 3).
type notFound struct{ msg string }

func (e notFound) Error() string { return e.msg }

// cli is what a command runs with.
type cli struct {
	cfg        Config
	configPath string
	log        *slog.Logger
	out, err   io.Writer
	environ    []string
}

// command is one subcommand of sigil.
type command struct {
	name, args, summary string
	// flags declares the command's flags on fs, returning its run.
	run func(c *cli, fs *flag.FlagSet) func(ctx context.Context, args []string) error
}

func commands() []command {
	return []command{
		{"serve", "", "serve the API (the default)", cmdServe},
		{"check", "", "check the configuration, the database, the signing key and the SMTP server", cmdCheck},
		{"version", "", "print the version", cmdVersion},
		{"rotate-pepper", "[PEPPER]", "replace the lookup pepper (random if not given) and rehash every binding", cmdRotatePepper},
		{"send-test-email", "ADDRESS", "send a test mail through the configured SMTP server", cmdSendTestEmail},
		{"bindings", "list|show|delete [SUBJECT]", "list, show or delete bindings (SUBJECT: @user:server, an email address or a phone number)", cmdBindings},
		{"invites", "list [3PID] | cancel TOKEN", "list or cancel stored third-party invites", cmdInvites},
		{"onbind", "list | retry ID|-failed", "show the onbind delivery queue, or retry deliveries", cmdOnBind},
		{"import-sydent", "-sydent-config FILE [-sydent-db FILE] [-replace-key]", "import bindings, invites and the signing key of a Sydent server", cmdImportSydent},
	}
}

func mainUsage(w io.Writer) {
	fmt.Fprintf(w, "usage: sigil [-config FILE] COMMAND [ARGS]\n\ncommands:\n")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-16s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\n`sigil COMMAND -h` describes a command. The configuration comes from -config\n"+
		"(or SIGIL_CONFIG) and SIGIL_* variables. Exit codes: 0 ok, 1 failure,\n2 usage or configuration error, 3 nothing matched.\n")
}

// run is the whole program: args without the program name, the
// environment as "KEY=value" strings.
func run(args, environ []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sigil", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", lookup(environ, "SIGIL_CONFIG"), "YAML configuration file (optional; env SIGIL_CONFIG)")
	fs.Usage = func() { mainUsage(stderr); fs.PrintDefaults() }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	name, rest := "serve", fs.Args()
	if len(rest) > 0 {
		name, rest = rest[0], rest[1:]
	}
	if name == "help" {
		mainUsage(stdout)
		return exitOK
	}
	var cmd *command
	for _, c := range commands() {
		if c.name == name {
			cmd = &c
		}
	}
	if cmd == nil {
		fmt.Fprintf(stderr, "sigil: unknown command %q\n\n", name)
		mainUsage(stderr)
		return exitUsage
	}
	c := &cli{configPath: *configPath, out: stdout, err: stderr, environ: environ}
	cfs := flag.NewFlagSet("sigil "+cmd.name, flag.ContinueOnError)
	cfs.SetOutput(stderr)
	cfs.Usage = func() {
		fmt.Fprintf(stderr, "usage: sigil [-config FILE] %s %s\n\n%s\n", cmd.name, cmd.args, cmd.summary)
		cfs.PrintDefaults()
	}
	do := cmd.run(c, cfs)
	positional, err := parseInterleaved(cfs, rest)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	// version needs no configuration: it must work on a broken one.
	var lb *logBuffer
	if cmd.name != "version" {
		cfg, err := LoadConfig(c.configPath, environ)
		if err != nil {
			fmt.Fprintln(stderr, "sigil:", err)
			return exitUsage
		}
		c.cfg = cfg
		lb = newLogBuffer(stderr)
		if c.log, err = processLogger(cfg.LogLevel, cfg.LogFormat, lb); err != nil {
			fmt.Fprintln(stderr, "sigil:", err)
			return exitUsage
		}
		if cmd.name != "check" { // check prints them among its results
			for _, w := range cfg.Warnings() {
				c.log.Warn("config: " + w)
			}
		}
	}
	ctx, stop := onSignals(c.log)
	defer stop()
	err = do(ctx, positional)
	if lb != nil {
		_ = lb.Flush() // before anything else is written to stderr
	}
	var ue usageError
	var nf notFound
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "sigil %s: %v\n", cmd.name, err)
		cfs.Usage()
		return exitUsage
	case errors.As(err, &nf):
		fmt.Fprintf(stderr, "sigil %s: %v\n", cmd.name, err)
		return exitNotFound
	default:
		fmt.Fprintf(stderr, "sigil %s: %v\n", cmd.name, err)
		return exitFailure
	}
}

// parseInterleaved parses flags anywhere among the arguments
// (`onbind list -state failed` as well as `onbind -state failed list`).
// onSignals returns a context that ends at the first SIGTERM or SIGINT,
// which starts a graceful shutdown; a second signal exits at once.
func onSignals(log *slog.Logger) (context.Context, func()) {
	if log == nil {
		log = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		sig, ok := <-sigs
		if !ok {
			return
		}
		log.Info("signal received: shutting down (a second signal exits at once)", "signal", sig.String())
		cancel()
		if sig, ok = <-sigs; ok {
			log.Warn("second signal: exiting now", "signal", sig.String())
			os.Exit(1)
		}
	}()
	return ctx, func() { signal.Stop(sigs); cancel() }
}

func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return positional, nil
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func lookup(environ []string, key string) string {
	for _, kv := range environ {
		if k, v, _ := strings.Cut(kv, "="); k == key {
			return v
		}
	}
	return ""
}

// processLogger is the process's one logger, handed to every package:
// newLogger's, writing through lb, which it flushes after a warning, and
// taking the access log's lines without slog (handlers.AccessLog).
func processLogger(level, format string, lb *logBuffer) (*slog.Logger, error) {
	l, err := newLogger(level, format, lb)
	if err != nil {
		return nil, err
	}
	return slog.New(flushOnWarn{Handler: l.Handler(), b: lb,
		accessLog: &handlers.AccessLog{W: lb, JSON: format == "json"}}), nil
}

// newLogger is the process's one logger, handed to every package.
func newLogger(level, format string, w io.Writer) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		return nil, fmt.Errorf("log_level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text", "":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log_format must be text or json, got %q", format)
}

// noArgs refuses extra arguments.
func noArgs(args []string) error {
	if len(args) > 0 {
		return usagef("unexpected argument %q", args[0])
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
