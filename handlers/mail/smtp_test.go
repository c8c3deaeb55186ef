package mail_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sigil-matrix/sigil/handlers/mail"
	"github.com/sigil-matrix/sigil/handlers/mail/mailtest"
)

const waitTimeout = 5 * time.Second

func newSender(t *testing.T, cfg mail.SMTPConfig) *mail.SMTPSender {
	t.Helper()
	s, err := mail.NewSMTPSender(cfg)
	if err != nil {
		t.Fatalf("NewSMTPSender(%+v): %v", cfg, err)
	}
	return s
}

func TestSMTPSenderRoundTrip(t *testing.T) {
	tests := []struct {
		name     string
		start    func(testing.TB) *mailtest.Server
		username string
		wantTLS  bool
	}{
		{name: "plain", start: mailtest.Start},
		{name: "plain with auth", start: mailtest.Start, username: "sigil"},
		{name: "starttls", start: mailtest.StartTLS, wantTLS: true},
		{name: "starttls with auth", start: mailtest.StartTLS, username: "sigil", wantTLS: true},
		{name: "implicit tls", start: mailtest.StartImplicitTLS, wantTLS: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := tc.start(t)
			cfg := srv.Config()
			if tc.username != "" {
				cfg.Username, cfg.Password = tc.username, "secret"
			}
			msg := mail.Message{
				To:      "alice@example.org",
				Subject: "Bestätige deine Adresse – Sigil ✓",
				Text:    "Your code is 123456.\nLine with ümlauts and a very long line that must be soft-wrapped by quoted-printable because it is longer than seventy-six characters.\n.\nThe line above is a lone dot.\n",
				HTML:    "<p>Your code is <b>123456</b> — ü</p>\n",
			}
			if err := newSender(t, cfg).Send(context.Background(), msg); err != nil {
				t.Fatalf("Send: %v", err)
			}
			got := srv.WaitFor(t, 1, waitTimeout)[0]
			if got.ParseErr != nil {
				t.Fatalf("parse: %v\n%s", got.ParseErr, got.Data)
			}
			checks := []struct{ what, got, want string }{
				{"subject", got.Subject, msg.Subject},
				{"text", got.Text, msg.Text},
				{"html", got.HTML, msg.HTML},
				{"envelope from", got.From, "noreply@sigil.test"},
				{"envelope to", strings.Join(got.To, ","), msg.To},
				{"To header", got.Header.Get("To"), msg.To},
				{"MIME-Version", got.Header.Get("MIME-Version"), "1.0"},
				{"username", got.Username, tc.username},
			}
			for _, c := range checks {
				if c.got != c.want {
					t.Errorf("%s = %q, want %q", c.what, c.got, c.want)
				}
			}
			if got.TLS != tc.wantTLS {
				t.Errorf("TLS = %v, want %v", got.TLS, tc.wantTLS)
			}
			from, err := got.Header.AddressList("From")
			if err != nil || len(from) != 1 || from[0].Name != "Sigil" || from[0].Address != "noreply@sigil.test" {
				t.Errorf("From header = %q (%v)", got.Header.Get("From"), err)
			}
			if raw := got.Header.Get("Subject"); !strings.HasPrefix(raw, "=?utf-8?q?") {
				t.Errorf("raw Subject %q is not RFC 2047 Q-encoded", raw)
			}
			if id := got.Header.Get("Message-ID"); !strings.HasPrefix(id, "<") || !strings.HasSuffix(id, "@sigil.test>") {
				t.Errorf("Message-ID = %q", id)
			}
			if _, err := got.Header.Date(); err != nil {
				t.Errorf("Date header: %v", err)
			}
			if ct := got.Header.Get("Content-Type"); !strings.HasPrefix(ct, "multipart/alternative;") {
				t.Errorf("Content-Type = %q", ct)
			}
			for i, line := range strings.Split(string(got.Data), "\r\n") {
				if len(line) > 998 {
					t.Errorf("line %d is %d octets long", i, len(line))
				}
			}
		})
	}
}

func TestSMTPSenderTextOnly(t *testing.T) {
	srv := mailtest.Start(t)
	msg := mail.Message{To: "bob@example.org", Subject: "Plain", Text: "just text\n"}
	if err := newSender(t, srv.Config()).Send(context.Background(), msg); err != nil {
		t.Fatalf("Send: %v", err)
	}
	got := srv.WaitFor(t, 1, waitTimeout)[0]
	if ct := got.Header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
		t.Errorf("Content-Type = %q", ct)
	}
	if got.Subject != "Plain" || got.Text != msg.Text || got.HTML != "" {
		t.Errorf("got subject %q text %q html %q", got.Subject, got.Text, got.HTML)
	}
}

