// Binding, the signed association and the keys that sign it, lookups
// (v1, bulk, hashed v2) and unbinding by session and by X-Matrix.

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

// bind sends a bind for s to mxid at path and checks the signed association.
func (f *flow) bind(t *T, path string, s session, mxid string) map[string]any {
	resp := t.Do(Req{Method: "POST", Path: f.path(path), Token: f.tok,
		Body: map[string]any{"sid": s.sid, "client_secret": s.secret, "mxid": mxid}})
	t.Expect(resp, 200, "")
	assoc := resp.Obj()
	f.r.checkAssociation(t, assoc, s.addr, mxid)
	return assoc
}

func (f *flow) binding(ctx context.Context) {
	r := f.r
	bindOp := f.op("bind3pid", "bindV2")
	stepSub := f.stepName(f.op("emailSubmitTokenPost", "emailSubmitTokenPostV2"), caseSubmit)
	r.Case(ctx, f.op("lookupV1", "lookupV2"), "validated, not bound yet: lookup finds nothing", func(t *T) {
		t.Need(stepSub)
		f.notPublishedBeforeBind(t)
	})
	r.Step(ctx, bindOp, caseBind, func(t *T) {
		t.Need(stepSub)
		f.bind(t, "/3pid/bind", f.s, f.mxid)
	})
	if !f.a.v2 && r.strict() {
		r.Case(ctx, "bind", "the /bind alias binds the same session again", func(t *T) {
			t.Need(stepSub)
			f.bind(t, "/bind", f.s, f.mxid)
		})
	}
	r.Case(ctx, bindOp, "wrong client_secret: 404 M_NO_VALID_SESSION", func(t *T) {
		t.Need(stepSub)
		resp := t.Do(Req{Method: "POST", Path: f.path("/3pid/bind"), Token: f.tok,
			Body: map[string]any{"sid": f.s.sid, "client_secret": "wrong" + randomString(8), "mxid": f.mxid}})
		t.Expect(resp, 404, "M_NO_VALID_SESSION")
	})
}

// checkAssociation verifies a signed association: its fields, and its
// signature by the keys the server publishes.
func (r *Runner) checkAssociation(t *T, assoc map[string]any, addr, mxid string) {
	r.checkAssociationOf(t, assoc, "email", addr, mxid)
}

func (r *Runner) checkAssociationOf(t *T, assoc map[string]any, medium, addr, mxid string) {
	if assoc["medium"] != medium || assoc["address"] != addr || assoc["mxid"] != mxid {
		t.Errorf("association names %v %v %v, want %s %s %s", assoc["medium"], assoc["address"], assoc["mxid"], medium, addr, mxid)
	}
	for _, k := range []string{"ts", "not_before", "not_after"} {
		if _, err := jsonInt(assoc[k]); err != nil {
			t.Errorf("%s: %v", k, err)
		}
	}
	nb, _ := jsonInt(assoc["not_before"])
	na, _ := jsonInt(assoc["not_after"])
	ts, _ := jsonInt(assoc["ts"])
	if na <= nb || ts < nb || ts > na {
		t.Errorf("want not_before %d <= ts %d <= not_after %d, not_before < not_after", nb, ts, na)
	}
	if d := time.Since(time.UnixMilli(ts)); d > time.Hour || d < -time.Hour {
		t.Errorf("ts %d is %v away from now: not milliseconds since the epoch?", ts, d.Round(time.Second))
	}
	r.verifyServerSigned(t, assoc)
}

