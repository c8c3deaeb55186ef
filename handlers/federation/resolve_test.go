package federation

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestValidServerName(t *testing.T) {
	tests := []struct {
		name  string
		valid bool
	}{
		{"matrix.org", true},
		{"localhost", true},
		{"localhost:8449", true},
		{"example.com:1", true},
		{"example.com:65535", true},
		{"a-b.c-d.example", true},
		{"EXAMPLE.org", true},
		{"1.2.3.4", true},
		{"1.2.3.4:8448", true},
		{"[::1]", true},
		{"[::1]:8448", true},
		{"[2001:db8::1]:443", true},
		{"[::ffff:1.2.3.4]", true},
		{"", false},
		{":8448", false},
		{"example.com:", false},
		{"example.com:0", false},
		{"example.com:65536", false},
		{"example.com:123456", false},
		{"example.com:+80", false},
		{"example.com:8a", false},
		{"example.com:80:80", false},
		{"example.com/path", false},
		{"example.com:8448/path", false},
		{"user@example.com", false},
		{"user:pass@example.com", false},
		{"https://example.com", false},
		{"exa mple.com", false},
		{" example.com", false},
		{"example.com ", false},
		{"example.com\n", false},
		{"exam_ple.com", false},
		{"example.com?x=1", false},
		{"example.com#f", false},
		{"ex..ample.com", false},
		{".example.com", false},
		{"example.com.", false},
		{"1.2.3.256", false},
		{"1.2.3", false},
		{"::1", false},
		{"[::1", false},
		{"[::1]x", false},
		{"[1.2.3.4]", false},
		{"[fe80::1%eth0]", false},
		{"[::1]:0", false},
		{"exämple.com", false},
		{strings.Repeat("a", 64) + ".com", false},
		{strings.Repeat("a.", 130) + "com", false},
	}
	for _, tc := range tests {
		if got := ValidServerName(tc.name); got != tc.valid {
			t.Errorf("ValidServerName(%q) = %v, want %v", tc.name, got, tc.valid)
		}
	}
}

func TestCacheTTL(t *testing.T) {
	tests := []struct {
		cc   string
		want time.Duration
	}{
		{"", 24 * time.Hour},
		{"max-age=3600", time.Hour},
		{"public, max-age=60", time.Minute},
		{"Max-Age=120, public", 2 * time.Minute},
		{"max-age=999999999", 48 * time.Hour},
		{"max-age=bogus", 24 * time.Hour},
		{"no-store", 0},
		{"no-cache, max-age=60", 0},
	}
	for _, tc := range tests {
		if got := cacheTTL(tc.cc); got != tc.want {
			t.Errorf("cacheTTL(%q) = %v, want %v", tc.cc, got, tc.want)
		}
	}
}

// wellKnownEnv is a .well-known server on 127.0.0.1 answering per Host,
// with names under example.com resolving to 127.0.0.1 (the httptest
// certificate covers *.example.com) and fake SRV records.
type wellKnownEnv struct {
	c    *Client
	port string

	mu      sync.Mutex
	answers map[string]func(w http.ResponseWriter) // by hostname
	hits    map[string]int
	srv     map[string][]*net.SRV // "_service._tcp.name" → records
	clock   time.Time
}

func newWellKnownEnv(t *testing.T) *wellKnownEnv {
	e := &wellKnownEnv{
		answers: map[string]func(http.ResponseWriter){},
		hits:    map[string]int{},
		srv:     map[string][]*net.SRV{},
		clock:   time.Unix(1_800_000_000, 0),
	}
	s, _ := startTLS(t, "127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.Host)
		e.mu.Lock()
		e.hits[host]++
		answer := e.answers[host]
		e.mu.Unlock()
		if r.URL.Path != "/.well-known/matrix/server" || answer == nil {
			http.NotFound(w, r)
			return
		}
		answer(w)
	}))
	_, e.port, _ = net.SplitHostPort(s.Listener.Addr().String())
	e.c = NewClient(ClientOptions{AllowPrivate: true, TLSConfig: trust(s), Timeout: 5 * time.Second})
	e.c.wellKnownPort = e.port
	e.c.now = func() time.Time { e.mu.Lock(); defer e.mu.Unlock(); return e.clock }
	e.c.lookupIP = func(_ context.Context, host string) ([]netip.Addr, error) {
		if host == "example.com" || strings.HasSuffix(host, ".example.com") {
			return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
		}
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	e.c.lookupSRV = func(_ context.Context, service, proto, name string) (string, []*net.SRV, error) {
		e.mu.Lock()
		defer e.mu.Unlock()
		key := "_" + service + "._" + proto + "." + name
		if recs := e.srv[key]; len(recs) > 0 {
			return key, recs, nil
		}
		return "", nil, &net.DNSError{Err: "no such host", Name: key, IsNotFound: true}
	}
	return e
}

