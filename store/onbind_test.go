package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

func mkInvite(token, address string) Invite {
	return Invite{
		Token: token, Medium: "email", Address: address,
		RoomID: "!room:hs", Sender: "@alice:hs",
		EphemeralPublicKey: "pub-" + token, EphemeralPrivateKey: "priv-" + token,
		CreatedAt: t0,
	}
}

// tokensPayload is a build function whose payload lists the invite tokens.
func tokensPayload(invs []Invite) ([]byte, error) {
	return json.Marshal(inviteTokens(invs))
}

func TestEnqueueOnBind(t *testing.T) {
	forEach(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		for _, inv := range []Invite{mkInvite("t1", "bob@example.org"), mkInvite("t2", "carol@example.org"), mkInvite("t3", "bob@example.org")} {
			must(t, s.CreateInvite(ctx, inv))
		}

		// No invites for the 3PID: nothing queued, build not called.
		queued, err := s.EnqueueOnBind(ctx, "email", "dave@example.org", "@dave:hs", func([]Invite) ([]byte, error) {
			t.Error("build called without invites")
			return nil, nil
		}, t0)
		if err != nil || queued {
			t.Fatalf("no invites: queued=%v err=%v", queued, err)
		}
		// A failing build claims nothing.
		boom := errors.New("boom")
		if _, err := s.EnqueueOnBind(ctx, "email", "bob@example.org", "@bob:hs", func([]Invite) ([]byte, error) { return nil, boom }, t0); !errors.Is(err, boom) {
			t.Fatalf("failing build: err = %v", err)
		}
		if p, _ := s.PendingInvites(ctx, "email", "bob@example.org"); len(p) != 2 {
			t.Fatalf("after failed build, pending = %v", inviteTokens(p))
		}
		if ds, _ := s.OnBindDeliveries(ctx, "email", "bob@example.org"); len(ds) != 0 {
			t.Fatalf("failed build left deliveries %+v", ds)
		}

		var built []string
		queued, err = s.EnqueueOnBind(ctx, "email", "bob@example.org", "@bob:hs", func(invs []Invite) ([]byte, error) {
			built = inviteTokens(invs)
			for _, inv := range invs {
				if inv.RoomID != "!room:hs" || inv.Sender != "@alice:hs" {
					t.Errorf("build got invite %+v", inv)
				}
			}
			return tokensPayload(invs)
		}, t0)
		if err != nil || !queued {
			t.Fatalf("enqueue: queued=%v err=%v", queued, err)
		}
		if !slices.Equal(built, []string{"t1", "t3"}) {
			t.Errorf("build got %v", built)
		}
		// Claimed invites are no longer pending; others are untouched.
		if p, _ := s.PendingInvites(ctx, "email", "bob@example.org"); len(p) != 0 {
			t.Errorf("claimed invites still pending: %v", inviteTokens(p))
		}
		if p, _ := s.PendingInvites(ctx, "email", "carol@example.org"); len(p) != 1 {
			t.Errorf("carol's invite: %v", inviteTokens(p))
		}
		// A second bind of the same 3PID queues nothing more.
		if queued, err := s.EnqueueOnBind(ctx, "email", "bob@example.org", "@bob:hs", tokensPayload, t0); err != nil || queued {
			t.Errorf("second enqueue: queued=%v err=%v", queued, err)
		}

		ds, err := s.OnBindDeliveries(ctx, "email", "bob@example.org")
		must(t, err)
		if len(ds) != 1 {
			t.Fatalf("deliveries = %+v", ds)
		}
		d := ds[0]
		if d.MXID != "@bob:hs" || string(d.Payload) != `["t1","t3"]` || d.Attempts != 0 ||
			!d.NextAttemptAt.Equal(t0.Truncate(time.Microsecond)) || !d.CreatedAt.Equal(t0.Truncate(time.Microsecond)) ||
			d.DeliveredAt != nil || d.FailedAt != nil || d.LastError != "" {
			t.Errorf("delivery = %+v", d)
		}
		invs, err := s.OnBindInvites(ctx, d.ID)
		must(t, err)
		if toks := inviteTokens(invs); !slices.Equal(toks, []string{"t1", "t3"}) {
			t.Errorf("OnBindInvites = %v", toks)
		}
	})
}

