// Third-party invites: store-invite, its ephemeral key, sign-ed25519 and
// the onbind callback to the homeserver when the address is bound.

package conformance

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/sigil-matrix/sigil/cmd/sigil-conformance/internal/mxjson"
)

func (f *flow) invites(ctx context.Context) {
	r := f.r
	storeOp, signOp, ephOp := f.op("storeInvite", "storeInviteV2"), f.op("blindlySignStuff", "blindlySignStuffV2"), f.op("isEphemeralPubKeyValid", "isEphemeralPubKeyValidV2")
	sender := "@conf-" + r.run + "-inviter:" + r.cfg.Homeserver.Name
	if f.a.v2 {
		sender = f.mxid // v2: the token's own user
	}
	f.invitee = session{addr: fmt.Sprintf("conf-%s-%s-b@example.org", r.run, f.a.name), secret: "conf-" + randomString(12)}
	r.Step(ctx, storeOp, caseStore, func(t *T) {
		resp := t.Do(Req{Method: "POST", Path: f.path("/store-invite"), Token: f.tok, Body: map[string]any{
			"medium": "email", "address": f.invitee.addr, "room_id": "!conf" + r.run + ":" + r.cfg.Homeserver.Name,
			"sender": sender, "room_name": "Conformance <&> \u2028 Room", "sender_display_name": "Conformance Runner",
		}})
		t.Expect(resp, 200, "")
		f.inviteToken = resp.Str("token")
		if f.inviteToken == "" {
			t.Errorf("no token")
		}
		if dn := resp.Str("display_name"); strings.Contains(dn, f.invitee.addr) {
			t.Errorf("display_name %q is not redacted", dn)
		}
		keys, _ := resp.Obj()["public_keys"].([]any)
		for _, k := range keys {
			pk, _ := k.(string)
			if m, ok := k.(map[string]any); ok {
				pk, _ = m["public_key"].(string)
			}
			if !f.isLongTerm(pk) {
				f.ephemeral = pk
			}
		}
		if len(keys) != 2 || f.ephemeral == "" {
			t.Errorf("public_keys %v: want the long-term and an ephemeral key", keys)
		}
		f.keyValidityURLs(t, keys)
		if pk, ok := resp.Obj()["public_key"].(string); ok && !f.isLongTerm(pk) {
			t.Errorf("public_key %q is not the server's long-term key", pk)
		}
	})
	stepStore := f.stepName(storeOp, caseStore)
	r.Case(ctx, storeOp, "the invitee is mailed", func(t *T) {
		t.Need(stepStore)
		f.r.waitMail(t, f.invitee.addr, 1)
	})
	r.Case(ctx, ephOp, "the invite's ephemeral key is valid", func(t *T) {
		t.Need(stepStore)
		f.expectValid(t, "/pubkey/ephemeral/isvalid", f.ephemeral, true)
	})
	r.Case(ctx, ephOp, "a random key is not valid", func(t *T) {
		f.expectValid(t, "/pubkey/ephemeral/isvalid", randomKey(), false)
	})
	r.Case(ctx, storeOp, "address already bound: 400 M_THREEPID_IN_USE naming the mxid", func(t *T) {
		t.Need(f.stepName(f.op("bind3pid", "bindV2"), caseBind))
		resp := t.Do(Req{Method: "POST", Path: f.path("/store-invite"), Token: f.tok, Body: map[string]any{
			"medium": "email", "address": f.s.addr, "room_id": "!conf:" + r.cfg.Homeserver.Name, "sender": sender}})
		t.Expect(resp, 400, "M_THREEPID_IN_USE")
		if resp.Str("mxid") != f.mxid {
			t.Errorf("mxid %q, want %q", resp.Str("mxid"), f.mxid)
		}
	})
	r.Case(ctx, storeOp, "medium other than email: 400 M_UNRECOGNIZED", func(t *T) {
		resp := t.Do(Req{Method: "POST", Path: f.path("/store-invite"), Token: f.tok, Body: map[string]any{
			"medium": "msisdn", "address": "447700900123", "room_id": "!conf:" + r.cfg.Homeserver.Name, "sender": sender}})
		t.Expect(resp, 400, "M_UNRECOGNIZED")
	})
	r.Case(ctx, signOp, "signs {mxid, sender, token} with the given key", func(t *T) {
		t.Need(stepStore)
		f.signInvite(t, "@conf-"+r.run+"-invitee:"+r.cfg.Homeserver.Name, sender)
	})
	r.Case(ctx, signOp, "canonical JSON: non-ASCII, <>& and U+2028 in the signed mxid", func(t *T) {
		t.Need(stepStore)
		f.signInvite(t, "@conf-ünï<&>\u2028/"+r.run+":example.org", sender)
	})
	r.Case(ctx, signOp, "unknown token: 404 M_UNRECOGNIZED", func(t *T) {
		_, seed := newKey()
		resp := t.Do(Req{Method: "POST", Path: f.path("/sign-ed25519"), Token: f.tok, Body: map[string]any{
			"mxid": "@x:example.org", "token": "unknown" + randomString(10), "private_key": seed}})
		t.Expect(resp, 404, "M_UNRECOGNIZED")
	})
	r.Case(ctx, signOp, "private_key that is not a key: 4xx", func(t *T) {
		t.Need(stepStore)
		resp := t.Do(Req{Method: "POST", Path: f.path("/sign-ed25519"), Token: f.tok, Body: map[string]any{
			"mxid": "@x:example.org", "token": f.inviteToken, "private_key": "not a key!"}})
		t.ExpectError(resp, nil)
	})
	r.Step(ctx, storeOp, caseOnbindSes, func(t *T) {
		t.Need(stepStore)
		// The invite's mail comes first: the validation token is in the next.
		f.r.waitMail(t, f.invitee.addr, 1)
		f.invitee.mails = f.r.mailCount(f.invitee.addr)
		f.requestToken(t, &f.invitee, 1)
		f.readToken(t, &f.invitee)
		t.Expect(f.submit(t, f.invitee, f.invitee.token), 200, "")
		before := len(r.cfg.Homeserver.OnBinds())
		f.inviteeAssoc = f.bind(t, "/3pid/bind", f.invitee, f.mxid)
		f.r.checkOnBind(t, before, f.invitee.addr, f.mxid, f.inviteToken, sender)
	})
	r.Case(ctx, f.op("bind3pid", "bindV2"), "no invites in the bind answer (pending invite tokens go by onbind only)", func(t *T) {
		t.Need(f.stepName(storeOp, caseOnbindSes))
		f.noInvitesIn(t, f.inviteeAssoc)
	})
}

