package main

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/sigil-matrix/sigil/handlers"
)

// logBuffer batches the log's writes: the access log writes a line per
// request, and a write(2) per line was the largest single cost of a small
// request after the response itself (8 % of a status request's CPU).
// Lines are whole (slog writes a record at a time), are written at the
// latest logFlushDelay after they were logged, at once when the buffer is
// full, and at once after a warning or an error (flushOnWarn), so what an
// operator needs after a crash is already out.
type logBuffer struct {
	mu      sync.Mutex
	w       io.Writer
	buf     []byte
	pending bool // a flush is scheduled
}

const (
	logFlushDelay = 20 * time.Millisecond
	logBufferSize = 64 << 10
)

func newLogBuffer(w io.Writer) *logBuffer {
	return &logBuffer{w: w, buf: make([]byte, 0, logBufferSize)}
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.buf)+len(p) > logBufferSize {
		if err := b.flushLocked(); err != nil {
			return 0, err
		}
		if len(p) > logBufferSize {
			return b.w.Write(p)
		}
	}
	b.buf = append(b.buf, p...)
	if !b.pending {
		b.pending = true
		time.AfterFunc(logFlushDelay, func() { _ = b.Flush() })
	}
	return len(p), nil
}

// Flush writes what is buffered.
func (b *logBuffer) Flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.pending = false
	return b.flushLocked()
}

func (b *logBuffer) flushLocked() error {
	if len(b.buf) == 0 {
		return nil
	}
	_, err := b.w.Write(b.buf)
	b.buf = b.buf[:0]
	return err
}

// flushOnWarn writes the buffer out after every record at warning level
// or above.
type flushOnWarn struct {
	slog.Handler
	b *logBuffer
	// accessLog writes to b in the Handler's layout (set by the cli for
	// the handler newLogger made).
	accessLog *handlers.AccessLog
}

func (h flushOnWarn) Handle(ctx context.Context, r slog.Record) error {
	err := h.Handler.Handle(ctx, r)
	if r.Level >= slog.LevelWarn {
		_ = h.b.Flush()
	}
	return err
}

// A logger with attributes or a group no longer writes what the access
// log's fast path writes: derived handlers have no accessLog.
func (h flushOnWarn) WithAttrs(as []slog.Attr) slog.Handler {
	return flushOnWarn{Handler: h.Handler.WithAttrs(as), b: h.b}
}

func (h flushOnWarn) WithGroup(name string) slog.Handler {
	return flushOnWarn{Handler: h.Handler.WithGroup(name), b: h.b}
}

// accessLogOf is where log's handler takes the access log's lines without
// slog (handlers.AccessLog): the process's own logger, as newLogger made
// it; nil for any other (tests', derived ones), which then log through
// slog.
func accessLogOf(log *slog.Logger) *handlers.AccessLog {
	if h, ok := log.Handler().(flushOnWarn); ok {
		return h.accessLog
	}
	return nil
}
