package sms

import (
	"context"
	"log/slog"
	"net/http"
)

// Message is one text message to a single recipient.
type Message struct {
	To   string // MSISDN: E.164 digits without the leading '+', e.g. "447700900123"
	Text string
}

// Sender delivers a Message. Implementations refuse a Message whose To is not
// 1 to 15 ASCII digits with an error wrapping ErrInvalidNumber.
type Sender interface {
	Send(ctx context.Context, m Message) error
}

// LogSender writes text messages to the log instead of sending them. It is
// meant for development setups without an SMS provider: the log then holds
// the tokens.
type LogSender struct {
	Logger *slog.Logger // nil means slog.Default()
}

// NewLogSender returns a LogSender logging to l (nil means slog.Default()).
func NewLogSender(l *slog.Logger) *LogSender {
	return &LogSender{Logger: l}
}

// Send logs To and Text at Info.
func (s *LogSender) Send(ctx context.Context, m Message) error {
	if err := checkTo(m.To); err != nil {
		return err
	}
	l := s.Logger
	if l == nil {
		l = slog.Default()
	}
	l.InfoContext(ctx, "sms written to the log instead of sent",
		slog.String("to", m.To),
		slog.String("text", m.Text),
	)
	return nil
}

// NewSender returns an HTTPProvider for cfg (see NewHTTPProvider for client),
// or a LogSender logging to l when cfg.URL is empty.
func NewSender(cfg HTTPConfig, client *http.Client, l *slog.Logger) (Sender, error) {
	if cfg.URL == "" {
		return NewLogSender(l), nil
	}
	return NewHTTPProvider(cfg, client)
}
