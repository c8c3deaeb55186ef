package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sigil-matrix/sigil/handlers/federation/fedtest"
	"github.com/sigil-matrix/sigil/handlers/mail/mailtest"
	"github.com/sigil-matrix/sigil/store"
)

// SIGTERM while onbind calls are in flight: they finish within
// shutdown_timeout and are recorded, so after the restart the homeserver
// has received every invite exactly once. (Cancelling the calls at HTTP
// shutdown made Dendrite, which had already stored the invite, receive it
// again after the restart.)
func TestSIGTERMDuringOnBindSendsNoInviteTwice(t *testing.T) {
	hs := fedtest.Start(t)
	var (
		mu       sync.Mutex
		received = map[string]int{} // invite token → onbind calls carrying it
		slow     = true
		inFlight = make(chan struct{}, 100)
	)
	hs.Handle(fedtest.OnBindPath, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tokens, err := fedtest.InviteTokens(r)
		if err != nil {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		// Like Dendrite: the invites are taken as soon as the call
		// arrives; the answer comes later.
		mu.Lock()
		for _, token := range tokens {
			received[token]++
		}
		wait := slow
		mu.Unlock()
		inFlight <- struct{}{}
		if wait {
			select {
			case <-time.After(1500 * time.Millisecond):
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte("{}"))
	}))
	caFile := filepath.Join(t.TempDir(), "hs.pem")
	if err := os.WriteFile(caFile, hs.CertificatePEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	smtpd := mailtest.Start(t)
	mc := smtpd.Config()
	extra := fmt.Sprintf("smtp:\n  host: %s\n  port: %d\n  tls: none\n  from: %s\nlimits:\n  mail_every: 0s\n"+
		"federation:\n  allow_private_addresses: true\n  ca_file: %q\nshutdown_timeout: 30s\n", mc.Host, mc.Port, mc.From, caFile)
	dir, addr := t.TempDir(), freeAddr(t)
	dsn := filepath.Join(dir, "sigil.db")
	p := startSigilOn(t, dir, dsn, addr, extra)
	base := "http://" + addr
	c := &http.Client{Timeout: 30 * time.Second}

	const n = 5
	var tokens []string
	for i := range n {
		status, body, err := postJSON(c, base+v1+"/store-invite", map[string]any{
			"medium": "email", "address": fmt.Sprintf("crash%d@example.org", i), "room_id": "!room:example.org", "sender": "@alice:example.org",
		})
		if err != nil || status != 200 {
			t.Fatalf("store-invite %d: %d %v %v", i, status, body, err)
		}
		tokens = append(tokens, body["token"].(string))
	}
	sids := validatedSessions(t, base, smtpd, n)
	for i, sid := range sids {
		status, body, err := postJSON(c, base+v1+"/3pid/bind", map[string]any{
			"sid": sid, "client_secret": "secret", "mxid": fmt.Sprintf("@u%d:%s", i, hs.Name),
		})
		if err != nil || status != 200 {
			t.Fatalf("bind %d: %d %v %v", i, status, body, err)
		}
	}
	select {
	case <-inFlight: // an onbind call is being answered slowly
	case <-time.After(30 * time.Second):
		t.Fatalf("no onbind call\n%s", p.logText())
	}
	p.signal(syscall.SIGTERM)
	if code := p.wait(60 * time.Second); code != 0 {
		t.Fatalf("exit status %d\n%s", code, p.logText())
	}
	if strings.Contains(p.logText(), "onbind call cut") {
		t.Errorf("a call was cut although shutdown_timeout left it time:\n%s", p.logText())
	}

	mu.Lock()
	slow = false
	mu.Unlock()
	p2 := startSigilOn(t, dir, dsn, addr, extra)
	eventuallyDelivered := func() bool {
		st, err := store.Open(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		for i := range n {
			ds, err := st.OnBindDeliveries(context.Background(), "email", fmt.Sprintf("crash%d@example.org", i))
			if err != nil || len(ds) != 1 || ds[0].DeliveredAt == nil {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(60 * time.Second)
	for !eventuallyDelivered() {
		if time.Now().After(deadline) {
			t.Fatalf("deliveries not all recorded after the restart\n%s", p2.logText())
		}
		time.Sleep(100 * time.Millisecond)
	}
	p2.signal(syscall.SIGTERM)
	p2.wait(60 * time.Second)
	mu.Lock()
	defer mu.Unlock()
	for i, tok := range tokens {
		if got := received[tok]; got != 1 {
			t.Errorf("invite %d reached the homeserver %d times, want exactly once", i, got)
		}
	}
}
