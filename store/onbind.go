package store

import (
	"context"
	"strings"
	"time"

	"gorm.io/gorm"
)

// OnBindDelivery is one queued /_matrix/federation/v1/3pid/onbind call: the
// pending invites of a 3PID, handed to the homeserver of the MXID it was
// bound to. The invites it carries are claimed by it (their
// onbind_delivery_id column), so each invite is in at most one delivery.
type OnBindDelivery struct {
	ID      uint   `gorm:"primaryKey"`
	MXID    string `gorm:"column:mxid;not null"`
	Medium  string `gorm:"not null"`
	Address string `gorm:"not null"`
	// Payload is the JSON body to POST, built once at enqueue time.
	Payload []byte `gorm:"not null"`
	// Attempts counts the delivery attempts made so far.
	Attempts int `gorm:"not null"`
	// NextAttemptAt is when the delivery is next due (also the lease
	// expiry while a worker holds it).
	NextAttemptAt time.Time `gorm:"not null;index:idx_onbind_deliveries_due"`
	LastError     string    `gorm:"not null"`
	CreatedAt     time.Time `gorm:"not null"`
	DeliveredAt   *time.Time
	// FailedAt is set when delivery was given up.
	FailedAt *time.Time
}

// TableName is onbind_deliveries.
func (OnBindDelivery) TableName() string { return "onbind_deliveries" }

func (d *OnBindDelivery) normalize() {
	d.NextAttemptAt = d.NextAttemptAt.UTC()
	d.CreatedAt = d.CreatedAt.UTC()
	d.DeliveredAt = utcPtr(d.DeliveredAt)
	d.FailedAt = utcPtr(d.FailedAt)
}

// maxErrorText bounds the stored last_error.
const maxErrorText = 1000

func clip(s string) string {
	if len(s) > maxErrorText {
		return s[:maxErrorText]
	}
	return s
}

// pendingInvites restricts a query on invites to those neither delivered nor
// claimed by a delivery.
const pendingInvites = "delivered_at IS NULL AND onbind_delivery_id IS NULL"

// EnqueueOnBind queues the delivery of the pending invites of (medium,
// address) to mxid's homeserver. In one transaction it claims every
// pending invite of the 3PID, calls build with them (in creation order) for
// the payload, and stores the delivery, due at now. Nothing is queued, and
// queued is false, when the 3PID has no pending invites. If build fails
// nothing is claimed. BindAssociation does the same in the transaction
// that stores the binding.
func (s *Store) EnqueueOnBind(ctx context.Context, medium, address, mxid string, build func([]Invite) ([]byte, error), now time.Time) (queued bool, err error) {
	err = s.wdb.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		queued, err = enqueueOnBind(tx, medium, address, mxid, build, utc(now))
		return err
	})
	if err != nil {
		return false, wrap("enqueue onbind", err)
	}
	return queued, nil
}

// enqueueOnBind is EnqueueOnBind inside the caller's transaction tx.
func enqueueOnBind(tx *gorm.DB, medium, address, mxid string, build func([]Invite) ([]byte, error), now time.Time) (bool, error) {
	// Binds far outnumber invites: stop at once when there is plainly
	// nothing to deliver.
	var n int64
	if err := tx.Model(&Invite{}).
		Where("medium = ? AND address = ? AND "+pendingInvites, medium, address).
		Count(&n).Error; err != nil {
		return false, err
	}
	if n == 0 {
		return false, nil
	}
	d := OnBindDelivery{
		MXID: mxid, Medium: medium, Address: address, Payload: []byte("{}"),
		NextAttemptAt: now, CreatedAt: now,
	}
	if err := tx.Create(&d).Error; err != nil {
		return false, err
	}
	// Claim, then read back what was claimed: a concurrent enqueue
	// (PostgreSQL) waits on the row locks and then finds the invites no
	// longer pending, so no invite is claimed twice.
	res := tx.Model(&Invite{}).
		Where("medium = ? AND address = ? AND "+pendingInvites, medium, address).
		Update("onbind_delivery_id", d.ID)
	if res.Error != nil {
		return false, res.Error
	}
	if res.RowsAffected == 0 {
		// Claimed meanwhile by a concurrent enqueue: drop our empty row.
		return false, tx.Delete(&OnBindDelivery{}, d.ID).Error
	}
	var invs []Invite
	if err := tx.Where("onbind_delivery_id = ?", d.ID).Order("id").Find(&invs).Error; err != nil {
		return false, err
	}
	for i := range invs {
		invs[i].normalize()
	}
	payload, err := build(invs)
	if err != nil {
		return false, err
	}
	return true, tx.Model(&OnBindDelivery{}).Where("id = ?", d.ID).Update("payload", payload).Error
}

