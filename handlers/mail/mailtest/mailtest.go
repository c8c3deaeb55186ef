// Package mailtest runs an in-process SMTP server that captures the mail it
// receives, for tests of code that sends mail.
package mailtest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/big"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	netmail "net/mail"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/sigil-matrix/sigil/handlers/mail"
)

// From is the sender address used by Server.Config.
const From = "Sigil <noreply@sigil.test>"

type mode int

const (
	modePlain mode = iota
	modeStartTLS
	modeImplicitTLS
)

// Server is a running capture server on 127.0.0.1.
type Server struct {
	Addr string // "127.0.0.1:port"
	Host string
	Port int

	// Certificate is the self-signed server certificate of TLS variants.
	Certificate *x509.Certificate

	mode mode
	srv  *smtp.Server

	mu     sync.Mutex
	msgs   []Captured
	notify chan struct{} // closed and replaced on every new message
	closed bool
}

// Captured is one received message.
type Captured struct {
	From   string   // envelope sender (MAIL FROM)
	To     []string // envelope recipients (RCPT TO)
	Data   []byte   // raw message as received
	Header netmail.Header

	Subject string // decoded Subject header
	// Decoded text/plain and text/html bodies, with LF line endings.
	Text string
	HTML string

	Username string // AUTH PLAIN user name, "" without AUTH
	TLS      bool   // whether the session was encrypted

	ParseErr error // set when Data could not be parsed as MIME
}

// Start starts a plain-text server (AUTH allowed without TLS). It is closed
// when the test ends.
func Start(t testing.TB) *Server { return start(t, modePlain) }

// StartTLS starts a server offering STARTTLS with a fresh self-signed
// certificate for 127.0.0.1 and localhost.
func StartTLS(t testing.TB) *Server { return start(t, modeStartTLS) }

// StartImplicitTLS starts an SMTPS server (TLS from the first byte) with a
// fresh self-signed certificate.
func StartImplicitTLS(t testing.TB) *Server { return start(t, modeImplicitTLS) }

func start(t testing.TB, m mode) *Server {
	t.Helper()
	s := &Server{mode: m, notify: make(chan struct{})}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("mailtest: listen: %v", err)
	}
	tcp := ln.Addr().(*net.TCPAddr)
	s.Addr, s.Host, s.Port = tcp.String(), tcp.IP.String(), tcp.Port

	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &session{s: s, conn: c}, nil
	}))
	srv.Domain = "localhost"
	srv.AllowInsecureAuth = true
	srv.ReadTimeout = 30 * time.Second
	srv.WriteTimeout = 30 * time.Second
	srv.ErrorLog = &testLogger{s: s, t: t}
	if m != modePlain {
		cert, leaf := selfSigned(t)
		s.Certificate = leaf
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		if m == modeImplicitTLS {
			ln = tls.NewListener(ln, srv.TLSConfig)
		}
	}
	s.srv = srv

	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(s.Close)
	return s
}

// Close stops the server. It is safe to call more than once.
func (s *Server) Close() {
	_ = s.srv.Close()
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
}

// Config returns a sender configuration pointing at s: TLS "none" for Start,
// "starttls" or "implicit" with InsecureSkipVerify for the TLS variants.
func (s *Server) Config() mail.SMTPConfig {
	cfg := mail.SMTPConfig{
		Host:    s.Host,
		Port:    s.Port,
		TLS:     mail.TLSNone,
		From:    From,
		Timeout: 10 * time.Second,
	}
	switch s.mode {
	case modeStartTLS:
		cfg.TLS, cfg.InsecureSkipVerify = mail.TLSStartTLS, true
	case modeImplicitTLS:
		cfg.TLS, cfg.InsecureSkipVerify = mail.TLSImplicit, true
	}
	return cfg
}

// Messages returns the messages received so far.
func (s *Server) Messages() []Captured {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.msgs)
}

// WaitFor waits until at least n messages have arrived and returns them all;
// it fails the test when that takes longer than timeout.
func (s *Server) WaitFor(t testing.TB, n int, timeout time.Duration) []Captured {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		s.mu.Lock()
		got, ch := len(s.msgs), s.notify
		if got >= n {
			out := slices.Clone(s.msgs)
			s.mu.Unlock()
			return out
		}
		s.mu.Unlock()
		select {
		case <-ch:
		case <-timer.C:
			t.Fatalf("mailtest: %d message(s) received within %s, want %d", got, timeout, n)
			return nil
		}
	}
}

