package handlers_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/sigil-matrix/sigil/handlers/apitest"
	"github.com/sigil-matrix/sigil/handlers/federation/fedtest"
	"github.com/sigil-matrix/sigil/handlers/signing"
)

// dendrite sends a request the way Dendrite v0.13.8 does: v1 only, form
// bodies, no auth, gzip accepted, one of its two User-Agents.
func dendrite(t *testing.T, env *apitest.Env, method, path string, form url.Values, ua string) *apitest.Response {
	t.Helper()
	req := apitest.Request{Method: method, Path: path, Header: http.Header{
		"User-Agent": {ua}, "Accept-Encoding": {"gzip"},
	}}
	if form != nil {
		req.Body = form
	}
	r := env.Do(req)
	if r.Header.Get("Content-Encoding") != "" {
		t.Errorf("%s %s: answered with Content-Encoding %q", method, path, r.Header.Get("Content-Encoding"))
	}
	return r
}

const (
	dendriteDefaultUA = "Go-http-client/2.0" // http.DefaultClient: lookup, store-invite, pubkey
	dendriteFedUA     = "Dendrite/0.13.8"    // fclient: requestToken, getValidated3pid, bind
)

// exactFields decodes an object and checks it has exactly the given keys.
func exactFields(t *testing.T, what string, body []byte, want ...string) map[string]any {
	t.Helper()
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("%s: %v: %s", what, err, body)
	}
	got := keys(m)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("%s: fields %v, want exactly %v", what, got, want)
	}
	return m
}

