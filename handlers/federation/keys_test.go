package federation

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/sigil-matrix/sigil/handlers/federation/fedtest"
	"github.com/sigil-matrix/sigil/handlers/signing"
)

// fakeClock is a settable clock for cache tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func clientFor(t *testing.T, hs *fedtest.Homeserver) (*Client, *fakeClock) {
	t.Helper()
	c := NewClient(ClientOptions{AllowPrivate: true, TLSConfig: hs.ClientTLS(), Timeout: 5 * time.Second})
	clk := &fakeClock{t: time.Now()}
	c.now = clk.now
	return c, clk
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func TestServerKeys(t *testing.T) {
	hs := fedtest.Start(t)
	c, clk := clientFor(t, hs)
	ctx := context.Background()

	keys, err := c.ServerKeys(ctx, hs.Name)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || !keys[fedtest.KeyID].Equal(hs.Key.Public()) {
		t.Fatalf("keys = %v, want %s only", keys, fedtest.KeyID)
	}
	delete(keys, fedtest.KeyID) // callers get their own copy

	keys, err = c.ServerKeys(ctx, hs.Name)
	if err != nil || len(keys) != 1 {
		t.Fatalf("second call: %v, %v", keys, err)
	}
	if n := hs.Requests(fedtest.KeysPath); n != 1 {
		t.Fatalf("%d key requests, want 1 (cached)", n)
	}

	// valid_until_ts is now+1h: still cached at 59 minutes, refetched after.
	clk.advance(59 * time.Minute)
	if _, err := c.ServerKeys(ctx, hs.Name); err != nil {
		t.Fatal(err)
	}
	if n := hs.Requests(fedtest.KeysPath); n != 1 {
		t.Fatalf("%d key requests before expiry, want 1", n)
	}
	clk.advance(2 * time.Minute)
	if _, err := c.ServerKeys(ctx, hs.Name); err != nil {
		t.Fatal(err)
	}
	if n := hs.Requests(fedtest.KeysPath); n != 2 {
		t.Fatalf("%d key requests after expiry, want 2", n)
	}
}

func TestServerKeysCacheBounds(t *testing.T) {
	tests := []struct {
		name       string
		validUntil time.Duration // relative to now
		stillAt    time.Duration // cached at this age
		goneAt     time.Duration // refetched at this age
	}{
		{"expired response cached 5 minutes", -time.Hour, 4 * time.Minute, 6 * time.Minute},
		{"short validity raised to 5 minutes", 10 * time.Second, 4 * time.Minute, 6 * time.Minute},
		{"long validity capped at 7 days", 365 * 24 * time.Hour, 6 * 24 * time.Hour, 8 * 24 * time.Hour},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hs := fedtest.Start(t)
			hs.Handle(fedtest.KeysPath, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				writeJSON(w, hs.KeyResponse(hs.Name, time.Now().Add(tc.validUntil)))
			}))
			c, clk := clientFor(t, hs)
			for _, step := range []struct {
				at   time.Duration
				want int
			}{{0, 1}, {tc.stillAt, 1}, {tc.goneAt - tc.stillAt, 2}} {
				clk.advance(step.at)
				if _, err := c.ServerKeys(context.Background(), hs.Name); err != nil {
					t.Fatal(err)
				}
				if n := hs.Requests(fedtest.KeysPath); n != step.want {
					t.Fatalf("after +%v: %d requests, want %d", step.at, n, step.want)
				}
			}
		})
	}
}

func TestServerKeysSingleFetch(t *testing.T) {
	hs := fedtest.Start(t)
	hs.Handle(fedtest.KeysPath, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(100 * time.Millisecond)
		writeJSON(w, hs.KeyResponse(hs.Name, time.Now().Add(time.Hour)))
	}))
	c, _ := clientFor(t, hs)
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			if _, err := c.ServerKeys(context.Background(), hs.Name); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := hs.Requests(fedtest.KeysPath); n != 1 {
		t.Errorf("%d key requests for 10 concurrent callers, want 1", n)
	}
}

