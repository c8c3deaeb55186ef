package federation

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// countingListener counts accepted connections, to prove that a refused
// target was never connected to.
type countingListener struct {
	net.Listener
	n atomic.Int32
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// startTLS starts an HTTPS server on addr ("127.0.0.1:0" etc.) whose
// connections are counted.
func startTLS(t *testing.T, addr string, h http.Handler) (*httptest.Server, *countingListener) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s: %v", addr, err)
	}
	cl := &countingListener{Listener: ln}
	s := httptest.NewUnstartedServer(h)
	s.Listener.Close()
	s.Listener = cl
	s.StartTLS()
	t.Cleanup(s.Close)
	return s, cl
}

func trust(s *httptest.Server) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(s.Certificate())
	return &tls.Config{RootCAs: pool}
}

func okHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok "+r.UserAgent())
	})
}

func TestForbiddenIP(t *testing.T) {
	tests := []struct {
		ip        string
		forbidden bool
	}{
		{"127.0.0.1", true},
		{"127.255.0.9", true},
		{"10.1.2.3", true},
		{"172.16.0.1", true},
		{"172.31.255.255", true},
		{"192.168.1.1", true},
		{"169.254.169.254", true},
		{"0.0.0.0", true},
		{"100.64.0.1", true},
		{"224.0.0.1", true},
		{"255.255.255.255", true},
		{"198.18.0.1", true},
		{"::1", true},
		{"::", true},
		{"fe80::1", true},
		{"fe80::1%eth0", true},
		{"fd00::1", true},
		{"fc00::1", true},
		{"ff02::1", true},
		{"::ffff:127.0.0.1", true},
		{"::ffff:10.0.0.1", true},
		{"64:ff9b::a00:1", true},   // NAT64 of 10.0.0.1
		{"2002:7f00:1::", true},    // 6to4 of 127.0.0.1
		{"2001:db8::1", true},      // documentation
		{"8.8.8.8", false},         // public
		{"1.1.1.1", false},         // public
		{"172.32.0.1", false},      // just outside 172.16/12
		{"100.128.0.1", false},     // just outside CGNAT
		{"2606:4700::1111", false}, // public IPv6
		{"::ffff:8.8.8.8", false},
		{"64:ff9b::808:808", false}, // NAT64 of 8.8.8.8
	}
	for _, tc := range tests {
		if got := ForbiddenIP(netip.MustParseAddr(tc.ip)); got != tc.forbidden {
			t.Errorf("ForbiddenIP(%s) = %v, want %v", tc.ip, got, tc.forbidden)
		}
	}
	if !ForbiddenIP(netip.Addr{}) {
		t.Error("zero Addr must be forbidden")
	}
}

func TestGuardRefusesPrivateTargets(t *testing.T) {
	srv4, cl4 := startTLS(t, "127.0.0.1:0", okHandler())
	_, port, _ := net.SplitHostPort(srv4.Listener.Addr().String())

	c := NewClient(ClientOptions{TLSConfig: trust(srv4), Timeout: 3 * time.Second})
	c.lookupIP = func(_ context.Context, host string) ([]netip.Addr, error) {
		switch host {
		case "rebind.test": // DNS answer pointing at loopback
			return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
		case "mixed.test": // one public, one private address
			return []netip.Addr{netip.MustParseAddr("8.8.8.8"), netip.MustParseAddr("127.0.0.1")}, nil
		}
		return nil, errors.New("no such host")
	}

	targets := []string{
		"127.0.0.1:" + port,
		"0.0.0.0:" + port, // Linux connects 0.0.0.0 to the local host
		"[::1]:" + port,
		"[::ffff:127.0.0.1]:" + port,
		"10.0.0.1:443",
		"169.254.169.254:443",
		"192.168.0.1:443",
		"100.64.0.1:443",
		"[fd00::1]:443",
		"rebind.test:" + port,
		"mixed.test:" + port,
	}
	for _, target := range targets {
		t.Run(target, func(t *testing.T) {
			start := time.Now()
			resp, err := c.HTTP().Get("https://" + target + "/")
			if err == nil {
				resp.Body.Close()
				t.Fatal("request to forbidden target succeeded")
			}
			if !errors.Is(err, ErrForbiddenAddress) {
				t.Fatalf("err = %v, want ErrForbiddenAddress", err)
			}
			if time.Since(start) > time.Second {
				t.Errorf("refusal took %v", time.Since(start))
			}
		})
	}

	// Federation calls are guarded the same way, and report ErrUnreachable too.
	_, err := c.ServerKeys(context.Background(), "127.0.0.1:"+port)
	if !errors.Is(err, ErrForbiddenAddress) || !errors.Is(err, ErrUnreachable) {
		t.Errorf("ServerKeys err = %v, want ErrForbiddenAddress and ErrUnreachable", err)
	}
	if !strings.Contains(err.Error(), "fetch keys from 127.0.0.1:"+port) {
		t.Errorf("error does not name the target: %v", err)
	}

	time.Sleep(50 * time.Millisecond) // let any stray connection show up
	if n := cl4.n.Load(); n != 0 {
		t.Errorf("%d connection(s) reached the refused server", n)
	}
}

