package handlers_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sigil-matrix/sigil/handlers/apitest"
	"github.com/sigil-matrix/sigil/handlers/federation/fedtest"
	"github.com/sigil-matrix/sigil/handlers/identity"
	"github.com/sigil-matrix/sigil/handlers/signing"
	"github.com/sigil-matrix/sigil/store"
)

// fastOnBind makes the onbind worker poll and retry in milliseconds.
func fastOnBind(s *apitest.Setup) {
	prev := s.Wire
	s.Wire = func(e *apitest.Env) {
		if prev != nil {
			prev(e)
		}
		e.Identity.ConfigureOnBind(identity.OnBindOptions{
			Backoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, Poll: 20 * time.Millisecond,
		})
	}
}

// eventually polls cond until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func deliveries(t *testing.T, env *apitest.Env, address string) []store.OnBindDelivery {
	t.Helper()
	ds, err := env.Store.OnBindDeliveries(context.Background(), "email", address)
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

func pending(t *testing.T, env *apitest.Env, address string) int {
	t.Helper()
	p, err := env.Store.PendingInvites(context.Background(), "email", address)
	if err != nil {
		t.Fatal(err)
	}
	return len(p)
}

func sortedKeys(m map[string]json.RawMessage) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// checkOnBind checks an onbind body against what Synapse and Dendrite
// read: {medium, address, mxid, invites[{medium, address, mxid, room_id,
// sender, token, signed{mxid, token, signatures}}]}, each signed block
// signed by key under the server name. It returns the invites' tokens.
func checkOnBind(t *testing.T, raw json.RawMessage, address, mxid string, key signing.Key) []string {
	t.Helper()
	var body map[string]json.RawMessage
	if err := json.Unmarshal(raw, &body); err != nil {
		t.Fatalf("onbind body %s: %v", raw, err)
	}
	if got := sortedKeys(body); !slices.Equal(got, []string{"address", "invites", "medium", "mxid"}) {
		t.Errorf("onbind fields %v", got)
	}
	var top struct{ Medium, Address, MXID string }
	_ = json.Unmarshal(raw, &top)
	if top.Medium != "email" || top.Address != address || top.MXID != mxid {
		t.Errorf("onbind %s", raw)
	}
	var invites []map[string]json.RawMessage
	if err := json.Unmarshal(body["invites"], &invites); err != nil {
		t.Fatal(err)
	}
	var tokens []string
	for _, inv := range invites {
		if got := sortedKeys(inv); !slices.Equal(got, []string{"address", "medium", "mxid", "room_id", "sender", "signed", "token"}) {
			t.Errorf("invite fields %v", got)
		}
		var i struct {
			Medium, Address, MXID, Token string
			RoomID                       string `json:"room_id"`
			Sender                       string
		}
		raw, _ := json.Marshal(inv)
		_ = json.Unmarshal(raw, &i)
		if i.Medium != "email" || i.Address != address || i.MXID != mxid || i.RoomID == "" || i.Sender == "" || i.Token == "" {
			t.Errorf("invite %s", raw)
		}
		var signed map[string]any
		if err := json.Unmarshal(inv["signed"], &signed); err != nil {
			t.Fatal(err)
		}
		if len(signed) != 3 || signed["mxid"] != mxid || signed["token"] != i.Token {
			t.Errorf("signed %v", signed)
		}
		sigs, _ := signed["signatures"].(map[string]any)[apitest.ServerName].(map[string]any)
		if _, ok := sigs["ed25519:0"]; !ok || len(sigs) != 1 {
			t.Errorf("signatures %v, want one by %s under ed25519:0", signed["signatures"], apitest.ServerName)
		}
		if err := signing.VerifyJSON(signed, apitest.ServerName, map[string]ed25519.PublicKey{key.ID: key.Public()}); err != nil {
			t.Errorf("signed block does not verify with the long-term key: %v", err)
		}
		tokens = append(tokens, i.Token)
	}
	return tokens
}