// TestDendriteInviteAndBind replays homeservers.md §1.1: Dendrite invites
// an unbound email address, the invitee adds and binds it, and the
// identity server hands the invite to Dendrite with onbind. Each answer is
// checked against what Dendrite requires of it (§1.2).
func TestDendriteInviteAndBind(t *testing.T) {
	hs := fedtest.Start(t) // stands in for Dendrite's federation listener
	env := apitest.New(t, fastOnBind)
	const (
		bob    = "bobd1795712439@example.org"
		alice  = "@aliced1795712439:localhost:8448"
		room   = "!9am4bonQprd8kfpV:localhost:8448"
		secret = "secretd1795712439"
	)
	bobMXID := "@bobd1795712439:" + hs.Name

	// #1 lookup of the unbound address: 200 {} (no mxid) sends Dendrite to
	// store-invite.
	r := dendrite(t, env, "GET", v1+"/lookup?medium=email&address="+url.QueryEscape(bob), nil, dendriteDefaultUA)
	if r.Status == http.StatusNotImplemented {
		t.Log("lookup not implemented yet: step #1 not checked")
	} else if r.Status != 200 || len(r.JSON()) != 0 {
		t.Errorf("#1 lookup: %d %s, want 200 {}", r.Status, r.Body)
	}

	// #2 store-invite, form-encoded.
	r = dendrite(t, env, "POST", v1+"/store-invite", url.Values{
		"address": {bob}, "medium": {"email"}, "room_id": {room}, "sender": {alice}, "sender_display_name": {"aliced1795712439"},
	}, dendriteDefaultUA)
	if r.Status != 200 {
		t.Fatalf("#2 store-invite: %d %s", r.Status, r.Body)
	}
	inv := exactFields(t, "#2 store-invite", r.Body, "display_name", "public_key", "public_keys", "token")
	token, _ := inv["token"].(string)
	publicKey, _ := inv["public_key"].(string)
	if token == "" || publicKey != env.Key.PublicBase64() || inv["display_name"] == "" {
		t.Errorf("#2 store-invite: %s", r.Body)
	}
	pks, _ := inv["public_keys"].([]any)
	if len(pks) == 0 {
		t.Fatalf("#2 store-invite: no public_keys")
	}
	for i, pk := range pks {
		m, _ := pk.(map[string]any)
		if m["public_key"] == "" || m["key_validity_url"] == "" || len(m) != 2 {
			t.Errorf("#2 public_keys[%d] = %v", i, pk)
		}
	}
	if first := pks[0].(map[string]any); first["public_key"] != publicKey {
		t.Errorf("#2 public_keys[0] %v is not public_key %s", first, publicKey)
	}
	// Dendrite puts public_key(s) into m.room.third_party_invite; the onbind
	// signed block must verify against them.
	eventKey, err := signing.DecodeBase64(publicKey)
	if err != nil {
		t.Fatal(err)
	}

	// #5 requestToken, form-encoded: 200 {sid} or the client gets a 500.
	before := len(env.Mail.Messages())
	r = dendrite(t, env, "POST", v1+"/validate/email/requestToken", url.Values{
		"client_secret": {secret}, "email": {bob}, "send_attempt": {"1"},
	}, dendriteFedUA)
	sid := r.String("sid")
	if r.Status != 200 || sid == "" {
		t.Fatalf("#5 requestToken: %d %s", r.Status, r.Body)
	}

	// Before the link is clicked, getValidated3pid must carry exactly
	// M_SESSION_NOT_VALIDATED (Dendrite reads the errcode, not the status).
	validated := v1 + "/3pid/getValidated3pid?sid=" + url.QueryEscape(sid) + "&client_secret=" + secret
	if r := dendrite(t, env, "GET", validated, nil, dendriteFedUA); r.Errcode() != "M_SESSION_NOT_VALIDATED" {
		t.Errorf("getValidated3pid before validation: %d %s", r.Status, r.Body)
	}

	// Bob clicks the link in the mail.
	msgs := env.Mail.WaitFor(t, before+1, 5*time.Second)
	raw := linkRE.FindString(msgs[len(msgs)-1].Text)
	link, err := url.Parse(raw)
	if raw == "" || err != nil {
		t.Fatalf("no validation link in:\n%s", msgs[len(msgs)-1].Text)
	}
	if r := env.Get(link.RequestURI()); r.Status != 200 {
		t.Fatalf("submitToken link: %d %s", r.Status, r.Body)
	}

	// #6 getValidated3pid: address and medium, no errcode.
	r = dendrite(t, env, "GET", validated, nil, dendriteFedUA)
	got := exactFields(t, "#6 getValidated3pid", r.Body, "address", "medium", "validated_at")
	if r.Status != 200 || got["address"] != bob || got["medium"] != "email" {
		t.Errorf("#6 getValidated3pid: %d %s", r.Status, r.Body)
	}
	if at, err := got["validated_at"].(json.Number).Int64(); err != nil || at < time.Now().Add(-time.Minute).UnixMilli() {
		t.Errorf("#6 validated_at %v", got["validated_at"])
	}

	// #7 bind, form-encoded: Dendrite checks only the 200, but the body is
	// the signed association, exactly.
	r = dendrite(t, env, "POST", v1+"/3pid/bind", url.Values{
		"client_secret": {secret}, "mxid": {bobMXID}, "sid": {sid},
	}, dendriteFedUA)
	if r.Status != 200 {
		t.Fatalf("#7 bind: %d %s", r.Status, r.Body)
	}
	assoc := exactFields(t, "#7 bind", r.Body, "address", "medium", "mxid", "not_after", "not_before", "signatures", "ts")
	if assoc["address"] != bob || assoc["medium"] != "email" || assoc["mxid"] != bobMXID {
		t.Errorf("#7 bind: %s", r.Body)
	}
	longTerm := map[string]ed25519.PublicKey{env.Key.ID: env.Key.Public()}
	if err := signing.VerifyJSON(assoc, apitest.ServerName, longTerm); err != nil {
		t.Errorf("#7 bind signature: %v", err)
	}

	// #8 onbind to Dendrite: the invite, with a signed block that verifies
	// against the key in the room's m.room.third_party_invite event.
	onbinds := hs.WaitOnBinds(t, 1, 5*time.Second)
	if tokens := checkOnBind(t, onbinds[0], bob, bobMXID, env.Key); !slices.Equal(tokens, []string{token}) {
		t.Errorf("#8 onbind tokens %v, want [%s]", tokens, token)
	}
	var body struct {
		Invites []struct {
			RoomID string         `json:"room_id"`
			Sender string         `json:"sender"`
			Signed map[string]any `json:"signed"`
		} `json:"invites"`
	}
	if err := json.Unmarshal(onbinds[0], &body); err != nil || len(body.Invites) != 1 {
		t.Fatalf("#8 onbind: %s", onbinds[0])
	}
	if body.Invites[0].RoomID != room || body.Invites[0].Sender != alice {
		t.Errorf("#8 onbind invite room %q sender %q", body.Invites[0].RoomID, body.Invites[0].Sender)
	}
	if err := signing.VerifyJSON(body.Invites[0].Signed, apitest.ServerName, map[string]ed25519.PublicKey{"ed25519:0": eventKey}); err != nil {
		t.Errorf("#8 signed block against the event's public_key: %v", err)
	}

	// #12 lookup of the now bound address, #13 pubkey: Dendrite requires
	// not_before <= now <= not_after, a signature under the id_server, and
	// fetches each signing key by ID (literal colon in the path).
	r = dendrite(t, env, "GET", v1+"/lookup?medium=email&address="+url.QueryEscape(bob), nil, dendriteDefaultUA)
	if r.Status == http.StatusNotImplemented {
		t.Log("lookup not implemented yet: step #12 not checked")
		return
	}
	found := exactFields(t, "#12 lookup", r.Body, "address", "medium", "mxid", "not_after", "not_before", "signatures", "ts")
	now := time.Now().UnixMilli()
	nb, _ := found["not_before"].(json.Number).Int64()
	na, _ := found["not_after"].(json.Number).Int64()
	if r.Status != 200 || found["mxid"] != bobMXID || nb > now || na < now {
		t.Errorf("#12 lookup: %d %s", r.Status, r.Body)
	}
	sigs, _ := found["signatures"].(map[string]any)[apitest.ServerName].(map[string]any)
	if len(sigs) == 0 {
		t.Fatalf("#12 lookup: no signature under %s", apitest.ServerName)
	}
	for keyID := range sigs {
		r := dendrite(t, env, "GET", v1+"/pubkey/"+keyID, nil, dendriteDefaultUA)
		if r.Status == http.StatusNotImplemented {
			t.Log("pubkey not implemented yet: step #13 not checked")
			return
		}
		exactFields(t, "#13 pubkey", r.Body, "public_key")
		pub, err := signing.DecodeBase64(r.String("public_key"))
		if r.Status != 200 || err != nil {
			t.Fatalf("#13 pubkey/%s: %d %s", keyID, r.Status, r.Body)
		}
		if err := signing.VerifyJSON(found, apitest.ServerName, map[string]ed25519.PublicKey{keyID: pub}); err != nil {
			t.Errorf("#12 lookup signature with pubkey/%s: %v", keyID, err)
		}
	}
}
