package handlers_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sigil-matrix/sigil/handlers/apitest"
	"github.com/sigil-matrix/sigil/handlers/federation/fedtest"
	"github.com/sigil-matrix/sigil/store"
)

// bound reports whether medium/address is bound, and to whom.
func bound(t *testing.T, env *apitest.Env, address string) string {
	t.Helper()
	a, err := env.Store.Association(context.Background(), "email", address, time.Now().UnixMilli())
	if errors.Is(err, store.ErrNotFound) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return a.MXID
}

// validateAndBind validates address with secret and binds it to mxid; it
// returns the session.
func validateAndBind(t *testing.T, env *apitest.Env, address, secret, mxid string) string {
	t.Helper()
	sid := validate(t, env, address, secret)
	if r := env.Post(v1+"/3pid/bind", map[string]any{"sid": sid, "client_secret": secret, "mxid": mxid}); r.Status != 200 {
		t.Fatalf("bind %s: %d %s", address, r.Status, r.Body)
	}
	return sid
}

func unbindBody(mxid, address string, extra map[string]any) map[string]any {
	b := map[string]any{"mxid": mxid, "threepid": map[string]any{"medium": "email", "address": address}}
	for k, v := range extra {
		b[k] = v
	}
	return b
}

func TestUnbindWithSession(t *testing.T) {
	for _, prefix := range []string{v1, v2} {
		t.Run(prefix, func(t *testing.T) {
			env := apitest.New(t)
			sid := validateAndBind(t, env, "Una@Example.org", "secret", "@una:example.org")
			creds := map[string]any{"sid": sid, "client_secret": "secret"}
			path := prefix + "/3pid/unbind"

			refusals := []struct {
				name   string
				body   map[string]any
				status int
				code   string
			}{
				{"another address", unbindBody("@una:example.org", "other@example.org", creds), 403, "M_FORBIDDEN"},
				{"another medium", map[string]any{"mxid": "@una:example.org", "sid": sid, "client_secret": "secret",
					"threepid": map[string]any{"medium": "msisdn", "address": "una@example.org"}}, 403, "M_FORBIDDEN"},
				{"wrong secret", unbindBody("@una:example.org", "una@example.org", map[string]any{"sid": sid, "client_secret": "wrong"}), 404, "M_NO_VALID_SESSION"},
				{"unknown session", unbindBody("@una:example.org", "una@example.org", map[string]any{"sid": "nope", "client_secret": "secret"}), 404, "M_NO_VALID_SESSION"},
				{"no credentials", unbindBody("@una:example.org", "una@example.org", nil), 403, "M_FORBIDDEN"},
				{"sid without secret", unbindBody("@una:example.org", "una@example.org", map[string]any{"sid": sid}), 403, "M_FORBIDDEN"},
				{"bad mxid", unbindBody("una", "una@example.org", creds), 400, "M_INVALID_PARAM"},
			}
			for _, tt := range refusals {
				r := env.Post(path, tt.body)
				if r.Status != tt.status || r.Errcode() != tt.code {
					t.Errorf("%s: %d %s, want %d %s", tt.name, r.Status, r.Body, tt.status, tt.code)
				}
			}
			r := env.Post(path, map[string]any{"sid": sid, "client_secret": "secret"})
			if r.Status != 400 || r.Errcode() != "M_MISSING_PARAMS" {
				t.Errorf("no mxid or threepid: %d %s", r.Status, r.Body)
			}
			if got := bound(t, env, "una@example.org"); got != "@una:example.org" {
				t.Fatalf("refused unbinds changed the binding: %q", got)
			}

			// Someone else's MXID: nothing is bound to it, nothing changes.
			if r := env.Post(path, unbindBody("@mallory:example.org", "una@example.org", creds)); r.Status != 200 {
				t.Errorf("other mxid: %d %s", r.Status, r.Body)
			}
			if got := bound(t, env, "una@example.org"); got != "@una:example.org" {
				t.Fatalf("unbinding another mxid removed the binding: %q", got)
			}

			// The address in any case: email addresses are case-folded.
			r = env.Post(path, unbindBody("@una:example.org", "UNA@example.ORG", creds))
			if r.Status != 200 || strings.TrimSpace(string(r.Body)) != "{}" {
				t.Fatalf("unbind: %d %s", r.Status, r.Body)
			}
			if got := bound(t, env, "una@example.org"); got != "" {
				t.Errorf("still bound to %s", got)
			}
			if r := env.Get(v1 + "/lookup?medium=email&address=una%40example.org"); r.Status != 501 && (r.Status != 200 || r.String("mxid") != "") {
				t.Errorf("lookup after unbind: %d %s", r.Status, r.Body)
			}
			// Unbinding what is not bound is not an error.
			if r := env.Post(path, unbindBody("@una:example.org", "una@example.org", creds)); r.Status != 200 {
				t.Errorf("second unbind: %d %s", r.Status, r.Body)
			}
		})
	}
}

