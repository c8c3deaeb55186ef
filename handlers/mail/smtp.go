package mail

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// TLS modes of SMTPConfig.TLS.
const (
	TLSStartTLS = "starttls" // plain connect, then mandatory STARTTLS
	TLSImplicit = "implicit" // TLS from the first byte (SMTPS)
	TLSNone     = "none"     // no TLS: local relays and tests only
)

const (
	defaultPort         = 587
	defaultImplicitPort = 465
	defaultTimeout      = 30 * time.Second
	// RFC 5322 hard limit on line length, excluding CRLF.
	maxLineLen = 998
	// RFC 5322 recommended line length; we fold headers there.
	foldLineLen = 78
)

// ErrInvalidMessage is wrapped by Send errors for messages that are refused
// before any connection is made (bad recipient, line breaks in headers...).
var ErrInvalidMessage = errors.New("invalid mail message")

// SMTPConfig configures an SMTPSender.
type SMTPConfig struct {
	Host string
	Port int // default 587, or 465 when TLS is "implicit"

	// TLS is "starttls" (default; STARTTLS is required), "implicit" (SMTPS)
	// or "none" (plain text, for local relays and tests).
	TLS string

	// Username and Password enable AUTH PLAIN when Username is not empty.
	Username string
	Password string

	From string // e.g. "Sigil <noreply@example.org>"

	InsecureSkipVerify bool // skip certificate checks; tests only

	Timeout time.Duration // limit for dial plus the whole session; default 30s
}

// SMTPSender sends mail through an SMTP server (a relay or submission port).
// It opens one connection per message.
type SMTPSender struct {
	cfg  SMTPConfig
	from *mail.Address
	addr string // host:port
}

var _ Sender = (*SMTPSender)(nil)

// NewSMTPSender validates cfg, fills in defaults and returns a sender.
func NewSMTPSender(cfg SMTPConfig) (*SMTPSender, error) {
	if strings.TrimSpace(cfg.Host) == "" {
		return nil, errors.New("mail: smtp host is empty")
	}
	if strings.ContainsAny(cfg.Host, " \t\r\n/") {
		return nil, fmt.Errorf("mail: invalid smtp host %q", cfg.Host)
	}
	cfg.TLS = strings.ToLower(strings.TrimSpace(cfg.TLS))
	switch cfg.TLS {
	case "":
		cfg.TLS = TLSStartTLS
	case TLSStartTLS, TLSImplicit, TLSNone:
	default:
		return nil, fmt.Errorf("mail: unknown smtp tls mode %q (want %q, %q or %q)",
			cfg.TLS, TLSStartTLS, TLSImplicit, TLSNone)
	}
	switch {
	case cfg.Port == 0 && cfg.TLS == TLSImplicit:
		cfg.Port = defaultImplicitPort
	case cfg.Port == 0:
		cfg.Port = defaultPort
	case cfg.Port < 0 || cfg.Port > 65535:
		return nil, fmt.Errorf("mail: invalid smtp port %d", cfg.Port)
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("mail: negative smtp timeout %s", cfg.Timeout)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = defaultTimeout
	}
	if cfg.Username == "" && cfg.Password != "" {
		return nil, errors.New("mail: smtp password set without a username")
	}
	if strings.ContainsAny(cfg.From, "\r\n") {
		return nil, errors.New("mail: from address contains a line break")
	}
	from, err := mail.ParseAddress(cfg.From)
	if err != nil {
		return nil, fmt.Errorf("mail: invalid from address %q: %w", cfg.From, err)
	}
	return &SMTPSender{
		cfg:  cfg,
		from: from,
		addr: net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port)),
	}, nil
}

// Send delivers m. The whole exchange is bounded by the earlier of ctx's
// deadline and cfg.Timeout; cancelling ctx aborts it.
func (s *SMTPSender) Send(ctx context.Context, m Message) error {
	if err := validateMessage(m); err != nil {
		return fmt.Errorf("smtp send to %q: %w", m.To, err)
	}
	msg, err := s.buildMessage(m, time.Now())
	if err != nil {
		return fmt.Errorf("smtp send to %q: %w", m.To, err)
	}
	if err := s.deliver(ctx, m.To, msg); err != nil {
		return fmt.Errorf("smtp send to %s via %s: %w", m.To, s.addr, err)
	}
	return nil
}

