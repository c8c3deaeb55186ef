package store

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestAccounts(t *testing.T) {
	forEach(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		now := time.Now()
		must(t, s.CreateAccount(ctx, "@alice:example.org", "hash1", now))
		must(t, s.CreateAccount(ctx, "@alice:example.org", "hash2", now))
		if u, err := s.AccountByTokenHash(ctx, "hash2"); err != nil || u != "@alice:example.org" {
			t.Fatalf("account: %q %v", u, err)
		}
		if err := s.CreateAccount(ctx, "@bob:example.org", "hash1", now); err == nil {
			t.Error("a token hash was stored twice")
		}
		if ok, err := s.DeleteAccount(ctx, "hash1"); !ok || err != nil {
			t.Fatalf("delete: %v %v", ok, err)
		}
		if _, err := s.AccountByTokenHash(ctx, "hash1"); !errors.Is(err, ErrNotFound) {
			t.Errorf("deleted token still found: %v", err)
		}
		if ok, _ := s.DeleteAccount(ctx, "hash1"); ok {
			t.Error("deleting twice reported success")
		}
		if _, err := s.AccountByTokenHash(ctx, "hash2"); err != nil {
			t.Errorf("the other token was revoked too: %v", err)
		}
	})
}

func TestTermsAcceptance(t *testing.T) {
	forEach(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		now := time.Now()
		must(t, s.AcceptTerms(ctx, "@a:x", []string{"https://x/p-1.0-en", "https://x/p-1.0-en"}, now))
		must(t, s.AcceptTerms(ctx, "@a:x", []string{"https://x/t-2.0-fr", "https://x/p-1.0-en"}, now))
		must(t, s.AcceptTerms(ctx, "@b:x", nil, now))
		got, err := s.AcceptedTerms(ctx, "@a:x")
		must(t, err)
		slices.Sort(got)
		if !slices.Equal(got, []string{"https://x/p-1.0-en", "https://x/t-2.0-fr"}) {
			t.Errorf("accepted %v", got)
		}
		if got, _ := s.AcceptedTerms(ctx, "@b:x"); len(got) != 0 {
			t.Errorf("@b accepted %v", got)
		}
	})
}

// Under as many concurrent requests as the pool may open, no connection is
// closed for want of an idle slot and opened again: on PostgreSQL each
// such reconnection forked a server process (a v2 lookup under 16 clients
// cost the database 0.66 ms of CPU, more than the lookup itself).
func TestPoolKeepsItsConnectionsUnderLoad(t *testing.T) {
	forEach(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		must(t, s.CreateAccount(ctx, "@alice:example.org", "hash1", time.Now()))
		var wg sync.WaitGroup
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 50 {
					if _, err := s.AccountByTokenHash(ctx, "hash1"); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		for role, db := range s.Pools() {
			if st := db.Stats(); st.MaxIdleClosed > 0 {
				t.Errorf("%s pool: %d connections closed for want of an idle slot (open %d, max %d)",
					role, st.MaxIdleClosed, st.OpenConnections, st.MaxOpenConnections)
			}
		}
	})
}
