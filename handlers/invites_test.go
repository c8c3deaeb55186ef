package handlers_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/sigil-matrix/sigil/handlers/apitest"
	"github.com/sigil-matrix/sigil/handlers/signing"
)

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

func storeInvite(t *testing.T, env *apitest.Env, address string) *apitest.Response {
	t.Helper()
	return env.Post(v1+"/store-invite", map[string]any{
		"medium": "email", "address": address, "room_id": "!room:example.org", "sender": "@alice:example.org",
		"room_name": "Tea & <Biscuits>", "sender_display_name": "Alice", "org.matrix.web_client_location": "https://app.element.io",
	})
}

func TestStoreInvite(t *testing.T) {
	env := apitest.New(t)
	r := storeInvite(t, env, "Kim@Example.org")
	if r.Status != 200 {
		t.Fatalf("store-invite: %d %s", r.Status, r.Body)
	}
	body := r.JSON()
	token := r.String("token")
	if len(token) < 16 || r.String("display_name") != "k...@exa..." {
		t.Errorf("token %q display_name %q", token, r.String("display_name"))
	}
	pks, _ := body["public_keys"].([]any)
	if len(pks) != 2 {
		t.Fatalf("public_keys %v", body["public_keys"])
	}
	long, eph := pks[0].(map[string]any), pks[1].(map[string]any)
	if long["public_key"] != env.Key.PublicBase64() || body["public_key"] != env.Key.PublicBase64() {
		t.Errorf("long-term key %v / %v, want %s", long["public_key"], body["public_key"], env.Key.PublicBase64())
	}
	if long["key_validity_url"] != env.URL+v1+"/pubkey/isvalid" || eph["key_validity_url"] != env.URL+v1+"/pubkey/ephemeral/isvalid" {
		t.Errorf("key_validity_urls %v, %v", long["key_validity_url"], eph["key_validity_url"])
	}

	// Persisted, with its ephemeral key.
	inv, err := env.Store.InviteByToken(context.Background(), token)
	if err != nil || inv.Address != "kim@example.org" || inv.Sender != "@alice:example.org" || inv.EphemeralPublicKey != eph["public_key"] {
		t.Fatalf("stored invite %+v, %v", inv, err)
	}
	if ok, _ := env.Store.EphemeralKeyValid(context.Background(), inv.EphemeralPublicKey); !ok {
		t.Error("ephemeral key not valid")
	}

	// The invitee is mailed, with the room and sender, escaped in HTML.
	m := env.Mail.WaitFor(t, 1, 5*time.Second)[0]
	if m.To[0] != "kim@example.org" || !strings.Contains(m.Text, "Alice") || !strings.Contains(m.Text, "Tea & <Biscuits>") {
		t.Errorf("invite mail to %v:\n%s", m.To, m.Text)
	}
	if strings.Contains(m.HTML, "<Biscuits>") || !strings.Contains(m.HTML, "&lt;Biscuits&gt;") {
		t.Errorf("room name not escaped in HTML:\n%s", m.HTML)
	}

	// sign-ed25519 with the ephemeral private key: the signature verifies
	// against the ephemeral public key homeservers were given.
	r = env.Post(v1+"/sign-ed25519", map[string]any{"mxid": "@kim:example.org", "token": token, "private_key": inv.EphemeralPrivateKey})
	if r.Status != 200 {
		t.Fatalf("sign-ed25519: %d %s", r.Status, r.Body)
	}
	signed := r.JSON()
	if signed["mxid"] != "@kim:example.org" || signed["sender"] != "@alice:example.org" || signed["token"] != token {
		t.Errorf("signed %v", signed)
	}
	pub, err := signing.DecodeBase64(inv.EphemeralPublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := signing.VerifyJSON(signed, apitest.ServerName, map[string]ed25519.PublicKey{"ed25519:0": pub}); err != nil {
		t.Errorf("sign-ed25519 signature: %v", err)
	}

	r = env.Post(v1+"/sign-ed25519", map[string]any{"mxid": "@kim:example.org", "token": "unknown", "private_key": inv.EphemeralPrivateKey})
	if r.Status != 404 || r.Errcode() != "M_UNRECOGNIZED" {
		t.Errorf("unknown token: %d %s", r.Status, r.Body)
	}
	r = env.Post(v1+"/sign-ed25519", map[string]any{"mxid": "@kim:example.org", "token": token, "private_key": "!!"})
	if r.Status != 400 || r.Errcode() != "M_INVALID_PARAM" {
		t.Errorf("bad key: %d %s", r.Status, r.Body)
	}
}

func TestStoreInviteRefusals(t *testing.T) {
	env := apitest.New(t)
	sid := validate(t, env, "leo@example.org", "secret")
	if r := env.Post(v1+"/3pid/bind", map[string]any{"sid": sid, "client_secret": "secret", "mxid": "@leo:example.org"}); r.Status != 200 {
		t.Fatalf("bind: %d %s", r.Status, r.Body)
	}
	r := storeInvite(t, env, "LEO@example.org")
	if r.Status != 400 || r.Errcode() != "M_THREEPID_IN_USE" || r.String("mxid") != "@leo:example.org" {
		t.Errorf("bound address: %d %s", r.Status, r.Body)
	}
	r = env.Post(v1+"/store-invite", map[string]any{"medium": "msisdn", "address": "447700900123", "room_id": "!r:example.org", "sender": "@a:example.org"})
	if r.Status != 400 || r.Errcode() != "M_UNRECOGNIZED" {
		t.Errorf("msisdn invite: %d %s", r.Status, r.Body)
	}
	r = env.Post(v1+"/store-invite", map[string]any{"medium": "email", "room_id": "!r:example.org"})
	if r.Status != 400 || r.Errcode() != "M_MISSING_PARAMS" || !strings.Contains(r.String("error"), "address, sender") {
		t.Errorf("missing fields: %d %s", r.Status, r.Body)
	}
}
