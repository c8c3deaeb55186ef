package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sigil-matrix/sigil/handlers/mail/mailtest"
)

const v1 = "/_matrix/identity/api/v1"

var tokenInMail = regexp.MustCompile(`token=([A-Za-z0-9]+)`)

func postJSON(c *http.Client, url string, body any) (int, map[string]any, error) {
	raw, _ := json.Marshal(body)
	resp, err := c.Post(url, "application/json", bytes.NewReader(raw))
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var out map[string]any
	err = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out, err
}

// validatedSessions runs the email flow for n addresses and returns their
// session IDs (address i is crash<i>@example.org, secret "secret").
func validatedSessions(t *testing.T, base string, smtpd *mailtest.Server, n int) []string {
	t.Helper()
	c := &http.Client{Timeout: 30 * time.Second}
	sids := make([]string, n)
	for i := range sids {
		status, body, err := postJSON(c, base+v1+"/validate/email/requestToken",
			map[string]any{"client_secret": "secret", "email": fmt.Sprintf("crash%d@example.org", i), "send_attempt": 1})
		if err != nil || status != 200 {
			t.Fatalf("requestToken %d: %d %v %v", i, status, body, err)
		}
		sids[i], _ = body["sid"].(string)
	}
	msgs := smtpd.WaitFor(t, n, time.Minute)
	tokens := map[string]string{}
	for _, m := range msgs {
		if match := tokenInMail.FindStringSubmatch(m.Text); match != nil && len(m.To) == 1 {
			tokens[m.To[0]] = match[1]
		}
	}
	for i, sid := range sids {
		tok := tokens[fmt.Sprintf("crash%d@example.org", i)]
		status, body, err := postJSON(c, base+v1+"/validate/email/submitToken",
			map[string]any{"sid": sid, "client_secret": "secret", "token": tok})
		if err != nil || status != 200 {
			t.Fatalf("submitToken %d: %d %v %v", i, status, body, err)
		}
	}
	return sids
}

// The crash test: binds from concurrent clients, kill -9 while they run,
// restart on the same database, and every bind that was acknowledged (200)
// is found by lookup and by bulk_lookup.
func TestCrashLosesNoAcknowledgedBind(t *testing.T) {
	dir := t.TempDir()
	crashTest(t, dir, filepath.Join(dir, "sigil.db"))
}

// The same on PostgreSQL (make test-postgres), in a schema of its own.
func TestCrashLosesNoAcknowledgedBindPostgres(t *testing.T) {
	base := os.Getenv("SIGIL_TEST_POSTGRES_URL")
	if base == "" {
		t.Skip("SIGIL_TEST_POSTGRES_URL not set (make test-postgres)")
	}
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	schema := "sigil_crash_" + hex.EncodeToString(b)
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
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	crashTest(t, t.TempDir(), u.String())
}

func crashTest(t *testing.T, dir, dsn string) {
	const n, clients = 400, 8
	smtpd := mailtest.Start(t)
	cfg := smtpd.Config()
	addr := freeAddr(t)
	extra := fmt.Sprintf("smtp:\n  host: %s\n  port: %d\n  tls: none\n  from: %s\nlimits:\n  mail_every: 0s\n", cfg.Host, cfg.Port, cfg.From)
	p := startSigilOn(t, dir, dsn, addr, extra)
	base := "http://" + addr
	sids := validatedSessions(t, base, smtpd, n)

	var mu sync.Mutex
	var acked []int
	work := make(chan int)
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 10 * time.Second}
			for i := range work {
				status, _, err := postJSON(c, base+v1+"/3pid/bind", map[string]any{
					"sid": sids[i], "client_secret": "secret", "mxid": fmt.Sprintf("@crash%d:example.org", i)})
				if err == nil && status == 200 {
					mu.Lock()
					acked = append(acked, i)
					mu.Unlock()
				}
			}
		}()
	}
	killed := false
	for i := range n {
		work <- i
		mu.Lock()
		enough := len(acked) >= n/3
		mu.Unlock()
		if enough && !killed {
			p.cmd.Process.Kill() // kill -9, binds in flight
			killed = true
		}
	}
	close(work)
	wg.Wait()
	p.wait(30 * time.Second)
	if !killed || len(acked) == 0 {
		t.Fatalf("killed=%v with %d binds acknowledged", killed, len(acked))
	}
	t.Logf("%d of %d binds acknowledged before kill -9", len(acked), n)

	startSigilOn(t, dir, dsn, addr, extra)
	c := &http.Client{Timeout: 30 * time.Second}
	var pairs [][]string
	for _, i := range acked {
		a := fmt.Sprintf("crash%d@example.org", i)
		pairs = append(pairs, []string{"email", a})
		resp, err := c.Get(base + v1 + "/lookup?medium=email&address=" + a)
		if err != nil {
			t.Fatal(err)
		}
		var body map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if want := fmt.Sprintf("@crash%d:example.org", i); body["mxid"] != want {
			t.Errorf("lookup %s after the crash: %v, want %s", a, body, want)
		}
	}
	status, body, err := postJSON(c, base+v1+"/bulk_lookup", map[string]any{"threepids": pairs})
	if err != nil || status != 200 {
		t.Fatalf("bulk_lookup: %d %v", status, err)
	}
	found := map[string]bool{}
	for _, x := range body["threepids"].([]any) {
		row := x.([]any)
		found[row[1].(string)+" "+row[2].(string)] = true
	}
	for _, i := range acked {
		if !found[fmt.Sprintf("crash%d@example.org @crash%d:example.org", i, i)] {
			t.Errorf("bulk_lookup after the crash misses crash%d", i)
		}
	}
	if t.Failed() {
		t.Log(strings.TrimSpace(p.logText()))
	}
}