func TestSMTPSenderLongSubjectIsFolded(t *testing.T) {
	srv := mailtest.Start(t)
	subject := strings.Repeat("Grüße aus Köln ", 40) + "end"
	msg := mail.Message{To: "bob@example.org", Subject: subject, Text: "x"}
	if err := newSender(t, srv.Config()).Send(context.Background(), msg); err != nil {
		t.Fatalf("Send: %v", err)
	}
	got := srv.WaitFor(t, 1, waitTimeout)[0]
	if got.Subject != subject {
		t.Errorf("Subject = %q, want %q", got.Subject, subject)
	}
	// Encoded-words are up to 75 octets, so "Subject: " plus one exceeds
	// 78; what matters is folding well below the 998 limit.
	head, _, _ := strings.Cut(string(got.Data), "\r\n\r\n")
	lines := strings.Split(head, "\r\n")
	for _, line := range lines {
		if len(line) > 100 {
			t.Errorf("header line not folded (%d octets): %q", len(line), line)
		}
	}
	if cont := strings.Count(head, "\r\n "); cont < 5 {
		t.Errorf("subject folded into %d continuation lines, want several", cont)
	}
}

func TestSMTPSenderTemplateEndToEnd(t *testing.T) {
	srv := mailtest.Start(t)
	tpl, err := mail.LoadTemplates("")
	if err != nil {
		t.Fatal(err)
	}
	msg, err := tpl.Validation(mail.ValidationData{
		Address:    "carol@example.org",
		Token:      "tok-9f8e7d",
		Link:       "https://id.example.org/_matrix/identity/v2/validate/email/submitToken?sid=1&client_secret=s&token=tok-9f8e7d",
		ServerName: "id.example.org",
		SessionID:  "1",
		ExpiresIn:  "24 hours",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := newSender(t, srv.Config()).Send(context.Background(), msg); err != nil {
		t.Fatalf("Send: %v", err)
	}
	got := srv.WaitFor(t, 1, waitTimeout)[0]
	if !strings.Contains(got.Text, "tok-9f8e7d") || !strings.Contains(got.Text, "client_secret=s&token=tok-9f8e7d") {
		t.Errorf("token or link missing from text:\n%s", got.Text)
	}
	if !strings.Contains(got.HTML, `href="https://id.example.org/_matrix/identity/v2/validate/email/submitToken?sid=1&amp;client_secret=s&amp;token=tok-9f8e7d"`) {
		t.Errorf("link missing from html:\n%s", got.HTML)
	}
	if got.Subject != msg.Subject || got.To[0] != "carol@example.org" {
		t.Errorf("subject %q to %v", got.Subject, got.To)
	}
}

func TestSMTPSenderRejectsHeaderInjection(t *testing.T) {
	srv := mailtest.Start(t)
	s := newSender(t, srv.Config())
	tests := []struct {
		name string
		msg  mail.Message
	}{
		{"bcc via CRLF in to", mail.Message{To: "alice@example.org\r\nBcc: eve@evil.example", Subject: "hi"}},
		{"LF in to", mail.Message{To: "alice@example.org\nBcc: eve@evil.example", Subject: "hi"}},
		{"CR in to", mail.Message{To: "alice@example.org\rBcc: eve@evil.example", Subject: "hi"}},
		{"LF in subject", mail.Message{To: "alice@example.org", Subject: "hi\nBcc: eve@evil.example"}},
		{"CRLF in subject", mail.Message{To: "alice@example.org", Subject: "hi\r\n\r\nbody"}},
		{"two recipients", mail.Message{To: "alice@example.org, eve@evil.example", Subject: "hi"}},
		{"display name", mail.Message{To: "Alice <alice@example.org>", Subject: "hi"}},
		{"angle brackets", mail.Message{To: "<alice@example.org>", Subject: "hi"}},
		{"comment", mail.Message{To: "alice@example.org (eve@evil.example)", Subject: "hi"}},
		{"group", mail.Message{To: "g: alice@example.org;", Subject: "hi"}},
		{"surrounding space", mail.Message{To: " alice@example.org", Subject: "hi"}},
		{"not an address", mail.Message{To: "alice", Subject: "hi"}},
		{"empty", mail.Message{To: "", Subject: "hi"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := s.Send(context.Background(), tc.msg)
			if !errors.Is(err, mail.ErrInvalidMessage) {
				t.Fatalf("Send = %v, want ErrInvalidMessage", err)
			}
			if !strings.HasPrefix(err.Error(), "smtp send to ") || strings.ContainsAny(err.Error(), "\r\n") {
				t.Errorf("error %q: want context and no raw line breaks", err)
			}
		})
	}
	if n := len(srv.Messages()); n != 0 {
		t.Errorf("server received %d messages, want 0", n)
	}
}

func TestNewSMTPSenderRejectsInvalidConfig(t *testing.T) {
	valid := mail.SMTPConfig{Host: "smtp.example.org", From: "Sigil <noreply@example.org>"}
	tests := []struct {
		name   string
		modify func(*mail.SMTPConfig)
	}{
		{"empty host", func(c *mail.SMTPConfig) { c.Host = "" }},
		{"blank host", func(c *mail.SMTPConfig) { c.Host = "  " }},
		{"host with newline", func(c *mail.SMTPConfig) { c.Host = "smtp.example.org\r\n" }},
		{"unknown tls", func(c *mail.SMTPConfig) { c.TLS = "ssl" }},
		{"port too big", func(c *mail.SMTPConfig) { c.Port = 70000 }},
		{"negative port", func(c *mail.SMTPConfig) { c.Port = -1 }},
		{"negative timeout", func(c *mail.SMTPConfig) { c.Timeout = -time.Second }},
		{"empty from", func(c *mail.SMTPConfig) { c.From = "" }},
		{"unparsable from", func(c *mail.SMTPConfig) { c.From = "Sigil noreply" }},
		{"two froms", func(c *mail.SMTPConfig) { c.From = "a@example.org, b@example.org" }},
		{"from with CRLF", func(c *mail.SMTPConfig) { c.From = "Sigil <noreply@example.org>\r\nBcc: eve@evil.example" }},
		{"password without user", func(c *mail.SMTPConfig) { c.Password = "secret" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := valid
			tc.modify(&cfg)
			if s, err := mail.NewSMTPSender(cfg); err == nil {
				t.Fatalf("NewSMTPSender(%+v) = %v, want error", cfg, s)
			}
		})
	}
	for _, mode := range []string{"", "starttls", "STARTTLS", "implicit", "none"} {
		cfg := valid
		cfg.TLS = mode
		if _, err := mail.NewSMTPSender(cfg); err != nil {
			t.Errorf("TLS %q: %v", mode, err)
		}
	}
}

func TestSMTPSenderRequiresStartTLS(t *testing.T) {
	srv := mailtest.Start(t) // offers no STARTTLS
	cfg := srv.Config()
	cfg.TLS = mail.TLSStartTLS
	err := newSender(t, cfg).Send(context.Background(), mail.Message{To: "a@example.org", Subject: "s", Text: "t"})
	if err == nil || !strings.Contains(err.Error(), "STARTTLS") {
		t.Fatalf("Send = %v, want STARTTLS error", err)
	}
	if n := len(srv.Messages()); n != 0 {
		t.Errorf("server received %d messages over plain text", n)
	}
}

func TestSMTPSenderVerifiesCertificate(t *testing.T) {
	for _, start := range []func(testing.TB) *mailtest.Server{mailtest.StartTLS, mailtest.StartImplicitTLS} {
		srv := start(t)
		cfg := srv.Config()
		cfg.InsecureSkipVerify = false
		err := newSender(t, cfg).Send(context.Background(), mail.Message{To: "a@example.org", Subject: "s", Text: "t"})
		if err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Errorf("%s: Send = %v, want certificate error", cfg.TLS, err)
		}
	}
}

// silentServer accepts connections and never answers, like a black-holed relay.
func silentServer(t *testing.T) (host string, port int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { close(done); ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { <-done; c.Close() }()
		}
	}()
	a := ln.Addr().(*net.TCPAddr)
	return a.IP.String(), a.Port
}