func TestUnbindSessionNotValidated(t *testing.T) {
	env := apitest.New(t)
	validateAndBind(t, env, "vic@example.org", "secret", "@vic:example.org")
	sid, _ := requestToken(t, env, "vic@example.org", "other", 1)
	r := env.Post(v2+"/3pid/unbind", unbindBody("@vic:example.org", "vic@example.org", map[string]any{"sid": sid, "client_secret": "other"}))
	if r.Status != 400 || r.Errcode() != "M_SESSION_NOT_VALIDATED" {
		t.Errorf("unvalidated session: %d %s", r.Status, r.Body)
	}
	if bound(t, env, "vic@example.org") == "" {
		t.Error("an unvalidated session unbound the address")
	}
}

// signedUnbind sends body to path with an X-Matrix header hs made for
// signedURI and destination over signedBody.
func signedUnbind(t *testing.T, env *apitest.Env, hs *fedtest.Homeserver, path string, body []byte, signedURI, destination string, signedBody []byte) *apitest.Response {
	t.Helper()
	return env.Do(apitest.Request{
		Method: "POST", Path: path, Body: body,
		Header: http.Header{"Authorization": {hs.SignRequest("POST", signedURI, destination, signedBody)}},
	})
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestUnbindSignedByHomeserver is Synapse's unbind on deactivation or
// /account/3pid/delete: no session, an X-Matrix signature over
// {method, uri, origin, destination_is, content}.
func TestUnbindSignedByHomeserver(t *testing.T) {
	hs := fedtest.Start(t)
	env := apitest.New(t)
	mxid := "@bob:" + hs.Name
	validateAndBind(t, env, "bob@example.org", "secret", mxid)
	validateAndBind(t, env, "bobby@example.org", "secret", mxid)
	path := v2 + "/3pid/unbind"
	good := mustJSON(t, unbindBody(mxid, "bob@example.org", nil))

	refusals := []struct {
		name            string
		path, uri, dest string
		sent, signed    []byte
		header          string // replaces the signature when set
	}{
		{name: "tampered body", path: path, uri: path, dest: apitest.ServerName,
			sent: mustJSON(t, unbindBody(mxid, "bobby@example.org", nil)), signed: good},
		{name: "signed for another URI (replay)", path: path, uri: v1 + "/3pid/unbind", dest: apitest.ServerName, sent: good, signed: good},
		{name: "signed for another identity server", path: path, uri: path, dest: "other-is.example.org", sent: good, signed: good},
		{name: "garbage header", path: path, sent: good, header: `X-Matrix origin="` + hs.Name + `",key="ed25519:fed1",sig="AAAA"`},
		{name: "unparsable header", path: path, sent: good, header: `X-Matrix nonsense`},
		{name: "unknown key", path: path, sent: good, header: strings.Replace(hs.SignRequest("POST", path, apitest.ServerName, good), fedtest.KeyID, "ed25519:other", 1)},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			var r *apitest.Response
			if tt.header != "" {
				r = env.Do(apitest.Request{Method: "POST", Path: tt.path, Body: tt.sent, Header: http.Header{"Authorization": {tt.header}}})
			} else {
				r = signedUnbind(t, env, hs, tt.path, tt.sent, tt.uri, tt.dest, tt.signed)
			}
			if r.Status != 403 || r.Errcode() != "M_FORBIDDEN" || r.String("error") != "Invalid homeserver signature" {
				t.Errorf("%d %s, want 403 M_FORBIDDEN Invalid homeserver signature", r.Status, r.Body)
			}
		})
	}

	// A valid signature, but for a user of another server.
	foreign := mustJSON(t, unbindBody("@bob:elsewhere.example.org", "bob@example.org", nil))
	if r := signedUnbind(t, env, hs, path, foreign, path, apitest.ServerName, foreign); r.Status != 403 || r.Errcode() != "M_FORBIDDEN" {
		t.Errorf("wrong origin: %d %s", r.Status, r.Body)
	}
	if bound(t, env, "bob@example.org") != mxid || bound(t, env, "bobby@example.org") != mxid {
		t.Fatal("a refused unbind removed a binding")
	}

	// The real thing, on v2 (Synapse) and v1.
	r := signedUnbind(t, env, hs, path, good, path, apitest.ServerName, good)
	if r.Status != 200 || strings.TrimSpace(string(r.Body)) != "{}" {
		t.Fatalf("signed unbind: %d %s", r.Status, r.Body)
	}
	if got := bound(t, env, "bob@example.org"); got != "" {
		t.Errorf("still bound to %s", got)
	}
	other := mustJSON(t, unbindBody(mxid, "Bobby@Example.org", nil))
	if r := signedUnbind(t, env, hs, v1+"/3pid/unbind", other, v1+"/3pid/unbind", apitest.ServerName, other); r.Status != 200 {
		t.Fatalf("signed v1 unbind: %d %s", r.Status, r.Body)
	}
	if got := bound(t, env, "bobby@example.org"); got != "" {
		t.Errorf("bobby still bound to %s", got)
	}
	// The same signed request again (nothing left to unbind) still succeeds.
	if r := signedUnbind(t, env, hs, path, good, path, apitest.ServerName, good); r.Status != 200 {
		t.Errorf("repeated signed unbind: %d %s", r.Status, r.Body)
	}
}

