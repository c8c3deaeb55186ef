package store

import (
	"context"
	"database/sql"
	"time"
)

// OnBindQueueStats describes the onbind delivery queue, for metrics and
// `sigil onbind list`.
type OnBindQueueStats struct {
	// Queued is the number of deliveries neither delivered nor given up.
	Queued int64
	// Attempts is the attempts made so far on the queued deliveries.
	Attempts int64
	// Failed is the number of deliveries given up.
	Failed int64
	// Oldest is when the oldest queued delivery was created (zero if none).
	Oldest time.Time
}

// OnBindQueueStats reads the queue's figures in one query.
func (s *Store) OnBindQueueStats(ctx context.Context) (OnBindQueueStats, error) {
	var st OnBindQueueStats
	var attempts, failed sql.NullInt64
	var oldest sql.NullString
	row := s.db.WithContext(ctx).Raw(`SELECT
		COUNT(CASE WHEN delivered_at IS NULL AND failed_at IS NULL THEN 1 END),
		SUM(CASE WHEN delivered_at IS NULL AND failed_at IS NULL THEN attempts ELSE 0 END),
		COUNT(failed_at),
		MIN(CASE WHEN delivered_at IS NULL AND failed_at IS NULL THEN created_at END)
		FROM onbind_deliveries`).Row()
	var oldestT sql.NullTime
	var err error
	if s.dialect == DialectPostgres {
		err = row.Scan(&st.Queued, &attempts, &failed, &oldestT)
	} else {
		// SQLite returns MIN of a timestamp column as text.
		err = row.Scan(&st.Queued, &attempts, &failed, &oldest)
		if err == nil && oldest.Valid {
			oldestT.Time, oldestT.Valid = parseSQLiteTime(oldest.String), true
		}
	}
	if err != nil {
		return st, wrap("onbind stats", err)
	}
	st.Attempts, st.Failed = attempts.Int64, failed.Int64
	if oldestT.Valid {
		st.Oldest = oldestT.Time.UTC()
	}
	return st, nil
}

// parseSQLiteTime reads the text forms mattn/go-sqlite3 writes.
func parseSQLiteTime(s string) time.Time {
	for _, layout := range []string{
		"2006-01-02 15:04:05.999999999-07:00", "2006-01-02T15:04:05.999999999-07:00",
		"2006-01-02 15:04:05.999999999", "2006-01-02T15:04:05.999999999Z07:00",
	} {
		if t, err := time.Parse(layout, s); err == nil {
			return t
		}
	}
	return time.Time{}
}

// Pools returns the database connection pools by role ("read", "write";
// one pool, "read", on PostgreSQL and in-memory SQLite), for the pool
// metrics.
func (s *Store) Pools() map[string]*sql.DB {
	out := map[string]*sql.DB{}
	if db, err := s.db.DB(); err == nil {
		out["read"] = db
	}
	if s.wdb != s.db {
		if db, err := s.wdb.DB(); err == nil {
			out["write"] = db
		}
	}
	return out
}