func (f *flow) isLongTerm(pk string) bool {
	for _, k := range f.r.keys {
		if mxjson.EncodeBase64(k) == pk {
			return true
		}
	}
	return false
}

func (f *flow) signInvite(t *T, mxid, sender string) {
	pub, seed := newKey()
	resp := t.Do(Req{Method: "POST", Path: f.path("/sign-ed25519"), Token: f.tok, Body: map[string]any{
		"mxid": mxid, "token": f.inviteToken, "private_key": seed}})
	if resp.Status == 400 && resp.Errcode() == "M_INVALID_PARAM" && strings.Contains(mxid, "\u2028") {
		t.Skipf("the server refuses this user ID: %s", resp)
	}
	t.Expect(resp, 200, "")
	obj := resp.Obj()
	if obj["mxid"] != mxid || obj["sender"] != sender || obj["token"] != f.inviteToken {
		t.Errorf("signed %s, want mxid %q sender %q token %q", resp, mxid, sender, f.inviteToken)
	}
	sigs, _ := obj["signatures"].(map[string]any)
	if _, ok := sigs[f.r.serverName]; f.r.serverName != "" && !ok {
		t.Errorf("not signed as the server (%s): %v", f.r.serverName, obj["signatures"])
	}
	verified := false
	for entity, e := range sigs {
		em, _ := e.(map[string]any)
		keys := map[string]ed25519.PublicKey{}
		for id := range em {
			keys[id] = pub
		}
		if err := mxjson.VerifyJSON(obj, entity, keys); err != nil {
			t.Errorf("signature of %s does not verify with the given key: %v", entity, err)
		} else {
			verified = true
		}
	}
	if !verified {
		t.Errorf("no signature in %s", resp)
	}
}