func TestOnBindDeliversInvites(t *testing.T) {
	hs := fedtest.Start(t)
	env := apitest.New(t, fastOnBind)
	ctx := context.Background()
	tok1 := storeInvite(t, env, "Kim@Example.org").String("token")
	tok2 := storeInvite(t, env, "kim@example.org").String("token")
	other := storeInvite(t, env, "lee@example.org").String("token")
	mxid := "@kim:" + hs.Name

	sid := validateAndBind(t, env, "KIM@example.org", "secret", mxid)
	got := hs.WaitOnBinds(t, 1, 5*time.Second)
	if tokens := checkOnBind(t, got[0], "kim@example.org", mxid, env.Key); !slices.Equal(tokens, []string{tok1, tok2}) {
		t.Errorf("delivered tokens %v, want %v", tokens, []string{tok1, tok2})
	}
	var body struct {
		Invites []struct {
			RoomID string `json:"room_id"`
			Sender string
		}
	}
	_ = json.Unmarshal(got[0], &body)
	if body.Invites[0].RoomID != "!room:example.org" || body.Invites[0].Sender != "@alice:example.org" {
		t.Errorf("invite room/sender %+v", body.Invites[0])
	}

	eventually(t, 5*time.Second, "delivery recorded", func() bool {
		ds := deliveries(t, env, "kim@example.org")
		return len(ds) == 1 && ds[0].DeliveredAt != nil
	})
	for _, tok := range []string{tok1, tok2} {
		if inv, err := env.Store.InviteByToken(ctx, tok); err != nil || inv.DeliveredAt == nil {
			t.Errorf("invite %s: DeliveredAt %v, %v", tok, inv.DeliveredAt, err)
		}
	}
	if n := pending(t, env, "kim@example.org"); n != 0 {
		t.Errorf("%d invites still pending", n)
	}
	if inv, _ := env.Store.InviteByToken(ctx, other); inv.DeliveredAt != nil || pending(t, env, "lee@example.org") != 1 {
		t.Error("another address's invite was touched")
	}

	// Binding the same address again sends nothing more; nor does binding
	// an address without invites.
	if r := env.Post(v1+"/3pid/bind", map[string]any{"sid": sid, "client_secret": "secret", "mxid": mxid}); r.Status != 200 {
		t.Fatalf("second bind: %d %s", r.Status, r.Body)
	}
	validateAndBind(t, env, "noinvites@example.org", "secret", "@other:"+hs.Name)
	time.Sleep(200 * time.Millisecond) // ten polls
	if n := hs.Requests(fedtest.OnBindPath); n != 1 {
		t.Errorf("%d onbind requests, want 1", n)
	}
	if ds := deliveries(t, env, "kim@example.org"); len(ds) != 1 {
		t.Errorf("%d deliveries", len(ds))
	}
}

// The homeserver answers 503 at bind time: the delivery is retried with
// backoff and lands once, when it recovers.
func TestOnBindRetriesUntilDelivered(t *testing.T) {
	hs := fedtest.Start(t)
	hs.SetOnBindStatus(http.StatusServiceUnavailable)
	env := apitest.New(t, fastOnBind)
	tok := storeInvite(t, env, "mo@example.org").String("token")
	mxid := "@mo:" + hs.Name
	validateAndBind(t, env, "mo@example.org", "secret", mxid)

	eventually(t, 5*time.Second, "three failed attempts", func() bool {
		ds := deliveries(t, env, "mo@example.org")
		return len(ds) == 1 && ds[0].Attempts >= 3
	})
	d := deliveries(t, env, "mo@example.org")[0]
	if d.DeliveredAt != nil || d.FailedAt != nil || d.LastError == "" {
		t.Errorf("while failing: %+v", d)
	}
	if n := pending(t, env, "mo@example.org"); n != 0 {
		t.Errorf("an invite being delivered is pending (%d)", n)
	}
	hs.SetOnBindStatus(0)
	got := hs.WaitOnBinds(t, 1, 5*time.Second)
	if tokens := checkOnBind(t, got[0], "mo@example.org", mxid, env.Key); !slices.Equal(tokens, []string{tok}) {
		t.Errorf("tokens %v", tokens)
	}
	eventually(t, 5*time.Second, "delivery recorded", func() bool {
		return deliveries(t, env, "mo@example.org")[0].DeliveredAt != nil
	})
	time.Sleep(200 * time.Millisecond)
	if n := len(hs.OnBinds()); n != 1 {
		t.Errorf("%d onbinds accepted, want 1", n)
	}
	if d := deliveries(t, env, "mo@example.org")[0]; d.LastError != "" || d.Attempts < 4 {
		t.Errorf("delivered: %+v", d)
	}
}

