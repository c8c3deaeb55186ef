package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"runtime/debug"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sigil-matrix/sigil/handlers"
	"github.com/sigil-matrix/sigil/handlers/identity"
	"github.com/sigil-matrix/sigil/handlers/mail"
	"github.com/sigil-matrix/sigil/handlers/signing"
	"github.com/sigil-matrix/sigil/store"
)

// version is set at build time (-ldflags "-X main.version=1.2.3");
// otherwise the module version and VCS revision Go recorded are shown.
var version = ""

func versionString() string {
	v, rev, dirty := version, "", false
	bi, ok := debug.ReadBuildInfo()
	if ok {
		if v == "" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
	}
	if v == "" {
		v = "(devel)"
	}
	out := "sigil " + v
	if rev != "" {
		out += " commit " + rev[:min(12, len(rev))]
		if dirty {
			out += "+dirty"
		}
	}
	if ok {
		out += " " + bi.GoVersion
	}
	return out
}

func cmdVersion(c *cli, fs *flag.FlagSet) func(context.Context, []string) error {
	return func(_ context.Context, args []string) error {
		if err := noArgs(args); err != nil {
			return err
		}
		fmt.Fprintln(c.out, versionString())
		return nil
	}
}

// cmdCheck checks what can be checked without serving: the configuration
// (server_name as a Matrix server name included), the database, the
// signing key (a corrupt key file is refused; a missing one is created at
// first start), the templates, federation TLS and the SMTP server (hello
// and AUTH, no mail sent). Every check runs; any failure fails the command.
func cmdCheck(c *cli, fs *flag.FlagSet) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		if err := noArgs(args); err != nil {
			return err
		}
		cfg := c.cfg
		failed := 0
		report := func(what string, ok string, err error) {
			if err != nil {
				failed++
				fmt.Fprintf(c.out, "FAIL %-12s %v\n", what, err)
				return
			}
			fmt.Fprintf(c.out, "ok   %-12s %s\n", what, ok)
		}
		derived := ""
		if cfg.derivedBaseURL {
			derived = " (not set: derived from server_name and listen)"
		}
		report("config", fmt.Sprintf("valid; server_name %s, public_base_url %s%s", cfg.ServerName, cfg.PublicBaseURL, derived), nil)
		for _, w := range cfg.Warnings() {
			fmt.Fprintf(c.out, "WARN %-12s %s\n", "config", w)
		}
		dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		switch err := store.Ping(dctx, cfg.Database); {
		case errors.Is(err, store.ErrNoDatabaseYet):
			report("database", cfg.Database+" does not exist yet: it is created at first start", nil)
		default:
			report("database", "opened "+redactDSN(cfg.Database), err)
		}
		ok, err := checkKey(cfg.SigningKey)
		report("signing_key", ok, err)
		_, err = mail.LoadTemplates(cfg.TemplatesDir)
		if err == nil {
			_, err = handlers.LoadPages(cfg.TemplatesDir)
		}
		report("templates", "mails and pages loaded", err)
		_, err = federationTLS(cfg.Federation, c.log)
		report("federation", fmt.Sprintf("TLS settings usable; onbind calls: %d at once, at most %d to one homeserver",
			cfg.Federation.OnBindConcurrency, cfg.Federation.OnBindPerDestination), err)
		ok, err = checkSMTP(dctx, cfg)
		report("smtp", ok, err)
		if failed > 0 {
			return fmt.Errorf("%d check(s) failed", failed)
		}
		fmt.Fprintln(c.out, "configuration is valid")
		return nil
	}
}

func checkKey(path string) (string, error) {
	k, err := signing.LoadKeyFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return path + " does not exist yet: it is created at first start", nil
	}
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s %s, public key %s", path, k.ID, k.PublicBase64()), nil
}

func checkSMTP(ctx context.Context, cfg Config) (string, error) {
	if cfg.SMTP.Host == "" {
		return "no smtp.host: mail is written to the log", nil
	}
	s, err := mail.NewSMTPSender(mail.SMTPConfig{
		Host: cfg.SMTP.Host, Port: cfg.SMTP.Port, TLS: cfg.SMTP.TLS,
		Username: cfg.SMTP.Username, Password: cfg.SMTP.Password, From: cfg.SMTP.From, Timeout: 15 * time.Second,
	})
	if err != nil {
		return "", err
	}
	if err := s.Check(ctx); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s:%d (%s) said hello", cfg.SMTP.Host, cfg.SMTP.Port, cfg.SMTP.TLS), nil
}

