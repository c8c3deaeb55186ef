package identity

import (
	"context"
	"fmt"
	"time"

	"github.com/sigil-matrix/sigil/store"
)

// Retention says how long what is finished is kept before the purge
// deletes it. Zero fields take the defaults; a negative one keeps that kind
// of data for ever.
type Retention struct {
	// ExpiredSessions is how long a session is kept once expired (its
	// token, or its validation, too old to use), so that a late client is
	// told M_SESSION_EXPIRED rather than that no session exists. Default 1h.
	ExpiredSessions time.Duration
	// Invites is how long a third-party invite is kept after it was stored,
	// delivered or not (a pending invite older than this is no longer
	// delivered when its address is bound). Default 30 days.
	Invites time.Duration
	// OnBinds is how long a finished onbind delivery (delivered or given
	// up) is kept, for the record. Default 7 days.
	OnBinds time.Duration
	// Every is how often the purge runs. Default 10 minutes.
	Every time.Duration
}

func (r *Retention) defaults() {
	if r.ExpiredSessions == 0 {
		r.ExpiredSessions = time.Hour
	}
	if r.Invites == 0 {
		r.Invites = 30 * 24 * time.Hour
	}
	if r.OnBinds == 0 {
		r.OnBinds = 7 * 24 * time.Hour
	}
	if r.Every <= 0 {
		r.Every = 10 * time.Minute
	}
}

// cutoff is now-keep, or the zero time (keep everything) when keep < 0.
func cutoff(now time.Time, keep time.Duration) time.Time {
	if keep < 0 {
		return time.Time{}
	}
	return now.Add(-keep)
}

// Purge deletes expired sessions, old invites and finished onbind
// deliveries, as the retention settings say.
func (s *Service) Purge(ctx context.Context) (store.Purged, error) {
	r, now := s.cfg.Retention, s.now()
	cut := store.PurgeBefore{
		Invites: cutoff(now, r.Invites),
		OnBinds: cutoff(now, r.OnBinds),
	}
	if r.ExpiredSessions >= 0 {
		// The one lifetime rule (expired) read backwards: a session is
		// expired once ModifiedAt is older than its lifetime.
		cut.UnvalidatedSessions = now.Add(-s.cfg.TokenLifetime - r.ExpiredSessions)
		cut.ValidatedSessions = now.Add(-s.cfg.SessionLifetime - r.ExpiredSessions)
	}
	p, err := s.store.Purge(ctx, cut)
	if err != nil {
		return p, fmt.Errorf("purge: %w", err)
	}
	return p, nil
}

// RunPurger purges at start and then every Retention.Every until ctx ends.
func (s *Service) RunPurger(ctx context.Context) {
	tick := time.NewTicker(s.cfg.Retention.Every)
	defer tick.Stop()
	for {
		p, err := s.Purge(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			s.log.Error("purge failed; will retry", "err", err)
		case p.Sessions+p.Invites+p.OnBinds > 0:
			s.log.Info("purged", "sessions", p.Sessions, "invites", p.Invites, "onbind_deliveries", p.OnBinds)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
