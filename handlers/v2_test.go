package handlers_test

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sigil-matrix/sigil/handlers/apitest"
	"github.com/sigil-matrix/sigil/handlers/federation"
	"github.com/sigil-matrix/sigil/handlers/federation/fedtest"
	"github.com/sigil-matrix/sigil/handlers/identity"
	"github.com/sigil-matrix/sigil/handlers/signing"
)

const v2 = "/_matrix/identity/v2"

func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

// register gets an identity-server token for localpart on hs.
func register(t *testing.T, env *apitest.Env, hs *fedtest.Homeserver, localpart string) string {
	t.Helper()
	openID := "oid_" + localpart
	hs.AddOpenIDToken(openID, localpart)
	r := env.Post(v2+"/account/register", map[string]any{
		"access_token": openID, "token_type": "Bearer", "matrix_server_name": hs.Name, "expires_in": 3600,
	})
	if r.Status != 200 || r.String("token") == "" || r.String("token") != r.String("access_token") {
		t.Fatalf("register: %d %s", r.Status, r.Body)
	}
	return r.String("token")
}

func TestAccounts(t *testing.T) {
	hs := fedtest.Start(t)
	env := apitest.New(t)
	tok := register(t, env, hs, "alice")

	r := env.Do(apitest.Request{Method: "GET", Path: v2 + "/account", Header: bearer(tok)})
	if r.Status != 200 || r.String("user_id") != "@alice:"+hs.Name {
		t.Fatalf("account: %d %s", r.Status, r.Body)
	}
	if r := env.Get(v2 + "/account"); r.Status != 401 || r.Errcode() != "M_UNAUTHORIZED" {
		t.Errorf("no token: %d %s", r.Status, r.Body)
	}
	if r := env.Do(apitest.Request{Method: "GET", Path: v2 + "/account", Header: bearer("nope")}); r.Status != 401 || r.Errcode() != "M_UNAUTHORIZED" {
		t.Errorf("unknown token: %d %s", r.Status, r.Body)
	}
	r = env.Do(apitest.Request{Method: "POST", Path: v2 + "/account/logout", Header: bearer(tok)})
	if r.Status != 200 {
		t.Fatalf("logout: %d %s", r.Status, r.Body)
	}
	if r := env.Do(apitest.Request{Method: "GET", Path: v2 + "/account", Header: bearer(tok)}); r.Status != 401 {
		t.Errorf("token still works after logout: %d", r.Status)
	}
	if r := env.Do(apitest.Request{Method: "POST", Path: v2 + "/account/logout", Header: bearer(tok)}); r.Status != 401 || r.Errcode() != "M_UNKNOWN_TOKEN" {
		t.Errorf("second logout: %d %s", r.Status, r.Body)
	}
	// The token is stored hashed.
	if _, err := env.Store.AccountByTokenHash(t.Context(), tok); err == nil {
		t.Error("the token is stored in the clear")
	}
}

func TestRegisterRefusals(t *testing.T) {
	hs := fedtest.Start(t)
	other := fedtest.Start(t)
	env := apitest.New(t, func(s *apitest.Setup) { s.Config.RegisterAllowedServers = []string{hs.Name} })
	// A homeserver vouching for a user of another server.
	hs.AddOpenIDTokenSub("liar", "@mallory:"+other.Name)
	tests := []struct {
		name   string
		body   map[string]any
		status int
		code   string
	}{
		{"unknown OpenID token", map[string]any{"access_token": "nope", "token_type": "Bearer", "matrix_server_name": hs.Name, "expires_in": 60}, 401, "M_UNKNOWN_TOKEN"},
		{"invalid server name", map[string]any{"access_token": "x", "token_type": "Bearer", "matrix_server_name": "evil.example/path", "expires_in": 60}, 400, "M_INVALID_PARAM"},
		{"server not allowed", map[string]any{"access_token": "x", "token_type": "Bearer", "matrix_server_name": other.Name, "expires_in": 60}, 403, "M_FORBIDDEN"},
		{"foreign sub", map[string]any{"access_token": "liar", "token_type": "Bearer", "matrix_server_name": hs.Name, "expires_in": 60}, 502, "M_UNKNOWN"},
		{"missing fields", map[string]any{"access_token": "x"}, 400, "M_MISSING_PARAMS"},
	}
	for _, tt := range tests {
		r := env.Post(v2+"/account/register", tt.body)
		if r.Status != tt.status || r.Errcode() != tt.code {
			t.Errorf("%s: %d %s, want %d %s", tt.name, r.Status, r.Body, tt.status, tt.code)
		}
	}
}