func TestSMTPSenderHonoursDeadlines(t *testing.T) {
	host, port := silentServer(t)
	msg := mail.Message{To: "a@example.org", Subject: "s", Text: "t"}
	base := mail.SMTPConfig{Host: host, Port: port, TLS: mail.TLSNone, From: "noreply@example.org"}

	tests := []struct {
		name    string
		timeout time.Duration
		ctx     func() (context.Context, context.CancelFunc)
		wantErr error
	}{
		{
			name:    "config timeout",
			timeout: 200 * time.Millisecond,
			ctx:     func() (context.Context, context.CancelFunc) { return context.Background(), func() {} },
			wantErr: context.DeadlineExceeded,
		},
		{
			name: "ctx deadline",
			ctx: func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), 200*time.Millisecond)
			},
			wantErr: context.DeadlineExceeded,
		},
		{
			name: "ctx cancel",
			ctx: func() (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancel(context.Background())
				time.AfterFunc(200*time.Millisecond, cancel)
				return ctx, cancel
			},
			wantErr: context.Canceled,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, mode := range []string{mail.TLSNone, mail.TLSStartTLS, mail.TLSImplicit} {
				cfg := base
				cfg.TLS, cfg.Timeout = mode, tc.timeout
				ctx, cancel := tc.ctx()
				start := time.Now()
				err := newSender(t, cfg).Send(ctx, msg)
				cancel()
				if !errors.Is(err, tc.wantErr) {
					t.Errorf("%s: Send = %v, want %v", mode, err, tc.wantErr)
				}
				if d := time.Since(start); d > 3*time.Second {
					t.Errorf("%s: Send took %s", mode, d)
				}
			}
		})
	}
}

func TestNewSenderDefaultsToLog(t *testing.T) {
	s, err := mail.NewSender(mail.SMTPConfig{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.(*mail.LogSender); !ok {
		t.Errorf("NewSender without host = %T, want *mail.LogSender", s)
	}
	s, err = mail.NewSender(mail.SMTPConfig{Host: "smtp.example.org", From: "a@example.org"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.(*mail.SMTPSender); !ok {
		t.Errorf("NewSender with host = %T, want *mail.SMTPSender", s)
	}
	if _, err := mail.NewSender(mail.SMTPConfig{Host: "smtp.example.org"}, nil); err == nil {
		t.Error("NewSender with host but no From: want error")
	}
}
