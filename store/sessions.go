package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

func (x *Session) normalize() {
	x.CreatedAt = x.CreatedAt.UTC()
	x.ModifiedAt = x.ModifiedAt.UTC()
	x.ValidatedAt = utcPtr(x.ValidatedAt)
}

// RequestSession implements the send_attempt semantics of requestToken in one
// transaction. The session is looked up by (medium, address, client_secret):
//   - if there is none, or r.Replace says the existing one must go (the
//     caller's expiry rule), it is (re)created with NewSID/NewToken and
//     send is true;
//   - if r.SendAttempt is greater than the stored one, SendAttempt (and
//     NextLink if non-empty) is updated, sid and token are kept, send is true;
//   - otherwise the existing session is returned unchanged and send is false.
//
// Concurrent identical requests create a single row and all see its SID.
func (s *Store) RequestSession(ctx context.Context, r SessionRequest) (Session, bool, error) {
	now := utc(r.Now)
	var (
		out  Session
		send bool
	)
	err := s.wdb.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		// Two rounds suffice: if our insert lost a race, the winner's row is
		// committed (PostgreSQL's ON CONFLICT waits for it) and visible to
		// the next read.
		for range 3 {
			var cur Session
			err := tx.Clauses(clause.Locking{Strength: "UPDATE"}).
				Where("medium = ? AND address = ? AND client_secret = ?", r.Medium, r.Address, r.ClientSecret).
				Take(&cur).Error
			if errors.Is(err, gorm.ErrRecordNotFound) {
				ns := Session{
					SID:          r.NewSID,
					Medium:       r.Medium,
					Address:      r.Address,
					ClientSecret: r.ClientSecret,
					Token:        r.NewToken,
					SendAttempt:  r.SendAttempt,
					NextLink:     r.NextLink,
					CreatedAt:    now,
					ModifiedAt:   now,
				}
				res := tx.Clauses(clause.OnConflict{
					Columns:   []clause.Column{{Name: "medium"}, {Name: "address"}, {Name: "client_secret"}},
					DoNothing: true,
				}).Create(&ns)
				if res.Error != nil {
					return res.Error
				}
				if res.RowsAffected == 0 {
					continue // lost the race: read the winner's row
				}
				out, send = ns, true
				return nil
			}
			if err != nil {
				return err
			}
			cur.normalize()

			switch {
			case r.Replace != nil && r.Replace(cur):
				cur.SID = r.NewSID
				cur.Token = r.NewToken
				cur.SendAttempt = r.SendAttempt
				cur.NextLink = r.NextLink
				cur.CreatedAt = now
				cur.ModifiedAt = now
				cur.ValidatedAt = nil
				err = tx.Model(&Session{}).Where("id = ?", cur.ID).Updates(map[string]any{
					"sid":          cur.SID,
					"token":        cur.Token,
					"send_attempt": cur.SendAttempt,
					"next_link":    cur.NextLink,
					"created_at":   cur.CreatedAt,
					"modified_at":  cur.ModifiedAt,
					"validated_at": nil,
				}).Error
				send = true
			case r.SendAttempt > cur.SendAttempt:
				upd := map[string]any{"send_attempt": r.SendAttempt}
				cur.SendAttempt = r.SendAttempt
				if r.NextLink != "" {
					upd["next_link"] = r.NextLink
					cur.NextLink = r.NextLink
				}
				err = tx.Model(&Session{}).Where("id = ?", cur.ID).Updates(upd).Error
				send = true
			}
			if err != nil {
				return err
			}
			out = cur
			return nil
		}
		return errors.New("session neither inserted nor found")
	})
	if err != nil {
		return Session{}, false, wrap("request session", err)
	}
	return out, send, nil
}

// SessionBySID returns the session with the given sid, or ErrNotFound.
func (s *Store) SessionBySID(ctx context.Context, sid string) (Session, error) {
	var sess Session
	if err := s.db.WithContext(ctx).Where("sid = ?", sid).Take(&sess).Error; err != nil {
		return Session{}, wrap("session by sid", err)
	}
	sess.normalize()
	return sess, nil
}

// MarkSessionValidated sets ValidatedAt (if not already set) and
// ModifiedAt=now. It returns ErrNotFound if there is no such session.
func (s *Store) MarkSessionValidated(ctx context.Context, sid string, now time.Time) error {
	now = utc(now)
	res := s.wdb.WithContext(ctx).Model(&Session{}).Where("sid = ?", sid).Updates(map[string]any{
		"validated_at": gorm.Expr("COALESCE(validated_at, ?)", now),
		"modified_at":  now,
	})
	if res.Error != nil {
		return wrap("mark session validated", res.Error)
	}
	if res.RowsAffected == 0 {
		return fmt.Errorf("store: mark session validated: %w", ErrNotFound)
	}
	return nil
}

// DeleteSessionsOlderThan deletes the sessions last modified before t and
// returns how many were deleted.
func (s *Store) DeleteSessionsOlderThan(ctx context.Context, t time.Time) (int64, error) {
	res := s.wdb.WithContext(ctx).Where("modified_at < ?", utc(t)).Delete(&Session{})
	if res.Error != nil {
		return 0, wrap("delete old sessions", res.Error)
	}
	return res.RowsAffected, nil
}
