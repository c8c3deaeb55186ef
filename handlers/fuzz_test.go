package handlers_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/sigil-matrix/sigil/handlers/apitest"
	"github.com/sigil-matrix/sigil/handlers/federation"
	"github.com/sigil-matrix/sigil/handlers/identity"
)

// fuzzOps is every operation that takes a body, with a well-formed body to
// start the fuzzer from.
var fuzzOps = []struct{ path, seed string }{
	{v1 + "/validate/email/requestToken", `{"client_secret":"s3cret","email":"a@example.org","send_attempt":1,"next_link":"https://example.org"}`},
	{v1 + "/validate/email/submitToken", `{"sid":"1","client_secret":"s3cret","token":"t"}`},
	{v1 + "/validate/msisdn/requestToken", `{"client_secret":"s3cret","country":"GB","phone_number":"07700900001","send_attempt":1}`},
	{v1 + "/validate/msisdn/submitToken", `{"sid":"1","client_secret":"s3cret","token":"123456"}`},
	{v1 + "/3pid/bind", `{"sid":"1","client_secret":"s3cret","mxid":"@a:example.org"}`},
	{v1 + "/bind", `{"sid":"1","client_secret":"s3cret","mxid":"@a:example.org"}`},
	{v1 + "/3pid/unbind", `{"sid":"1","client_secret":"s3cret","mxid":"@a:example.org","threepid":{"medium":"email","address":"a@example.org"}}`},
	{v1 + "/bulk_lookup", `{"threepids":[["email","a@example.org"],["msisdn","447700900001"]]}`},
	{v1 + "/store-invite", `{"medium":"email","address":"a@example.org","room_id":"!r:example.org","sender":"@b:example.org","room_name":"Tea","sender_display_name":"Bob"}`},
	{v1 + "/sign-ed25519", `{"mxid":"@a:example.org","token":"t","private_key":"AAAA"}`},
	{v2 + "/validate/email/requestToken", `{"client_secret":"s3cret","email":"a@example.org","send_attempt":1}`},
	{v2 + "/validate/email/submitToken", `{"sid":"1","client_secret":"s3cret","token":"t"}`},
	{v2 + "/validate/msisdn/requestToken", `{"client_secret":"s3cret","country":"GB","phone_number":"07700900001","send_attempt":1}`},
	{v2 + "/3pid/bind", `{"sid":"1","client_secret":"s3cret","mxid":"@fuzz:example.org"}`},
	{v2 + "/3pid/unbind", `{"sid":"1","client_secret":"s3cret","mxid":"@fuzz:example.org","threepid":{"medium":"email","address":"a@example.org"}}`},
	{v2 + "/lookup", `{"addresses":["a@example.org email"],"algorithm":"none","pepper":"p"}`},
	{v2 + "/store-invite", `{"medium":"email","address":"a@example.org","room_id":"!r:example.org","sender":"@fuzz:example.org"}`},
	{v2 + "/sign-ed25519", `{"mxid":"@fuzz:example.org","token":"t","private_key":"AAAA"}`},
	{v2 + "/terms", `{"user_accepts":["https://example.org/tos"]}`},
	{v2 + "/account/register", `{"access_token":"t","token_type":"Bearer","matrix_server_name":"fuzz.invalid","expires_in":60}`},
	{v2 + "/account/logout", `{}`},
}

// FuzzOperations drives every operation's body through the whole stack
// (validator, handlers, identity rules, SQLite, mail): whatever the body,
// the answer is never a 5xx, and every error is a Matrix JSON error.
// Run briefly in CI: go test -run '^$' -fuzz FuzzOperations ./handlers/
func FuzzOperations(f *testing.F) {
	for i, op := range fuzzOps {
		f.Add(uint8(i), []byte(op.seed), false)
	}
	f.Add(uint8(0), []byte("client_secret=s3cret&email=a%40example.org&send_attempt=1"), true)
	f.Add(uint8(8), []byte("{\"medium\":\"email\",\"address\":\"a@example.org\",\"room_id\":\"!r\",\"sender\":\"@b:x\",\"room_name\":\"\xff\"}"), false)
	f.Add(uint8(8), []byte(`{"medium":"email","address":"a@example.org","room_id":"!r","sender":"@b:x","room_name":"a\r\nBcc: x"}`), false)

	env := apitest.New(f, func(s *apitest.Setup) {
		s.Log = io.Discard
		// No homeserver is ever contacted: only fuzz.invalid may register,
		// and its name never resolves (no DNS query leaves the process).
		s.Config.RegisterAllowedServers = []string{"fuzz.invalid"}
		s.Federation = federation.NewClient(federation.ClientOptions{
			Timeout: time.Second,
			Resolver: &net.Resolver{PreferGo: true, Dial: func(context.Context, string, string) (net.Conn, error) {
				return nil, errors.New("no DNS while fuzzing")
			}},
		})
	})
	const token = "fuzz-access-token"
	if err := env.Store.CreateAccount(context.Background(), "@fuzz:example.org", identity.AccessTokenHash(token), time.Now()); err != nil {
		f.Fatal(err)
	}
	client := &http.Client{Timeout: 30 * time.Second}
	f.Fuzz(func(t *testing.T, op uint8, body []byte, form bool) {
		path := fuzzOps[int(op)%len(fuzzOps)].path
		req, err := http.NewRequest("POST", env.URL+path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		if form {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		defer resp.Body.Close()
		got, _ := io.ReadAll(resp.Body)
		// A homeserver that cannot be reached is a 502 whatever the body.
		unreachable := resp.StatusCode == 502 && path == v2+"/account/register"
		if resp.StatusCode >= 500 && !unreachable {
			t.Fatalf("POST %s %q: %d %s", path, body, resp.StatusCode, got)
		}
		if resp.StatusCode >= 400 {
			var e struct{ Errcode, Error string }
			if json.Unmarshal(got, &e) != nil || e.Errcode == "" {
				t.Fatalf("POST %s %q: %d, not a Matrix error: %s", path, body, resp.StatusCode, got)
			}
		}
	})
}
