package store

import (
	"context"
	"fmt"
	"strings"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// chunkSize bounds the number of values in one IN (...) list: far below
// SQLite's 32766 bound-variable limit and PostgreSQL's 65535.
const chunkSize = 500

// insertBatchSize is the number of rows per INSERT in InsertAssociations.
const insertBatchSize = 1000

// rehashBatchSize is the number of rows updated per transaction by
// RehashAssociations.
const rehashBatchSize = 500

func (a *Association) normalize() { a.CreatedAt = a.CreatedAt.UTC() }

// validAt restricts a query to associations valid at nowMS.
func validAt(nowMS int64) func(*gorm.DB) *gorm.DB {
	return func(db *gorm.DB) *gorm.DB {
		return db.Where("not_before <= ? AND not_after >= ?", nowMS, nowMS)
	}
}

func chunks[T any](xs []T, n int) [][]T {
	out := make([][]T, 0, (len(xs)+n-1)/n)
	for len(xs) > n {
		out = append(out, xs[:n:n])
		xs = xs[n:]
	}
	if len(xs) > 0 {
		out = append(out, xs)
	}
	return out
}

// PutAssociation inserts an association, or replaces the mxid, ts,
// not_before, not_after, signed and lookup_hash of the existing one for the
// same (medium, address).
func (s *Store) PutAssociation(ctx context.Context, a Association) error {
	_, err := s.BindAssociation(ctx, a, nil)
	return err
}

// BindAssociation is PutAssociation and, in the same transaction, the
// queueing of the pending invites of the 3PID for delivery to a.MXID's
// homeserver (EnqueueOnBind, with build making the payload; nil build
// queues nothing). Either both commit or neither does: a binding is never
// published with its invites left behind, nor invites claimed for a
// binding that was not stored.
func (s *Store) BindAssociation(ctx context.Context, a Association, build func([]Invite) ([]byte, error)) (queued bool, err error) {
	a.ID = 0
	if a.CreatedAt.IsZero() {
		a.CreatedAt = s.wdb.NowFunc()
	} else {
		a.CreatedAt = utc(a.CreatedAt)
	}
	change := ixChange{rows: []ixRow{indexRow(&a)}}
	err = s.ix.write(func() (ixChange, error) {
		return change, s.wdb.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
			err := tx.Clauses(clause.OnConflict{
				Columns:   []clause.Column{{Name: "medium"}, {Name: "address"}},
				DoUpdates: clause.AssignmentColumns([]string{"mxid", "ts", "not_before", "not_after", "signed", "lookup_hash"}),
			}).Create(&a).Error
			if err != nil {
				return err
			}
			if build != nil {
				if queued, err = enqueueOnBind(tx, a.Medium, a.Address, a.MXID, build, a.CreatedAt); err != nil {
					return err
				}
			}
			return s.ix.notify(tx, change)
		})
	})
	if err != nil {
		return false, wrap("bind association", err)
	}
	return queued, nil
}

func indexRow(a *Association) ixRow {
	return ixRow{medium: a.Medium, address: a.Address, mxid: a.MXID, hash: a.LookupHash, nb: a.NotBefore, na: a.NotAfter}
}

// Association returns the association of (medium, address) if it is valid
// at nowMS (NotBefore <= nowMS <= NotAfter), else ErrNotFound.
func (s *Store) Association(ctx context.Context, medium, address string, nowMS int64) (Association, error) {
	if bound, known := s.ix.bound(medium, address, nowMS); known && !bound {
		return Association{}, errAssociationNotFound
	}
	var a Association
	err := s.db.WithContext(ctx).Scopes(validAt(nowMS)).
		Where("medium = ? AND address = ?", medium, address).
		Take(&a).Error
	if err != nil {
		return Association{}, wrap("association", err)
	}
	a.normalize()
	return a, nil
}

