package handlers_test

import (
	"crypto/ed25519"
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/sigil-matrix/sigil/handlers/apitest"
	"github.com/sigil-matrix/sigil/handlers/federation/fedtest"
	"github.com/sigil-matrix/sigil/handlers/signing"
)

// TestSynapseSequence replays what Synapse 1.160 sends, in order
// (../shared/reference/homeservers.md §2.1), and checks each answer against
// what Synapse needs (§2.2).
func TestSynapseSequence(t *testing.T) {
	hs := fedtest.Start(t) // plays Synapse's federation side: OpenID, keys, onbind
	env := apitest.New(t)
	alice := register(t, env, hs, "alices")
	bob := register(t, env, hs, "bobs")
	bobID := "@bobs:" + hs.Name
	synapse := func(method, path, tok string, body any) *apitest.Response {
		t.Helper()
		h := http.Header{"Accept": {"application/json"}, "User-Agent": {"Synapse/1.160.0"}}
		if tok != "" {
			h.Set("Authorization", "Bearer "+tok)
		}
		return env.Do(apitest.Request{Method: method, Path: path, Header: h, Body: body})
	}

	// #1 hash_details with the token in the query string, no header.
	r := synapse("GET", v2+"/hash_details?access_token="+url.QueryEscape(alice), "", nil)
	pepper := r.String("lookup_pepper")
	if r.Status != 200 || pepper == "" || len(toStrings(r.JSON()["algorithms"])) == 0 {
		t.Fatalf("#1 hash_details: %d %s", r.Status, r.Body)
	}
	// #2 sha256 lookup of an unbound address.
	bobAddr := "bobs1795712446@example.org"
	r = synapse("POST", v2+"/lookup", alice, map[string]any{
		"addresses": []string{signing.LookupHash(bobAddr, "email", pepper)}, "algorithm": "sha256", "pepper": pepper,
	})
	if m, ok := r.JSON()["mappings"].(map[string]any); r.Status != 200 || !ok || len(m) != 0 {
		t.Fatalf("#2 lookup: %d %s", r.Status, r.Body)
	}
	// #3 store-invite, with Synapse's empty display fields.
	r = synapse("POST", v2+"/store-invite", alice, map[string]any{
		"address": bobAddr, "medium": "email", "room_alias": "", "room_avatar_url": "",
		"room_id": "!FIKFNkuMRRhLsyVUdv:" + hs.Name, "room_join_rules": "invite", "room_name": "3pid test",
		"sender": "@alices:" + hs.Name, "sender_avatar_url": "", "sender_display_name": "alices1795712446",
	})
	if r.Status != 200 || r.String("token") == "" || r.String("display_name") == "" || r.String("public_key") == "" {
		t.Fatalf("#3 store-invite: %d %s", r.Status, r.Body)
	}
	token := r.String("token")
	pks := r.JSON()["public_keys"].([]any)
	longTerm := pks[0].(map[string]any)
	if longTerm["key_validity_url"] != env.URL+v2+"/pubkey/isvalid" {
		t.Errorf("#3 key_validity_url %v", longTerm["key_validity_url"])
	}
	env.Mail.WaitFor(t, 1, 5*time.Second)

	// The client validates at the IS (v2, Bearer), then Synapse binds (#5).
	r = synapse("POST", v2+"/validate/email/requestToken", bob, map[string]any{"client_secret": "secrets1795712446", "email": bobAddr, "send_attempt": 1})
	sid := r.String("sid")
	msgs := env.Mail.WaitFor(t, 2, 5*time.Second)
	link, _ := url.Parse(linkRE.FindString(msgs[1].Text))
	if r := synapse("POST", v2+"/validate/email/submitToken", bob, map[string]any{"sid": sid, "client_secret": "secrets1795712446", "token": link.Query().Get("token")}); r.Status != 200 {
		t.Fatalf("submitToken: %d %s", r.Status, r.Body)
	}
	r = synapse("POST", v2+"/3pid/bind", bob, map[string]any{"client_secret": "secrets1795712446", "mxid": bobID, "sid": sid})
	if r.Status != 200 || r.String("medium") != "email" || r.String("address") != bobAddr {
		t.Fatalf("#5 bind: Synapse needs medium and address: %d %s", r.Status, r.Body)
	}

	// #7 onbind reaches the homeserver, with the invite's signed block.
	ob := hs.WaitOnBinds(t, 1, 10*time.Second)[0]
	var payload struct {
		MXID    string `json:"mxid"`
		Invites []struct {
			Token  string         `json:"token"`
			Signed map[string]any `json:"signed"`
		} `json:"invites"`
	}
	if err := json.Unmarshal(ob, &payload); err != nil || payload.MXID != bobID || len(payload.Invites) != 1 || payload.Invites[0].Signed["token"] != token {
		t.Fatalf("#7 onbind %s (%v)", ob, err)
	}
	if err := signing.VerifyJSON(payload.Invites[0].Signed, apitest.ServerName, map[string]ed25519.PublicKey{env.Key.ID: env.Key.Public()}); err != nil {
		t.Errorf("#7 signed block: %v", err)
	}
	// #6 while handling it, Synapse checks the key_validity_url.
	r = synapse("GET", v2+"/pubkey/isvalid?public_key="+url.QueryEscape(longTerm["public_key"].(string)), "", nil)
	if r.JSON()["valid"] != true {
		t.Errorf("#6 isvalid: %d %s", r.Status, r.Body)
	}

	// #10/#11 invite for a bound address: the lookup now maps it.
	r = synapse("GET", v2+"/hash_details?access_token="+url.QueryEscape(alice), "", nil)
	h := signing.LookupHash(bobAddr, "email", r.String("lookup_pepper"))
	r = synapse("POST", v2+"/lookup", alice, map[string]any{"addresses": []string{h}, "algorithm": "sha256", "pepper": r.String("lookup_pepper")})
	if m, _ := r.JSON()["mappings"].(map[string]any); m[h] != bobID {
		t.Fatalf("#11 lookup: %d %s", r.Status, r.Body)
	}

	// #12 unbind signed by the homeserver, destination_is = our name.
	body := map[string]any{"mxid": bobID, "threepid": map[string]any{"address": bobAddr, "medium": "email"}}
	raw, _ := json.Marshal(body)
	auth := hs.SignRequest("POST", v2+"/3pid/unbind", apitest.ServerName, raw)
	r = env.Do(apitest.Request{Method: "POST", Path: v2 + "/3pid/unbind", Body: raw, Header: http.Header{
		"Authorization": {auth}, "User-Agent": {"Synapse/1.160.0"},
	}})
	if r.Status != 200 {
		t.Fatalf("#12 unbind: %d %s (Synapse reports anything but 200 as failure)", r.Status, r.Body)
	}
	r = synapse("POST", v2+"/lookup", alice, map[string]any{"addresses": []string{h}, "algorithm": "sha256", "pepper": pepper})
	if m, _ := r.JSON()["mappings"].(map[string]any); len(m) != 0 {
		t.Errorf("still bound after unbind: %s", r.Body)
	}
}
