package store

import (
	"context"
	"testing"
	"time"
)

func countRows(t *testing.T, s *Store, table string) int64 {
	t.Helper()
	var n int64
	must(t, s.DB().Table(table).Count(&n).Error)
	return n
}

func TestPurge(t *testing.T) {
	forEach(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		old, recent := t0, t0.Add(48*time.Hour)
		cut := t0.Add(24 * time.Hour)

		// Sessions: old and recent, validated and not.
		for i, at := range []time.Time{old, recent, old, recent} {
			sess, _, err := s.RequestSession(ctx, SessionRequest{
				Medium: "email", Address: "a@example.org", ClientSecret: string(rune('a' + i)), SendAttempt: 1,
				NewSID: "sid" + string(rune('a'+i)), NewToken: "tok", Now: at,
			})
			must(t, err)
			if i >= 2 {
				must(t, s.MarkSessionValidated(ctx, sess.SID, at))
			}
		}

		// Invites: old pending; old delivered; old claimed by a delivery in
		// progress; old claimed by a given-up delivery; recent pending.
		mk := func(tok, addr string, at time.Time) {
			inv := mkInvite(tok, addr)
			inv.CreatedAt = at
			must(t, s.CreateInvite(ctx, inv))
		}
		mk("old-pending", "p@example.org", old)
		mk("old-delivered", "d@example.org", old)
		mk("old-inflight", "f@example.org", old)
		mk("old-failed", "x@example.org", old)
		mk("recent", "r@example.org", recent)
		enqueue := func(addr string) uint {
			if _, err := s.EnqueueOnBind(ctx, "email", addr, "@u:hs", tokensPayload, old); err != nil {
				t.Fatal(err)
			}
			ds, err := s.OnBindDeliveries(ctx, "email", addr)
			must(t, err)
			return ds[0].ID
		}
		must(t, s.MarkOnBindDelivered(ctx, enqueue("d@example.org"), old))
		enqueue("f@example.org")
		must(t, s.MarkOnBindFailed(ctx, enqueue("x@example.org"), old, "gone"))

		p, err := s.Purge(ctx, PurgeBefore{UnvalidatedSessions: cut, ValidatedSessions: cut, Invites: cut, OnBinds: cut})
		must(t, err)
		if p.Sessions != 2 || p.OnBinds != 2 || p.Invites != 3 {
			t.Errorf("purged %+v, want 2 sessions, 2 deliveries, 3 invites", p)
		}
		if _, err := s.InviteByToken(ctx, "old-inflight"); err != nil {
			t.Errorf("the invite of a delivery in progress was purged: %v", err)
		}
		if _, err := s.InviteByToken(ctx, "recent"); err != nil {
			t.Errorf("a recent invite was purged: %v", err)
		}
		if n := countRows(t, s, "onbind_deliveries"); n != 1 {
			t.Errorf("%d deliveries left, want the one in progress", n)
		}
		if n := countRows(t, s, "sessions"); n != 2 {
			t.Errorf("%d sessions left, want the 2 recent ones", n)
		}

		// A zero cut-off keeps everything of its kind.
		p, err = s.Purge(ctx, PurgeBefore{})
		if err != nil || p != (Purged{}) {
			t.Errorf("empty purge: %+v %v", p, err)
		}
	})
}

func TestPurgeInBatches(t *testing.T) {
	forEach(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		n := purgeBatch*2 + 7
		invs := make([]Invite, 0, n)
		for i := range n {
			inv := mkInvite(randHex(8)+string(rune('a'+i%26)), "b@example.org")
			invs = append(invs, inv)
		}
		must(t, s.DB().CreateInBatches(invs, 500).Error)
		p, err := s.Purge(ctx, PurgeBefore{Invites: t0.Add(time.Hour)})
		if err != nil || p.Invites != int64(n) {
			t.Fatalf("purged %+v, %v; want %d invites", p, err, n)
		}
	})
}