// verifyServerSigned checks obj's signature by the server under test,
// learning its name and fetching its published keys on first use.
func (r *Runner) verifyServerSigned(t *T, obj map[string]any) {
	sigs, _ := obj["signatures"].(map[string]any)
	if r.serverName == "" {
		if len(sigs) != 1 {
			t.Fatalf("cannot tell the server's name from signatures %v (set -server-name)", obj["signatures"])
		}
		for name := range sigs {
			r.serverName = name
		}
	}
	ent, _ := sigs[r.serverName].(map[string]any)
	if len(ent) == 0 {
		t.Fatalf("not signed by %s: signatures %v", r.serverName, obj["signatures"])
	}
	for id := range ent {
		if _, known := r.keys[id]; !known && strings.HasPrefix(id, "ed25519:") {
			r.fetchKey(t, id)
		}
	}
	if err := mxjson.VerifyJSON(obj, r.serverName, r.keys); err != nil {
		t.Fatalf("signature does not verify with the published keys (canonical JSON, ed25519): %v", err)
	}
}

func (r *Runner) fetchKey(t *T, id string) {
	resp := t.Do(Req{Method: "GET", Path: r.keyPrefix() + "/pubkey/" + url.PathEscape(id)})
	t.Expect(resp, 200, "")
	pub, err := mxjson.DecodeBase64(resp.Str("public_key"))
	if err != nil || len(pub) != ed25519.PublicKeySize {
		t.Fatalf("public key %q of %s is not unpadded base64 ed25519", resp.Str("public_key"), id)
	}
	r.keys[id] = ed25519.PublicKey(pub)
}

func (r *Runner) keyPrefix() string {
	if r.v2 {
		return apiV2.prefix
	}
	return apiV1.prefix
}

func (f *flow) keys(ctx context.Context) {
	r := f.r
	stepBind := f.stepName(f.op("bind3pid", "bindV2"), caseBind)
	pubOp, validOp := f.op("getPubKey", "getPubKeyV2"), f.op("isPubKeyValid", "isPubKeyValidV2")
	var longTerm string
	r.Case(ctx, pubOp, "the signing key of the association", func(t *T) {
		t.Need(stepBind)
		for id, want := range r.keys {
			resp := t.Do(Req{Method: "GET", Path: f.path("/pubkey/" + url.PathEscape(id))})
			t.Expect(resp, 200, "")
			if got := resp.Str("public_key"); got != mxjson.EncodeBase64(want) {
				t.Errorf("%s: public_key %q, want %q", id, got, mxjson.EncodeBase64(want))
			}
			longTerm = resp.Str("public_key")
		}
	})
	r.Case(ctx, pubOp, "unknown key ID: 404 M_NOT_FOUND", func(t *T) {
		t.Expect(t.Do(Req{Method: "GET", Path: f.path("/pubkey/ed25519:conformance" + randomString(4))}), 404, "M_NOT_FOUND")
	})
	r.Case(ctx, validOp, "the published key is valid", func(t *T) {
		t.Need(stepBind)
		if longTerm == "" {
			for _, k := range r.keys {
				longTerm = mxjson.EncodeBase64(k)
			}
		}
		f.expectValid(t, "/pubkey/isvalid", longTerm, true)
	})
	r.Case(ctx, validOp, "a random key is not valid", func(t *T) {
		f.expectValid(t, "/pubkey/isvalid", randomKey(), false)
	})
}

func (f *flow) expectValid(t *T, path, key string, want bool) {
	resp := t.Do(Req{Method: "GET", Path: f.path(path), Query: url.Values{"public_key": {key}}})
	t.Expect(resp, 200, "")
	if resp.Obj()["valid"] != want {
		t.Errorf("valid: got %s, want %v", resp, want)
	}
}

