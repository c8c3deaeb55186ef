package identity

import (
	"context"
	"sync"
	"time"

	"github.com/sigil-matrix/sigil/store"
)

// Health is what the readiness check reports.
type Health struct {
	// Database is nil when the database answers.
	Database error
	Index    store.IndexStats
}

// Ready reports whether requests of every kind can be served.
func (h Health) Ready() bool { return h.Database == nil && h.Index.Loaded }

// Health checks the database (within ctx) and reports on the lookup index.
func (s *Service) Health(ctx context.Context) Health {
	return Health{Database: s.store.Ping(ctx), Index: s.store.IndexStats()}
}

// Unavailable reports whether err (or the cause it wraps) means the
// database cannot be reached right now: the request may be retried later.
func Unavailable(err error) bool { return store.IsUnavailable(err) }

// authCache remembers recently checked access tokens, so that v2 lookups
// keep being answered from the index while the database is unreachable.
// It is consulted only then; a token revoked on another instance during
// an outage works on this one until the entry ages out.
type authCache struct {
	mu sync.Mutex
	m  map[string]authEntry // token hash → user
}

type authEntry struct {
	user string
	at   time.Time
}

const (
	authCacheMax = 10_000
	authCacheTTL = 10 * time.Minute
)

func (c *authCache) put(hash, user string, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]authEntry{}
	}
	if _, ok := c.m[hash]; !ok && len(c.m) >= authCacheMax {
		for k, e := range c.m {
			if now.Sub(e.at) > authCacheTTL || len(c.m) >= authCacheMax {
				delete(c.m, k)
			}
		}
	}
	c.m[hash] = authEntry{user: user, at: now}
}

func (c *authCache) get(hash string, now time.Time) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[hash]
	if !ok || now.Sub(e.at) > authCacheTTL {
		return "", false
	}
	return e.user, true
}

func (c *authCache) forget(hash string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, hash)
}
