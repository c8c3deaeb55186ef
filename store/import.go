package store

import (
	"context"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// Imports from another identity server (sigil import-sydent). Each call is
// one transaction and skips what is already there, so an import can be
// run again, or resumed, without duplicating anything.

// ImportedEphemeralKey is an ephemeral public key of an invite made by the
// server Sigil replaced.
type ImportedEphemeralKey struct {
	PublicKey string `gorm:"primaryKey;size:255"`
	CreatedAt time.Time
}

// ImportAssociations inserts the associations whose (medium, address) is
// not stored yet, in one transaction with its lookup index notification,
// and returns the 3PIDs it inserted.
func (s *Store) ImportAssociations(ctx context.Context, as []Association) ([]ThreePID, error) {
	var inserted []ThreePID
	err := s.ix.write(func() (ixChange, error) {
		var change ixChange
		err := s.writeTx(ctx, func(tx *gorm.DB) error {
			fresh, err := notStored(tx, as)
			if err != nil || len(fresh) == 0 {
				return err
			}
			now := s.wdb.NowFunc()
			for i := range fresh {
				fresh[i].ID = 0
				if fresh[i].CreatedAt.IsZero() {
					fresh[i].CreatedAt = now
				}
				fresh[i].CreatedAt = utc(fresh[i].CreatedAt)
			}
			if err := tx.CreateInBatches(&fresh, insertBatchSize).Error; err != nil {
				return err
			}
			for _, a := range fresh {
				inserted = append(inserted, ThreePID{a.Medium, a.Address})
			}
			change.rows = make([]ixRow, len(fresh))
			for i := range fresh {
				change.rows[i] = indexRow(&fresh[i])
			}
			change.lo, change.hi = idRange(fresh)
			return s.ix.notify(tx, change)
		})
		if err != nil {
			return ixChange{}, err
		}
		return change, nil
	})
	if err != nil {
		return nil, wrap("import associations", err)
	}
	return inserted, nil
}

// StoredThreePIDs reports which of pairs have an association (in any
// validity window), so an importer skips them before any other work.
func (s *Store) StoredThreePIDs(ctx context.Context, pairs []ThreePID) (map[ThreePID]bool, error) {
	have, err := stored(s.db.WithContext(ctx), pairs)
	if err != nil {
		return nil, wrap("stored 3pids", err)
	}
	return have, nil
}

func stored(tx *gorm.DB, pairs []ThreePID) (map[ThreePID]bool, error) {
	have := map[ThreePID]bool{}
	for _, chunk := range chunks(pairs, chunkSize) {
		var rows []ThreePID
		vals := make([][]any, len(chunk))
		for i, p := range chunk {
			vals[i] = []any{p.Medium, p.Address}
		}
		if err := tx.Model(&Association{}).Select("medium, address").
			Where("(medium, address) IN ?", vals).Find(&rows).Error; err != nil {
			return nil, err
		}
		for _, r := range rows {
			have[r] = true
		}
	}
	return have, nil
}

// notStored keeps the associations of as whose 3PID has no row (and the
// first of any repeated 3PID).
func notStored(tx *gorm.DB, as []Association) ([]Association, error) {
	pairs := make([]ThreePID, len(as))
	for i, a := range as {
		pairs[i] = ThreePID{a.Medium, a.Address}
	}
	have, err := stored(tx, pairs)
	if err != nil {
		return nil, err
	}
	var out []Association
	for _, a := range as {
		k := ThreePID{a.Medium, a.Address}
		if !have[k] {
			have[k] = true
			out = append(out, a)
		}
	}
	return out, nil
}

// ImportInvites stores the invites whose token is not stored yet and
// returns how many it stored.
func (s *Store) ImportInvites(ctx context.Context, invs []Invite) (int, error) {
	var n int
	err := s.writeTx(ctx, func(tx *gorm.DB) error {
		for _, inv := range invs {
			var count int64
			if err := tx.Model(&Invite{}).Where("token = ?", inv.Token).Count(&count).Error; err != nil {
				return err
			}
			if count > 0 {
				continue
			}
			inv.ID = 0
			inv.CreatedAt = utc(inv.CreatedAt)
			if inv.DeliveredAt != nil {
				t := utc(*inv.DeliveredAt)
				inv.DeliveredAt = &t
			}
			if err := tx.Create(&inv).Error; err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return 0, wrap("import invites", err)
	}
	return n, nil
}

// ImportEphemeralKeys stores ephemeral public keys (skipping known ones)
// and returns how many were new.
func (s *Store) ImportEphemeralKeys(ctx context.Context, keys []string, now time.Time) (int, error) {
	var n int64
	err := s.writeTx(ctx, func(tx *gorm.DB) error {
		for _, chunk := range chunks(keys, insertBatchSize) {
			rows := make([]ImportedEphemeralKey, 0, len(chunk))
			for _, k := range chunk {
				rows = append(rows, ImportedEphemeralKey{PublicKey: k, CreatedAt: utc(now)})
			}
			res := tx.Clauses(clause.OnConflict{DoNothing: true}).Create(&rows)
			if res.Error != nil {
				return res.Error
			}
			n += res.RowsAffected
		}
		return nil
	})
	if err != nil {
		return 0, wrap("import ephemeral keys", err)
	}
	return int(n), nil
}