func TestRegisterRefusesPrivateAddressesByDefault(t *testing.T) {
	hs := fedtest.Start(t)
	env := apitest.New(t, func(s *apitest.Setup) {
		s.Federation = federationClient(false)
	})
	hs.AddOpenIDToken("tok", "alice")
	r := env.Post(v2+"/account/register", map[string]any{"access_token": "tok", "token_type": "Bearer", "matrix_server_name": hs.Name, "expires_in": 60})
	if hs.Requests("/_matrix/federation/v1/openid/userinfo") != 0 {
		t.Errorf("loopback homeserver contacted without permission: %d %s", r.Status, r.Body)
	}
	// A refusal by policy is the client's to fix: a 4xx naming the reason.
	if r.Status != 403 || r.Errcode() != "M_FORBIDDEN" || !strings.Contains(r.String("error"), "private") {
		t.Errorf("refused by policy: %d %s, want 403 M_FORBIDDEN naming the reason", r.Status, r.Body)
	}
}

func TestTerms(t *testing.T) {
	hs := fedtest.Start(t)
	terms := []identity.Policy{
		{ID: "privacy", Version: "1.0", Languages: map[string]identity.PolicyDoc{
			"en": {Name: "Privacy", URL: "https://id.example/privacy-1.0-en"},
			"fr": {Name: "Confidentialité", URL: "https://id.example/privacy-1.0-fr"},
		}},
		{ID: "tos", Version: "2.0", Languages: map[string]identity.PolicyDoc{
			"en": {Name: "Terms", URL: "https://id.example/tos-2.0-en"},
		}},
	}
	env := apitest.New(t, func(s *apitest.Setup) { s.Config.Terms = terms })
	tok := register(t, env, hs, "bob")
	account := func() *apitest.Response {
		return env.Do(apitest.Request{Method: "GET", Path: v2 + "/account", Header: bearer(tok)})
	}
	accept := func(urls ...string) {
		t.Helper()
		r := env.Do(apitest.Request{Method: "POST", Path: v2 + "/terms", Header: bearer(tok), Body: map[string]any{"user_accepts": urls}})
		if r.Status != 200 {
			t.Fatalf("accept: %d %s", r.Status, r.Body)
		}
	}

	r := env.Get(v2 + "/terms")
	pol := r.JSON()["policies"].(map[string]any)
	if r.Status != 200 || pol["privacy"].(map[string]any)["version"] != "1.0" ||
		pol["privacy"].(map[string]any)["fr"].(map[string]any)["url"] != "https://id.example/privacy-1.0-fr" {
		t.Fatalf("GET terms: %d %s", r.Status, r.Body)
	}
	if r := account(); r.Status != 403 || r.Errcode() != "M_TERMS_NOT_SIGNED" {
		t.Fatalf("nothing accepted: %d %s", r.Status, r.Body)
	}
	accept("https://id.example/privacy-1.0-fr") // one language is enough for that policy
	if r := account(); r.Status != 403 {
		t.Fatalf("one of two policies accepted: %d %s", r.Status, r.Body)
	}
	accept("https://id.example/tos-2.0-en", "https://elsewhere.example/unknown")
	if r := account(); r.Status != 200 {
		t.Fatalf("all accepted: %d %s", r.Status, r.Body)
	}

	// A new version must be accepted again.
	terms[1].Version = "3.0"
	terms[1].Languages = map[string]identity.PolicyDoc{"en": {Name: "Terms", URL: "https://id.example/tos-3.0-en"}}
	env2 := apitest.New(t, func(s *apitest.Setup) { s.Config.Terms = terms; s.DSN = env.DSN })
	r = env2.Do(apitest.Request{Method: "GET", Path: v2 + "/account", Header: bearer(tok)})
	if r.Status != 403 || r.Errcode() != "M_TERMS_NOT_SIGNED" {
		t.Fatalf("after a new version: %d %s", r.Status, r.Body)
	}
	// Logging out needs no terms.
	if r := env2.Do(apitest.Request{Method: "POST", Path: v2 + "/account/logout", Header: bearer(tok)}); r.Status != 200 {
		t.Errorf("logout with unsigned terms: %d %s", r.Status, r.Body)
	}
}

