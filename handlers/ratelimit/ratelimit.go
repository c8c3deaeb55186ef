// Package ratelimit bounds how often one key (a destination address, a
// client IP) may trigger something costly such as sending mail or SMS.
package ratelimit

import (
	"sync"
	"time"
)

// DefaultMaxKeys bounds the keys one Limiter remembers: each costs about
// 60 bytes (key, map slot, one int64), so the default is a few MiB at most.
const DefaultMaxKeys = 100_000

// sweepEvery is the longest a refilled key is remembered, whatever the rate.
const sweepEvery = 10 * time.Second

// Limiter is a set of token buckets, one per key, each kept as the time its
// bucket will be full again (the generic cell rate algorithm: one int64 per
// key, no allocation once a key is known). A key whose bucket is full is
// forgotten at the next sweep, which runs at least every sweepEvery, so
// memory is bounded by the keys active within a refill period and, under
// any traffic, by MaxKeys.
type Limiter struct {
	mu      sync.Mutex
	every   time.Duration
	burst   int
	maxKeys int
	full    map[string]int64 // key → unix nanos at which its bucket is full
	sweep   time.Time
}

// New allows burst events at once per key, then one every `every`.
// every <= 0 disables the limit.
func New(every time.Duration, burst int) *Limiter {
	if burst < 1 {
		burst = 1
	}
	return &Limiter{every: every, burst: burst, maxKeys: DefaultMaxKeys, full: map[string]int64{}}
}

// WithMaxKeys sets how many keys are remembered at most (for tests and
// deployments with unusual traffic); it returns l.
func (l *Limiter) WithMaxKeys(n int) *Limiter {
	if n > 0 {
		l.maxKeys = n
	}
	return l
}

// Allow reports whether key may act now, and if not, how long until it may.
func (l *Limiter) Allow(key string, now time.Time) (bool, time.Duration) {
	if l == nil || l.every <= 0 {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.maybeSweep(now)
	t := now.UnixNano()
	at, known := l.full[key]
	if at < t {
		at = t
	}
	next := at + int64(l.every)
	if over := next - t - int64(l.every)*int64(l.burst); over > 0 {
		return false, time.Duration(over)
	}
	if !known && len(l.full) >= l.maxKeys {
		l.makeRoom()
	}
	l.full[key] = next
	return true, 0
}

// Len is the number of keys remembered.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.full)
}

func (l *Limiter) maybeSweep(now time.Time) {
	interval := l.every * time.Duration(l.burst)
	if interval > sweepEvery {
		interval = sweepEvery
	}
	if now.Sub(l.sweep) < interval {
		return
	}
	l.sweep = now
	t := now.UnixNano()
	for k, at := range l.full {
		if at <= t {
			delete(l.full, k)
		}
	}
}

// makeRoom frees a slot when the table is full by forgetting an arbitrary
// key (Go starts map iteration at a random slot, so this is O(1)): its
// bucket starts full again, which loosens one key's limit rather than
// letting memory grow without bound.
func (l *Limiter) makeRoom() {
	for k := range l.full {
		delete(l.full, k)
		return
	}
}