func TestOnBindLifecycle(t *testing.T) {
	forEach(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		must(t, s.CreateInvite(ctx, mkInvite("a1", "a@example.org")))
		must(t, s.CreateInvite(ctx, mkInvite("b1", "b@example.org")))
		must(t, s.CreateInvite(ctx, mkInvite("c1", "c@example.org")))
		enqueue := func(addr string, at time.Time) OnBindDelivery {
			t.Helper()
			queued, err := s.EnqueueOnBind(ctx, "email", addr, "@x:hs", tokensPayload, at)
			if err != nil || !queued {
				t.Fatalf("enqueue %s: %v %v", addr, queued, err)
			}
			ds, err := s.OnBindDeliveries(ctx, "email", addr)
			must(t, err)
			return ds[len(ds)-1]
		}
		// Sub-second times, to check that ordering and comparison are by
		// time, not by how the database spells it.
		da := enqueue("a@example.org", t0.Add(500*time.Millisecond))
		db := enqueue("b@example.org", t0)
		dc := enqueue("c@example.org", t0.Add(2*time.Second+250*time.Millisecond))

		ids := func(ds []OnBindDelivery) []uint {
			var out []uint
			for _, d := range ds {
				out = append(out, d.ID)
			}
			return out
		}
		due, err := s.DueOnBinds(ctx, t0.Add(499*time.Millisecond), 10, 0)
		must(t, err)
		if got := ids(due); !slices.Equal(got, []uint{db.ID}) {
			t.Errorf("due at +499ms = %v, want [%d]", got, db.ID)
		}
		due, err = s.DueOnBinds(ctx, t0.Add(time.Second), 10, 0)
		must(t, err)
		if got := ids(due); !slices.Equal(got, []uint{db.ID, da.ID}) {
			t.Errorf("due at +1s = %v, want [%d %d]", got, db.ID, da.ID)
		}
		due, err = s.DueOnBinds(ctx, t0.Add(time.Hour), 2, 0)
		must(t, err)
		if len(due) != 2 {
			t.Errorf("limit 2 gave %d", len(due))
		}

		// Leasing: a leased delivery is not handed out again until the
		// lease runs out.
		now := t0.Add(3 * time.Second)
		leased, err := s.DueOnBinds(ctx, now, 10, time.Minute)
		must(t, err)
		if got := ids(leased); !slices.Equal(got, []uint{db.ID, da.ID, dc.ID}) {
			t.Fatalf("leased %v", got)
		}
		if !leased[0].NextAttemptAt.Equal(now.Add(time.Minute).Truncate(time.Microsecond)) {
			t.Errorf("lease until %v", leased[0].NextAttemptAt)
		}
		if again, _ := s.DueOnBinds(ctx, now.Add(time.Second), 10, time.Minute); len(again) != 0 {
			t.Errorf("leased deliveries handed out again: %v", ids(again))
		}
		if expired, _ := s.DueOnBinds(ctx, now.Add(2*time.Minute), 10, 0); len(expired) != 3 {
			t.Errorf("after the lease: %d due, want 3", len(expired))
		}

		// a: delivered.
		delivered := now.Add(time.Second)
		must(t, s.MarkOnBindDelivered(ctx, da.ID, delivered))
		must(t, s.MarkOnBindDelivered(ctx, da.ID, delivered.Add(time.Hour))) // no-op
		inv, err := s.InviteByToken(ctx, "a1")
		must(t, err)
		if inv.DeliveredAt == nil || !inv.DeliveredAt.Equal(delivered.Truncate(time.Microsecond)) {
			t.Errorf("invite DeliveredAt = %v", inv.DeliveredAt)
		}
		got, _ := s.OnBindDeliveries(ctx, "email", "a@example.org")
		if g := got[0]; g.DeliveredAt == nil || !g.DeliveredAt.Equal(delivered.Truncate(time.Microsecond)) || g.Attempts != 1 {
			t.Errorf("delivered = %+v", g)
		}

		// b: rescheduled twice, then failed; its invite is released.
		next := now.Add(10 * time.Second)
		must(t, s.RescheduleOnBind(ctx, db.ID, next, "HTTP 503"))
		must(t, s.RescheduleOnBind(ctx, db.ID, next.Add(time.Second), "connection refused"))
		got, _ = s.OnBindDeliveries(ctx, "email", "b@example.org")
		if g := got[0]; g.Attempts != 2 || g.LastError != "connection refused" || !g.NextAttemptAt.Equal(next.Add(time.Second).Truncate(time.Microsecond)) {
			t.Errorf("rescheduled = %+v", g)
		}
		if p, _ := s.PendingInvites(ctx, "email", "b@example.org"); len(p) != 0 {
			t.Errorf("a retried delivery's invite is pending: %v", inviteTokens(p))
		}
		must(t, s.MarkOnBindFailed(ctx, db.ID, next.Add(2*time.Second), fmt.Sprintf("%01000d", 0)+"overflow"))
		got, _ = s.OnBindDeliveries(ctx, "email", "b@example.org")
		if g := got[0]; g.FailedAt == nil || g.Attempts != 3 || len(g.LastError) != maxErrorText {
			t.Errorf("failed = %+v", g)
		}
		if p, _ := s.PendingInvites(ctx, "email", "b@example.org"); len(p) != 1 {
			t.Errorf("a failed delivery's invite is not pending again: %v", inviteTokens(p))
		}
		// Failed and delivered deliveries are never due again, nor changed.
		must(t, s.RescheduleOnBind(ctx, db.ID, t0, "late"))
		must(t, s.MarkOnBindDelivered(ctx, db.ID, t0))
		due, err = s.DueOnBinds(ctx, now.Add(time.Hour), 10, 0)
		must(t, err)
		if got := ids(due); !slices.Equal(got, []uint{dc.ID}) {
			t.Errorf("due = %v, want only [%d]", got, dc.ID)
		}
		if inv, _ := s.InviteByToken(ctx, "b1"); inv.DeliveredAt != nil {
			t.Error("marking a failed delivery delivered touched its released invite")
		}
		// The released invite goes out with the next bind.
		d2 := enqueue("b@example.org", now.Add(time.Hour))
		if invs, _ := s.OnBindInvites(ctx, d2.ID); len(invs) != 1 || invs[0].Token != "b1" {
			t.Errorf("re-queued invites = %v", inviteTokens(invs))
		}
	})
}

