package conformance

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	netmail "net/mail"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Mail is one message the server under test sent.
type Mail struct {
	To      []string
	Subject string
	// Text is every decoded text part (plain and HTML), joined: the token
	// pattern is searched in it.
	Text string
}

// Mailbox is where the runner reads the mail the server under test sent:
// the built-in SMTP sink, or any other source (the runner's own tests read
// Sigil's in-process test SMTP server).
type Mailbox interface {
	Messages() []Mail
}

// SMTPSink is a plain SMTP server on loopback that accepts every message
// (and any AUTH PLAIN credentials) and keeps it for the runner.
type SMTPSink struct {
	Host string
	Port int

	srv  *smtp.Server
	mu   sync.Mutex
	msgs []Mail
}

// StartSMTPSink listens on addr ("127.0.0.1:0" for any free port).
func StartSMTPSink(addr string) (*SMTPSink, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("smtp sink: listen: %w", err)
	}
	tcp := ln.Addr().(*net.TCPAddr)
	s := &SMTPSink{Host: tcp.IP.String(), Port: tcp.Port}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return &sinkSession{s: s}, nil
	}))
	srv.Domain = "localhost"
	srv.AllowInsecureAuth = true
	srv.EnableSMTPUTF8 = true // non-ASCII addresses (RFC 6531): the case folding and SMTPUTF8 cases
	srv.ReadTimeout = 30 * time.Second
	srv.WriteTimeout = 30 * time.Second
	srv.MaxMessageBytes = 10 << 20
	s.srv = srv
	go func() { _ = srv.Serve(ln) }()
	return s, nil
}

// Addr is host:port.
func (s *SMTPSink) Addr() string { return net.JoinHostPort(s.Host, fmt.Sprint(s.Port)) }

// Close stops the sink.
func (s *SMTPSink) Close() error { return s.srv.Close() }

// Messages returns the messages received so far, oldest first.
func (s *SMTPSink) Messages() []Mail {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Mail(nil), s.msgs...)
}

type sinkSession struct {
	s  *SMTPSink
	to []string
}

var _ smtp.AuthSession = (*sinkSession)(nil)

func (ss *sinkSession) AuthMechanisms() []string { return []string{sasl.Plain} }
func (ss *sinkSession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(string, string, string) error { return nil }), nil
}
func (ss *sinkSession) Mail(string, *smtp.MailOptions) error { return nil }
func (ss *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.to = append(ss.to, to)
	return nil
}
func (ss *sinkSession) Reset()        { ss.to = nil }
func (ss *sinkSession) Logout() error { return nil }

func (ss *sinkSession) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	m := ParseMail(data)
	m.To = append([]string(nil), ss.to...)
	ss.s.mu.Lock()
	ss.s.msgs = append(ss.s.msgs, m)
	ss.s.mu.Unlock()
	return nil
}

// ParseMail decodes a raw message's subject and text parts. A message that
// does not parse as MIME keeps its raw text, so a token pattern may still
// find what it looks for.
func ParseMail(data []byte) Mail {
	msg, err := netmail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		return Mail{Text: string(data)}
	}
	var m Mail
	if m.Subject, err = new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject")); err != nil {
		m.Subject = msg.Header.Get("Subject")
	}
	var parts []string
	if err := walkMIME(msg.Header.Get("Content-Type"), msg.Header.Get("Content-Transfer-Encoding"), msg.Body, &parts); err != nil {
		parts = append(parts, string(data))
	}
	m.Text = strings.Join(parts, "\n")
	return m
}

func walkMIME(ctype, cte string, body io.Reader, out *[]string) error {
	if ctype == "" {
		ctype = "text/plain"
	}
	mt, params, err := mime.ParseMediaType(ctype)
	if err != nil {
		return err
	}
	if strings.HasPrefix(mt, "multipart/") {
		mr := multipart.NewReader(body, params["boundary"])
		for {
			p, err := mr.NextRawPart()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return err
			}
			if err := walkMIME(p.Header.Get("Content-Type"), p.Header.Get("Content-Transfer-Encoding"), p, out); err != nil {
				return err
			}
		}
	}
	if !strings.HasPrefix(mt, "text/") {
		return nil
	}
	switch strings.ToLower(strings.TrimSpace(cte)) {
	case "quoted-printable":
		body = quotedprintable.NewReader(body)
	case "base64":
		b, err := io.ReadAll(body)
		if err != nil {
			return err
		}
		clean := strings.NewReplacer("\r", "", "\n", "").Replace(string(b))
		body = base64.NewDecoder(base64.StdEncoding, strings.NewReader(clean))
	}
	b, err := io.ReadAll(body)
	if err != nil {
		return err
	}
	*out = append(*out, strings.ReplaceAll(string(b), "\r\n", "\n"))
	return nil
}