// BulkAssociations returns the associations among pairs that are valid at
// nowMS, keyed by 3PID. Pairs are grouped per medium and queried in chunks,
// so the number of queries is about len(pairs)/500.
func (s *Store) BulkAssociations(ctx context.Context, pairs []ThreePID, nowMS int64) (map[ThreePID]Association, error) {
	byMedium := make(map[string][]string)
	seen := make(map[ThreePID]struct{}, len(pairs))
	for _, p := range pairs {
		if _, ok := seen[p]; ok {
			continue
		}
		seen[p] = struct{}{}
		byMedium[p.Medium] = append(byMedium[p.Medium], p.Address)
	}
	out := make(map[ThreePID]Association)
	db := s.db.WithContext(ctx)
	var rows []Association
	for medium, addrs := range byMedium {
		for _, chunk := range chunks(addrs, chunkSize) {
			rows = rows[:0]
			err := db.Scopes(validAt(nowMS)).
				Where("medium = ? AND address IN ?", medium, chunk).
				Find(&rows).Error
			if err != nil {
				return nil, wrap("bulk associations", err)
			}
			for i := range rows {
				rows[i].normalize()
				out[ThreePID{Medium: rows[i].Medium, Address: rows[i].Address}] = rows[i]
			}
		}
	}
	return out, nil
}

// LookupHashes maps each of hashes that belongs to an association valid at
// nowMS to its MXID. Hashes not found are absent from the result. It
// answers from the lookup index once loaded, from the database before.
func (s *Store) LookupHashes(ctx context.Context, hashes []string, nowMS int64) (map[string]string, error) {
	var m MXIDs
	if err := s.LookupHashesInto(ctx, hashes, nowMS, &m); err != nil {
		return nil, err
	}
	out := make(map[string]string)
	for i, mxid := range m.List {
		if mxid != "" {
			out[hashes[i]] = mxid
		}
	}
	return out, nil
}

// LookupHashesInto answers hashes into m: m.List[i] is the MXID of
// hashes[i], or "" when it is not found or repeats an earlier hash, so that
// each hash found is answered once. A v2 lookup's map of answers had cost
// a tenth of the request to build and iterate.
func (s *Store) LookupHashesInto(ctx context.Context, hashes []string, nowMS int64, m *MXIDs) error {
	if s.ix.lookupHashes(hashes, nowMS, m) {
		return nil
	}
	found, err := s.hashesFromDB(ctx, hashes, nowMS)
	if err != nil {
		return err
	}
	out := m.reset(len(hashes))
	for i, h := range hashes {
		if mxid, ok := found[h]; ok {
			out[i] = mxid
			delete(found, h) // answered once
		}
	}
	return nil
}

// hashesFromDB maps the hashes of associations valid at nowMS to their
// MXIDs, from the database.
func (s *Store) hashesFromDB(ctx context.Context, hashes []string, nowMS int64) (map[string]string, error) {
	uniq := make([]string, 0, len(hashes))
	seen := make(map[string]struct{}, len(hashes))
	for _, h := range hashes {
		if _, ok := seen[h]; !ok {
			seen[h] = struct{}{}
			uniq = append(uniq, h)
		}
	}
	out := make(map[string]string)
	db := s.db.WithContext(ctx)
	type row struct {
		LookupHash string
		MXID       string `gorm:"column:mxid"`
	}
	var rows []row
	for _, chunk := range chunks(uniq, chunkSize) {
		rows = rows[:0]
		err := db.Model(&Association{}).Select("lookup_hash", "mxid").
			Scopes(validAt(nowMS)).
			Where("lookup_hash IN ?", chunk).
			Find(&rows).Error
		if err != nil {
			return nil, wrap("lookup hashes", err)
		}
		for _, r := range rows {
			out[r.LookupHash] = r.MXID
		}
	}
	return out, nil
}

// DeleteAssociation deletes the association of (medium, address) only if it
// is bound to mxid, and reports whether a row was deleted.
func (s *Store) DeleteAssociation(ctx context.Context, medium, address, mxid string) (bool, error) {
	var deleted bool
	err := s.ix.write(func() (ixChange, error) {
		change := ixChange{deleted: []ThreePID{{medium, address}}}
		err := s.writeTx(ctx, func(tx *gorm.DB) error {
			res := tx.Where("medium = ? AND address = ? AND mxid = ?", medium, address, mxid).
				Delete(&Association{})
			if res.Error != nil {
				return res.Error
			}
			if deleted = res.RowsAffected > 0; !deleted {
				return nil
			}
			return s.ix.notify(tx, change)
		})
		if err == nil && !deleted {
			change = ixChange{}
		}
		return change, err
	})
	if err != nil {
		return false, wrap("delete association", err)
	}
	return deleted, nil
}