// Concurrent binds of the same 3PID: every invite lands in exactly one
// delivery.
func TestEnqueueOnBindConcurrent(t *testing.T) {
	forEach(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		const invites, binders = 20, 8
		for i := range invites {
			must(t, s.CreateInvite(ctx, mkInvite(fmt.Sprintf("tok%02d", i), "race@example.org")))
		}
		var wg sync.WaitGroup
		errs := make(chan error, binders)
		for range binders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := s.EnqueueOnBind(ctx, "email", "race@example.org", "@race:hs", tokensPayload, t0); err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		ds, err := s.OnBindDeliveries(ctx, "email", "race@example.org")
		must(t, err)
		seen := map[string]int{}
		for _, d := range ds {
			var toks []string
			must(t, json.Unmarshal(d.Payload, &toks))
			if len(toks) == 0 {
				t.Errorf("delivery %d carries no invite", d.ID)
			}
			for _, tok := range toks {
				seen[tok]++
			}
		}
		if len(seen) != invites {
			t.Errorf("%d distinct invites delivered, want %d", len(seen), invites)
		}
		for tok, n := range seen {
			if n != 1 {
				t.Errorf("invite %s in %d deliveries", tok, n)
			}
		}
	})
}

// BindAssociation stores the binding and queues its invites together: a
// failing payload build leaves neither the binding (in the database or the
// lookup index) nor a delivery, and the invites stay pending.
func TestBindAssociationAllOrNothing(t *testing.T) {
	forEach(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		must(t, s.CreateInvite(ctx, mkInvite("t1", "erin@example.org")))
		must(t, s.WaitIndex(ctx))
		a := Association{Medium: "email", Address: "erin@example.org", MXID: "@erin:hs",
			TS: t0.UnixMilli(), NotBefore: t0.UnixMilli(), NotAfter: t0.Add(time.Hour).UnixMilli(),
			Signed: []byte(`{}`), LookupHash: "hash-erin", CreatedAt: t0}
		at := t0.Add(time.Minute).UnixMilli()

		boom := errors.New("boom")
		if _, err := s.BindAssociation(ctx, a, func([]Invite) ([]byte, error) { return nil, boom }); !errors.Is(err, boom) {
			t.Fatalf("failing build: err = %v", err)
		}
		if _, err := s.Association(ctx, "email", "erin@example.org", at); !errors.Is(err, ErrNotFound) {
			t.Fatalf("binding after failed bind: %v", err)
		}
		if m, err := s.LookupThreePIDs(ctx, []ThreePID{{"email", "erin@example.org"}}, at); err != nil || m[0] != "" {
			t.Fatalf("index after failed bind: %q %v", m, err)
		}
		if h, err := s.LookupHashes(ctx, []string{"hash-erin"}, at); err != nil || len(h) != 0 {
			t.Fatalf("hash index after failed bind: %v %v", h, err)
		}
		if p, _ := s.PendingInvites(ctx, "email", "erin@example.org"); len(p) != 1 {
			t.Fatalf("pending after failed bind = %v", inviteTokens(p))
		}
		if ds, _ := s.OnBindDeliveries(ctx, "email", "erin@example.org"); len(ds) != 0 {
			t.Fatalf("failed bind left deliveries %+v", ds)
		}

		queued, err := s.BindAssociation(ctx, a, tokensPayload)
		if err != nil || !queued {
			t.Fatalf("bind: queued=%v err=%v", queued, err)
		}
		if got, err := s.Association(ctx, "email", "erin@example.org", at); err != nil || got.MXID != "@erin:hs" {
			t.Fatalf("binding: %+v %v", got, err)
		}
		if m, _ := s.LookupThreePIDs(ctx, []ThreePID{{"email", "erin@example.org"}}, at); m[0] != "@erin:hs" {
			t.Fatalf("index: %q", m)
		}
		ds, _ := s.OnBindDeliveries(ctx, "email", "erin@example.org")
		if len(ds) != 1 || string(ds[0].Payload) != `["t1"]` {
			t.Fatalf("deliveries %+v", ds)
		}
		if p, _ := s.PendingInvites(ctx, "email", "erin@example.org"); len(p) != 0 {
			t.Fatalf("still pending: %v", inviteTokens(p))
		}
	})
}