func TestHashedLookup(t *testing.T) {
	hs := fedtest.Start(t)
	env := apitest.New(t)
	bindEmail(t, env, "Quinn@Example.org", "@quinn:example.org")
	tok := register(t, env, hs, "carol")

	// Synapse sends the token in the query string here.
	r := env.Get(v2 + "/hash_details?access_token=" + url.QueryEscape(tok))
	pepper := r.String("lookup_pepper")
	if r.Status != 200 || pepper == "" || strings.Join(toStrings(r.JSON()["algorithms"]), ",") != "none,sha256" {
		t.Fatalf("hash_details: %d %s", r.Status, r.Body)
	}
	if r := env.Get(v2 + "/hash_details"); r.Status != 401 {
		t.Errorf("hash_details without a token: %d", r.Status)
	}
	hash := signing.LookupHash("quinn@example.org", "email", pepper)
	miss := signing.LookupHash("nobody@example.org", "email", pepper)
	lookup := func(body map[string]any) *apitest.Response {
		return env.Do(apitest.Request{Method: "POST", Path: v2 + "/lookup", Header: bearer(tok), Body: body})
	}
	r = lookup(map[string]any{"algorithm": "sha256", "pepper": pepper, "addresses": []string{hash, miss}})
	m, _ := r.JSON()["mappings"].(map[string]any)
	if r.Status != 200 || len(m) != 1 || m[hash] != "@quinn:example.org" {
		t.Fatalf("sha256 lookup: %d %s", r.Status, r.Body)
	}
	r = lookup(map[string]any{"algorithm": "none", "pepper": pepper, "addresses": []string{"quinn@example.org email", "x@example.org email"}})
	if m, _ := r.JSON()["mappings"].(map[string]any); r.Status != 200 || len(m) != 1 || m["quinn@example.org email"] != "@quinn:example.org" {
		t.Fatalf("none lookup: %d %s", r.Status, r.Body)
	}
	// An address asked twice is one mapping: the answer's object has no
	// repeated key (decoders would keep one; the bytes must not repeat).
	for _, tt := range []struct{ algorithm, addr, miss string }{
		{"sha256", hash, miss},
		{"none", "quinn@example.org email", "x@example.org email"},
	} {
		r = lookup(map[string]any{"algorithm": tt.algorithm, "pepper": pepper, "addresses": []string{tt.addr, tt.miss, tt.addr}})
		if n := strings.Count(string(r.Body), `"`+tt.addr+`"`); r.Status != 200 || n != 1 {
			t.Errorf("%s lookup of a repeated address: %d, %d times in %s", tt.algorithm, r.Status, n, r.Body)
		}
	}
	r = lookup(map[string]any{"algorithm": "sha256", "pepper": "stale", "addresses": []string{hash}})
	if r.Status != 400 || r.Errcode() != "M_INVALID_PEPPER" || r.String("lookup_pepper") != pepper || r.String("algorithm") != "sha256" {
		t.Errorf("wrong pepper: %d %s", r.Status, r.Body)
	}
	r = lookup(map[string]any{"algorithm": "md5", "pepper": pepper, "addresses": []string{hash}})
	if r.Status != 400 || r.Errcode() != "M_INVALID_PARAM" {
		t.Errorf("unknown algorithm: %d %s", r.Status, r.Body)
	}

	// Rotation: the old pepper is refused, every stored hash follows.
	n, err := env.Identity.RotatePepper(t.Context(), "newpepper42")
	if err != nil || n != 1 {
		t.Fatalf("rotate: %d %v", n, err)
	}
	if r := lookup(map[string]any{"algorithm": "sha256", "pepper": pepper, "addresses": []string{hash}}); r.Errcode() != "M_INVALID_PEPPER" {
		t.Errorf("old pepper after rotation: %d %s", r.Status, r.Body)
	}
	newHash := signing.LookupHash("quinn@example.org", "email", "newpepper42")
	r = lookup(map[string]any{"algorithm": "sha256", "pepper": "newpepper42", "addresses": []string{newHash}})
	if m, _ := r.JSON()["mappings"].(map[string]any); m[newHash] != "@quinn:example.org" {
		t.Errorf("lookup with the new pepper: %d %s", r.Status, r.Body)
	}
}