func (s *Server) add(c Captured) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgs = append(s.msgs, c)
	close(s.notify)
	s.notify = make(chan struct{})
}

type session struct {
	s        *Server
	conn     *smtp.Conn
	from     string
	to       []string
	username string
}

var _ smtp.AuthSession = (*session)(nil)

func (ss *session) AuthMechanisms() []string { return []string{sasl.Plain} }

// Auth accepts any credentials and remembers the user name.
func (ss *session) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, username, _ string) error {
		ss.username = username
		return nil
	}), nil
}

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	ss.from = from
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.to = append(ss.to, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	c, err := Parse(data)
	c.ParseErr = err
	c.From, c.To = ss.from, slices.Clone(ss.to)
	c.Username = ss.username
	_, c.TLS = ss.conn.TLSConnectionState()
	ss.s.add(c)
	return nil
}

func (ss *session) Reset() { ss.from, ss.to = "", nil }

func (ss *session) Logout() error { return nil }

// Parse decodes a raw message: headers, Subject and the text/plain and
// text/html parts (first of each), undoing quoted-printable or base64.
func Parse(data []byte) (Captured, error) {
	c := Captured{Data: data}
	msg, err := netmail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		return c, fmt.Errorf("mailtest: read message: %w", err)
	}
	c.Header = msg.Header
	if c.Subject, err = new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject")); err != nil {
		return c, fmt.Errorf("mailtest: decode subject: %w", err)
	}
	err = walk(msg.Header.Get("Content-Type"), msg.Header.Get("Content-Transfer-Encoding"), msg.Body, &c)
	return c, err
}

func walk(ctype, cte string, body io.Reader, c *Captured) error {
	if ctype == "" {
		ctype = "text/plain"
	}
	mt, params, err := mime.ParseMediaType(ctype)
	if err != nil {
		return fmt.Errorf("mailtest: content type %q: %w", ctype, err)
	}
	if strings.HasPrefix(mt, "multipart/") {
		mr := multipart.NewReader(body, params["boundary"])
		for {
			// Raw parts, so the decoding below is ours and visible.
			p, err := mr.NextRawPart()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("mailtest: multipart: %w", err)
			}
			if err := walk(p.Header.Get("Content-Type"), p.Header.Get("Content-Transfer-Encoding"), p, c); err != nil {
				return err
			}
		}
	}
	switch strings.ToLower(strings.TrimSpace(cte)) {
	case "quoted-printable":
		body = quotedprintable.NewReader(body)
	case "base64":
		body = base64.NewDecoder(base64.StdEncoding, &newlineStripper{r: body})
	}
	b, err := io.ReadAll(body)
	if err != nil {
		return fmt.Errorf("mailtest: %s body: %w", mt, err)
	}
	text := strings.ReplaceAll(string(b), "\r\n", "\n")
	switch {
	case mt == "text/plain" && c.Text == "":
		c.Text = text
	case mt == "text/html" && c.HTML == "":
		c.HTML = text
	}
	return nil
}

// newlineStripper drops CR and LF so base64 line breaks do not upset the
// decoder.
type newlineStripper struct{ r io.Reader }

func (n *newlineStripper) Read(p []byte) (int, error) {
	for {
		k, err := n.r.Read(p)
		j := 0
		for _, b := range p[:k] {
			if b != '\r' && b != '\n' {
				p[j] = b
				j++
			}
		}
		if j > 0 || err != nil {
			return j, err
		}
	}
}

// testLogger forwards server errors to the test log until the server is
// closed; logging after a test has finished would panic.
type testLogger struct {
	s *Server
	t testing.TB
}

func (l *testLogger) Printf(format string, v ...any) {
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	if !l.s.closed {
		l.t.Logf("mailtest: smtp server: "+format, v...)
	}
}

func (l *testLogger) Println(v ...any) {
	l.Printf("%s", fmt.Sprintln(v...))
}

func selfSigned(t testing.TB) (tls.Certificate, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("mailtest: generate key: %v", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatalf("mailtest: serial: %v", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "mailtest"},
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("mailtest: create certificate: %v", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("mailtest: parse certificate: %v", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, leaf
}