func (e *wellKnownEnv) json(host, body string, headers ...string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.answers[host] = func(w http.ResponseWriter) {
		for i := 0; i+1 < len(headers); i += 2 {
			w.Header().Set(headers[i], headers[i+1])
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, body)
	}
}

func (e *wellKnownEnv) delegate(host, to string) {
	e.json(host, fmt.Sprintf(`{"m.server":%q}`, to))
}

func (e *wellKnownEnv) hitsFor(host string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.hits[host]
}

func (e *wellKnownEnv) advance(d time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.clock = e.clock.Add(d)
}

func TestResolve(t *testing.T) {
	e := newWellKnownEnv(t)
	e.delegate("wk-port.example.com", "deleg.example.com:1234")
	e.delegate("wk-ip.example.com", "5.6.7.8")
	e.delegate("wk-ipport.example.com", "[2001:db8::5]:99")
	e.delegate("wk-srv.example.com", "deleg-srv.example.com")
	e.delegate("wk-oldsrv.example.com", "deleg-oldsrv.example.com")
	e.delegate("wk-plain.example.com", "deleg-plain.example.com")
	e.json("wk-badjson.example.com", `{"m.server":`)
	e.json("wk-nofield.example.com", `{"server":"x.example.com"}`)
	e.json("wk-badname.example.com", `{"m.server":"https://evil.example.com/x"}`)
	e.json("wk-number.example.com", `{"m.server":42}`)
	e.srv["_matrix-fed._tcp.deleg-srv.example.com"] = []*net.SRV{{Target: "fed.example.net.", Port: 4443}}
	e.srv["_matrix._tcp.deleg-srv.example.com"] = []*net.SRV{{Target: "old.example.net.", Port: 1}}
	e.srv["_matrix._tcp.deleg-oldsrv.example.com"] = []*net.SRV{{Target: "old.example.net.", Port: 5555}}
	e.srv["_matrix-fed._tcp.srv.example.com"] = []*net.SRV{{Target: "target.example.net.", Port: 7777}}
	e.srv["_matrix._tcp.oldsrv.example.com"] = []*net.SRV{{Target: "legacy.example.net", Port: 8888}}
	e.srv["_matrix-fed._tcp.dot.example.com"] = []*net.SRV{{Target: ".", Port: 0}}

	tests := []struct {
		name      string
		url, host string
		wellKnown bool // whether a .well-known request is expected
	}{
		{"1.2.3.4", "https://1.2.3.4:8448", "1.2.3.4", false},
		{"1.2.3.4:99", "https://1.2.3.4:99", "1.2.3.4:99", false},
		{"[2001:db8::1]", "https://[2001:db8::1]:8448", "[2001:db8::1]", false},
		{"[::1]:8449", "https://[::1]:8449", "[::1]:8449", false},
		{"explicit.example.com:8449", "https://explicit.example.com:8449", "explicit.example.com:8449", false},
		{"wk-port.example.com", "https://deleg.example.com:1234", "deleg.example.com:1234", true},
		{"wk-ip.example.com", "https://5.6.7.8:8448", "5.6.7.8", true},
		{"wk-ipport.example.com", "https://[2001:db8::5]:99", "[2001:db8::5]:99", true},
		{"wk-srv.example.com", "https://fed.example.net:4443", "deleg-srv.example.com", true},
		{"wk-oldsrv.example.com", "https://old.example.net:5555", "deleg-oldsrv.example.com", true},
		{"wk-plain.example.com", "https://deleg-plain.example.com:8448", "deleg-plain.example.com", true},
		{"wk-badjson.example.com", "https://wk-badjson.example.com:8448", "wk-badjson.example.com", true},
		{"wk-nofield.example.com", "https://wk-nofield.example.com:8448", "wk-nofield.example.com", true},
		{"wk-badname.example.com", "https://wk-badname.example.com:8448", "wk-badname.example.com", true},
		{"wk-number.example.com", "https://wk-number.example.com:8448", "wk-number.example.com", true},
		{"srv.example.com", "https://target.example.net:7777", "srv.example.com", true},
		{"oldsrv.example.com", "https://legacy.example.net:8888", "oldsrv.example.com", true},
		{"dot.example.com", "https://dot.example.com:8448", "dot.example.com", true},
		{"none.example.com", "https://none.example.com:8448", "none.example.com", true},
		{"unresolvable.test", "https://unresolvable.test:8448", "unresolvable.test", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := e.c.Resolve(context.Background(), tc.name)
			if err != nil {
				t.Fatal(err)
			}
			if d.URL != tc.url || d.Host != tc.host {
				t.Errorf("Resolve = %+v, want URL %s Host %s", d, tc.url, tc.host)
			}
			host, _, _, _ := splitServerName(tc.name)
			if got := e.hitsFor(host) > 0; got != tc.wellKnown {
				t.Errorf(".well-known fetched = %v, want %v", got, tc.wellKnown)
			}
		})
	}

	for _, bad := range []string{"", "example.com/x", "a b", "user@example.com"} {
		if _, err := e.c.Resolve(context.Background(), bad); !errors.Is(err, ErrInvalidServerName) {
			t.Errorf("Resolve(%q) err = %v, want ErrInvalidServerName", bad, err)
		}
	}
}

