package federation

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sigil-matrix/sigil/handlers/federation/fedtest"
)

func TestUserIDServer(t *testing.T) {
	tests := []struct {
		id, server string
		ok         bool
	}{
		{"@alice:example.org", "example.org", true},
		{"@alice:localhost:8449", "localhost:8449", true},
		{"@a:[::1]:8448", "[::1]:8448", true},
		{"@alice:1.2.3.4", "1.2.3.4", true},
		{"alice:example.org", "", false},
		{"@:example.org", "", false},
		{"@alice", "", false},
		{"@alice:", "", false},
		{"@alice:exa mple.org", "", false},
		{"@alice:example.org/x", "", false},
	}
	for _, tc := range tests {
		s, ok := UserIDServer(tc.id)
		if s != tc.server || ok != tc.ok {
			t.Errorf("UserIDServer(%q) = %q, %v; want %q, %v", tc.id, s, ok, tc.server, tc.ok)
		}
	}
}

func TestOpenIDUserInfo(t *testing.T) {
	hs := fedtest.Start(t)
	c, _ := clientFor(t, hs)
	hs.AddOpenIDToken("tok-alice", "alice")
	hs.AddOpenIDToken("a+b/c=&d e", "weird")
	hs.AddOpenIDTokenSub("tok-foreign", "@mallory:matrix.org")
	hs.AddOpenIDTokenSub("tok-lookalike", "@mallory:"+hs.Name+".evil.example")
	hs.AddOpenIDTokenSub("tok-notid", "mallory")

	tests := []struct {
		token string
		sub   string
		want  error
	}{
		{"tok-alice", "@alice:" + hs.Name, nil},
		{"a+b/c=&d e", "@weird:" + hs.Name, nil},
		{"tok-unknown", "", ErrUnknownToken},
		{"", "", ErrUnknownToken},
		{"tok-foreign", "", ErrInvalidResponse},
		{"tok-lookalike", "", ErrInvalidResponse},
		{"tok-notid", "", ErrInvalidResponse},
	}
	for _, tc := range tests {
		t.Run(tc.token, func(t *testing.T) {
			sub, err := c.OpenIDUserInfo(context.Background(), hs.Name, tc.token)
			if sub != tc.sub || !errors.Is(err, tc.want) {
				t.Fatalf("OpenIDUserInfo = %q, %v; want %q, %v", sub, err, tc.sub, tc.want)
			}
			if err != nil && !strings.HasPrefix(err.Error(), "openid userinfo from "+hs.Name+": ") {
				t.Errorf("error %q does not name the server", err)
			}
		})
	}

	if _, err := c.OpenIDUserInfo(context.Background(), "evil.example/x", "tok"); !errors.Is(err, ErrInvalidServerName) {
		t.Errorf("invalid server name: %v", err)
	}

	hs.Handle(fedtest.UserInfoPath, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
	}))
	if _, err := c.OpenIDUserInfo(context.Background(), hs.Name, "tok-alice"); !errors.Is(err, ErrUnreachable) {
		t.Errorf("500: err = %v, want ErrUnreachable", err)
	}
	hs.Handle(fedtest.UserInfoPath, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"sub":42}`))
	}))
	if _, err := c.OpenIDUserInfo(context.Background(), hs.Name, "tok-alice"); !errors.Is(err, ErrInvalidResponse) {
		t.Errorf("non-string sub: err = %v, want ErrInvalidResponse", err)
	}
	hs.Handle(fedtest.UserInfoPath, nil)

	hs.Stop()
	start := time.Now()
	if _, err := c.OpenIDUserInfo(context.Background(), hs.Name, "tok-alice"); !errors.Is(err, ErrUnreachable) {
		t.Errorf("stopped server: err = %v, want ErrUnreachable", err)
	}
	if time.Since(start) > 2*time.Second {
		t.Errorf("stopped server took %v", time.Since(start))
	}
}

func TestOnBind(t *testing.T) {
	hs := fedtest.Start(t)
	c, _ := clientFor(t, hs)
	mxid := "@bob:" + hs.Name
	payload := map[string]any{
		"medium": "email", "address": "bob@example.org", "mxid": mxid,
		"invites": []any{map[string]any{
			"medium": "email", "address": "bob@example.org", "mxid": mxid,
			"room_id": "!r:" + hs.Name, "sender": "@alice:" + hs.Name, "token": "t1",
			"signed": map[string]any{"mxid": mxid, "token": "t1", "signatures": map[string]any{}},
		}},
	}
	server, _ := UserIDServer(mxid)

	if err := c.OnBind(context.Background(), server, payload); err != nil {
		t.Fatal(err)
	}
	got := hs.WaitOnBinds(t, 1, time.Second)
	var back map[string]any
	if err := json.Unmarshal(got[0], &back); err != nil || back["mxid"] != mxid || len(back["invites"].([]any)) != 1 {
		t.Fatalf("recorded onbind = %s (%v)", got[0], err)
	}

	// Raw JSON payloads are sent as they are.
	raw := json.RawMessage(`{"medium":"email","address":"x@example.org","mxid":"` + mxid + `","invites":[]}`)
	if err := c.OnBind(context.Background(), server, raw); err != nil {
		t.Fatal(err)
	}
	if got := hs.WaitOnBinds(t, 2, time.Second); string(got[1]) != string(raw) {
		t.Errorf("raw payload arrived as %s", got[1])
	}

	tests := []struct {
		name        string
		status      int
		unreachable bool
	}{
		{"service unavailable", http.StatusServiceUnavailable, true},
		{"internal error", http.StatusInternalServerError, true},
		{"forbidden", http.StatusForbidden, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hs.SetOnBindStatus(tc.status)
			defer hs.SetOnBindStatus(0)
			err := c.OnBind(context.Background(), server, payload)
			var se *StatusError
			if !errors.As(err, &se) || se.StatusCode != tc.status {
				t.Fatalf("err = %v, want StatusError %d", err, tc.status)
			}
			if errors.Is(err, ErrUnreachable) != tc.unreachable {
				t.Errorf("errors.Is(ErrUnreachable) = %v", !tc.unreachable)
			}
			if !strings.HasPrefix(err.Error(), "onbind to "+hs.Name+": ") || !strings.Contains(err.Error(), "HTTP "+strconv.Itoa(tc.status)) {
				t.Errorf("error %q lacks target or status", err)
			}
		})
	}

	// Synapse refuses invites without "signed".
	bad := json.RawMessage(`{"mxid":"` + mxid + `","invites":[{"mxid":"` + mxid + `"}]}`)
	var se *StatusError
	if err := c.OnBind(context.Background(), server, bad); !errors.As(err, &se) || se.StatusCode != 400 {
		t.Errorf("missing signed: err = %v, want 400", err)
	}
	if err := c.OnBind(context.Background(), server, json.RawMessage(`{`)); err == nil {
		t.Error("invalid JSON payload accepted")
	}

	// Down, then back on the same address.
	hs.Stop()
	start := time.Now()
	if err := c.OnBind(context.Background(), server, payload); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("stopped: err = %v, want ErrUnreachable", err)
	}
	if time.Since(start) > 2*time.Second {
		t.Errorf("stopped server took %v", time.Since(start))
	}
	hs.Restart()
	if err := c.OnBind(context.Background(), server, payload); err != nil {
		t.Fatalf("after restart: %v", err)
	}
	if n := len(hs.WaitOnBinds(t, 3, time.Second)); n != 3 {
		t.Errorf("%d onbinds recorded, want 3", n)
	}
}

// Regression: the OpenID token travels in the query string; a failed call
// must not carry it into errors, which are logged.
func TestOpenIDTokenNotInErrors(t *testing.T) {
	c := NewClient(ClientOptions{AllowPrivate: true, Timeout: time.Second})
	_, err := c.OpenIDUserInfo(context.Background(), "127.0.0.1:1", "s3cr3t-openid-token")
	if err == nil || strings.Contains(err.Error(), "s3cr3t") {
		t.Fatalf("error %v", err)
	}
}
