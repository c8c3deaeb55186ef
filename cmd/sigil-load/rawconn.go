package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// rawConn is the generator's side of one keep-alive HTTP/1.1 connection:
// it writes a request's prepared bytes and reads the answer's status and
// length, discarding the body in the read buffer. net/http's client cost a
// quarter of a bulk lookup's server CPU (header maps, a body reader and a
// goroutine per connection), and on a 2-core machine the generator shares
// the cores with the server in the scaling rows: every cycle it spends is
// one the server does not get. This client supports what the servers
// measured here send: Content-Length or chunked bodies, no 1xx answers.
type rawConn struct {
	addr string // host:port, also the Host header
	c    net.Conn
	br   *bufio.Reader
	hdr  []byte

	mu      sync.Mutex // guards c against abort, which may run on another goroutine
	aborted bool
}

func newRawConn(addr string) *rawConn { return &rawConn{addr: addr} }

func (rc *rawConn) close() {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.c != nil {
		rc.c.Close()
		rc.c = nil
	}
}

// abort closes the connection from another goroutine (a cancelled run),
// failing a read in progress; do then refuses to dial again.
func (rc *rawConn) abort() {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.aborted = true
	if rc.c != nil {
		rc.c.Close()
	}
}

func (rc *rawConn) dial() error {
	c, err := net.DialTimeout("tcp", rc.addr, 5*time.Second)
	if err != nil {
		return err
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.aborted {
		c.Close()
		return net.ErrClosed
	}
	rc.c = c
	if rc.br == nil {
		rc.br = bufio.NewReaderSize(nil, 64<<10)
	}
	rc.br.Reset(c)
	return nil
}

// do sends r and reads the answer: its status, and the start of its body
// when it is not a 2xx (for the error report). A failed connection is
// closed; the next do dials again.
func (rc *rawConn) do(r request, deadline time.Time) (code int, errBody string, err error) {
	if rc.c == nil {
		if err := rc.dial(); err != nil {
			return 0, "", err
		}
	}
	_ = rc.c.SetDeadline(deadline)
	h := append(rc.hdr[:0], r.method...)
	h = append(h, ' ')
	h = append(h, r.uri...)
	h = append(h, " HTTP/1.1\r\nHost: "...)
	h = append(h, rc.addr...)
	if r.body != nil {
		h = append(h, "\r\nContent-Type: application/json\r\nContent-Length: "...)
		h = strconv.AppendInt(h, int64(len(r.body)), 10)
	}
	if r.auth != "" {
		h = append(h, "\r\nAuthorization: "...)
		h = append(h, r.auth...)
	}
	h = append(h, "\r\n\r\n"...)
	rc.hdr = h
	bufs := net.Buffers{h, r.body}
	if _, err = bufs.WriteTo(rc.c); err == nil {
		code, errBody, err = rc.readResponse()
	}
	if err != nil {
		rc.close()
	}
	return code, errBody, err
}

var errBadResponse = errors.New("malformed HTTP response")

func (rc *rawConn) readResponse() (code int, errBody string, err error) {
	line, err := rc.br.ReadSlice('\n')
	if err != nil {
		return 0, "", err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, "", fmt.Errorf("%w: status line %q", errBadResponse, line)
	}
	if code, err = strconv.Atoi(string(line[9:12])); err != nil {
		return 0, "", fmt.Errorf("%w: status line %q", errBadResponse, line)
	}
	length, chunked, closing := -1, false, false
	for {
		line, err = rc.br.ReadSlice('\n')
		if err != nil {
			return 0, "", err
		}
		if len(line) <= 2 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return 0, "", fmt.Errorf("%w: header %q", errBadResponse, line)
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(value)); err != nil || length < 0 {
				return 0, "", fmt.Errorf("%w: header %q", errBadResponse, line)
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.Contains(bytes.ToLower(value), []byte("chunked"))
		case bytes.EqualFold(name, []byte("Connection")):
			closing = bytes.EqualFold(value, []byte("close"))
		}
	}
	switch {
	case chunked:
		var body strings.Builder
		err = rc.readChunked(code/100 != 2, &body)
		errBody = body.String()
	case length >= 0:
		if code/100 != 2 {
			b, _ := rc.br.Peek(min(length, 300))
			errBody = string(b)
		}
		_, err = rc.br.Discard(length)
	default:
		err = fmt.Errorf("%w: neither Content-Length nor chunked", errBadResponse)
	}
	if err == nil && closing {
		rc.close()
	}
	return code, errBody, err
}

// readChunked discards a chunked body, keeping its first 300 bytes in
// keep when asked to.
func (rc *rawConn) readChunked(wantStart bool, keep *strings.Builder) error {
	for {
		line, err := rc.br.ReadSlice('\n')
		if err != nil {
			return err
		}
		sizeText, _, _ := bytes.Cut(bytes.TrimSpace(line), []byte(";"))
		size, err := strconv.ParseUint(string(sizeText), 16, 31)
		if err != nil {
			return fmt.Errorf("%w: chunk size %q", errBadResponse, line)
		}
		if size == 0 {
			for { // trailers, up to the empty line
				if line, err = rc.br.ReadSlice('\n'); err != nil || len(line) <= 2 {
					return err
				}
			}
		}
		if wantStart && keep.Len() < 300 {
			b, _ := rc.br.Peek(min(int(size), 300-keep.Len()))
			keep.Write(b)
		}
		if _, err := rc.br.Discard(int(size) + 2); err != nil {
			return err
		}
	}
}