// Check connects to the server, says hello (with STARTTLS and AUTH as
// configured) and quits without sending anything: `sigil check`.
func (s *SMTPSender) Check(ctx context.Context) error {
	if err := s.deliver(ctx, "", nil); err != nil {
		return fmt.Errorf("smtp %s: %w", s.addr, err)
	}
	return nil
}

func (s *SMTPSender) deliver(ctx context.Context, to string, msg []byte) error {
	deadline := time.Now().Add(s.cfg.Timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()

	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", s.addr)
	if err != nil {
		return err
	}
	// go-smtp resets deadlines per command, so clamp them to ours; closing
	// on cancellation unblocks any read or write in progress.
	conn := &deadlineConn{Conn: raw, limit: deadline}
	_ = conn.SetDeadline(time.Time{})
	stop := context.AfterFunc(ctx, func() { _ = raw.Close() })
	defer stop()
	defer raw.Close()

	err = s.session(ctx, conn, to, msg)
	if err != nil {
		// The conn deadline may fire just before ctx notices its own.
		if cerr := ctx.Err(); cerr != nil {
			return fmt.Errorf("%w: %v", cerr, err)
		}
		if !time.Now().Before(deadline) {
			return fmt.Errorf("%w: %v", context.DeadlineExceeded, err)
		}
	}
	return err
}

func (s *SMTPSender) session(ctx context.Context, conn net.Conn, to string, msg []byte) error {
	tlsConfig := &tls.Config{
		ServerName:         s.cfg.Host,
		InsecureSkipVerify: s.cfg.InsecureSkipVerify, //nolint:gosec // opt-in, tests only
		MinVersion:         tls.VersionTLS12,
	}
	var (
		c   *smtp.Client
		err error
	)
	switch s.cfg.TLS {
	case TLSImplicit:
		tc := tls.Client(conn, tlsConfig)
		if err := tc.HandshakeContext(ctx); err != nil {
			return fmt.Errorf("tls handshake: %w", err)
		}
		c = smtp.NewClient(tc)
	case TLSStartTLS:
		// Fails when the server does not offer STARTTLS: no silent downgrade.
		if c, err = smtp.NewClientStartTLS(conn, tlsConfig); err != nil {
			return fmt.Errorf("starttls: %w", err)
		}
	default:
		c = smtp.NewClient(conn)
	}
	defer c.Close()

	// Explicit hello so greeting/EHLO errors surface here instead of being
	// swallowed by the capability checks below.
	if err := c.Hello("localhost"); err != nil {
		return err
	}
	if s.cfg.Username != "" {
		if !c.SupportsAuth(sasl.Plain) {
			return errors.New("server does not offer AUTH PLAIN")
		}
		if err := c.Auth(sasl.NewPlainClient("", s.cfg.Username, s.cfg.Password)); err != nil {
			return fmt.Errorf("auth: %w", err)
		}
	}
	if msg == nil { // Check: hello (and AUTH) only
		return c.Quit()
	}
	if err := c.SendMail(s.from.Address, []string{to}, bytes.NewReader(msg)); err != nil {
		return err
	}
	// The message is accepted at this point; a failing QUIT changes nothing.
	_ = c.Quit()
	return nil
}

// deadlineConn never lets a deadline go past limit (or be cleared).
type deadlineConn struct {
	net.Conn
	limit time.Time
}

func (c *deadlineConn) clamp(t time.Time) time.Time {
	if t.IsZero() || t.After(c.limit) {
		return c.limit
	}
	return t
}

func (c *deadlineConn) SetDeadline(t time.Time) error { return c.Conn.SetDeadline(c.clamp(t)) }
func (c *deadlineConn) SetReadDeadline(t time.Time) error {
	return c.Conn.SetReadDeadline(c.clamp(t))
}
func (c *deadlineConn) SetWriteDeadline(t time.Time) error {
	return c.Conn.SetWriteDeadline(c.clamp(t))
}

// validateMessage refuses anything that could inject headers or recipients.
func validateMessage(m Message) error {
	if strings.ContainsAny(m.To, "\r\n") {
		return fmt.Errorf("%w: recipient contains a line break", ErrInvalidMessage)
	}
	if strings.ContainsAny(m.Subject, "\r\n") {
		return fmt.Errorf("%w: subject contains a line break", ErrInvalidMessage)
	}
	a, err := mail.ParseAddress(m.To)
	if err != nil {
		return fmt.Errorf("%w: recipient: %v", ErrInvalidMessage, err)
	}
	if a.Name != "" || a.Address != m.To {
		return fmt.Errorf("%w: recipient must be exactly one bare address", ErrInvalidMessage)
	}
	return nil
}

// buildMessage renders m as a MIME message with CRLF line endings.
func (s *SMTPSender) buildMessage(m Message, now time.Time) ([]byte, error) {
	var b bytes.Buffer
	subject, err := foldHeader("Subject", encodeHeader(m.Subject))
	if err != nil {
		return nil, err
	}
	b.WriteString("From: " + s.from.String() + "\r\n")
	b.WriteString("To: " + m.To + "\r\n")
	b.WriteString(subject)
	b.WriteString("Date: " + now.Format(time.RFC1123Z) + "\r\n")
	b.WriteString("Message-ID: " + s.messageID() + "\r\n")
	// RFC 3834: keeps vacation responders from answering.
	b.WriteString("Auto-Submitted: auto-generated\r\n")
	b.WriteString("MIME-Version: 1.0\r\n")

	if m.HTML == "" {
		b.WriteString("Content-Type: text/plain; charset=utf-8\r\n")
		b.WriteString("Content-Transfer-Encoding: quoted-printable\r\n\r\n")
		if err := writeQP(&b, m.Text); err != nil {
			return nil, err
		}
		return b.Bytes(), nil
	}

	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for _, p := range []struct{ ctype, content string }{
		{"text/plain; charset=utf-8", m.Text},
		{"text/html; charset=utf-8", m.HTML},
	} {
		w, err := mw.CreatePart(textproto.MIMEHeader{
			"Content-Type":              {p.ctype},
			"Content-Transfer-Encoding": {"quoted-printable"},
		})
		if err != nil {
			return nil, err
		}
		if err := writeQP(w, p.content); err != nil {
			return nil, err
		}
	}
	if err := mw.Close(); err != nil {
		return nil, err
	}
	b.WriteString("Content-Type: " +
		mime.FormatMediaType("multipart/alternative", map[string]string{"boundary": mw.Boundary()}) + "\r\n\r\n")
	b.Write(body.Bytes())
	return b.Bytes(), nil
}

func writeQP(w interface{ Write([]byte) (int, error) }, s string) error {
	qp := quotedprintable.NewWriter(w) // text mode: line breaks become CRLF
	if _, err := qp.Write([]byte(s)); err != nil {
		return err
	}
	return qp.Close()
}

func (s *SMTPSender) messageID() string {
	domain := s.from.Address[strings.LastIndexByte(s.from.Address, '@')+1:]
	return "<" + strings.ToLower(rand.Text()) + "@" + domain + ">"
}

// encodeHeader returns s as RFC 2047 encoded-words when it is not plain
// printable ASCII.
func encodeHeader(s string) string {
	return mime.QEncoding.Encode("utf-8", s)
}

// foldHeader renders "Name: value\r\n", folding at spaces to keep lines
// short. Folding only inserts CRLF before existing whitespace, so the
// unfolded value is unchanged.
func foldHeader(name, value string) (string, error) {
	var out strings.Builder
	line := name + ":"
	for i, word := range strings.Split(value, " ") {
		switch {
		case i == 0:
			line += " " + word
		case word != "" && len(line)+1+len(word) > foldLineLen && strings.TrimSpace(line) != "":
			out.WriteString(line + "\r\n")
			line = " " + word
		default:
			line += " " + word
		}
		if len(line) > maxLineLen {
			return "", fmt.Errorf("%w: %s header has a word too long to fold", ErrInvalidMessage, name)
		}
	}
	out.WriteString(line + "\r\n")
	return out.String(), nil
}