func TestV2BindOnlyForOwnUser(t *testing.T) {
	hs := fedtest.Start(t)
	env := apitest.New(t)
	tok := register(t, env, hs, "dan")
	me := "@dan:" + hs.Name

	r := env.Do(apitest.Request{Method: "POST", Path: v2 + "/validate/email/requestToken", Header: bearer(tok),
		Body: map[string]any{"client_secret": "secret", "email": "dan@example.org", "send_attempt": 1}})
	if r.Status != 200 {
		t.Fatalf("v2 requestToken: %d %s", r.Status, r.Body)
	}
	sid := r.String("sid")
	m := env.Mail.WaitFor(t, 1, 5*time.Second)[0]
	link, _ := url.Parse(linkRE.FindString(m.Text))
	if !strings.HasPrefix(link.Path, v2) {
		t.Errorf("a v2 session mails a %s link", link.Path)
	}
	if r := env.Get(link.RequestURI()); r.Status != 200 { // clicked without any token
		t.Fatalf("v2 link: %d %s", r.Status, r.Body)
	}
	r = env.Do(apitest.Request{Method: "GET", Path: v2 + "/3pid/getValidated3pid?sid=" + sid + "&client_secret=secret", Header: bearer(tok)})
	if r.Status != 200 || r.String("address") != "dan@example.org" {
		t.Fatalf("v2 getValidated3pid: %d %s", r.Status, r.Body)
	}
	r = env.Do(apitest.Request{Method: "POST", Path: v2 + "/3pid/bind", Header: bearer(tok),
		Body: map[string]any{"sid": sid, "client_secret": "secret", "mxid": "@someone:else.org"}})
	if r.Status != 403 {
		t.Errorf("bind for another user: %d %s", r.Status, r.Body)
	}
	r = env.Do(apitest.Request{Method: "POST", Path: v2 + "/3pid/bind", Header: bearer(tok),
		Body: map[string]any{"sid": sid, "client_secret": "secret", "mxid": me}})
	if r.Status != 200 || r.String("mxid") != me {
		t.Errorf("bind for oneself: %d %s", r.Status, r.Body)
	}
	r = env.Do(apitest.Request{Method: "POST", Path: v2 + "/store-invite", Header: bearer(tok),
		Body: map[string]any{"medium": "email", "address": "x@example.org", "room_id": "!r:x", "sender": "@other:x"}})
	if r.Status != 403 {
		t.Errorf("store-invite as another sender: %d %s", r.Status, r.Body)
	}
	r = env.Do(apitest.Request{Method: "POST", Path: v2 + "/store-invite", Header: bearer(tok),
		Body: map[string]any{"medium": "email", "address": "x@example.org", "room_id": "!r:x", "sender": me}})
	pks, _ := r.JSON()["public_keys"].([]any)
	if r.Status != 200 || len(pks) != 2 || !strings.Contains(pks[0].(map[string]any)["key_validity_url"].(string), v2+"/pubkey/isvalid") {
		t.Errorf("v2 store-invite: %d %s", r.Status, r.Body)
	}
	for _, p := range []string{"/validate/email/requestToken", "/3pid/bind", "/store-invite", "/sign-ed25519", "/lookup", "/terms"} {
		if r := env.Post(v2+p, map[string]any{}); r.Status != 401 || r.Errcode() != "M_UNAUTHORIZED" {
			t.Errorf("%s without a token: %d", p, r.Status)
		}
	}
}

