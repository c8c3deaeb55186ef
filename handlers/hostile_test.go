package handlers_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sigil-matrix/sigil/handlers/apitest"
)

// Hostile input: each case gets a clear 4xx Matrix error (never a 5xx) and
// leaves nothing stored when it fails.

func invitesFor(t *testing.T, env *apitest.Env, addr string) int {
	t.Helper()
	var n int64
	if err := env.Store.DB().Table("invites").Where("address = ?", addr).Count(&n).Error; err != nil {
		t.Fatal(err)
	}
	return int(n)
}

func inviteBody(addr string, extra map[string]any) map[string]any {
	b := map[string]any{"medium": "email", "address": addr, "room_id": "!room:example.org", "sender": "@alice:example.org"}
	for k, v := range extra {
		b[k] = v
	}
	return b
}

func TestInvalidUTF8InJSONStringIsRefused(t *testing.T) {
	env := apitest.New(t)
	bodies := map[string]string{
		"store-invite room_name": "{\"medium\":\"email\",\"address\":\"u@example.org\",\"room_id\":\"!r:example.org\",\"sender\":\"@a:example.org\",\"room_name\":\"caf\xe9\"}",
		"store-invite address":   "{\"medium\":\"email\",\"address\":\"u\xff@example.org\",\"room_id\":\"!r:example.org\",\"sender\":\"@a:example.org\"}",
		"overlong encoding":      "{\"medium\":\"email\",\"address\":\"u@example.org\",\"room_id\":\"!r:example.org\",\"sender\":\"@a:example.org\",\"room_name\":\"\xc0\xaf\"}",
	}
	for name, body := range bodies {
		t.Run(name, func(t *testing.T) {
			r := env.Post(v1+"/store-invite", body)
			if r.Status != 400 || (r.Errcode() != "M_NOT_JSON" && r.Errcode() != "M_BAD_JSON") {
				t.Fatalf("%d %s, want 400 M_NOT_JSON", r.Status, r.Body)
			}
		})
	}
	if n := invitesFor(t, env, "u@example.org"); n != 0 {
		t.Errorf("%d invites stored", n)
	}
	r := env.Post(v1+"/validate/email/requestToken", "{\"client_secret\":\"s3cret\xff\",\"email\":\"u@example.org\",\"send_attempt\":1}")
	if r.Status != 400 || r.Errcode() != "M_NOT_JSON" {
		t.Errorf("requestToken: %d %s", r.Status, r.Body)
	}
	for _, p := range []string{
		v1 + "/3pid/getValidated3pid?sid=%FF&client_secret=s3cret",
		v1 + "/pubkey/%FF",
		v2 + "/pubkey/ed25519%3A%FF",
	} {
		if r := env.Get(p); r.Status != 400 || r.Errcode() != "M_INVALID_PARAM" {
			t.Errorf("GET %s: %d %s, want 400 M_INVALID_PARAM", p, r.Status, r.Body)
		}
	}
}

func TestInviteMailHeaderValuesAreFolded(t *testing.T) {
	env := apitest.New(t)
	for _, field := range []string{"room_name", "sender_display_name"} {
		addr := field + "@example.org"
		r := env.Post(v1+"/store-invite", inviteBody(addr, map[string]any{field: "Tea\r\nBcc: victim@example.org\r\n\r\nhello"}))
		if r.Status != 200 {
			t.Fatalf("%s with CR/LF: %d %s", field, r.Status, r.Body)
		}
	}
	for _, m := range env.Mail.WaitFor(t, 2, 5*time.Second) {
		if strings.ContainsAny(m.Subject, "\r\n") || !strings.Contains(m.Subject, "Tea  Bcc: victim@example.org") {
			t.Errorf("subject %q", m.Subject)
		}
		if len(m.To) != 1 || strings.Contains(strings.Join(m.To, ","), "victim") {
			t.Errorf("recipients %v", m.To)
		}
	}
}