// The homeserver is down at bind time and the identity server restarts
// before it comes back: the delivery queued by the first process is made,
// once, by the second.
func TestOnBindSurvivesRestart(t *testing.T) {
	hs := fedtest.Start(t)
	hs.Stop()
	dsn := filepath.Join(t.TempDir(), "sigil.db")
	useDB := func(s *apitest.Setup) { s.DSN = dsn }
	mxid := "@ned:" + hs.Name
	var tok string
	var firstKey signing.Key

	t.Run("first process", func(t *testing.T) {
		env := apitest.New(t, useDB, fastOnBind)
		firstKey = env.Key
		tok = storeInvite(t, env, "ned@example.org").String("token")
		validateAndBind(t, env, "ned@example.org", "secret", mxid)
		eventually(t, 5*time.Second, "a failed attempt", func() bool {
			ds := deliveries(t, env, "ned@example.org")
			return len(ds) == 1 && ds[0].Attempts >= 1
		})
	}) // the server, its worker and its database are closed here

	hs.Restart()
	env := apitest.New(t, useDB, fastOnBind)
	got := hs.WaitOnBinds(t, 1, 5*time.Second)
	if tokens := checkOnBind(t, got[0], "ned@example.org", mxid, firstKey); !slices.Equal(tokens, []string{tok}) {
		t.Errorf("tokens %v, want [%s]", tokens, tok)
	}
	eventually(t, 5*time.Second, "delivery recorded", func() bool {
		return deliveries(t, env, "ned@example.org")[0].DeliveredAt != nil
	})
	time.Sleep(200 * time.Millisecond)
	if n := hs.Requests(fedtest.OnBindPath); n != 1 {
		t.Errorf("%d onbind requests, want exactly 1", n)
	}
	if inv, err := env.Store.InviteByToken(context.Background(), tok); err != nil || inv.DeliveredAt == nil {
		t.Errorf("invite: %+v, %v", inv, err)
	}
}