func toStrings(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}

// federationClient is a client for fedtest homeservers; allowPrivate false
// is what production gets.
func federationClient(allowPrivate bool) *federation.Client {
	return federation.NewClient(federation.ClientOptions{
		AllowPrivate: allowPrivate, TLSConfig: &tls.Config{InsecureSkipVerify: true}, Timeout: 5 * time.Second,
	})
}

// Sydent accepts an OpenID token with only the two fields the identity
// server uses, and some callers send exactly that.
func TestRegisterWithOnlyAccessTokenAndServerName(t *testing.T) {
	hs := fedtest.Start(t)
	env := apitest.New(t)
	hs.AddOpenIDToken("oid_minimal", "minimal")
	r := env.Post(v2+"/account/register", map[string]any{"access_token": "oid_minimal", "matrix_server_name": hs.Name})
	if r.Status != 200 || r.String("token") == "" {
		t.Fatalf("register with two fields: %d %s", r.Status, r.Body)
	}
	r = env.Post(v2+"/account/register", map[string]any{"access_token": "oid_minimal"})
	if r.Status != 400 || r.Errcode() != "M_MISSING_PARAMS" || !strings.Contains(r.String("error"), "matrix_server_name") {
		t.Errorf("without matrix_server_name: %d %s", r.Status, r.Body)
	}
}

// nxdomainResolver is a resolver whose DNS server, on 127.0.0.1, answers
// every query "no such name" (NXDOMAIN), so the test does not depend on
// the machine's DNS.
func nxdomainResolver(t *testing.T) *net.Resolver {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if n < 12 {
				continue
			}
			// Header + the question only: QR and RA set, RCODE 3.
			end := 12
			for end < n && buf[end] != 0 {
				end += int(buf[end]) + 1
			}
			end += 5
			if end > n {
				continue
			}
			resp := append([]byte(nil), buf[:end]...)
			resp[2] |= 0x80
			resp[3] = 0x80 | 3
			resp[6], resp[7], resp[8], resp[9], resp[10], resp[11] = 0, 0, 0, 0, 0, 0
			_, _ = pc.WriteTo(resp, from)
		}
	}()
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", pc.LocalAddr().String())
	}}
}

// A matrix_server_name that does not resolve (the 0x7f000001, an
// address spelled in hex, which no DNS knows) is the client's mistake: 400
// M_INVALID_PARAM naming it, never a 5xx.
func TestRegisterUnresolvableServerNameIsClientError(t *testing.T) {
	env := apitest.New(t, func(s *apitest.Setup) {
		s.Federation = federation.NewClient(federation.ClientOptions{
			TLSConfig: &tls.Config{InsecureSkipVerify: true}, Timeout: 5 * time.Second, Resolver: nxdomainResolver(t),
		})
	})
	for _, name := range []string{"0x7f000001:8448", "0x7f000001", "nowhere.invalid"} {
		r := env.Post(v2+"/account/register", map[string]any{"access_token": "tok", "token_type": "Bearer", "matrix_server_name": name, "expires_in": 60})
		if r.Status != 400 || r.Errcode() != "M_INVALID_PARAM" || !strings.Contains(r.String("error"), "resolve") {
			t.Errorf("%s: %d %s, want 400 M_INVALID_PARAM saying it does not resolve", name, r.Status, r.Body)
		}
	}
}