func (f *flow) lookups(ctx context.Context) {
	r := f.r
	stepBind := f.stepName(f.op("bind3pid", "bindV2"), caseBind)
	if !f.a.v2 {
		r.Case(ctx, "lookupV1", "bound address: the signed association", func(t *T) {
			t.Need(stepBind)
			resp := f.lookupV1(t, f.s.addr)
			r.checkAssociation(t, resp.Obj(), f.s.addr, f.mxid)
		})
		r.Case(ctx, "lookupV1", "unbound address: {}", func(t *T) {
			if resp := f.lookupV1(t, "nobody-"+randomString(8)+"@example.org"); len(resp.Obj()) != 0 {
				t.Errorf("want {}, got %s", resp)
			}
		})
		r.Case(ctx, "bulkLookup", "bound address listed with its mxid, unbound left out", func(t *T) {
			t.Need(stepBind)
			resp := t.Do(Req{Method: "POST", Path: f.path("/bulk_lookup"), Body: map[string]any{
				"threepids": [][]string{{"email", f.s.addr}, {"email", "nobody-" + randomString(8) + "@example.org"}}}})
			t.Expect(resp, 200, "")
			got, _ := resp.Obj()["threepids"].([]any)
			if len(got) != 1 || fmt.Sprint(got[0]) != fmt.Sprint([]any{"email", f.s.addr, f.mxid}) {
				t.Errorf("threepids %v, want [[email %s %s]]", got, f.s.addr, f.mxid)
			}
		})
		return
	}
	var pepper string
	var algorithms []any
	r.Step(ctx, "getHashDetails", "a pepper and sha256", func(t *T) {
		resp := t.Do(Req{Method: "GET", Path: f.path("/hash_details"), Token: f.tok})
		t.Expect(resp, 200, "")
		pepper = resp.Str("lookup_pepper")
		algorithms, _ = resp.Obj()["algorithms"].([]any)
		if pepper == "" || !contains(algorithms, "sha256") {
			t.Errorf("want a lookup_pepper and sha256 among the algorithms, got %s", resp)
		}
		pepperFormat(t, pepper)
	})
	r.Case(ctx, "getHashDetails", "access_token query parameter (as Synapse sends it)", func(t *T) {
		resp := t.Do(Req{Method: "GET", Path: f.path("/hash_details"), Query: url.Values{"access_token": {f.tok}}})
		t.Expect(resp, 200, "")
	})
	stepHash := "getHashDetails/a pepper and sha256"
	r.Case(ctx, "lookupV2", "sha256: the bound address maps to its mxid", func(t *T) {
		t.Need(stepHash, stepBind)
		h := mxjson.LookupHash(f.s.addr, "email", pepper)
		miss := mxjson.LookupHash("nobody-"+randomString(8)+"@example.org", "email", pepper)
		m := f.lookupV2(t, "sha256", pepper, h, miss)
		if len(m) != 1 || m[h] != f.mxid {
			t.Errorf("mappings %v, want only %s → %s", m, h, f.mxid)
		}
	})
	r.Case(ctx, "lookupV2", "none: the plain address maps to its mxid", func(t *T) {
		t.Need(stepHash, stepBind)
		if !contains(algorithms, "none") {
			t.Skipf("the server does not offer the none algorithm")
		}
		k := f.s.addr + " email"
		if m := f.lookupV2(t, "none", pepper, k); m[k] != f.mxid {
			t.Errorf("mappings %v, want %s → %s", m, k, f.mxid)
		}
	})
	r.Case(ctx, "lookupV2", "wrong pepper: 400 M_INVALID_PEPPER", func(t *T) {
		t.Need(stepHash)
		resp := t.Do(Req{Method: "POST", Path: f.path("/lookup"), Token: f.tok,
			Body: map[string]any{"algorithm": "sha256", "pepper": pepper + "x", "addresses": []string{"x"}}})
		t.Expect(resp, 400, "M_INVALID_PEPPER")
		if resp.Str("algorithm") != "sha256" || resp.Str("lookup_pepper") != pepper {
			t.Errorf("M_INVALID_PEPPER must carry the current algorithm and lookup_pepper: %s", resp)
		}
	})
	r.Case(ctx, "lookupV2", "unknown algorithm: 400 M_INVALID_PARAM", func(t *T) {
		t.Need(stepHash)
		resp := t.Do(Req{Method: "POST", Path: f.path("/lookup"), Token: f.tok,
			Body: map[string]any{"algorithm": "conformance-unknown", "pepper": pepper, "addresses": []string{"x"}}})
		t.Expect(resp, 400, "M_INVALID_PARAM")
	})
}

