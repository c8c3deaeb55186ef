package store

import (
	"context"
	"fmt"
	"testing"
	"time"
)

func adminAssoc(medium, address, mxid string) Association {
	return Association{Medium: medium, Address: address, MXID: mxid, TS: 1, NotBefore: 1, NotAfter: 1 << 50,
		Signed: []byte(`{}`), LookupHash: "h-" + address}
}

func TestImportAndAdminQueries(t *testing.T) {
	forEach(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		var batch []Association
		for i := 0; i < 700; i++ { // more than one chunk of the existence check
			batch = append(batch, adminAssoc("email", fmt.Sprintf("u%d@example.org", i), fmt.Sprintf("@u%d:hs", i%3)))
		}
		batch = append(batch, batch[0]) // a repeat inside one call
		got, err := s.ImportAssociations(ctx, batch)
		if err != nil || len(got) != 700 {
			t.Fatalf("first import: %d, %v", len(got), err)
		}
		batch = append(batch, adminAssoc("msisdn", "4477", "@u0:hs"))
		got, err = s.ImportAssociations(ctx, batch)
		if err != nil || len(got) != 1 || got[0] != (ThreePID{"msisdn", "4477"}) {
			t.Fatalf("second import: %v, %v", got, err)
		}
		if err := s.WaitIndex(ctx); err != nil {
			t.Fatal(err)
		}
		if _, bound, _ := s.IndexedBinding("msisdn", "4477", time.Now().UnixMilli()); !bound {
			t.Error("an imported binding is not in the lookup index")
		}

		mine, err := s.ListAssociations(ctx, BindingFilter{MXID: "@u0:hs"}, 1000)
		if err != nil || len(mine) != 235 {
			t.Fatalf("list by mxid: %d, %v", len(mine), err)
		}
		page, err := s.ListAssociations(ctx, BindingFilter{AfterID: mine[0].ID}, 10)
		if err != nil || len(page) != 10 || page[0].ID <= mine[0].ID {
			t.Fatalf("paging: %v", err)
		}
		n, err := s.DeleteAssociations(ctx, mine)
		if err != nil || n != 235 {
			t.Fatalf("delete: %d, %v", n, err)
		}
		if _, bound, _ := s.IndexedBinding("msisdn", "4477", time.Now().UnixMilli()); bound {
			t.Error("a deleted binding is still in the lookup index")
		}

		for i, tok := range []string{"t1", "t2"} {
			inv := Invite{Token: tok, Medium: "email", Address: "x@example.org", RoomID: "!r", Sender: "@s:hs", Params: []byte(`{}`)}
			if i == 1 {
				now := time.Now()
				inv.DeliveredAt = &now
			}
			if n, err := s.ImportInvites(ctx, []Invite{inv, inv}); err != nil || n != 1 {
				t.Fatalf("import invite: %d, %v", n, err)
			}
		}
		pending, _ := s.ListInvites(ctx, InviteFilter{}, 10)
		all, _ := s.ListInvites(ctx, InviteFilter{Medium: "email", Address: "x@example.org", IncludeDelivered: true}, 10)
		if len(pending) != 1 || len(all) != 2 {
			t.Errorf("invites: %d pending, %d in all", len(pending), len(all))
		}
		if err := s.CancelInvite(ctx, "t2"); err == nil {
			t.Error("a delivered invite was cancelled")
		}
		if err := s.CancelInvite(ctx, "t1"); err != nil {
			t.Error(err)
		}

		if n, err := s.ImportEphemeralKeys(ctx, []string{"k1", "k2", "k1"}, time.Now()); err != nil || n != 2 {
			t.Fatalf("ephemeral keys: %d, %v", n, err)
		}
		if ok, _ := s.EphemeralKeyValid(ctx, "k2"); !ok {
			t.Error("an imported ephemeral key is not valid")
		}
		if ok, _ := s.EphemeralKeyValid(ctx, ""); ok {
			t.Error("the empty key is valid")
		}

		// The onbind queue's figures, and a retry.
		for _, a := range []string{"q1@example.org", "q2@example.org"} {
			s.CreateInvite(ctx, Invite{Token: "tok-" + a, Medium: "email", Address: a, RoomID: "!r", Sender: "@s:hs", EphemeralPublicKey: "e-" + a})
			if _, err := s.EnqueueOnBind(ctx, "email", a, "@q:hs", func([]Invite) ([]byte, error) { return []byte(`{}`), nil }, time.Now().Add(-time.Hour)); err != nil {
				t.Fatal(err)
			}
		}
		ds, err := s.ListOnBinds(ctx, OnBindQueued, 10)
		if err != nil || len(ds) != 2 {
			t.Fatalf("queued: %d, %v", len(ds), err)
		}
		if err := s.MarkOnBindFailed(ctx, ds[1].ID, time.Now(), "no"); err != nil {
			t.Fatal(err)
		}
		st, err := s.OnBindQueueStats(ctx)
		if err != nil || st.Queued != 1 || st.Failed != 1 || time.Since(st.Oldest) < 59*time.Minute || time.Since(st.Oldest) > 2*time.Hour {
			t.Fatalf("stats %+v, %v", st, err)
		}
		if n, err := s.RetryOnBinds(ctx, 0, time.Now()); err != nil || n != 1 {
			t.Fatalf("retry failed ones: %d, %v", n, err)
		}
		if st, _ := s.OnBindQueueStats(ctx); st.Queued != 2 || st.Failed != 0 {
			t.Errorf("after retry: %+v", st)
		}
		if len(s.Pools()) == 0 {
			t.Error("no pools")
		}
	})
}
