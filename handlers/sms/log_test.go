package sms_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"testing"

	"github.com/sigil-matrix/sigil/handlers/sms"
)

func TestLogSender(t *testing.T) {
	var buf bytes.Buffer
	s := sms.NewLogSender(slog.New(slog.NewJSONHandler(&buf, nil)))
	msg := sms.Message{To: "447400123456", Text: "Your code is 424242\n"}
	if err := s.Send(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("log output %q: %v", buf.String(), err)
	}
	want := map[string]string{
		"level": "INFO",
		"msg":   "sms written to the log instead of sent",
		"to":    msg.To,
		"text":  msg.Text,
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

	if err := (&sms.LogSender{}).Send(context.Background(), sms.Message{To: "12015550123", Text: "t"}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(buf.Bytes(), []byte("to=12015550123")) {
		t.Errorf("default logger output = %q", buf.String())
	}
}

func TestLogSenderRejectsBadRecipient(t *testing.T) {
	var buf bytes.Buffer
	s := sms.NewLogSender(slog.New(slog.NewJSONHandler(&buf, nil)))
	for _, to := range badRecipients {
		err := s.Send(context.Background(), sms.Message{To: to, Text: "x"})
		if !errors.Is(err, sms.ErrInvalidNumber) {
			t.Errorf("Send(To=%q) = %v, want ErrInvalidNumber", to, err)
		}
	}
	if buf.Len() != 0 {
		t.Errorf("logged %q for rejected messages", buf.String())
	}
}

func TestNewSender(t *testing.T) {
	s, err := sms.NewSender(sms.HTTPConfig{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.(*sms.LogSender); !ok {
		t.Errorf("NewSender without URL = %T, want *sms.LogSender", s)
	}

	s, err = sms.NewSender(sms.HTTPConfig{URL: "https://sms.example.org/send"}, http.DefaultClient, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.(*sms.HTTPProvider); !ok {
		t.Errorf("NewSender with URL = %T, want *sms.HTTPProvider", s)
	}

	if _, err := sms.NewSender(sms.HTTPConfig{URL: "ftp://sms.example.org/"}, nil, nil); err == nil {
		t.Error("NewSender accepted an ftp URL")
	}
}

// badRecipients are Message.To values every Sender must refuse.
var badRecipients = []string{
	"", "+447400123456", "44 7400 123456", "44-7400-123456", "abc",
	"1234567890123456", "４４７４００１２３４５６", "447400123456\n", "12&Body=x",
}