func TestGuardControlHookChecksDialledAddress(t *testing.T) {
	c := NewClient(ClientOptions{})
	for _, addr := range []string{"127.0.0.1:80", "[::1]:443", "10.0.0.1:8448", "0.0.0.0:1"} {
		if err := c.controlDial("tcp", addr, nil); !errors.Is(err, ErrForbiddenAddress) {
			t.Errorf("controlDial(%s) = %v, want ErrForbiddenAddress", addr, err)
		}
	}
	if err := c.controlDial("tcp", "8.8.8.8:443", nil); err != nil {
		t.Errorf("controlDial(public) = %v", err)
	}
	if err := NewClient(ClientOptions{AllowPrivate: true}).controlDial("tcp", "127.0.0.1:80", nil); err != nil {
		t.Errorf("AllowPrivate controlDial = %v", err)
	}
}

func TestGuardAllowsPrivateWhenConfigured(t *testing.T) {
	srv, cl := startTLS(t, "127.0.0.1:0", okHandler())
	c := NewClient(ClientOptions{AllowPrivate: true, TLSConfig: trust(srv)})
	resp, err := c.HTTP().Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "ok Sigil" {
		t.Errorf("body = %q, want default User-Agent Sigil", body)
	}
	if cl.n.Load() == 0 {
		t.Error("no connection counted")
	}

	c = NewClient(ClientOptions{AllowPrivate: true, TLSConfig: trust(srv), UserAgent: "Sigil/test"})
	resp, err = c.HTTP().Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "ok Sigil/test" {
		t.Errorf("body = %q", body)
	}
}

// A redirect to a forbidden address is refused at dial time even though the
// first hop was allowed. The policy hook forbids only 127.0.0.2 so that the
// first hop (127.0.0.1) can be reached on a loopback-only machine.
func TestGuardRefusesRedirectToForbidden(t *testing.T) {
	inner, innerCount := startTLS(t, "127.0.0.2:0", okHandler())
	outer, _ := startTLS(t, "127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, inner.URL+"/", http.StatusFound)
	}))
	c := NewClient(ClientOptions{TLSConfig: trust(outer)})
	c.forbidden = func(a netip.Addr) bool { return a == netip.MustParseAddr("127.0.0.2") }

	resp, err := c.HTTP().Get(outer.URL + "/")
	if err == nil {
		resp.Body.Close()
		t.Fatal("redirect to forbidden address followed")
	}
	if !errors.Is(err, ErrForbiddenAddress) {
		t.Fatalf("err = %v, want ErrForbiddenAddress", err)
	}
	if innerCount.n.Load() != 0 {
		t.Error("the forbidden redirect target was connected to")
	}
}

func TestFederationDoesNotFollowRedirects(t *testing.T) {
	var hits atomic.Int32
	srv, _ := startTLS(t, "127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
	}))
	c := NewClient(ClientOptions{AllowPrivate: true, TLSConfig: trust(srv)})
	name := srv.Listener.Addr().String()
	_, err := c.ServerKeys(context.Background(), name)
	var se *StatusError
	if !errors.As(err, &se) || se.StatusCode != http.StatusFound {
		t.Fatalf("err = %v, want StatusError 302", err)
	}
	if hits.Load() != 1 {
		t.Errorf("%d requests, want 1 (no redirect followed)", hits.Load())
	}
}

func TestResponseSizeLimit(t *testing.T) {
	big := strings.Repeat("x", 4096)
	srv, _ := startTLS(t, "127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Has("chunked") {
			w.Write([]byte(big[:100]))
			w.(http.Flusher).Flush() // forces chunked encoding, no Content-Length
			w.Write([]byte(big[100:]))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(big))
	}))
	c := NewClient(ClientOptions{AllowPrivate: true, TLSConfig: trust(srv), MaxResponseBytes: 1024})

	for _, q := range []string{"", "?chunked=1"} {
		resp, err := c.HTTP().Get(srv.URL + "/" + q)
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		if !errors.Is(err, ErrResponseTooLarge) {
			t.Errorf("%q: err = %v, want ErrResponseTooLarge", q, err)
		}
	}

	_, err := c.ServerKeys(context.Background(), srv.Listener.Addr().String())
	if !errors.Is(err, ErrResponseTooLarge) {
		t.Errorf("ServerKeys err = %v, want ErrResponseTooLarge", err)
	}

	// Exactly at the limit is fine.
	c = NewClient(ClientOptions{AllowPrivate: true, TLSConfig: trust(srv), MaxResponseBytes: int64(len(big))})
	for _, q := range []string{"", "?chunked=1"} {
		resp, err := c.HTTP().Get(srv.URL + "/" + q)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || len(b) != len(big) {
			t.Errorf("%q: read %d bytes, err %v", q, len(b), err)
		}
	}
}

func TestTimeout(t *testing.T) {
	release := make(chan struct{})
	srv, _ := startTLS(t, "127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer close(release)
	c := NewClient(ClientOptions{AllowPrivate: true, TLSConfig: trust(srv), Timeout: 300 * time.Millisecond})
	start := time.Now()
	_, err := c.ServerKeys(context.Background(), srv.Listener.Addr().String())
	if !errors.Is(err, ErrUnreachable) {
		t.Errorf("err = %v, want ErrUnreachable", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %v despite 300ms timeout", d)
	}
}

func TestCachesAreBounded(t *testing.T) {
	m := map[int]int{}
	for i := 0; i < 3*maxCacheEntries; i++ {
		putBounded(m, i, i, func(v int) bool { return v%2 == 0 })
	}
	if len(m) > maxCacheEntries {
		t.Fatalf("%d entries, want at most %d", len(m), maxCacheEntries)
	}
	if _, ok := m[3*maxCacheEntries-1]; !ok {
		t.Fatal("the newest entry was not stored")
	}
}