// DueOnBinds returns up to limit deliveries that are neither delivered nor
// failed and due at now, oldest due first. With lease > 0 each returned
// delivery is also leased: its NextAttemptAt is moved to now+lease, so no
// other worker (in this or another process) takes it meanwhile, and a worker
// that dies holding it only delays it by the lease. Deliveries another
// worker leased first are left out.
func (s *Store) DueOnBinds(ctx context.Context, now time.Time, limit int, lease time.Duration) ([]OnBindDelivery, error) {
	now = utc(now)
	var due []OnBindDelivery
	err := s.db.WithContext(ctx).
		Where("delivered_at IS NULL AND failed_at IS NULL AND next_attempt_at <= ?", now).
		Order("next_attempt_at, id").Limit(limit).Find(&due).Error
	if err != nil {
		return nil, wrap("due onbinds", err)
	}
	if lease <= 0 {
		for i := range due {
			due[i].normalize()
		}
		return due, nil
	}
	until := utc(now.Add(lease))
	out := due[:0]
	for _, d := range due {
		res := s.wdb.WithContext(ctx).Model(&OnBindDelivery{}).
			Where("id = ? AND attempts = ? AND delivered_at IS NULL AND failed_at IS NULL AND next_attempt_at <= ?", d.ID, d.Attempts, now).
			Update("next_attempt_at", until)
		if res.Error != nil {
			return nil, wrap("lease onbind", res.Error)
		}
		if res.RowsAffected == 1 {
			d.NextAttemptAt = until
			d.normalize()
			out = append(out, d)
		}
	}
	return out, nil
}

// DueOnBindsExcept is DueOnBinds without leasing, leaving out the
// deliveries whose IDs are in exceptIDs (already queued by the caller) and
// those to the homeservers in exceptServers (whose queue is full): the
// delivery worker reads past a destination that cannot take more work, so
// one slow homeserver's backlog never hides the deliveries due elsewhere.
func (s *Store) DueOnBindsExcept(ctx context.Context, now time.Time, limit int, exceptIDs []uint, exceptServers []string) ([]OnBindDelivery, error) {
	q := s.db.WithContext(ctx).
		Where("delivered_at IS NULL AND failed_at IS NULL AND next_attempt_at <= ?", utc(now))
	if len(exceptIDs) > 0 {
		q = q.Where("id NOT IN ?", exceptIDs)
	}
	for _, srv := range exceptServers {
		// The server is what follows the MXID's first colon.
		q = q.Where(`mxid NOT LIKE ? ESCAPE '\'`, "%:"+likeEscape(srv))
	}
	var due []OnBindDelivery
	if err := q.Order("next_attempt_at, id").Limit(limit).Find(&due).Error; err != nil {
		return nil, wrap("due onbinds", err)
	}
	for i := range due {
		due[i].normalize()
	}
	return due, nil
}

// likeEscape escapes LIKE's wildcards (and the escape character) in s.
func likeEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, "%", `\%`, "_", `\_`).Replace(s)
}

// LeaseOnBind reserves d, as read by DueOnBinds, for one attempt: its
// NextAttemptAt moves to now+lease unless another worker changed it first.
// It reports whether the lease was taken (and updates d).
func (s *Store) LeaseOnBind(ctx context.Context, d *OnBindDelivery, now time.Time, lease time.Duration) (bool, error) {
	until := utc(now.Add(lease))
	res := s.wdb.WithContext(ctx).Model(&OnBindDelivery{}).
		Where("id = ? AND attempts = ? AND delivered_at IS NULL AND failed_at IS NULL AND next_attempt_at <= ?", d.ID, d.Attempts, utc(now)).
		Update("next_attempt_at", until)
	if res.Error != nil {
		return false, wrap("lease onbind", res.Error)
	}
	if res.RowsAffected != 1 {
		return false, nil
	}
	d.NextAttemptAt = until
	return true, nil
}

