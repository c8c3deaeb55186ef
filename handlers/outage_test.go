package handlers_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sigil-matrix/sigil/handlers/apitest"
	"github.com/sigil-matrix/sigil/handlers/federation/fedtest"
	"github.com/sigil-matrix/sigil/handlers/identity"
	"github.com/sigil-matrix/sigil/handlers/signing"
)

// tcpProxy stands between Sigil and PostgreSQL so a test can cut the
// database off (every connection dropped, new ones refused) and restore it.
type tcpProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  map[net.Conn]bool
}

func startProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	t.Cleanup(func() { ln.Close(); p.cut() })
	go p.serve()
	return p
}

func (p *tcpProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down := p.down
		p.mu.Unlock()
		if down {
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[up] = true, true
		p.mu.Unlock()
		go func() { io.Copy(up, c); up.Close(); c.Close() }()
		go func() { io.Copy(c, up); up.Close(); c.Close() }()
	}
}

// cut drops every connection and refuses new ones until restore.
func (p *tcpProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		c.Close()
	}
	p.conns = map[net.Conn]bool{}
}

func (p *tcpProxy) restore() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}

// outageDSN is a fresh schema on the test PostgreSQL, reached through a
// proxy the test controls.
func outageDSN(t *testing.T) (string, *tcpProxy) {
	base := os.Getenv("SIGIL_TEST_POSTGRES_URL")
	if base == "" {
		t.Skip("SIGIL_TEST_POSTGRES_URL not set (make test-postgres)")
	}
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "sigil_outage_" + hex.EncodeToString(b[:])
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = admin.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
		admin.Close(context.Background())
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	proxy := startProxy(t, u.Host)
	u.Host = proxy.ln.Addr().String()
	q := u.Query()
	q.Set("search_path", schema)
	q.Set("connect_timeout", "2")
	u.RawQuery = q.Encode()
	return u.String(), proxy
}

// A PostgreSQL outage: lookups (v1, bulk, v2) keep being answered from the
// loaded index; writes answer 503 with Retry-After and acknowledge
// nothing; readiness says so; when the database returns, everything
// recovers without a restart and every acknowledged bind is still there.
func TestPostgresOutage(t *testing.T) {
	dsn, proxy := outageDSN(t)
	hs := fedtest.Start(t)
	tos := "https://id.example/tos-en"
	env := apitest.New(t, func(s *apitest.Setup) {
		s.DSN = dsn
		s.Config.Terms = []identity.Policy{{ID: "tos", Version: "1", Languages: map[string]identity.PolicyDoc{"en": {Name: "Terms", URL: tos}}}}
	})
	bound := []string{"out1@example.org", "out2@example.org", "out3@example.org"}
	for _, a := range bound {
		validateAndBind(t, env, a, "secret", "@u:example.org")
	}
	pendingSID := validate(t, env, "during@example.org", "secret")
	tok := register(t, env, hs, "looker")
	if r := env.Do(apitest.Request{Method: "POST", Path: v2 + "/terms", Header: bearer(tok), Body: map[string]any{"user_accepts": []string{tos}}}); r.Status != 200 {
		t.Fatalf("accept terms: %d %s", r.Status, r.Body)
	}
	pepper := env.Do(apitest.Request{Method: "GET", Path: v2 + "/hash_details", Header: bearer(tok)}).String("lookup_pepper")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := env.Store.WaitIndex(ctx); err != nil {
		t.Fatal(err)
	}
	v2Hash := signing.LookupHash("out1@example.org", "email", pepper)

	checkLookups := func(when string) {
		t.Helper()
		for _, a := range bound {
			if r := env.Get(v1 + "/lookup?medium=email&address=" + a); r.Status != 200 || r.String("mxid") != "@u:example.org" {
				t.Errorf("%s: v1 lookup %s: %d %s", when, a, r.Status, r.Body)
			}
		}
		r := env.Post(v1+"/bulk_lookup", map[string]any{"threepids": [][]string{{"email", bound[0]}, {"email", bound[2]}}})
		if ts, _ := r.JSON()["threepids"].([]any); r.Status != 200 || len(ts) != 2 {
			t.Errorf("%s: bulk_lookup: %d %s", when, r.Status, r.Body)
		}
		r = env.Do(apitest.Request{Method: "POST", Path: v2 + "/lookup", Header: bearer(tok),
			Body: map[string]any{"addresses": []string{v2Hash}, "algorithm": "sha256", "pepper": pepper}})
		if m, _ := r.JSON()["mappings"].(map[string]any); r.Status != 200 || m[v2Hash] != "@u:example.org" {
			t.Errorf("%s: v2 lookup: %d %s", when, r.Status, r.Body)
		}
	}
	checkLookups("before the outage")

	proxy.cut()
	checkLookups("during the outage")
	bind := map[string]any{"sid": pendingSID, "client_secret": "secret", "mxid": "@late:example.org"}
	for _, w := range []struct {
		path string
		body any
	}{
		{v1 + "/3pid/bind", bind},
		{v1 + "/validate/email/requestToken", map[string]any{"client_secret": "x", "email": "new@example.org", "send_attempt": 1}},
		{v1 + "/store-invite", inviteBody("inv@example.org", nil)},
	} {
		r := env.Post(w.path, w.body)
		if r.Status != 503 || r.Errcode() != "M_UNKNOWN" || r.Header.Get("Retry-After") == "" {
			t.Errorf("write %s during the outage: %d %s (Retry-After %q), want 503 with Retry-After", w.path, r.Status, r.Body, r.Header.Get("Retry-After"))
		}
	}
	if r := env.Get("/readyz"); r.Status != 503 || r.String("database") != "unreachable" {
		t.Errorf("readyz during the outage: %d %s", r.Status, r.Body)
	}
	time.Sleep(2 * time.Second) // the index loses its LISTEN connection and retries
	checkLookups("later in the outage")

	proxy.restore()
	eventually(t, 30*time.Second, "ready again", func() bool {
		r := env.Get("/readyz")
		idx, _ := r.JSON()["lookup_index"].(map[string]any)
		return r.Status == 200 && idx["catching_up"] == false
	})
	if r := env.Post(v1+"/3pid/bind", bind); r.Status != 200 {
		t.Fatalf("bind after the outage: %d %s", r.Status, r.Body)
	}
	checkLookups("after the outage")
	if r := env.Get(v1 + "/lookup?medium=email&address=during@example.org"); r.String("mxid") != "@late:example.org" {
		t.Errorf("the bind after the outage: %d %s", r.Status, r.Body)
	}
}
