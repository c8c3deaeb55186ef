package store

import (
	"context"
	"time"

	"gorm.io/gorm"
)

// The queries behind the operator's commands (sigil bindings, invites,
// onbind): listing what is stored, removing it, and retrying deliveries.

// BindingFilter selects associations: by MXID, or by medium and address.
// Empty fields match anything.
type BindingFilter struct {
	MXID, Medium, Address string
	// AfterID pages through a long list (associations with a larger ID).
	AfterID uint
}

// ListAssociations returns up to limit associations matching f, in ID
// order, whatever their validity window.
func (s *Store) ListAssociations(ctx context.Context, f BindingFilter, limit int) ([]Association, error) {
	q := s.db.WithContext(ctx).Where("id > ?", f.AfterID)
	if f.MXID != "" {
		q = q.Where("mxid = ?", f.MXID)
	}
	if f.Medium != "" {
		q = q.Where("medium = ?", f.Medium)
	}
	if f.Address != "" {
		q = q.Where("address = ?", f.Address)
	}
	var out []Association
	if err := q.Order("id").Limit(limit).Find(&out).Error; err != nil {
		return nil, wrap("list associations", err)
	}
	for i := range out {
		out[i].normalize()
	}
	return out, nil
}

// DeleteAssociations deletes the given associations (each only while it
// is still bound to the same MXID) in one transaction with its lookup
// index notification, and returns how many were deleted.
func (s *Store) DeleteAssociations(ctx context.Context, as []Association) (int64, error) {
	var n int64
	err := s.ix.write(func() (ixChange, error) {
		var change ixChange
		err := s.writeTx(ctx, func(tx *gorm.DB) error {
			for _, a := range as {
				res := tx.Where("medium = ? AND address = ? AND mxid = ?", a.Medium, a.Address, a.MXID).Delete(&Association{})
				if res.Error != nil {
					return res.Error
				}
				if res.RowsAffected > 0 {
					n += res.RowsAffected
					change.deleted = append(change.deleted, ThreePID{a.Medium, a.Address})
				}
			}
			if change.empty() {
				return nil
			}
			return s.ix.notify(tx, change)
		})
		return change, err
	})
	if err != nil {
		return 0, wrap("delete associations", err)
	}
	return n, nil
}

// InviteFilter selects invites: by medium and address (empty: all), and
// whether delivered ones are included.
type InviteFilter struct {
	Medium, Address  string
	IncludeDelivered bool
}

// ListInvites returns up to limit invites matching f, in ID order.
func (s *Store) ListInvites(ctx context.Context, f InviteFilter, limit int) ([]Invite, error) {
	q := s.db.WithContext(ctx)
	if f.Medium != "" {
		q = q.Where("medium = ?", f.Medium)
	}
	if f.Address != "" {
		q = q.Where("address = ?", f.Address)
	}
	if !f.IncludeDelivered {
		q = q.Where("delivered_at IS NULL")
	}
	var out []Invite
	if err := q.Order("id").Limit(limit).Find(&out).Error; err != nil {
		return nil, wrap("list invites", err)
	}
	for i := range out {
		out[i].normalize()
	}
	return out, nil
}

// CancelInvite deletes the pending invite with token: neither delivered
// nor claimed by a queued onbind delivery (those belong to the queue now).
// It reports ErrNotFound when there is no such pending invite.
func (s *Store) CancelInvite(ctx context.Context, token string) error {
	res := s.wdb.WithContext(ctx).Where("token = ? AND "+pendingInvites, token).Delete(&Invite{})
	if res.Error != nil {
		return wrap("cancel invite", res.Error)
	}
	if res.RowsAffected == 0 {
		return wrap("cancel invite", ErrNotFound)
	}
	return nil
}

// OnBind delivery states for ListOnBinds.
const (
	OnBindQueued    = "queued"
	OnBindFailed    = "failed"
	OnBindDelivered = "delivered"
)

// ListOnBinds returns up to limit deliveries in the given state ("" for
// all), oldest first.
func (s *Store) ListOnBinds(ctx context.Context, state string, limit int) ([]OnBindDelivery, error) {
	q := s.db.WithContext(ctx)
	switch state {
	case OnBindQueued:
		q = q.Where("delivered_at IS NULL AND failed_at IS NULL")
	case OnBindFailed:
		q = q.Where("failed_at IS NOT NULL")
	case OnBindDelivered:
		q = q.Where("delivered_at IS NOT NULL")
	}
	var out []OnBindDelivery
	if err := q.Order("id").Limit(limit).Find(&out).Error; err != nil {
		return nil, wrap("list onbind", err)
	}
	for i := range out {
		out[i].normalize()
	}
	return out, nil
}

// RetryOnBinds makes undelivered deliveries due at now with a fresh count
// of attempts: the one with id, or every given-up one when id is 0. It
// returns how many were rescheduled.
func (s *Store) RetryOnBinds(ctx context.Context, id uint, now time.Time) (int64, error) {
	q := s.wdb.WithContext(ctx).Model(&OnBindDelivery{}).Where("delivered_at IS NULL")
	if id != 0 {
		q = q.Where("id = ?", id)
	} else {
		q = q.Where("failed_at IS NOT NULL")
	}
	res := q.Updates(map[string]any{"failed_at": nil, "attempts": 0, "next_attempt_at": utc(now), "last_error": ""})
	if res.Error != nil {
		return 0, wrap("retry onbind", res.Error)
	}
	return res.RowsAffected, nil
}
