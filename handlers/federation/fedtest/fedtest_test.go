package fedtest

import (
	"crypto/ed25519"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sigil-matrix/sigil/handlers/signing"
)

func client(h *Homeserver) *http.Client {
	return &http.Client{Transport: &http.Transport{TLSClientConfig: h.ClientTLS()}, Timeout: 5 * time.Second}
}

func get(t *testing.T, c *http.Client, url string) (int, []byte) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func TestSignRequestMatchesSynapse(t *testing.T) {
	h := Start(t)
	body := `{"mxid":"@bob:` + h.Name + `","threepid":{"address":"bob@example.org","medium":"email"}}`
	hdr := h.SignRequest("POST", "/_matrix/identity/v2/3pid/unbind", "127.0.0.1:8091", []byte(body))
	want := `X-Matrix origin="` + h.Name + `",key="ed25519:fed1",sig="`
	if !strings.HasPrefix(hdr, want) || !strings.HasSuffix(hdr, `",destination="127.0.0.1:8091"`) {
		t.Fatalf("header = %s", hdr)
	}
	sig := strings.TrimSuffix(strings.TrimPrefix(hdr, want), `",destination="127.0.0.1:8091"`)
	obj := map[string]any{
		"method": "POST", "uri": "/_matrix/identity/v2/3pid/unbind", "origin": h.Name,
		"destination_is": "127.0.0.1:8091", "content": json.RawMessage(body),
		"signatures": map[string]any{h.Name: map[string]any{KeyID: sig}},
	}
	if err := signing.VerifyJSON(obj, h.Name, map[string]ed25519.PublicKey{KeyID: h.Key.Public()}); err != nil {
		t.Fatal(err)
	}
}

func TestEndpointsAndRestart(t *testing.T) {
	h := Start(t)
	c := client(h)
	h.AddOpenIDToken("tok", "alice")

	code, b := get(t, c, h.URL+KeysPath)
	var keys map[string]any
	if code != 200 || json.Unmarshal(b, &keys) != nil || keys["server_name"] != h.Name {
		t.Fatalf("keys: %d %s", code, b)
	}
	if err := signing.VerifyJSON(json.RawMessage(b), h.Name, map[string]ed25519.PublicKey{KeyID: h.Key.Public()}); err != nil {
		t.Fatalf("keys not self-signed: %v", err)
	}
	if code, b := get(t, c, h.URL+UserInfoPath+"?access_token=tok"); code != 200 || string(b) != `{"sub":"@alice:`+h.Name+`"}` {
		t.Errorf("userinfo: %d %s", code, b)
	}
	if code, b := get(t, c, h.URL+UserInfoPath+"?access_token=nope"); code != 401 || !strings.Contains(string(b), "M_UNKNOWN_TOKEN") {
		t.Errorf("unknown token: %d %s", code, b)
	}

	name := h.Name
	h.Stop()
	if _, err := c.Get(h.URL + KeysPath); err == nil {
		t.Fatal("stopped server answered")
	}
	h.Restart()
	if h.Name != name {
		t.Fatalf("name changed to %s", h.Name)
	}
	if code, _ := get(t, c, h.URL+KeysPath); code != 200 {
		t.Fatalf("after restart: %d", code)
	}
	if n := h.Requests(KeysPath); n != 2 {
		t.Errorf("Requests = %d, want 2", n)
	}

	resp, err := c.Post(h.URL+OnBindPath, "application/json", strings.NewReader(`{"invites":[]}`))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("onbind: %v %v", resp, err)
	}
	resp.Body.Close()
	if got := h.WaitOnBinds(t, 1, time.Second); string(got[0]) != `{"invites":[]}` {
		t.Errorf("recorded %s", got[0])
	}
}
