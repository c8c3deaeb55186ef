package store

import (
	"context"
	"time"
)

func (inv *Invite) normalize() {
	inv.CreatedAt = inv.CreatedAt.UTC()
	inv.DeliveredAt = utcPtr(inv.DeliveredAt)
}

// CreateInvite stores a third-party invite. It fails with ErrDuplicate if the
// token already exists. CreatedAt defaults to the current time.
func (s *Store) CreateInvite(ctx context.Context, inv Invite) error {
	inv.ID = 0
	if inv.CreatedAt.IsZero() {
		inv.CreatedAt = s.wdb.NowFunc()
	} else {
		inv.CreatedAt = utc(inv.CreatedAt)
	}
	if inv.DeliveredAt != nil {
		t := utc(*inv.DeliveredAt)
		inv.DeliveredAt = &t
	}
	return wrap("create invite", s.wdb.WithContext(ctx).Create(&inv).Error)
}

// DeleteUnclaimedInvite deletes the invite with the given token unless a
// bind has claimed it for an onbind delivery (or it was delivered). It
// reports whether it deleted it.
func (s *Store) DeleteUnclaimedInvite(ctx context.Context, token string) (bool, error) {
	res := s.wdb.WithContext(ctx).Where("token = ? AND "+pendingInvites, token).Delete(&Invite{})
	if res.Error != nil {
		return false, wrap("delete invite", res.Error)
	}
	return res.RowsAffected > 0, nil
}

// InviteByToken returns the invite with the given token, or ErrNotFound.
func (s *Store) InviteByToken(ctx context.Context, token string) (Invite, error) {
	var inv Invite
	if err := s.db.WithContext(ctx).Where("token = ?", token).Take(&inv).Error; err != nil {
		return Invite{}, wrap("invite by token", err)
	}
	inv.normalize()
	return inv, nil
}

// PendingInvites returns the invites for (medium, address) that are neither
// delivered nor claimed by a queued onbind delivery, in creation (ID) order.
func (s *Store) PendingInvites(ctx context.Context, medium, address string) ([]Invite, error) {
	var invs []Invite
	err := s.db.WithContext(ctx).
		Where("medium = ? AND address = ? AND "+pendingInvites, medium, address).
		Order("id").Find(&invs).Error
	if err != nil {
		return nil, wrap("pending invites", err)
	}
	for i := range invs {
		invs[i].normalize()
	}
	return invs, nil
}

// MarkInvitesDelivered sets DeliveredAt=now on the given (not yet delivered)
// invites and returns how many were updated.
func (s *Store) MarkInvitesDelivered(ctx context.Context, ids []uint, now time.Time) (int64, error) {
	var total int64
	now = utc(now)
	for _, chunk := range chunks(ids, chunkSize) {
		res := s.wdb.WithContext(ctx).Model(&Invite{}).
			Where("id IN ? AND delivered_at IS NULL", chunk).
			Update("delivered_at", now)
		if res.Error != nil {
			return total, wrap("mark invites delivered", res.Error)
		}
		total += res.RowsAffected
	}
	return total, nil
}

// EphemeralKeyValid reports whether publicKey (compared exactly) is the
// ephemeral public key of a stored invite, delivered or not, or one
// imported from the server Sigil replaced.
func (s *Store) EphemeralKeyValid(ctx context.Context, publicKey string) (bool, error) {
	if publicKey == "" { // imported invites have no key of their own
		return false, nil
	}
	var ids []uint
	err := s.db.WithContext(ctx).Model(&Invite{}).
		Where("ephemeral_public_key = ?", publicKey).
		Limit(1).Pluck("id", &ids).Error
	if err != nil {
		return false, wrap("ephemeral key valid", err)
	}
	if len(ids) > 0 {
		return true, nil
	}
	var n int64
	if err := s.db.WithContext(ctx).Model(&ImportedEphemeralKey{}).Where("public_key = ?", publicKey).Count(&n).Error; err != nil {
		return false, wrap("ephemeral key valid", err)
	}
	return n > 0, nil
}
