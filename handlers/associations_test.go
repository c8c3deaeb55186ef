package handlers_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"testing"
	"time"

	"github.com/sigil-matrix/sigil/handlers/apitest"
	"github.com/sigil-matrix/sigil/handlers/signing"
)

func TestBindReturnsSignedAssociation(t *testing.T) {
	for _, path := range []string{v1 + "/bind", v1 + "/3pid/bind"} {
		t.Run(path, func(t *testing.T) {
			env := apitest.New(t)
			sid := validate(t, env, "Ivan@Example.org", "secret")
			before := time.Now().UnixMilli()
			r := env.Post(path, map[string]any{"sid": sid, "client_secret": "secret", "mxid": "@ivan:example.org"})
			if r.Status != 200 {
				t.Fatalf("bind: %d %s", r.Status, r.Body)
			}
			var got map[string]any
			dec := json.NewDecoder(bytesReader(r.Body))
			dec.UseNumber()
			if err := dec.Decode(&got); err != nil {
				t.Fatal(err)
			}
			// Dendrite re-marshals exactly these fields before verifying.
			want := []string{"address", "medium", "mxid", "not_after", "not_before", "signatures", "ts"}
			if len(got) != len(want) {
				t.Errorf("fields %v, want exactly %v", keys(got), want)
			}
			if got["address"] != "ivan@example.org" || got["medium"] != "email" || got["mxid"] != "@ivan:example.org" {
				t.Errorf("association %v", got)
			}
			ts, _ := got["ts"].(json.Number).Int64()
			nb, _ := got["not_before"].(json.Number).Int64()
			na, _ := got["not_after"].(json.Number).Int64()
			if ts < before || nb > ts || na <= ts+int64(365*24*time.Hour/time.Millisecond) {
				t.Errorf("ts %d not_before %d not_after %d", ts, nb, na)
			}
			sigs := got["signatures"].(map[string]any)[apitest.ServerName].(map[string]any)
			if _, ok := sigs["ed25519:0"]; !ok || len(sigs) != 1 {
				t.Errorf("signatures %v, want one under ed25519:0", sigs)
			}
			keys := map[string]ed25519.PublicKey{env.Key.ID: env.Key.Public()}
			if err := signing.VerifyJSON(got, apitest.ServerName, keys); err != nil {
				t.Errorf("signature does not verify with the server key: %v", err)
			}
			got["mxid"] = "@mallory:example.org"
			if signing.VerifyJSON(got, apitest.ServerName, keys) == nil {
				t.Error("a tampered association still verifies")
			}
			// Stored, and findable the way lookups find it.
			a, err := env.Store.Association(context.Background(), "email", "ivan@example.org", time.Now().UnixMilli())
			if err != nil || a.MXID != "@ivan:example.org" || a.LookupHash == "" {
				t.Errorf("stored association %+v, %v", a, err)
			}
		})
	}
}

func TestBindRefusals(t *testing.T) {
	env := apitest.New(t)
	sid, _ := requestToken(t, env, "judy@example.org", "secret", 1)
	tests := []struct {
		name   string
		body   map[string]any
		status int
		code   string
	}{
		{"not validated", map[string]any{"sid": sid, "client_secret": "secret", "mxid": "@judy:example.org"}, 400, "M_SESSION_NOT_VALIDATED"},
		{"unknown session", map[string]any{"sid": "nope", "client_secret": "secret", "mxid": "@judy:example.org"}, 404, "M_NO_VALID_SESSION"},
		{"wrong secret", map[string]any{"sid": sid, "client_secret": "wrong", "mxid": "@judy:example.org"}, 404, "M_NO_VALID_SESSION"},
	}
	for _, tt := range tests {
		r := env.Post(v1+"/3pid/bind", tt.body)
		if r.Status != tt.status || r.Errcode() != tt.code {
			t.Errorf("%s: %d %s, want %d %s", tt.name, r.Status, r.Body, tt.status, tt.code)
		}
	}
	sid = validate(t, env, "judy2@example.org", "secret")
	r := env.Post(v1+"/3pid/bind", map[string]any{"sid": sid, "client_secret": "secret", "mxid": "judy"})
	if r.Status != 400 || r.Errcode() != "M_INVALID_PARAM" {
		t.Errorf("bad mxid: %d %s", r.Status, r.Body)
	}
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