// redactDSN hides a PostgreSQL URL's password.
func redactDSN(dsn string) string {
	if i := strings.Index(dsn, "://"); i >= 0 {
		if at := strings.LastIndex(dsn, "@"); at > i {
			if colon := strings.Index(dsn[i+3:at], ":"); colon >= 0 {
				return dsn[:i+3+colon] + ":***" + dsn[at:]
			}
		}
	}
	return dsn
}

func cmdSendTestEmail(c *cli, fs *flag.FlagSet) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		if len(args) != 1 {
			return usagef("give exactly one address")
		}
		to := args[0]
		if !strings.Contains(to, "@") {
			return usagef("%q is not an email address", to)
		}
		sender, err := newMailSender(c.cfg, c.log)
		if err != nil {
			return err
		}
		if c.cfg.SMTP.Host == "" {
			fmt.Fprintln(c.err, "sigil: no smtp.host configured: the test mail goes to the log")
		}
		msg := mail.Message{
			To: to, Subject: "Sigil test mail from " + c.cfg.ServerName,
			Text: "This is a test mail sent by `sigil send-test-email` from the identity server " +
				c.cfg.ServerName + ".\nIf you can read it, mail delivery works.\n",
		}
		sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		if err := sender.Send(sctx, msg); err != nil {
			return err
		}
		fmt.Fprintf(c.out, "test mail sent to %s via %s\n", to, mailMode(c.cfg))
		return nil
	}
}

// withService runs f with the identity operations over the configured
// database (no HTTP, no onbind worker).
func withService(ctx context.Context, c *cli, f func(*app) error) error {
	a, err := openApp(ctx, c.cfg, c.log, false)
	if err != nil {
		return err
	}
	defer a.Close()
	return f(a)
}

func cmdBindings(c *cli, fs *flag.FlagSet) func(context.Context, []string) error {
	limit := fs.Int("limit", 100, "list: at most this many bindings")
	after := fs.Uint("after", 0, "list: bindings after this id (paging)")
	return func(ctx context.Context, args []string) error {
		if len(args) == 0 {
			return usagef("list, show or delete?")
		}
		verb, rest := args[0], args[1:]
		var sub identity.Subject
		switch {
		case len(rest) > 1:
			return usagef("at most one subject")
		case len(rest) == 1:
			var err error
			if sub, err = identity.ParseSubject(rest[0]); err != nil {
				return usagef("%v", err)
			}
		case verb != "list":
			return usagef("%s needs a subject: @user:server, an email address or a phone number", verb)
		}
		return withService(ctx, c, func(a *app) error {
			switch verb {
			case "list":
				bs, err := a.identity.Bindings(ctx, sub, *after, *limit)
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tMEDIUM\tADDRESS\tMXID\tBOUND")
				for _, b := range bs {
					fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", b.ID, b.Medium, b.Address, b.MXID, msTime(b.TS))
				}
				return tw.Flush()
			case "show":
				bs, err := a.identity.Bindings(ctx, sub, 0, 1000)
				if err != nil {
					return err
				}
				if len(bs) == 0 {
					return notFound{"no binding matches"}
				}
				for _, b := range bs {
					fmt.Fprintf(c.out, "binding %d\n  medium:     %s\n  address:    %s\n  mxid:       %s\n  bound:      %s\n  valid:      %s to %s\n  signed:     ",
						b.ID, b.Medium, b.Address, b.MXID, msTime(b.TS), msTime(b.NotBefore), msTime(b.NotAfter))
					var v any
					if json.Unmarshal(b.Signed, &v) == nil {
						out, _ := json.MarshalIndent(v, "              ", "  ")
						fmt.Fprintf(c.out, "%s\n", out)
					} else {
						fmt.Fprintf(c.out, "%s\n", b.Signed)
					}
				}
				return nil
			case "delete":
				n, err := a.identity.DeleteBindings(ctx, sub)
				if err != nil {
					return err
				}
				if n == 0 {
					return notFound{"no binding matches"}
				}
				fmt.Fprintf(c.out, "%d binding(s) deleted\n", n)
				return nil
			}
			return usagef("unknown bindings command %q (list, show or delete)", verb)
		})
	}
}

func msTime(ms int64) string {
	return time.UnixMilli(ms).UTC().Format(time.RFC3339)
}