// The identity server stops while an onbind is in flight (the homeserver
// is slow to answer): the attempt is recorded as interrupted, not left
// leased, and the next process delivers it at once.
func TestOnBindInterruptedByShutdown(t *testing.T) {
	hs := fedtest.Start(t)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	hs.Handle(fedtest.OnBindPath, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Never answers; gives up when the caller does (the body is read so
		// that the server notices the caller leaving).
		io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	dsn := filepath.Join(t.TempDir(), "sigil.db")
	useDB := func(s *apitest.Setup) { s.DSN = dsn }
	mxid := "@pat:" + hs.Name

	t.Run("first process", func(t *testing.T) {
		env := apitest.New(t, useDB, fastOnBind)
		storeInvite(t, env, "pat@example.org")
		validateAndBind(t, env, "pat@example.org", "secret", mxid)
		eventually(t, 5*time.Second, "the onbind in flight", func() bool { return hs.Requests(fedtest.OnBindPath) == 1 })
	})

	hs.Handle(fedtest.OnBindPath, nil)
	env := apitest.New(t, useDB, fastOnBind)
	hs.WaitOnBinds(t, 1, 5*time.Second)
	eventually(t, 5*time.Second, "delivery recorded", func() bool {
		return deliveries(t, env, "pat@example.org")[0].DeliveredAt != nil
	})
	if n := hs.Requests(fedtest.OnBindPath); n != 2 {
		t.Errorf("%d onbind requests, want 2 (interrupted, delivered)", n)
	}
}

// After 48 hours of failures the delivery is given up and its invites are
// pending again; nothing is sent when the homeserver comes back.
func TestOnBindGivesUp(t *testing.T) {
	hs := fedtest.Start(t)
	hs.Stop()
	env := apitest.New(t, fastOnBind)
	storeInvite(t, env, "ola@example.org")
	validateAndBind(t, env, "ola@example.org", "secret", "@ola:"+hs.Name)
	eventually(t, 5*time.Second, "a failed attempt", func() bool {
		ds := deliveries(t, env, "ola@example.org")
		return len(ds) == 1 && ds[0].Attempts >= 1
	})
	env.Clock.Advance(49 * time.Hour)
	eventually(t, 5*time.Second, "delivery given up", func() bool {
		return deliveries(t, env, "ola@example.org")[0].FailedAt != nil
	})
	if n := pending(t, env, "ola@example.org"); n != 1 {
		t.Errorf("%d invites pending after giving up, want 1", n)
	}
	hs.Restart()
	time.Sleep(200 * time.Millisecond)
	if n := hs.Requests(fedtest.OnBindPath); n != 0 {
		t.Errorf("%d onbind requests after giving up", n)
	}
}

// A homeserver that refuses the invites (Synapse: 403 "You are not invited
// to this room") is not asked again.
func TestOnBindRefusedIsNotRetried(t *testing.T) {
	hs := fedtest.Start(t)
	hs.Handle(fedtest.OnBindPath, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		w.Write([]byte(`{"errcode":"M_FORBIDDEN","error":"You are not invited to this room."}`))
	}))
	env := apitest.New(t, fastOnBind)
	storeInvite(t, env, "pia@example.org")
	validateAndBind(t, env, "pia@example.org", "secret", "@pia:"+hs.Name)
	eventually(t, 5*time.Second, "delivery given up", func() bool {
		ds := deliveries(t, env, "pia@example.org")
		return len(ds) == 1 && ds[0].FailedAt != nil
	})
	time.Sleep(200 * time.Millisecond)
	if n := hs.Requests(fedtest.OnBindPath); n != 1 {
		t.Errorf("%d onbind requests, want 1", n)
	}
}

// A bind and the queueing of its pending invites are one transaction: when
// queueing fails the bind answers a Matrix error and leaves no binding
// behind (not in the database, not in the lookup index), the invites stay
// pending, and a later bind delivers them.
func TestBindFailsWhenItsInvitesCannotBeQueued(t *testing.T) {
	hs := fedtest.Start(t)
	env := apitest.New(t, fastOnBind)
	const addr = "zoe@example.org"
	mxid := "@zoe:" + hs.Name
	tok := storeInvite(t, env, addr).String("token")
	bindEmail(t, env, "other@example.org", "@other:"+hs.Name) // warm the lookup index with a binding

	// The database refuses new deliveries, as a full disk or a broken
	// table would.
	db := env.Store.DB()
	if err := db.Exec(`CREATE TRIGGER refuse_onbind BEFORE INSERT ON onbind_deliveries
		BEGIN SELECT RAISE(ABORT, 'onbind queue unavailable'); END`).Error; err != nil {
		t.Fatal(err)
	}
	sid := validate(t, env, addr, "secret")
	bind := map[string]any{"sid": sid, "client_secret": "secret", "mxid": mxid}
	r := env.Post(v1+"/3pid/bind", bind)
	if r.Status != http.StatusInternalServerError || r.Errcode() != "M_UNKNOWN" {
		t.Fatalf("bind while queueing fails: %d %s, want 500 M_UNKNOWN", r.Status, r.Body)
	}
	if strings.Contains(string(r.Body), "onbind queue unavailable") {
		t.Errorf("the cause reached the client: %s", r.Body)
	}
	if m := bound(t, env, addr); m != "" {
		t.Fatalf("failed bind left a binding to %s", m)
	}
	if r := env.Get(v1 + "/lookup?medium=email&address=" + addr); r.Status != 200 || strings.TrimSpace(string(r.Body)) != "{}" {
		t.Errorf("lookup after failed bind: %d %s", r.Status, r.Body)
	}
	if r := env.Post(v1+"/bulk_lookup", map[string]any{"threepids": [][]string{{"email", addr}}}); r.Status != 200 || len(r.JSON()["threepids"].([]any)) != 0 {
		t.Errorf("bulk_lookup after failed bind: %d %s", r.Status, r.Body)
	}
	if n := pending(t, env, addr); n != 1 {
		t.Errorf("%d invites pending after failed bind, want 1", n)
	}
	if ds := deliveries(t, env, addr); len(ds) != 0 {
		t.Errorf("failed bind left deliveries %+v", ds)
	}

	// Repaired, the same bind commits both, and the invite is delivered.
	if err := db.Exec(`DROP TRIGGER refuse_onbind`).Error; err != nil {
		t.Fatal(err)
	}
	if r := env.Post(v1+"/3pid/bind", bind); r.Status != 200 {
		t.Fatalf("bind: %d %s", r.Status, r.Body)
	}
	if m := bound(t, env, addr); m != mxid {
		t.Fatalf("bound to %q, want %s", m, mxid)
	}
	got := hs.WaitOnBinds(t, 1, 5*time.Second)
	if tokens := checkOnBind(t, got[0], addr, mxid, env.Key); !slices.Equal(tokens, []string{tok}) {
		t.Errorf("delivered %v, want [%s]", tokens, tok)
	}
}

