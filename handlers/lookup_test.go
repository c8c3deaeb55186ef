package handlers_test

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sigil-matrix/sigil/handlers/apitest"
	"github.com/sigil-matrix/sigil/handlers/signing"
	"github.com/sigil-matrix/sigil/store"
)

// bindEmail validates and binds an address to mxid through the API.
func bindEmail(t *testing.T, env *apitest.Env, email, mxid string) {
	t.Helper()
	sid := validate(t, env, email, "secret")
	if r := env.Post(v1+"/3pid/bind", map[string]any{"sid": sid, "client_secret": "secret", "mxid": mxid}); r.Status != 200 {
		t.Fatalf("bind %s: %d %s", email, r.Status, r.Body)
	}
}

func TestLookupV1(t *testing.T) {
	env := apitest.New(t)
	bindEmail(t, env, "Mia@Example.org", "@mia:example.org")

	for _, addr := range []string{"mia@example.org", "MIA@EXAMPLE.ORG", "Mia@Example.org"} {
		r := env.Get(v1 + "/lookup?medium=email&address=" + url.QueryEscape(addr))
		if r.Status != 200 || r.String("mxid") != "@mia:example.org" || r.String("address") != "mia@example.org" {
			t.Fatalf("lookup %s: %d %s", addr, r.Status, r.Body)
		}
		keys := map[string]ed25519.PublicKey{env.Key.ID: env.Key.Public()}
		if err := signing.VerifyJSON(r.JSON(), apitest.ServerName, keys); err != nil {
			t.Errorf("lookup answer does not verify: %v", err)
		}
	}
	r := env.Get(v1 + "/lookup?medium=email&address=nobody%40example.org")
	if r.Status != 200 || string(r.Body) != "{}\n" && string(r.Body) != "{}" {
		t.Errorf("unbound: %d %q", r.Status, r.Body)
	}
	r = env.Get(v1 + "/lookup?medium=email")
	if r.Status != 400 || r.Errcode() != "M_MISSING_PARAMS" {
		t.Errorf("no address: %d %s", r.Status, r.Body)
	}
	// Outside the validity window a binding is not returned.
	env.Clock.Advance(101 * 365 * 24 * time.Hour)
	if r := env.Get(v1 + "/lookup?medium=email&address=mia%40example.org"); r.String("mxid") != "" {
		t.Errorf("expired binding returned: %s", r.Body)
	}
}