func (f *flow) lookupV1(t *T, addr string) *Resp { return f.lookupV1Of(t, "email", addr) }

func (f *flow) lookupV1Of(t *T, medium, addr string) *Resp {
	resp := t.Do(Req{Method: "GET", Path: f.path("/lookup"), Query: url.Values{"medium": {medium}, "address": {addr}}})
	t.Expect(resp, 200, "")
	return resp
}

func (f *flow) lookupV2(t *T, alg, pepper string, addrs ...string) map[string]any {
	resp := t.Do(Req{Method: "POST", Path: f.path("/lookup"), Token: f.tok,
		Body: map[string]any{"algorithm": alg, "pepper": pepper, "addresses": addrs}})
	t.Expect(resp, 200, "")
	m, _ := resp.Obj()["mappings"].(map[string]any)
	return m
}

// bound reports whether addr is bound to mxid, by this version's lookup.
func (f *flow) bound(t *T, addr string) bool { return f.boundOf(t, "email", addr) }

func (f *flow) boundOf(t *T, medium, addr string) bool {
	if !f.a.v2 {
		return len(f.lookupV1Of(t, medium, addr).Obj()) != 0
	}
	resp := t.Do(Req{Method: "GET", Path: f.path("/hash_details"), Token: f.tok})
	t.Expect(resp, 200, "")
	h := mxjson.LookupHash(addr, medium, resp.Str("lookup_pepper"))
	return f.lookupV2(t, "sha256", resp.Str("lookup_pepper"), h)[h] != nil
}

// boundSession validates a new address of the case's own and binds it to
// f.mxid: every unbind case unbinds (or fails to unbind) its own binding,
// so a server that wrongly accepts one unbind changes no other verdict.
func (f *flow) boundSession(t *T, label string) session {
	s := f.newSession(t, label+"-"+strings.ToLower(randomString(6)))
	t.Expect(f.submit(t, s, s.token), 200, "")
	f.bind(t, "/3pid/bind", s, f.mxid)
	return s
}