func cmdInvites(c *cli, fs *flag.FlagSet) func(context.Context, []string) error {
	limit := fs.Int("limit", 100, "list: at most this many invites")
	all := fs.Bool("all", false, "list: include delivered invites")
	return func(ctx context.Context, args []string) error {
		if len(args) == 0 {
			return usagef("list or cancel?")
		}
		switch verb, rest := args[0], args[1:]; verb {
		case "list":
			var sub identity.Subject
			if len(rest) > 1 {
				return usagef("at most one 3PID")
			}
			if len(rest) == 1 {
				var err error
				if sub, err = identity.ParseSubject(rest[0]); err != nil || sub.MXID != "" {
					return usagef("%q is not an email address or phone number", rest[0])
				}
			}
			return withService(ctx, c, func(a *app) error {
				invs, err := a.identity.Invites(ctx, sub, *all, *limit)
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "TOKEN\tMEDIUM\tADDRESS\tROOM\tSENDER\tCREATED\tSTATE")
				for _, inv := range invs {
					state := "pending"
					if inv.DeliveredAt != nil {
						state = "delivered " + inv.DeliveredAt.Format(time.RFC3339)
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", inv.Token, inv.Medium, inv.Address, inv.RoomID,
						inv.Sender, inv.CreatedAt.Format(time.RFC3339), state)
				}
				return tw.Flush()
			})
		case "cancel":
			if len(rest) != 1 {
				return usagef("cancel needs exactly one token")
			}
			return withService(ctx, c, func(a *app) error {
				err := a.identity.CancelInvite(ctx, rest[0])
				if errors.Is(err, identity.ErrNotFound) {
					return notFound{err.Error()}
				}
				if err != nil {
					return err
				}
				fmt.Fprintln(c.out, "invite cancelled")
				return nil
			})
		default:
			return usagef("unknown invites command %q (list or cancel)", verb)
		}
	}
}

func cmdOnBind(c *cli, fs *flag.FlagSet) func(context.Context, []string) error {
	state := fs.String("state", "queued", "list: queued, failed, delivered or all")
	limit := fs.Int("limit", 100, "list: at most this many deliveries")
	failed := fs.Bool("failed", false, "retry: every delivery that was given up")
	return func(ctx context.Context, args []string) error {
		if len(args) == 0 {
			return usagef("list or retry?")
		}
		switch verb, rest := args[0], args[1:]; verb {
		case "list":
			st := *state
			switch st {
			case "all":
				st = ""
			case store.OnBindQueued, store.OnBindFailed, store.OnBindDelivered:
			default:
				return usagef("-state must be queued, failed, delivered or all")
			}
			if err := noArgs(rest); err != nil {
				return err
			}
			return withService(ctx, c, func(a *app) error {
				ds, q, err := a.identity.OnBindQueue(ctx, st, *limit)
				if err != nil {
					return err
				}
				oldest := "-"
				if !q.Oldest.IsZero() {
					oldest = time.Since(q.Oldest).Round(time.Second).String()
				}
				fmt.Fprintf(c.out, "queued %d (attempts so far %d, oldest %s), given up %d\n", q.Queued, q.Attempts, oldest, q.Failed)
				tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tMXID\tMEDIUM\tADDRESS\tATTEMPTS\tSTATE\tLAST ERROR")
				for _, d := range ds {
					s := "due " + d.NextAttemptAt.Format(time.RFC3339)
					switch {
					case d.DeliveredAt != nil:
						s = "delivered " + d.DeliveredAt.Format(time.RFC3339)
					case d.FailedAt != nil:
						s = "given up " + d.FailedAt.Format(time.RFC3339)
					}
					fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\t%s\n", d.ID, d.MXID, d.Medium, d.Address, d.Attempts, s, d.LastError)
				}
				return tw.Flush()
			})
		case "retry":
			var id uint64
			switch {
			case *failed && len(rest) == 0:
			case !*failed && len(rest) == 1:
				var err error
				if id, err = strconv.ParseUint(rest[0], 10, 32); err != nil || id == 0 {
					return usagef("%q is not a delivery id", rest[0])
				}
			default:
				return usagef("retry needs a delivery id, or -failed (before retry)")
			}
			return withService(ctx, c, func(a *app) error {
				n, err := a.identity.RetryOnBind(ctx, uint(id))
				if errors.Is(err, identity.ErrNotFound) {
					return notFound{err.Error()}
				}
				if err != nil {
					return err
				}
				fmt.Fprintf(c.out, "%d delivery(ies) due now; a running server delivers them within its poll interval\n", n)
				return nil
			})
		default:
			return usagef("unknown onbind command %q (list or retry)", verb)
		}
	}
}