// checkOnBind waits for the onbind of addr and checks its signed invite.
func (r *Runner) checkOnBind(t *T, before int, addr, mxid, token, sender string) {
	deadline := time.Now().Add(r.cfg.MailTimeout)
	for {
		for _, raw := range r.cfg.Homeserver.OnBinds()[before:] {
			var body struct {
				Address string           `json:"address"`
				MXID    string           `json:"mxid"`
				Invites []map[string]any `json:"invites"`
			}
			if json.Unmarshal(raw, &body) != nil || body.Address != addr {
				continue
			}
			if body.MXID != mxid || len(body.Invites) != 1 {
				t.Fatalf("onbind %s: want mxid %s and one invite", short(string(raw), 400), mxid)
			}
			inv := body.Invites[0]
			if inv["sender"] != sender || inv["mxid"] != mxid || inv["medium"] != "email" || inv["address"] != addr {
				t.Errorf("invite %v: want medium email, address %s, sender %s, mxid %s", inv, addr, sender, mxid)
			}
			if room, _ := inv["room_id"].(string); !strings.HasPrefix(room, "!") {
				t.Errorf("invite %v: no room_id", inv)
			}
			signed, _ := inv["signed"].(map[string]any)
			if signed["mxid"] != mxid || signed["token"] != token {
				t.Errorf("signed %v: want mxid %s token %s", signed, mxid, token)
			}
			r.verifyServerSigned(t, signed)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no onbind for %s at the homeserver after %v", addr, r.cfg.MailTimeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// keyValidityURLs: each key_validity_url store-invite returns must say its
// key is valid (followed only when it is on the base URL: the runner talks
// to nothing else).
func (f *flow) keyValidityURLs(t *T, keys []any) {
	for _, k := range keys {
		m, ok := k.(map[string]any)
		if !ok {
			continue // v1's old shape: bare keys
		}
		pk, _ := m["public_key"].(string)
		u, _ := m["key_validity_url"].(string)
		rest, found := strings.CutPrefix(u, f.r.cfg.BaseURL)
		if !found {
			continue
		}
		pu, err := url.Parse(rest)
		if err != nil || !strings.HasSuffix(pu.Path, "isvalid") {
			t.Errorf("key_validity_url %q is not an isvalid endpoint", u)
			continue
		}
		resp := t.Do(Req{Method: "GET", Path: pu.Path, Query: url.Values{"public_key": {pk}}})
		t.Expect(resp, 200, "")
		if resp.Obj()["valid"] != true {
			t.Errorf("%s says %s is not valid: %s", u, pk, resp)
		}
	}
}

// noInvitesIn: the bind answer is the signed association and nothing more
// (v2_associations.yaml); the pending invites and their tokens go to the
// homeserver by onbind only. A server that returns them to the client
// leaks other users' invite tokens (the inviter's secret for the room).
func (f *flow) noInvitesIn(t *T, assoc map[string]any) {
	if inv, ok := assoc["invites"]; ok {
		t.Errorf("the bind answer carries invites %v: pending invites go to the homeserver only (onbind)", short(fmt.Sprint(inv), 200))
	}
	if raw, _ := json.Marshal(assoc); f.inviteToken != "" && strings.Contains(string(raw), f.inviteToken) {
		t.Errorf("the bind answer carries the pending invite's token %s", f.inviteToken)
	}
}
