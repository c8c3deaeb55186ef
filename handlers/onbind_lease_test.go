package handlers_test

import (
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sigil-matrix/sigil/handlers/apitest"
	"github.com/sigil-matrix/sigil/handlers/federation/fedtest"
	"github.com/sigil-matrix/sigil/handlers/identity"
)

// onBindWith is fastOnBind with a short lease and one delivery at a time.
func onBindWith(o identity.OnBindOptions) func(*apitest.Setup) {
	return func(s *apitest.Setup) {
		s.Wire = func(e *apitest.Env) { e.Identity.ConfigureOnBind(o) }
	}
}

// Only the delivery being sent is leased (a worker that dies holds up
// nothing else), and its short lease is renewed while the call lasts.
func TestOnBindLeasesOnlyWhatItSends(t *testing.T) {
	hs := fedtest.Start(t)
	release := make(chan struct{})
	var calls atomic.Int32
	hs.Handle(fedtest.OnBindPath, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		<-release
		w.Write([]byte(`{}`))
	}))
	t.Cleanup(func() { close(release) })
	env := apitest.New(t, onBindWith(identity.OnBindOptions{
		Backoff: 10 * time.Millisecond, Poll: 20 * time.Millisecond, Concurrency: 1, Lease: 300 * time.Millisecond,
	}))
	addrs := []string{"l1@example.org", "l2@example.org", "l3@example.org"}
	for _, a := range addrs {
		storeInvite(t, env, a)
	}
	for _, a := range addrs {
		validateAndBind(t, env, a, "secret", "@u:"+hs.Name)
	}
	eventually(t, 5*time.Second, "one onbind in flight", func() bool { return calls.Load() == 1 })
	time.Sleep(time.Second) // three leases
	leased := 0
	for _, a := range addrs {
		if d := deliveries(t, env, a)[0]; d.NextAttemptAt.After(env.Clock.Now()) {
			leased++
		}
	}
	if leased != 1 {
		t.Errorf("%d deliveries leased while one is sent (after 3 lease periods), want exactly 1", leased)
	}
}

// The homeserver accepted the invites but the success could not be
// written: it is written again before anything is sent, and the
// delivery is never sent a second time, even long after its lease.
func TestOnBindSuccessNotRecordedIsNotSentAgain(t *testing.T) {
	hs := fedtest.Start(t)
	env := apitest.New(t, onBindWith(identity.OnBindOptions{
		Backoff: 10 * time.Millisecond, Poll: 20 * time.Millisecond, Lease: 100 * time.Millisecond, Timeout: 100 * time.Millisecond,
	}))
	db := env.Store.DB()
	if err := db.Exec(`CREATE TRIGGER refuse_delivered BEFORE UPDATE OF delivered_at ON onbind_deliveries
		WHEN NEW.delivered_at IS NOT NULL BEGIN SELECT RAISE(ABORT, 'database unavailable'); END`).Error; err != nil {
		t.Fatal(err)
	}
	storeInvite(t, env, "rec@example.org")
	validateAndBind(t, env, "rec@example.org", "secret", "@rec:"+hs.Name)
	hs.WaitOnBinds(t, 1, 5*time.Second)
	time.Sleep(1500 * time.Millisecond) // fifteen leases (and past a batch lease of 9 timeouts)
	if n := hs.Requests(fedtest.OnBindPath); n != 1 {
		t.Fatalf("%d onbind requests while the success could not be recorded, want 1", n)
	}
	if err := db.Exec(`DROP TRIGGER refuse_delivered`).Error; err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the success recorded", func() bool {
		return deliveries(t, env, "rec@example.org")[0].DeliveredAt != nil
	})
	time.Sleep(200 * time.Millisecond)
	if n := hs.Requests(fedtest.OnBindPath); n != 1 {
		t.Errorf("%d onbind requests, want 1", n)
	}
}

// A homeserver our policy refuses to call (a private address) is a
// permanent failure: given up at once, not retried for 48 hours.
func TestOnBindRefusedByPolicyIsPermanent(t *testing.T) {
	hs := fedtest.Start(t)
	env := apitest.New(t, fastOnBind, func(s *apitest.Setup) { s.Federation = federationClient(false) })
	storeInvite(t, env, "priv@example.org")
	validateAndBind(t, env, "priv@example.org", "secret", "@priv:"+hs.Name)
	eventually(t, 5*time.Second, "delivery given up", func() bool {
		ds := deliveries(t, env, "priv@example.org")
		return len(ds) == 1 && ds[0].FailedAt != nil
	})
	if d := deliveries(t, env, "priv@example.org")[0]; d.Attempts != 1 {
		t.Errorf("%d attempts, want 1", d.Attempts)
	}
	if n := pending(t, env, "priv@example.org"); n != 1 {
		t.Errorf("%d invites pending after giving up, want 1 (released)", n)
	}
}