// DueOnBindsExcept reads past the deliveries the worker already holds and
// those to homeservers whose queue is full (a server name with LIKE's
// wildcards matches only itself).
func TestDueOnBindsExcept(t *testing.T) {
	forEach(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		ids := map[string]uint{}
		for i, mxid := range []string{"@a:slow.example", "@b:slow.example", "@c:fine.example", "@d:sl_w.example", "@e:fine.example"} {
			addr := fmt.Sprintf("u%d@example.org", i)
			must(t, s.CreateInvite(ctx, mkInvite(fmt.Sprint("tok", i), addr)))
			if _, err := s.EnqueueOnBind(ctx, "email", addr, mxid, tokensPayload, t0); err != nil {
				t.Fatal(err)
			}
			ds, _ := s.OnBindDeliveries(ctx, "email", addr)
			ids[mxid] = ds[0].ID
		}
		mxids := func(ds []OnBindDelivery) []string {
			var out []string
			for _, d := range ds {
				out = append(out, d.MXID)
			}
			return out
		}
		due, err := s.DueOnBindsExcept(ctx, t0, 10, []uint{ids["@c:fine.example"]}, []string{"slow.example"})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := mxids(due), []string{"@d:sl_w.example", "@e:fine.example"}; !slices.Equal(got, want) {
			t.Errorf("due = %v, want %v", got, want)
		}
		due, err = s.DueOnBindsExcept(ctx, t0, 2, nil, nil)
		if err != nil || len(due) != 2 {
			t.Errorf("limit 2: %v, %v", mxids(due), err)
		}
	})
}