func TestBulkLookup(t *testing.T) {
	env := apitest.New(t, func(s *apitest.Setup) { s.Config.MaxLookupAddresses = 50 })
	bindEmail(t, env, "nia@example.org", "@nia:example.org")
	bindEmail(t, env, "oli@example.org", "@oli:example.org")
	r := env.Post(v1+"/bulk_lookup", map[string]any{"threepids": [][]string{
		{"email", "NIA@example.org"}, {"email", "nobody@example.org"}, {"msisdn", "447700900123"}, {"email", "oli@example.org"},
	}})
	if r.Status != 200 {
		t.Fatalf("bulk_lookup: %d %s", r.Status, r.Body)
	}
	got := r.JSON()["threepids"].([]any)
	want := [][]string{{"email", "NIA@example.org", "@nia:example.org"}, {"email", "oli@example.org", "@oli:example.org"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("threepids %v, want %v", got, want)
	}
	many := make([][]string, 51)
	for i := range many {
		many[i] = []string{"email", fmt.Sprintf("u%d@example.org", i)}
	}
	r = env.Post(v1+"/bulk_lookup", map[string]any{"threepids": many})
	if r.Status != 400 || r.Errcode() != "M_TOO_LARGE" {
		t.Errorf("over the cap: %d %s", r.Status, r.Body)
	}
	r = env.Post(v1+"/bulk_lookup", map[string]any{"threepids": [][]string{{"email"}}})
	if r.Status != 400 || r.Errcode() != "M_INVALID_PARAM" {
		t.Errorf("a one-item tuple: %d %s", r.Status, r.Body)
	}
}

func TestKeysAndStatus(t *testing.T) {
	env := apitest.New(t)
	for _, prefix := range []string{v1, v2} {
		r := env.Get(prefix + "/pubkey/ed25519:0")
		if r.Status != 200 || r.String("public_key") != env.Key.PublicBase64() {
			t.Errorf("%s pubkey: %d %s", prefix, r.Status, r.Body)
		}
		if r := env.Get(prefix + "/pubkey/ed25519:9"); r.Status != 404 || r.Errcode() != "M_NOT_FOUND" {
			t.Errorf("%s unknown key: %d %s", prefix, r.Status, r.Body)
		}
		r = env.Get(prefix + "/pubkey/isvalid?public_key=" + url.QueryEscape(env.Key.PublicBase64()))
		if r.JSON()["valid"] != true {
			t.Errorf("%s isvalid: %s", prefix, r.Body)
		}
		if r := env.Get(prefix + "/pubkey/isvalid?public_key=AAAA"); r.JSON()["valid"] != false {
			t.Errorf("%s isvalid of another key: %s", prefix, r.Body)
		}
		if r := env.Get(prefix + "/pubkey/ephemeral/isvalid?public_key=AAAA"); r.JSON()["valid"] != false {
			t.Errorf("%s ephemeral isvalid of an unknown key: %s", prefix, r.Body)
		}
	}
	inv := storeInvite(t, env, "pat@example.org")
	eph := inv.JSON()["public_keys"].([]any)[1].(map[string]any)["public_key"].(string)
	if r := env.Get(v1 + "/pubkey/ephemeral/isvalid?public_key=" + url.QueryEscape(eph)); r.JSON()["valid"] != true {
		t.Errorf("ephemeral key of a stored invite: %s", r.Body)
	}
	for _, p := range []string{"/_matrix/identity/api/v1", "/_matrix/identity/v2"} {
		if r := env.Get(p); r.Status != 200 || string(r.Body) != "{}\n" {
			t.Errorf("status %s: %d %q", p, r.Status, r.Body)
		}
	}
	r := env.Get("/_matrix/identity/versions")
	if vs, _ := r.JSON()["versions"].([]any); r.Status != 200 || len(vs) == 0 {
		t.Errorf("versions: %d %s", r.Status, r.Body)
	}
}

func TestV1CanBeSwitchedOff(t *testing.T) {
	env := apitest.New(t, func(s *apitest.Setup) { s.HTTP.DisableV1 = true })
	for _, p := range []string{v1, v1 + "/lookup?medium=email&address=a%40b.c", v1 + "/pubkey/ed25519:0"} {
		if r := env.Get(p); r.Status != 404 || r.Errcode() != "M_UNRECOGNIZED" {
			t.Errorf("%s with v1 off: %d %s", p, r.Status, r.Body)
		}
	}
	if r := env.Get(v2 + "/pubkey/ed25519:0"); r.Status != 200 {
		t.Errorf("v2 with v1 off: %d", r.Status)
	}
	// The link a mail carries is opened in a browser: refused as a page.
	r := env.Get(v1 + "/validate/email/submitToken?sid=1&client_secret=s&token=t")
	if ct := r.Header.Get("Content-Type"); r.Status != 404 || !strings.HasPrefix(ct, "text/html") {
		t.Errorf("v1 submitToken link with v1 off: %d %s %s", r.Status, ct, r.Body)
	}
}

// The parameter fast path (spec/validate/simpleparams.go) accepts only
// what kin-openapi accepts: every other case is refused as before.
func TestLookupParametersFastPathRefusesWhatValidationRefuses(t *testing.T) {
	env := apitest.New(t)
	long := strings.Repeat("a", 321)
	tests := []struct {
		query  string
		status int
	}{
		{"medium=email&address=nobody%40example.org", 200},
		{"medium=email", 400},
		{"address=nobody%40example.org", 400},
		{"medium=email&address=" + long, 400},
		{"medium=email&address=" + strings.Repeat("é", 320), 200},
		{"medium=email&address=%FF", 400},
		{"medium=email&address=a%40b.org&extra=%FF", 400},
	}
	for _, tt := range tests {
		r := env.Get(v1 + "/lookup?" + tt.query)
		if r.Status != tt.status {
			t.Errorf("%.60s: %d %s, want %d", tt.query, r.Status, r.Body, tt.status)
		}
	}
}

// TestBulkLookupEscapedAddresses sends addresses written with JSON escapes
// and raw UTF-8 through the whole stack: the hand decoder
// (lookupdecode.go) must give the addresses encoding/json would, and the
// hand encoder (lookupencode.go) must write them back as sent, escaped
// where JSON needs it.
func TestBulkLookupEscapedAddresses(t *testing.T) {
	env := apitest.New(t)
	now := env.Clock.Now()
	bound := map[string]string{ // canonical address: MXID
		"zoë@例え.jp":             "@zoe:example.org",
		`"a\"b\c"@example.org`:  "@quoted:example.org",
		"😀@example.org":         "@smile:example.org",
		"a/b@example.org":       "@slash:example.org",
		"tab\there@example.org": "@tab:example.org",
		"plain@example.org":     "@plain:example.org",
	}
	var as []store.Association
	for addr, mxid := range bound {
		as = append(as, store.Association{Medium: "email", Address: addr, MXID: mxid,
			TS: now.UnixMilli(), NotBefore: now.UnixMilli(), NotAfter: now.Add(time.Hour).UnixMilli(),
			Signed: []byte(`{}`)})
	}
	if err := env.Store.InsertAssociations(t.Context(), as); err != nil {
		t.Fatal(err)
	}
	body := ` { "threepids" : [
		["email", "zo\u00eb@\u4f8b\u3048.jp"],
		["email","ZOË@例え.JP"],
		["email", "\"a\\\"b\\c\"@example.org"],
		["\u0065mail", "\ud83d\ude00@example.org"],
		["email", "a\/b@example.org"],
		["email", "tab\there@example.org"],
		["email", "\ud83d@example.org"],
		["email", "nobody@example.org"],
		["email", "plain@example.org"]
	], "extra": {"ignored": [1, "x"]} } `
	r := env.Post(v1+"/bulk_lookup", body)
	if r.Status != 200 {
		t.Fatalf("bulk_lookup: %d %s", r.Status, r.Body)
	}
	var got struct{ Threepids [][]string }
	if err := json.Unmarshal(r.Body, &got); err != nil {
		t.Fatalf("answer %s: %v", r.Body, err)
	}
	want := [][]string{
		{"email", "zoë@例え.jp", "@zoe:example.org"},
		{"email", "ZOË@例え.JP", "@zoe:example.org"},
		{"email", `"a\"b\c"@example.org`, "@quoted:example.org"},
		{"email", "😀@example.org", "@smile:example.org"},
		{"email", "a/b@example.org", "@slash:example.org"},
		{"email", "tab\there@example.org", "@tab:example.org"},
		{"email", "plain@example.org", "@plain:example.org"},
	}
	if !reflect.DeepEqual(got.Threepids, want) {
		t.Errorf("threepids\n%q\nwant\n%q", got.Threepids, want)
	}
	if cl := r.Header.Get("Content-Length"); cl != strconv.Itoa(len(r.Body)) {
		t.Errorf("Content-Length %q for %d bytes", cl, len(r.Body))
	}
}
