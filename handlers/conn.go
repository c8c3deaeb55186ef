package handlers

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"sync/atomic"

	"github.com/labstack/echo/v4"

	"github.com/sigil-matrix/sigil/spec/matrixerr"
)

// maxDrainBytes is how much of an unread request body is read after the
// answer, so a client still sending gets to read that answer: closing a
// socket with unread data makes the kernel reset the connection, and the
// client loses the response it had not read yet.
const maxDrainBytes = 4 << 20

// Guard adds the protections that need the connection as well as the
// request to a server about to serve ln, and returns the listener to serve:
//   - a request with both Content-Length and Transfer-Encoding (request
//     smuggling; RFC 9112 §6.1) is refused and its connection closed. Go
//     drops the Content-Length header before any handler runs, so the
//     raw header lines are watched on the connection;
func Guard(hs *http.Server, ln net.Listener) net.Listener {
	prev := hs.ConnContext
	hs.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		if prev != nil {
			ctx = prev(ctx, c)
		}
		if sc, ok := c.(*sniffConn); ok {
			ctx = context.WithValue(ctx, connKey, sc)
		}
		return ctx
	}
	return sniffListener{ln}
}

// drainBody reads what is left of the request body, up to maxDrainBytes,
// once the handler is done and before Echo writes an error answer, so the
// client gets that answer as soon as its body is in; past the bound the
// server closes the connection as before.
func drainBody(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		body := c.Request().Body
		err := next(c)
		if body != nil && body != http.NoBody {
			_, _ = io.CopyN(io.Discard, body, maxDrainBytes)
		}
		return err
	}
}

// refuseAmbiguousFraming is the Echo side of Guard. It runs outside every
// other middleware (NewHTTP).
func refuseAmbiguousFraming(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if sc, _ := c.Request().Context().Value(connKey).(*sniffConn); sc != nil && sc.ambiguous.Load() {
			c.Response().Header().Set("Connection", "close")
			// Answered as when this ran before routing (Echo Pre
			// middleware): in JSON, never as the HTML error page of a
			// GET submitToken route (handleError looks the route up).
			c.SetPath("")
			return matrixerr.New(http.StatusBadRequest, "M_UNRECOGNIZED",
				"A request may not have both Content-Length and Transfer-Encoding")
		}
		return next(c)
	}
}

const connKey ctxKey = 100

type sniffListener struct{ net.Listener }

func (l sniffListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &sniffConn{Conn: c}, nil
}

// sniffConn watches the start of every line read, to notice a header
// block with both Content-Length and Transfer-Encoding. It may also see
// lines of bodies; a false alarm only closes one keep-alive connection.
type sniffConn struct {
	net.Conn
	ambiguous atomic.Bool

	// Only the reading goroutine of the HTTP server touches these.
	line         [18]byte // the start of the current line, lowercased
	n            int
	length, te   bool // seen in the current header block
	lineHasBytes bool
}

func (c *sniffConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.scan(p[:n])
	return n, err
}

// scan follows line starts through b. Bodies rarely contain line breaks,
// so jumping from one to the next (IndexByte is vectorised) keeps the
// cost of large bodies negligible.
func (c *sniffConn) scan(b []byte) {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		seg := b
		if i >= 0 {
			seg = b[:i]
		}
		c.take(seg)
		if i < 0 {
			return
		}
		c.endLine()
		b = b[i+1:]
	}
}

// take adds seg (no line break in it) to the current line.
func (c *sniffConn) take(seg []byte) {
	for _, ch := range seg {
		if ch == '\r' {
			continue
		}
		c.lineHasBytes = true
		if c.n == len(c.line) {
			return
		}
		if 'A' <= ch && ch <= 'Z' {
			ch += 'a' - 'A'
		}
		c.line[c.n] = ch
		c.n++
	}
}

func (c *sniffConn) endLine() {
	if !c.lineHasBytes { // blank line: the end of a header block
		if c.length && c.te {
			c.ambiguous.Store(true)
		}
		c.length, c.te = false, false
	} else {
		line := string(c.line[:c.n])
		c.length = c.length || hasPrefix(line, "content-length:")
		c.te = c.te || hasPrefix(line, "transfer-encoding:")
	}
	c.n, c.lineHasBytes = 0, false
}

func hasPrefix(s, prefix string) bool { return len(s) >= len(prefix) && s[:len(prefix)] == prefix }
