// Package mail sends Sigil's outgoing email: address validation codes and
// third-party invites. Mail goes out over SMTP (SMTPSender) or, when no SMTP
// host is configured, is written to the log (LogSender).
package mail

import (
	"context"
	"log/slog"
)

// Message is one email to a single recipient.
type Message struct {
	To      string // a bare address, e.g. "alice@example.org"
	Subject string
	Text    string // text/plain body
	HTML    string // text/html body; optional
}

// Sender delivers a Message.
type Sender interface {
	Send(ctx context.Context, m Message) error
}

// LogSender writes mail to the log instead of sending it. It is meant for
// development setups without an SMTP relay: the log then holds the tokens.
type LogSender struct {
	Logger *slog.Logger // nil means slog.Default()
}

// NewLogSender returns a LogSender logging to l (nil means slog.Default()).
func NewLogSender(l *slog.Logger) *LogSender {
	return &LogSender{Logger: l}
}

// Send logs To, Subject and the text body at Info.
func (s *LogSender) Send(ctx context.Context, m Message) error {
	l := s.Logger
	if l == nil {
		l = slog.Default()
	}
	l.InfoContext(ctx, "mail written to the log instead of sent",
		slog.String("to", m.To),
		slog.String("subject", m.Subject),
		slog.String("text", m.Text),
	)
	return nil
}

// NewSender returns an SMTPSender for cfg, or a LogSender logging to l when
// cfg.Host is empty.
func NewSender(cfg SMTPConfig, l *slog.Logger) (Sender, error) {
	if cfg.Host == "" {
		return NewLogSender(l), nil
	}
	return NewSMTPSender(cfg)
}