func TestWellKnownCache(t *testing.T) {
	e := newWellKnownEnv(t)
	ctx := context.Background()
	resolve := func(name, wantURL string) {
		t.Helper()
		d, err := e.c.Resolve(ctx, name)
		if err != nil || d.URL != wantURL {
			t.Fatalf("Resolve(%s) = %+v, %v; want %s", name, d, err, wantURL)
		}
	}

	// Default lifetime 24h.
	e.delegate("a.example.com", "a2.example.com:1")
	resolve("a.example.com", "https://a2.example.com:1")
	resolve("a.example.com", "https://a2.example.com:1")
	if n := e.hitsFor("a.example.com"); n != 1 {
		t.Fatalf("%d fetches, want 1 (cached)", n)
	}
	e.delegate("a.example.com", "a3.example.com:1")
	e.advance(23 * time.Hour)
	resolve("a.example.com", "https://a2.example.com:1")
	e.advance(2 * time.Hour)
	resolve("a.example.com", "https://a3.example.com:1")
	if n := e.hitsFor("a.example.com"); n != 2 {
		t.Fatalf("%d fetches, want 2", n)
	}

	// Cache-Control max-age is respected.
	e.json("b.example.com", `{"m.server":"b2.example.com:1"}`, "Cache-Control", "max-age=60")
	resolve("b.example.com", "https://b2.example.com:1")
	e.advance(30 * time.Second)
	resolve("b.example.com", "https://b2.example.com:1")
	e.advance(31 * time.Second)
	resolve("b.example.com", "https://b2.example.com:1")
	if n := e.hitsFor("b.example.com"); n != 2 {
		t.Fatalf("%d fetches, want 2", n)
	}

	// Failures are cached for 2 minutes.
	resolve("c.example.com", "https://c.example.com:8448")
	resolve("c.example.com", "https://c.example.com:8448")
	if n := e.hitsFor("c.example.com"); n != 1 {
		t.Fatalf("%d fetches, want 1 (error cached)", n)
	}
	e.delegate("c.example.com", "c2.example.com:1")
	e.advance(90 * time.Second)
	resolve("c.example.com", "https://c.example.com:8448")
	e.advance(31 * time.Second)
	resolve("c.example.com", "https://c2.example.com:1")

	// Concurrent resolutions share one fetch.
	var slow atomic.Int32
	e.mu.Lock()
	e.answers["d.example.com"] = func(w http.ResponseWriter) {
		slow.Add(1)
		time.Sleep(100 * time.Millisecond)
		io.WriteString(w, `{"m.server":"d2.example.com:1"}`)
	}
	e.mu.Unlock()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if d, err := e.c.Resolve(ctx, "d.example.com"); err != nil || d.URL != "https://d2.example.com:1" {
				t.Errorf("Resolve = %+v, %v", d, err)
			}
		})
	}
	wg.Wait()
	if n := slow.Load(); n != 1 {
		t.Errorf("%d concurrent fetches, want 1", n)
	}
}