// RenewOnBindLease extends the lease of a delivery still being attempted.
func (s *Store) RenewOnBindLease(ctx context.Context, id uint, until time.Time) error {
	err := s.wdb.WithContext(ctx).Model(&OnBindDelivery{}).
		Where("id = ? AND delivered_at IS NULL AND failed_at IS NULL", id).
		Update("next_attempt_at", utc(until)).Error
	return wrap("renew onbind lease", err)
}

// MarkOnBindDelivered records a successful delivery and, in the same
// transaction, sets DeliveredAt on the invites it carried. Marking a
// delivery twice changes nothing.
func (s *Store) MarkOnBindDelivered(ctx context.Context, id uint, now time.Time) error {
	now = utc(now)
	err := s.wdb.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		res := tx.Model(&OnBindDelivery{}).Where("id = ? AND delivered_at IS NULL", id).
			Updates(map[string]any{"delivered_at": now, "attempts": gorm.Expr("attempts + 1"), "last_error": ""})
		if res.Error != nil || res.RowsAffected == 0 {
			return res.Error
		}
		return tx.Model(&Invite{}).Where("onbind_delivery_id = ? AND delivered_at IS NULL", id).
			Update("delivered_at", now).Error
	})
	return wrap("mark onbind delivered", err)
}

// RescheduleOnBind records a failed attempt and makes the delivery due
// again at next.
func (s *Store) RescheduleOnBind(ctx context.Context, id uint, next time.Time, errText string) error {
	err := s.wdb.WithContext(ctx).Model(&OnBindDelivery{}).
		Where("id = ? AND delivered_at IS NULL AND failed_at IS NULL", id).
		Updates(map[string]any{"next_attempt_at": utc(next), "attempts": gorm.Expr("attempts + 1"), "last_error": clip(errText)}).Error
	return wrap("reschedule onbind", err)
}

// MarkOnBindFailed records a failed last attempt and gives the delivery up.
// Its undelivered invites are released, in the same transaction: they are
// pending again, for a later bind of the 3PID to deliver.
func (s *Store) MarkOnBindFailed(ctx context.Context, id uint, now time.Time, errText string) error {
	now = utc(now)
	err := s.wdb.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		res := tx.Model(&OnBindDelivery{}).Where("id = ? AND delivered_at IS NULL AND failed_at IS NULL", id).
			Updates(map[string]any{"failed_at": now, "attempts": gorm.Expr("attempts + 1"), "last_error": clip(errText)})
		if res.Error != nil || res.RowsAffected == 0 {
			return res.Error
		}
		return tx.Model(&Invite{}).Where("onbind_delivery_id = ? AND delivered_at IS NULL", id).
			Update("onbind_delivery_id", nil).Error
	})
	return wrap("mark onbind failed", err)
}

// OnBindDeliveries returns every delivery queued for (medium, address),
// whatever its state, in queueing order.
func (s *Store) OnBindDeliveries(ctx context.Context, medium, address string) ([]OnBindDelivery, error) {
	var ds []OnBindDelivery
	err := s.db.WithContext(ctx).Where("medium = ? AND address = ?", medium, address).Order("id").Find(&ds).Error
	if err != nil {
		return nil, wrap("onbind deliveries", err)
	}
	for i := range ds {
		ds[i].normalize()
	}
	return ds, nil
}

// OnBindInvites returns the invites a delivery carries, in creation order.
func (s *Store) OnBindInvites(ctx context.Context, id uint) ([]Invite, error) {
	var invs []Invite
	if err := s.db.WithContext(ctx).Where("onbind_delivery_id = ?", id).Order("id").Find(&invs).Error; err != nil {
		return nil, wrap("onbind invites", err)
	}
	for i := range invs {
		invs[i].normalize()
	}
	return invs, nil
}
