package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/sigil-matrix/sigil/handlers/federation/fedtest"
	"github.com/sigil-matrix/sigil/handlers/mail/mailtest"
)

// One homeserver that takes onbind calls and never answers, four that
// answer at once: while the hanging one's calls are in flight, time out
// (federation.timeout 2s) and are retried, every invite for the healthy
// ones reaches them within a second of its bind. (One queue for all
// homeservers held a healthy server's 5 invites back for 7.6 s.) The
// binary runs as configured by default (16 calls at once, 2 per
// homeserver); the limits come from the environment when set, so
// SIGIL_FEDERATION_ONBIND_CONCURRENCY=2 shows the test failing.
func TestOnBindHangingHomeserverDelaysNoOther(t *testing.T) {
	const (
		healthy      = 4
		perHealthy   = 3 // invites (binds) per healthy homeserver
		hangingBinds = 6 // three times what one homeserver may take at once
		limit        = time.Second
	)
	hang := fedtest.Start(t)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) }) // before hang.Close, which waits for handlers
	var (
		mu        sync.Mutex
		hangCalls int
		arrived   = map[string]time.Time{} // invite token → first onbind carrying it
		calls     = make(chan struct{}, 1000)
	)
	hang.Handle(fedtest.OnBindPath, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hangCalls++
		mu.Unlock()
		calls <- struct{}{}
		select { // accepts, reads nothing, never answers
		case <-r.Context().Done():
		case <-release:
		}
	}))
	var servers []*fedtest.Homeserver
	pem := append([]byte(nil), hang.CertificatePEM()...)
	for range healthy {
		hs := fedtest.Start(t)
		hs.Handle(fedtest.OnBindPath, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			at := time.Now()
			tokens, err := fedtest.InviteTokens(r)
			if err != nil {
				http.Error(w, "bad body", http.StatusBadRequest)
				return
			}
			mu.Lock()
			for _, token := range tokens {
				if _, seen := arrived[token]; !seen {
					arrived[token] = at
				}
			}
			mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte("{}"))
		}))
		servers = append(servers, hs)
		pem = append(pem, hs.CertificatePEM()...)
	}
	caFile := filepath.Join(t.TempDir(), "homeservers.pem")
	if err := os.WriteFile(caFile, pem, 0o644); err != nil {
		t.Fatal(err)
	}
	smtpd := mailtest.Start(t)
	mc := smtpd.Config()
	extra := fmt.Sprintf("smtp:\n  host: %s\n  port: %d\n  tls: none\n  from: %s\nlimits:\n  mail_every: 0s\n"+
		"federation:\n  allow_private_addresses: true\n  timeout: 2s\n  ca_file: %q\n", mc.Host, mc.Port, mc.From, caFile)
	dir, addr := t.TempDir(), freeAddr(t)
	p := startSigilOn(t, dir, filepath.Join(dir, "sigil.db"), addr, extra)
	base := "http://" + addr
	c := &http.Client{Timeout: 30 * time.Second}

	// validatedSessions validates crash<i>@example.org, i < total: the
	// first hangingBinds go to the hanging homeserver, then perHealthy to
	// each healthy one.
	total := hangingBinds + healthy*perHealthy
	tokens := make([]string, total)
	for i := range total {
		status, body, err := postJSON(c, base+v1+"/store-invite", map[string]any{
			"medium": "email", "address": fmt.Sprintf("crash%d@example.org", i), "room_id": "!room:example.org", "sender": "@alice:example.org",
		})
		if err != nil || status != 200 {
			t.Fatalf("store-invite %d: %d %v %v", i, status, body, err)
		}
		tokens[i] = body["token"].(string)
	}
	sids := validatedSessions(t, base, smtpd, total)
	bind := func(i int, server string) {
		t.Helper()
		status, body, err := postJSON(c, base+v1+"/3pid/bind", map[string]any{
			"sid": sids[i], "client_secret": "secret", "mxid": fmt.Sprintf("@u%d:%s", i, server),
		})
		if err != nil || status != 200 {
			t.Fatalf("bind %d: %d %v %v", i, status, body, err)
		}
	}
	for i := range hangingBinds {
		bind(i, hang.Name)
	}
	for range 2 { // the hanging homeserver holds its share of the slots
		select {
		case <-calls:
		case <-time.After(30 * time.Second):
			t.Fatalf("the hanging homeserver got no onbind call\n%s", p.logText())
		}
	}

	// The healthy binds, spread over about 8 s: across the hanging calls'
	// timeouts and retries.
	boundAt := make([]time.Time, total)
	for k := range healthy * perHealthy {
		i := hangingBinds + k
		boundAt[i] = time.Now()
		bind(i, servers[k%healthy].Name)
		time.Sleep(700 * time.Millisecond)
	}
	deadline := time.Now().Add(limit + 5*time.Second)
	for {
		mu.Lock()
		n := 0
		for _, tok := range tokens[hangingBinds:] {
			if _, ok := arrived[tok]; ok {
				n++
			}
		}
		mu.Unlock()
		if n == healthy*perHealthy || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}

	mu.Lock()
	defer mu.Unlock()
	var delays []time.Duration
	for k := range healthy * perHealthy {
		i := hangingBinds + k
		at, ok := arrived[tokens[i]]
		switch {
		case !ok:
			t.Errorf("invite %d for %s never arrived", i, servers[k%healthy].Name)
		case at.Sub(boundAt[i]) > limit:
			t.Errorf("invite %d for %s arrived %v after its bind, want within %v", i, servers[k%healthy].Name, at.Sub(boundAt[i]).Round(time.Millisecond), limit)
		}
		if ok {
			delays = append(delays, at.Sub(boundAt[i]))
		}
	}
	sort.Slice(delays, func(a, b int) bool { return delays[a] < delays[b] })
	if len(delays) > 0 {
		t.Logf("%d healthy invites: bind to onbind median %v, max %v; the hanging homeserver got %d calls",
			len(delays), delays[len(delays)/2].Round(time.Millisecond), delays[len(delays)-1].Round(time.Millisecond), hangCalls)
	}
	if hangCalls < 3 {
		t.Errorf("the hanging homeserver got %d onbind calls: its calls were not retried during the test", hangCalls)
	}
}