// One homeserver that does not answer holds up only its own deliveries:
// the invites of another homeserver, bound while the slow one's calls hang,
// are all delivered before any of those calls ends; and no more than
// PerDestination calls to the slow one run at once.
func TestOnBindSlowHomeserverDelaysNoOther(t *testing.T) {
	slow, healthy := fedtest.Start(t), fedtest.Start(t)
	release := make(chan struct{})
	var mu sync.Mutex
	inFlight, maxInFlight, ended := 0, 0, 0
	slow.Handle(fedtest.OnBindPath, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		mu.Lock()
		inFlight++
		maxInFlight = max(maxInFlight, inFlight)
		mu.Unlock()
		select {
		case <-r.Context().Done():
		case <-release:
		}
		mu.Lock()
		inFlight--
		ended++
		mu.Unlock()
		w.Write([]byte("{}"))
	}))
	env := apitest.New(t, func(s *apitest.Setup) {
		s.Wire = func(e *apitest.Env) {
			e.Identity.ConfigureOnBind(identity.OnBindOptions{
				Backoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, Poll: 20 * time.Millisecond,
				PerDestination: 2, Concurrency: 8,
			})
		}
	})
	for i := range 4 {
		addr := fmt.Sprintf("slow%d@example.org", i)
		storeInvite(t, env, addr)
		validateAndBind(t, env, addr, "secret", fmt.Sprintf("@slow%d:%s", i, slow.Name))
	}
	eventually(t, 5*time.Second, "calls to the slow homeserver in flight", func() bool { return slow.Requests(fedtest.OnBindPath) >= 2 })
	bound := time.Now()
	for i := range 5 {
		addr := fmt.Sprintf("fine%d@example.org", i)
		storeInvite(t, env, addr)
		validateAndBind(t, env, addr, "secret", fmt.Sprintf("@fine%d:%s", i, healthy.Name))
	}
	healthy.WaitOnBinds(t, 5, 4*time.Second)
	// For the record (not a target): how long the healthy homeserver's
	// invites took while the other one hung.
	t.Logf("5 invites to the healthy homeserver delivered %v after the first bind", time.Since(bound).Round(time.Millisecond))
	mu.Lock()
	if ended != 0 {
		t.Errorf("%d calls to the slow homeserver ended before the healthy one had its 5 invites: they waited on it", ended)
	}
	mu.Unlock()
	close(release)
	eventually(t, 10*time.Second, "the slow homeserver's deliveries", func() bool {
		for i := range 4 {
			ds := deliveries(t, env, fmt.Sprintf("slow%d@example.org", i))
			if len(ds) != 1 || ds[0].DeliveredAt == nil {
				return false
			}
		}
		return true
	})
	mu.Lock()
	defer mu.Unlock()
	if maxInFlight > 2 {
		t.Errorf("%d calls to one homeserver at once, want at most PerDestination (2)", maxInFlight)
	}
}