func TestServerKeysRejectsBadResponses(t *testing.T) {
	other, err := signing.GenerateKey("ed25519:other")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		respond func(hs *fedtest.Homeserver, w http.ResponseWriter)
		want    error
	}{
		{"wrong server_name", func(hs *fedtest.Homeserver, w http.ResponseWriter) {
			writeJSON(w, hs.KeyResponse("evil.example.com", time.Now().Add(time.Hour)))
		}, ErrInvalidResponse},
		{"tampered after signing", func(hs *fedtest.Homeserver, w http.ResponseWriter) {
			obj := hs.KeyResponse(hs.Name, time.Now().Add(time.Hour))
			obj["valid_until_ts"] = time.Now().Add(1000 * time.Hour).UnixMilli()
			writeJSON(w, obj)
		}, ErrInvalidResponse},
		{"signed by a key it does not publish", func(hs *fedtest.Homeserver, w http.ResponseWriter) {
			obj := map[string]any{
				"server_name":    hs.Name,
				"valid_until_ts": time.Now().Add(time.Hour).UnixMilli(),
				"verify_keys":    map[string]any{fedtest.KeyID: map[string]any{"key": hs.Key.PublicBase64()}},
			}
			signed, _ := signing.SignJSON(obj, hs.Name, signing.Key{ID: fedtest.KeyID, Private: other.Private})
			writeJSON(w, signed)
		}, ErrInvalidResponse},
		{"unsigned", func(hs *fedtest.Homeserver, w http.ResponseWriter) {
			obj := hs.KeyResponse(hs.Name, time.Now().Add(time.Hour))
			delete(obj, "signatures")
			writeJSON(w, obj)
		}, ErrInvalidResponse},
		{"no verify_keys", func(hs *fedtest.Homeserver, w http.ResponseWriter) {
			obj, _ := signing.SignJSON(map[string]any{"server_name": hs.Name, "verify_keys": map[string]any{}}, hs.Name, hs.Key)
			writeJSON(w, obj)
		}, ErrInvalidResponse},
		{"malformed key", func(hs *fedtest.Homeserver, w http.ResponseWriter) {
			obj := map[string]any{"server_name": hs.Name, "verify_keys": map[string]any{fedtest.KeyID: map[string]any{"key": "AAAA"}}}
			signed, _ := signing.SignJSON(obj, hs.Name, hs.Key)
			writeJSON(w, signed)
		}, ErrInvalidResponse},
		{"not JSON", func(hs *fedtest.Homeserver, w http.ResponseWriter) {
			w.Write([]byte("<html>"))
		}, ErrInvalidResponse},
		{"server error", func(hs *fedtest.Homeserver, w http.ResponseWriter) {
			w.WriteHeader(http.StatusBadGateway)
		}, ErrUnreachable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hs := fedtest.Start(t)
			hs.Handle(fedtest.KeysPath, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { tc.respond(hs, w) }))
			c, _ := clientFor(t, hs)
			_, err := c.ServerKeys(context.Background(), hs.Name)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			// Failures are not cached as keys.
			_, err = c.ServerKeys(context.Background(), hs.Name)
			if err == nil || hs.Requests(fedtest.KeysPath) != 2 {
				t.Errorf("second call: err %v, %d requests", err, hs.Requests(fedtest.KeysPath))
			}
		})
	}

	// A 404 is a StatusError but not "unreachable".
	hs := fedtest.Start(t)
	hs.Handle(fedtest.KeysPath, http.NotFoundHandler())
	c, _ := clientFor(t, hs)
	_, err = c.ServerKeys(context.Background(), hs.Name)
	var se *StatusError
	if !errors.As(err, &se) || se.StatusCode != 404 || errors.Is(err, ErrUnreachable) {
		t.Errorf("404: err = %v", err)
	}
}

func TestServerKeysUnreachable(t *testing.T) {
	hs := fedtest.Start(t)
	c, _ := clientFor(t, hs)
	hs.Stop()
	start := time.Now()
	_, err := c.ServerKeys(context.Background(), hs.Name)
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("err = %v, want ErrUnreachable", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("closed port took %v to fail", d)
	}
	if want := "fetch keys from " + hs.Name; len(err.Error()) < len(want) || err.Error()[:len(want)] != want {
		t.Errorf("error %q does not start with %q", err, want)
	}

	hs.Restart()
	keys, err := c.ServerKeys(context.Background(), hs.Name)
	if err != nil || !keys[fedtest.KeyID].Equal(hs.Key.Public()) {
		t.Fatalf("after Restart: %v, %v", keys, err)
	}

	if _, err := c.ServerKeys(context.Background(), "bad/name"); !errors.Is(err, ErrInvalidServerName) {
		t.Errorf("invalid name: %v", err)
	}
}

// Discovery end to end: a hostname delegated by .well-known, and one
// found by SRV, both reaching the fake homeserver with the right TLS name
// and Host header.
func TestServerKeysThroughDiscovery(t *testing.T) {
	e := newWellKnownEnv(t)
	hs := fedtest.Start(t)
	_, hsPort, _ := net.SplitHostPort(hs.Name)
	e.c = NewClient(ClientOptions{AllowPrivate: true, TLSConfig: hs.ClientTLS(), Timeout: 5 * time.Second})
	e.c.wellKnownPort = e.port
	e.c.lookupIP = func(_ context.Context, host string) ([]netip.Addr, error) {
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
	}
	// Both test servers use the same httptest certificate, so one trust
	// store covers the .well-known server too.
	e.c.lookupSRV = func(_ context.Context, service, proto, name string) (string, []*net.SRV, error) {
		if service == "matrix-fed" && name == "srv.example.com" {
			return "", []*net.SRV{{Target: "target.example.com.", Port: mustPort(t, hsPort)}}, nil
		}
		return "", nil, errors.New("nxdomain")
	}
	e.delegate("wk.example.com", "hs.example.com:"+hsPort)

	var hosts sync.Map
	hs.Handle(fedtest.KeysPath, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hosts.Store(r.Host, r.TLS.ServerName)
		name := "wk.example.com"
		if r.Host == "srv.example.com" {
			name = "srv.example.com"
		}
		writeJSON(w, hs.KeyResponse(name, time.Now().Add(time.Hour)))
	}))
	for _, name := range []string{"wk.example.com", "srv.example.com"} {
		keys, err := e.c.ServerKeys(context.Background(), name)
		if err != nil || !keys[fedtest.KeyID].Equal(hs.Key.Public()) {
			t.Fatalf("%s: %v, %v", name, keys, err)
		}
	}
	for host, sni := range map[string]string{"hs.example.com:" + hsPort: "hs.example.com", "srv.example.com": "srv.example.com"} {
		got, ok := hosts.Load(host)
		if !ok || got != sni {
			t.Errorf("Host %s: SNI %v (seen %v), want %s", host, got, ok, sni)
		}
	}
}

func mustPort(t *testing.T, s string) uint16 {
	t.Helper()
	var p uint16
	for _, c := range s {
		p = p*10 + uint16(c-'0')
	}
	return p
}
