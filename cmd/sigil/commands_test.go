package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sigil-matrix/sigil/handlers/identity"
	"github.com/sigil-matrix/sigil/handlers/mail/mailtest"
	"github.com/sigil-matrix/sigil/store"
)

// testSetup is a configuration file in a temporary directory, with its
// database and key there, and mail going to an in-process SMTP server.
type testSetup struct {
	t      *testing.T
	dir    string
	config string
	smtp   *mailtest.Server
}

func newSetup(t *testing.T, extra string) *testSetup {
	t.Helper()
	dir := t.TempDir()
	smtpd := mailtest.Start(t)
	yaml := fmt.Sprintf("server_name: id.example.org\npublic_base_url: https://id.example.org\n"+
		"database: %s\nsigning_key: %s\nlog_level: warn\n"+
		"smtp:\n  host: %s\n  port: %d\n  tls: none\n  from: Sigil <sigil@id.example.org>\n%s",
		filepath.Join(dir, "sigil.db"), filepath.Join(dir, "signing.key"), smtpd.Host, smtpd.Port, extra)
	path := filepath.Join(dir, "sigil.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return &testSetup{t: t, dir: dir, config: path, smtp: smtpd}
}

// run runs sigil with the setup's configuration.
func (s *testSetup) run(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(append([]string{"-config", s.config}, args...), nil, &out, &errb)
	return code, out.String(), errb.String()
}

func (s *testSetup) mustRun(args ...string) string {
	s.t.Helper()
	code, out, errs := s.run(args...)
	if code != 0 {
		s.t.Fatalf("sigil %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

// app opens the setup's server (no HTTP) to seed or inspect it.
func (s *testSetup) app() *app {
	s.t.Helper()
	cfg, err := LoadConfig(s.config, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	a, err := openApp(context.Background(), cfg, slog.New(slog.DiscardHandler), false)
	if err != nil {
		s.t.Fatal(err)
	}
	return a
}

func (s *testSetup) bind(a *app, medium, address, mxid string) {
	s.t.Helper()
	ctx := context.Background()
	pepper, err := a.identity.Pepper(ctx)
	if err != nil {
		s.t.Fatal(err)
	}
	as, err := identity.SignAssociation(a.key, "id.example.org", medium, address, mxid, pepper, time.Now())
	if err != nil {
		s.t.Fatal(err)
	}
	if err := a.store.InsertAssociations(ctx, []store.Association{as}); err != nil {
		s.t.Fatal(err)
	}
}

func TestUnknownCommandIsNamed(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"frobnicate"}, nil, &out, &errb); code != exitUsage {
		t.Errorf("exit %d, want %d", code, exitUsage)
	}
	if !strings.Contains(errb.String(), `unknown command "frobnicate"`) || !strings.Contains(errb.String(), "send-test-email") {
		t.Errorf("stderr does not name the command and list the others:\n%s", errb.String())
	}
}

func TestEveryCommandHasHelp(t *testing.T) {
	for _, c := range commands() {
		t.Run(c.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := run([]string{c.name, "-h"}, nil, &out, &errb); code != exitOK {
				t.Errorf("exit %d", code)
			}
			if !strings.Contains(errb.String(), "usage: sigil [-config FILE] "+c.name) {
				t.Errorf("no usage:\n%s", errb.String())
			}
		})
	}
	var out, errb bytes.Buffer
	if code := run([]string{"-h"}, nil, &out, &errb); code != exitOK || !strings.Contains(errb.String(), "import-sydent") {
		t.Errorf("sigil -h: exit %d\n%s", code, errb.String())
	}
}

func TestBadFlagOrArgumentIsAUsageError(t *testing.T) {
	s := newSetup(t, "")
	for _, args := range [][]string{{"check", "-nope"}, {"version", "extra"}, {"bindings"}, {"bindings", "frob"},
		{"bindings", "show"}, {"invites", "cancel"}, {"onbind", "retry"}, {"send-test-email"}, {"onbind", "list", "-state", "odd"}} {
		if code, _, errs := s.run(args...); code != exitUsage {
			t.Errorf("sigil %v: exit %d, want %d\n%s", args, code, exitUsage, errs)
		}
	}
}

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	if code := run([]string{"version"}, nil, &out, io.Discard); code != 0 || !strings.HasPrefix(out.String(), "sigil ") {
		t.Errorf("exit %d, %q", code, out.String())
	}
}

func TestCheck(t *testing.T) {
	s := newSetup(t, "")
	// Before the first start: no database or key yet, which is fine.
	if code, out, _ := s.run("check"); code != exitOK || !strings.Contains(out, "created at first start") {
		t.Errorf("check before first start: exit %d\n%s", code, out)
	}
	t.Run("database unreachable", func(t *testing.T) {
		var out, errb bytes.Buffer
		code := run([]string{"-config", s.config, "check"}, []string{"SIGIL_DATABASE=postgres://nobody@127.0.0.1:1/none"}, &out, &errb)
		if code != exitFailure || !strings.Contains(out.String(), "FAIL database") {
			t.Errorf("exit %d\n%s", code, out.String())
		}
	})
	s.app().Close() // first start: creates the database and the key
	out := s.mustRun("check")
	for _, want := range []string{"ok   database", "ok   signing_key", "ed25519:0", "ok   smtp", "said hello",
		"onbind calls: 16 at once, at most 2 to one homeserver", "configuration is valid"} {
		if !strings.Contains(out, want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}
	if n := len(s.smtp.Messages()); n != 0 {
		t.Errorf("check sent %d mails", n)
	}

	t.Run("corrupt key", func(t *testing.T) {
		os.WriteFile(filepath.Join(s.dir, "signing.key"), []byte("ed25519 0 not!base64\n"), 0o600)
		code, out, _ := s.run("check")
		if code != exitFailure || !strings.Contains(out, "FAIL signing_key") {
			t.Errorf("exit %d\n%s", code, out)
		}
	})
	t.Run("smtp down", func(t *testing.T) {
		s2 := newSetup(t, "")
		s2.app().Close()
		s2.smtp.Close()
		code, out, _ := s2.run("check")
		if code != exitFailure || !strings.Contains(out, "FAIL smtp") {
			t.Errorf("exit %d\n%s", code, out)
		}
	})
	t.Run("bad server names", func(t *testing.T) {
		for _, name := range []string{"id_example!org", "host:99999"} {
			code, _, errs := s.run("check")
			_ = errs
			var out, errb bytes.Buffer
			code = run([]string{"-config", s.config, "check"}, []string{"SIGIL_SERVER_NAME=" + name}, &out, &errb)
			if code != exitUsage || !strings.Contains(errb.String(), "server_name must be a Matrix server name") {
				t.Errorf("%s: exit %d\n%s", name, code, errb.String())
			}
		}
	})
}

func TestSendTestEmail(t *testing.T) {
	s := newSetup(t, "")
	out := s.mustRun("send-test-email", "ops@example.org")
	if !strings.Contains(out, "test mail sent to ops@example.org") {
		t.Errorf("output %q", out)
	}
	msgs := s.smtp.WaitFor(t, 1, 5*time.Second)
	if msgs[0].To[0] != "ops@example.org" || !strings.Contains(msgs[0].Subject, "Sigil test mail") {
		t.Errorf("mail %+v", msgs[0])
	}
	s.smtp.Close()
	if code, _, errs := s.run("send-test-email", "ops@example.org"); code != exitFailure {
		t.Errorf("with the SMTP server down: exit %d\n%s", code, errs)
	}
}

func TestBindingsCommands(t *testing.T) {
	s := newSetup(t, "")
	a := s.app()
	s.bind(a, "email", "alice@example.org", "@alice:example.org")
	s.bind(a, "msisdn", "447700900123", "@alice:example.org")
	s.bind(a, "email", "bob@example.org", "@bob:example.org")
	a.Close()

	out := s.mustRun("bindings", "list")
	for _, want := range []string{"alice@example.org", "447700900123", "bob@example.org", "@bob:example.org"} {
		if !strings.Contains(out, want) {
			t.Errorf("list lacks %q:\n%s", want, out)
		}
	}
	out = s.mustRun("bindings", "list", "@alice:example.org")
	if strings.Contains(out, "bob") || !strings.Contains(out, "447700900123") {
		t.Errorf("list of @alice:\n%s", out)
	}
	out = s.mustRun("bindings", "show", "Alice@Example.org") // case-folded as binds are
	if !strings.Contains(out, "@alice:example.org") || !strings.Contains(out, `"ed25519:0"`) {
		t.Errorf("show:\n%s", out)
	}
	out = s.mustRun("bindings", "show", "+44 7700 900123")
	if !strings.Contains(out, "msisdn") {
		t.Errorf("show by phone:\n%s", out)
	}
	out = s.mustRun("bindings", "delete", "@alice:example.org")
	if !strings.Contains(out, "2 binding(s) deleted") {
		t.Errorf("delete: %q", out)
	}
	// Gone for lookups too (the lookup index is kept in step).
	a = s.app()
	defer a.Close()
	if signed, err := a.identity.Lookup(context.Background(), "email", "alice@example.org"); err != nil || signed != nil {
		t.Errorf("lookup after delete: %s, %v", signed, err)
	}
	if signed, err := a.identity.Lookup(context.Background(), "email", "bob@example.org"); err != nil || signed == nil {
		t.Errorf("bob's binding went too: %s, %v", signed, err)
	}
	if code, _, _ := s.run("bindings", "show", "alice@example.org"); code != exitNotFound {
		t.Errorf("show of a deleted binding: exit %d, want %d", code, exitNotFound)
	}
	if code, _, _ := s.run("bindings", "delete", "@alice:example.org"); code != exitNotFound {
		t.Errorf("second delete: exit %d, want %d", code, exitNotFound)
	}
}

func TestInvitesCommands(t *testing.T) {
	s := newSetup(t, "")
	a := s.app()
	ctx := context.Background()
	for i, addr := range []string{"carol@example.org", "dave@example.org"} {
		if err := a.store.CreateInvite(ctx, store.Invite{
			Token: fmt.Sprintf("tok%d", i), Medium: "email", Address: addr, RoomID: "!room:example.org",
			Sender: "@alice:example.org", EphemeralPublicKey: fmt.Sprintf("pub%d", i), EphemeralPrivateKey: "priv",
		}); err != nil {
			t.Fatal(err)
		}
	}
	a.Close()
	out := s.mustRun("invites", "list")
	if !strings.Contains(out, "carol@example.org") || !strings.Contains(out, "tok1") {
		t.Errorf("list:\n%s", out)
	}
	out = s.mustRun("invites", "list", "dave@example.org")
	if strings.Contains(out, "carol") || !strings.Contains(out, "dave") {
		t.Errorf("list of dave:\n%s", out)
	}
	s.mustRun("invites", "cancel", "tok0")
	if out := s.mustRun("invites", "list"); strings.Contains(out, "tok0") {
		t.Errorf("cancelled invite still listed:\n%s", out)
	}
	if code, _, _ := s.run("invites", "cancel", "tok0"); code != exitNotFound {
		t.Errorf("cancel twice: exit %d", code)
	}
	a = s.app()
	defer a.Close()
	if ok, _ := a.identity.EphemeralKeyValid(ctx, "pub0"); ok {
		t.Error("the cancelled invite's ephemeral key is still valid")
	}
}

func TestOnBindCommands(t *testing.T) {
	s := newSetup(t, "")
	a := s.app()
	ctx := context.Background()
	if err := a.store.CreateInvite(ctx, store.Invite{
		Token: "tok", Medium: "email", Address: "erin@example.org", RoomID: "!r:example.org",
		Sender: "@alice:example.org", EphemeralPublicKey: "pub", EphemeralPrivateKey: "priv",
	}); err != nil {
		t.Fatal(err)
	}
	queued, err := a.store.EnqueueOnBind(ctx, "email", "erin@example.org", "@erin:hs.example.org",
		func([]store.Invite) ([]byte, error) { return []byte(`{}`), nil }, time.Now())
	if err != nil || !queued {
		t.Fatal(queued, err)
	}
	ds, _, _ := a.identity.OnBindQueue(ctx, "", 10)
	if err := a.store.MarkOnBindFailed(ctx, ds[0].ID, time.Now(), "homeserver said no"); err != nil {
		t.Fatal(err)
	}
	a.Close()
	out := s.mustRun("onbind", "list", "-state", "failed")
	if !strings.Contains(out, "@erin:hs.example.org") || !strings.Contains(out, "homeserver said no") || !strings.Contains(out, "given up 1") {
		t.Errorf("list:\n%s", out)
	}
	out = s.mustRun("onbind", "retry", "-failed")
	if !strings.Contains(out, "1 delivery(ies) due now") {
		t.Errorf("retry: %q", out)
	}
	out = s.mustRun("onbind", "list")
	if !strings.Contains(out, "queued 1") || !strings.Contains(out, "given up 0") || !strings.Contains(out, "due ") {
		t.Errorf("list after retry:\n%s", out)
	}
	if code, _, _ := s.run("onbind", "retry", "999"); code != exitNotFound {
		t.Errorf("retry of an unknown id: exit %d", code)
	}
}

// A pepper in the configuration and `sigil rotate-pepper` cannot silently
// undo each other.
func TestConfiguredPepperAndRotatePepper(t *testing.T) {
	s := newSetup(t, "")
	ctx := context.Background()
	cfg, _ := LoadConfig(s.config, nil)
	start := func(pepper string) error {
		c := cfg
		c.Lookup.Pepper = pepper
		a, err := build(ctx, c, slog.New(slog.DiscardHandler))
		if err == nil {
			a.Close()
		}
		return err
	}
	stored := func() string {
		a := s.app()
		defer a.Close()
		p, _ := a.identity.Pepper(ctx)
		return p
	}
	if err := start("configured1"); err != nil || stored() != "configured1" {
		t.Fatalf("configured pepper not applied: %v, %q", err, stored())
	}
	// rotate-pepper refuses while the configuration names a pepper.
	var errb bytes.Buffer
	code := run([]string{"-config", s.config, "rotate-pepper"}, []string{"SIGIL_LOOKUP_PEPPER=configured1"}, io.Discard, &errb)
	if code != exitUsage || !strings.Contains(errb.String(), "lookup.pepper is set in the configuration") {
		t.Errorf("rotate-pepper with a configured pepper: exit %d\n%s", code, errb.String())
	}
	// Rotated without it; a start with the old configured pepper must not
	// roll the rotation back.
	s.mustRun("rotate-pepper", "rotated2")
	if err := start("configured1"); err != errPepperConflict {
		t.Errorf("start with the pepper rotate-pepper replaced: %v, want the conflict", err)
	}
	if p := stored(); p != "rotated2" {
		t.Errorf("pepper %q after the refused start, want rotated2", p)
	}
	// A new configured pepper is a deliberate change: applied.
	if err := start("configured3"); err != nil || stored() != "configured3" {
		t.Errorf("new configured pepper: %v, %q", err, stored())
	}
	if err := start("configured3"); err != nil {
		t.Errorf("restart with the same configured pepper: %v", err)
	}
	if err := start(""); err != nil || stored() != "configured3" {
		t.Errorf("start without a configured pepper: %v, %q", err, stored())
	}
}
