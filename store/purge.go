package store

import (
	"context"
	"time"
)

// purgeBatch bounds one DELETE, so a purge never holds the (SQLite) write
// lock for long: writes from requests interleave with its batches.
const purgeBatch = 5000

// PurgeBefore says what is old enough to delete: each field is a cut-off
// time; a zero time keeps everything of that kind.
type PurgeBefore struct {
	// UnvalidatedSessions: sessions never validated, last modified before.
	UnvalidatedSessions time.Time
	// ValidatedSessions: validated sessions last modified before.
	ValidatedSessions time.Time
	// Invites: invites created before, delivered or not, unless a delivery
	// that has not finished still carries them.
	Invites time.Time
	// OnBinds: deliveries delivered or given up before.
	OnBinds time.Time
}

// Purged counts what a purge deleted.
type Purged struct {
	Sessions, Invites, OnBinds int64
}

// Purge deletes what cut says is old, in batches.
func (s *Store) Purge(ctx context.Context, cut PurgeBefore) (Purged, error) {
	var p Purged
	var err error
	if !cut.UnvalidatedSessions.IsZero() {
		p.Sessions, err = s.purge(ctx, "sessions", "validated_at IS NULL AND modified_at < ?", utc(cut.UnvalidatedSessions))
		if err != nil {
			return p, err
		}
	}
	if !cut.ValidatedSessions.IsZero() {
		n, err := s.purge(ctx, "sessions", "validated_at IS NOT NULL AND modified_at < ?", utc(cut.ValidatedSessions))
		p.Sessions += n
		if err != nil {
			return p, err
		}
	}
	if !cut.OnBinds.IsZero() {
		t := utc(cut.OnBinds)
		p.OnBinds, err = s.purge(ctx, "onbind_deliveries", "(delivered_at IS NOT NULL AND delivered_at < ?) OR (failed_at IS NOT NULL AND failed_at < ?)", t, t)
		if err != nil {
			return p, err
		}
	}
	if !cut.Invites.IsZero() {
		// An invite still claimed by an unfinished delivery stays until it
		// is delivered or given up.
		p.Invites, err = s.purge(ctx, "invites", "created_at < ? AND (onbind_delivery_id IS NULL OR delivered_at IS NOT NULL OR onbind_delivery_id NOT IN (SELECT id FROM onbind_deliveries WHERE delivered_at IS NULL AND failed_at IS NULL))", utc(cut.Invites))
		if err != nil {
			return p, err
		}
	}
	return p, nil
}

// purge deletes the rows of table matching where, purgeBatch at a time.
func (s *Store) purge(ctx context.Context, table, where string, args ...any) (int64, error) {
	var total int64
	for {
		res := s.wdb.WithContext(ctx).Exec(
			"DELETE FROM "+table+" WHERE id IN (SELECT id FROM "+table+" WHERE "+where+" LIMIT ?)",
			append(args, purgeBatch)...)
		if res.Error != nil {
			return total, wrap("purge "+table, res.Error)
		}
		total += res.RowsAffected
		if res.RowsAffected < purgeBatch || ctx.Err() != nil {
			return total, nil
		}
	}
}