// A homeserver whose keys cannot be fetched gets a prompt 502 naming it,
// not a hang and not a 403 that would look like a forgery.
func TestUnbindHomeserverUnreachable(t *testing.T) {
	hs := fedtest.Start(t)
	env := apitest.New(t)
	mxid := "@carl:" + hs.Name
	validateAndBind(t, env, "carl@example.org", "secret", mxid)
	hs.Stop()

	body := mustJSON(t, unbindBody(mxid, "carl@example.org", nil))
	start := time.Now()
	r := signedUnbind(t, env, hs, v2+"/3pid/unbind", body, v2+"/3pid/unbind", apitest.ServerName, body)
	if elapsed := time.Since(start); elapsed > 3*time.Second {
		t.Errorf("took %v", elapsed)
	}
	if r.Status != 502 || r.Errcode() != "M_UNKNOWN" || !strings.Contains(r.String("error"), hs.Name) {
		t.Errorf("unreachable homeserver: %d %s", r.Status, r.Body)
	}
	if bound(t, env, "carl@example.org") != mxid {
		t.Error("binding removed without a verified signature")
	}

	// Back up: the same request goes through.
	hs.Restart()
	if r := signedUnbind(t, env, hs, v2+"/3pid/unbind", body, v2+"/3pid/unbind", apitest.ServerName, body); r.Status != 200 {
		t.Errorf("after restart: %d %s", r.Status, r.Body)
	}
	if got := bound(t, env, "carl@example.org"); got != "" {
		t.Errorf("still bound to %s", got)
	}
}