func (f *flow) unbind(ctx context.Context) {
	r := f.r
	op := f.op("unbindV1", "unbindV2")
	stepBind := f.stepName(f.op("bind3pid", "bindV2"), caseBind)
	threepid := func(addr string) map[string]any { return map[string]any{"medium": "email", "address": addr} }
	r.Case(ctx, op, "session of another 3PID: 403 M_FORBIDDEN", func(t *T) {
		t.Need(stepBind)
		own := f.boundSession(t, "unbind")
		resp := t.Do(Req{Method: "POST", Path: f.path("/3pid/unbind"), Body: map[string]any{
			"sid": own.sid, "client_secret": own.secret, "mxid": f.mxid, "threepid": threepid("other-" + randomString(6) + "@example.org")}})
		t.Expect(resp, 403, "M_FORBIDDEN")
	})
	r.Case(ctx, op, "wrong client_secret: 4xx", func(t *T) {
		t.Need(stepBind)
		own := f.boundSession(t, "unbind")
		resp := t.Do(Req{Method: "POST", Path: f.path("/3pid/unbind"), Body: map[string]any{
			"sid": own.sid, "client_secret": "wrong" + randomString(6), "mxid": f.mxid, "threepid": threepid(own.addr)}})
		t.ExpectError(resp, nil)
	})
	r.Case(ctx, op, "neither a session nor a signature: 4xx", func(t *T) {
		t.Need(stepBind)
		own := f.boundSession(t, "unbind")
		resp := t.Do(Req{Method: "POST", Path: f.path("/3pid/unbind"), Body: map[string]any{"mxid": f.mxid, "threepid": threepid(own.addr)}})
		t.ExpectError(resp, nil)
	})
	r.Case(ctx, op, "by sid and client_secret: unbound", func(t *T) {
		t.Need(stepBind)
		own := f.boundSession(t, "unbind")
		resp := t.Do(Req{Method: "POST", Path: f.path("/3pid/unbind"), Body: map[string]any{
			"sid": own.sid, "client_secret": own.secret, "mxid": f.mxid, "threepid": threepid(own.addr)}})
		t.Expect(resp, 200, "")
		if f.bound(t, own.addr) {
			t.Errorf("%s is still found by lookup after the unbind", own.addr)
		}
	})
	signed := func(t *T, body map[string]any) Req {
		raw, _ := json.Marshal(body)
		auth, err := r.cfg.Homeserver.SignRequest("POST", f.path("/3pid/unbind"), r.serverName, raw)
		if err != nil {
			t.Fatalf("sign: %v", err)
		}
		return Req{Method: "POST", Path: f.path("/3pid/unbind"), Body: raw, Header: map[string][]string{"Authorization": {auth}}}
	}
	r.Case(ctx, op, "X-Matrix with a bad signature: 401 or 403", func(t *T) {
		t.Need(stepBind)
		own := f.boundSession(t, "unbind")
		req := signed(t, map[string]any{"mxid": f.mxid, "threepid": threepid(own.addr)})
		h := req.Header.Get("Authorization")
		i := strings.Index(h, `sig="`) + len(`sig="`)
		req.Header.Set("Authorization", h[:i]+flipBase64(h[i:i+1])+h[i+1:])
		t.ExpectError(t.Do(req), []int{401, 403})
	})
	r.Case(ctx, op, "X-Matrix signed for another identity server: 401 or 403", func(t *T) {
		t.Need(stepBind)
		own := f.boundSession(t, "unbind")
		body, _ := json.Marshal(map[string]any{"mxid": f.mxid, "threepid": threepid(own.addr)})
		auth, err := r.cfg.Homeserver.SignRequest("POST", f.path("/3pid/unbind"), "other-identity.example.org", body)
		if err != nil {
			t.Fatalf("sign: %v", err)
		}
		t.ExpectError(t.Do(Req{Method: "POST", Path: f.path("/3pid/unbind"), Body: body, Header: map[string][]string{"Authorization": {auth}}}), []int{401, 403})
	})
	r.Case(ctx, op, "X-Matrix signature over another body: 401 or 403", func(t *T) {
		t.Need(stepBind)
		own := f.boundSession(t, "unbind")
		req := signed(t, map[string]any{"mxid": f.mxid, "threepid": threepid("someone-else@example.org")})
		req.Body, _ = json.Marshal(map[string]any{"mxid": f.mxid, "threepid": threepid(own.addr)})
		t.ExpectError(t.Do(req), []int{401, 403})
	})
	r.Case(ctx, op, "X-Matrix naming a key the homeserver does not publish: 401 or 403", func(t *T) {
		t.Need(stepBind)
		own := f.boundSession(t, "unbind")
		req := signed(t, map[string]any{"mxid": f.mxid, "threepid": threepid(own.addr)})
		req.Header.Set("Authorization", strings.Replace(req.Header.Get("Authorization"), HomeserverKeyID, "ed25519:unpublished", 1))
		t.ExpectError(t.Do(req), []int{401, 403})
	})
	r.Case(ctx, op, "X-Matrix for a user of another server: 403 M_FORBIDDEN", func(t *T) {
		t.Need(stepBind)
		own := f.boundSession(t, "unbind")
		t.ExpectError(t.Do(signed(t, map[string]any{"mxid": "@conf:elsewhere.example.org", "threepid": threepid(own.addr)})), []int{403}, "M_FORBIDDEN")
	})
	r.Case(ctx, op, "X-Matrix signed by the user's homeserver: unbound", func(t *T) {
		t.Need(stepBind)
		own := f.boundSession(t, "unbind")
		t.Expect(t.Do(signed(t, map[string]any{"mxid": f.mxid, "threepid": threepid(own.addr)})), 200, "")
		if f.bound(t, own.addr) {
			t.Errorf("%s is still found by lookup after the unbind", own.addr)
		}
	})
}