// RehashAssociations walks all associations in id order, in batches of 500,
// and sets LookupHash = f(medium, address) in one transaction per batch (for
// pepper rotation). Rows whose hash is already f's value are left alone; the
// number of rows changed is returned. It stops early if ctx is cancelled.
func (s *Store) RehashAssociations(ctx context.Context, f func(medium, address string) string) (int, error) {
	type row struct {
		ID         uint
		Medium     string
		Address    string
		LookupHash string
	}
	total := 0
	var lastID uint
	db := s.wdb.WithContext(ctx)
	for {
		if err := ctx.Err(); err != nil {
			return total, wrap("rehash associations", err)
		}
		var n int
		done := false
		err := s.ix.write(func() (ixChange, error) {
			var change ixChange
			err := db.Transaction(func(tx *gorm.DB) error {
				var rows []row
				if err := tx.Model(&Association{}).Select("id", "medium", "address", "lookup_hash").
					Where("id > ?", lastID).Order("id").Limit(rehashBatchSize).
					Find(&rows).Error; err != nil {
					return err
				}
				if len(rows) == 0 {
					done = true
					return nil
				}
				lastID = rows[len(rows)-1].ID

				var sb strings.Builder
				args := make([]any, 0, 2*len(rows))
				ids := make([]uint, 0, len(rows))
				sb.WriteString("CASE id")
				for _, r := range rows {
					h := f(r.Medium, r.Address)
					if h == r.LookupHash {
						continue
					}
					sb.WriteString(" WHEN ? THEN ?")
					args = append(args, r.ID, h)
					ids = append(ids, r.ID)
					change.rehash = append(change.rehash, ixRow{medium: r.Medium, address: r.Address, hash: h})
				}
				sb.WriteString(" ELSE lookup_hash END")
				if len(ids) == 0 {
					return nil
				}
				change.lo, change.hi = uint64(ids[0]), uint64(ids[len(ids)-1])
				res := tx.Model(&Association{}).Where("id IN ?", ids).
					Update("lookup_hash", gorm.Expr(sb.String(), args...))
				if res.Error != nil {
					return res.Error
				}
				n = int(res.RowsAffected)
				return s.ix.notify(tx, change)
			})
			return change, err
		})
		if err != nil {
			return total, wrap("rehash associations", err)
		}
		total += n
		if done {
			return total, nil
		}
	}
}

// idRange returns the smallest and largest ID of as, or 0, 0 if one is
// unset.
func idRange(as []Association) (lo, hi uint64) {
	for i := range as {
		id := uint64(as[i].ID)
		if id == 0 {
			return 0, 0
		}
		if lo == 0 || id < lo {
			lo = id
		}
		hi = max(hi, id)
	}
	return lo, hi
}

// InsertAssociations inserts many new associations quickly (for seeding):
// 1000 rows per INSERT, one transaction per batch. It fails with
// ErrDuplicate if a (medium, address) already exists.
func (s *Store) InsertAssociations(ctx context.Context, as []Association) error {
	db := s.wdb.WithContext(ctx)
	now := s.wdb.NowFunc()
	for i, chunk := range chunks(as, insertBatchSize) {
		batch := make([]Association, len(chunk))
		for j, a := range chunk {
			a.ID = 0
			if a.CreatedAt.IsZero() {
				a.CreatedAt = now
			} else {
				a.CreatedAt = utc(a.CreatedAt)
			}
			batch[j] = a
		}
		err := s.ix.write(func() (ixChange, error) {
			change := ixChange{rows: make([]ixRow, len(batch))}
			for j := range batch {
				change.rows[j] = indexRow(&batch[j])
			}
			err := db.Transaction(func(tx *gorm.DB) error {
				if err := tx.CreateInBatches(&batch, insertBatchSize).Error; err != nil {
					return err
				}
				change.lo, change.hi = idRange(batch)
				return s.ix.notify(tx, change)
			})
			return change, err
		})
		if err != nil {
			return wrap(fmt.Sprintf("insert associations (batch %d)", i), err)
		}
	}
	return nil
}
