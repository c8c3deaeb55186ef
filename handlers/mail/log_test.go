package mail_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/sigil-matrix/sigil/handlers/mail"
)

func TestLogSender(t *testing.T) {
	var buf bytes.Buffer
	s := mail.NewLogSender(slog.New(slog.NewJSONHandler(&buf, nil)))
	msg := mail.Message{To: "alice@example.org", Subject: "Your code", Text: "code 424242\n", HTML: "<p>ignored</p>"}
	if err := s.Send(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("log output %q: %v", buf.String(), err)
	}
	want := map[string]string{
		"level":   "INFO",
		"msg":     "mail written to the log instead of sent",
		"to":      msg.To,
		"subject": msg.Subject,
		"text":    msg.Text,
	}
	for k, v := range want {
		if rec[k] != v {
			t.Errorf("%s = %v, want %q", k, rec[k], v)
		}
	}
}

func TestLogSenderNilLogger(t *testing.T) {
	var buf bytes.Buffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, nil)))
	t.Cleanup(func() { slog.SetDefault(prev) })

	if err := (&mail.LogSender{}).Send(context.Background(), mail.Message{To: "a@example.org", Subject: "s", Text: "t"}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(buf.Bytes(), []byte("to=a@example.org")) {
		t.Errorf("default logger output = %q", buf.String())
	}
}