func TestOverlongInviteStringsAreRefused(t *testing.T) {
	env := apitest.New(t)
	long := strings.Repeat("x", 100<<10)
	for _, field := range []string{"room_name", "sender_display_name", "room_id", "sender", "room_avatar_url"} {
		r := env.Post(v1+"/store-invite", inviteBody("long@example.org", map[string]any{field: long}))
		if r.Status != 400 || r.Errcode() != "M_INVALID_PARAM" {
			t.Errorf("%s of 100 KiB: %d %.200s", field, r.Status, r.Body)
		}
	}
	if n := invitesFor(t, env, "long@example.org"); n != 0 {
		t.Errorf("%d invites stored", n)
	}
}

func TestStoreInviteWhoseMailFailsStoresNothing(t *testing.T) {
	env := apitest.New(t)
	env.Mail.Close()
	r := env.Post(v1+"/store-invite", inviteBody("nomail@example.org", nil))
	if r.Status == 200 || r.Errcode() != "M_EMAIL_SEND_ERROR" {
		t.Fatalf("mail down: %d %s, want M_EMAIL_SEND_ERROR", r.Status, r.Body)
	}
	if n := invitesFor(t, env, "nomail@example.org"); n != 0 {
		t.Errorf("%d invites stored after the mail failed", n)
	}
}

func TestRegisterIsRateLimited(t *testing.T) {
	env := apitest.New(t)
	limited := false
	for i := 0; i < 50 && !limited; i++ {
		r := env.Post(v2+"/account/register", map[string]any{
			"access_token": "oid", "token_type": "Bearer", "matrix_server_name": "nowhere.invalid", "expires_in": 3600,
		})
		limited = r.Status == 429 && r.Errcode() == "M_LIMIT_EXCEEDED"
	}
	if !limited {
		t.Fatal("50 register calls from one client were never refused")
	}
}

func TestPathParametersTakeNoExtraSegments(t *testing.T) {
	env := apitest.New(t)
	for _, p := range []string{v1 + "/pubkey/ed25519:0/extra", v2 + "/pubkey/ed25519:0/extra", v1 + "/pubkey/ed25519:0/", v2 + "/pubkey/ed25519:0/extra/more"} {
		r := env.Get(p)
		if r.Status != 404 || r.Errcode() != "M_UNRECOGNIZED" {
			t.Errorf("GET %s: %d %s, want 404 M_UNRECOGNIZED", p, r.Status, r.Body)
		}
	}
	if r := env.Get(v1 + "/pubkey/ed25519:0"); r.Status != 200 {
		t.Errorf("the key itself: %d %s", r.Status, r.Body)
	}
}

// rawRequest writes req on a fresh connection and returns the first
// response and whether the server then closed the connection.
func rawRequest(t *testing.T, env *apitest.Env, req string) (*http.Response, bool) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(env.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, err = br.ReadByte()
	closed := err == io.EOF
	return resp, closed
}

func TestContentLengthWithTransferEncodingClosesTheConnection(t *testing.T) {
	env := apitest.New(t)
	body := `{"medium":"email","address":"a@example.org"}`
	chunked := fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(body), body)
	req := "POST " + v1 + "/lookup HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
		"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked
	resp, closed := rawRequest(t, env, req)
	if resp.StatusCode < 400 || resp.StatusCode >= 500 {
		t.Errorf("status %d, want a 4xx", resp.StatusCode)
	}
	if !closed {
		t.Error("the connection stayed open after a request with both Content-Length and Transfer-Encoding")
	}
}

// An error answered before the body is read must reach a client that
// sends its whole body first. On a Connection: close request net/http
// already half-closes and waits before closing, and no loss could be
// reproduced on loopback (a test of that case passed with the drain
// removed, so it was dropped). The drain is observable on a keep-alive
// connection: after an early 404
// to a 1 MiB body (more than the 256 KiB net/http reads on its own), the
// body has been read, so the connection serves the next request instead
// of being closed.
func TestEarlyErrorDrainsTheBody(t *testing.T) {
	env := apitest.New(t)
	body := bytes.Repeat([]byte("x"), 1<<20)
	conn, err := net.Dial("tcp", strings.TrimPrefix(env.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	fmt.Fprintf(conn, "POST /_matrix/identity/v2/nope HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", len(body))
	if _, err := conn.Write(body); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 404 {
		t.Fatalf("first answer: %v %v", resp, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	fmt.Fprintf(conn, "GET /_matrix/identity/versions HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err = http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("second request on the same connection: %v %v (the unread body closed it)", resp, err)
	}
	resp.Body.Close()
}
