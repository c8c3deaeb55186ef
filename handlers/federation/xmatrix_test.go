package federation

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sigil-matrix/sigil/handlers/federation/fedtest"
	"github.com/sigil-matrix/sigil/handlers/signing"
)

func TestParseXMatrix(t *testing.T) {
	tests := []struct {
		header string
		want   XMatrixAuth
		ok     bool
	}{
		{`X-Matrix origin="localhost:8449",key="ed25519:a_nLjA",sig="rr2KiCQ",destination="127.0.0.1:8091"`,
			XMatrixAuth{"localhost:8449", "ed25519:a_nLjA", "rr2KiCQ", "127.0.0.1:8091"}, true},
		{`X-Matrix origin=hs.example,key="ed25519:0",sig="abc"`,
			XMatrixAuth{"hs.example", "ed25519:0", "abc", ""}, true},
		{`x-matrix ORIGIN="hs", Key="ed25519:0" , SIG = "abc"`,
			XMatrixAuth{"hs", "ed25519:0", "abc", ""}, true},
		{`X-Matrix origin="h\"s",key="k",sig="s",extra="ignored",destination=is.example`,
			XMatrixAuth{`h"s`, "k", "s", "is.example"}, true},
		{`  X-Matrix sig="s",key="k",origin="o"  `, XMatrixAuth{"o", "k", "s", ""}, true},
		{`X-Matrix origin="o",key="k"`, XMatrixAuth{}, false},
		{`X-Matrix origin="o",sig="s"`, XMatrixAuth{}, false},
		{`X-Matrix key="k",sig="s"`, XMatrixAuth{}, false},
		{`X-Matrix`, XMatrixAuth{}, false},
		{`Bearer abc`, XMatrixAuth{}, false},
		{`X-Matrixorigin="o",key="k",sig="s"`, XMatrixAuth{}, false},
		{`X-Matrix origin="o,key="k",sig="s"`, XMatrixAuth{}, false},
		{`X-Matrix origin="o",key="k",sig="s",origin="p"`, XMatrixAuth{}, false},
		{`X-Matrix origin="o"x,key="k",sig="s"`, XMatrixAuth{}, false},
		{`X-Matrix origin,key="k",sig="s"`, XMatrixAuth{}, false},
	}
	for _, tc := range tests {
		got, err := ParseXMatrix(tc.header)
		if tc.ok != (err == nil) || got != tc.want {
			t.Errorf("ParseXMatrix(%s) = %+v, %v; want %+v ok=%v", tc.header, got, err, tc.want, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrBadSignature) {
			t.Errorf("ParseXMatrix(%s) error %v does not match ErrBadSignature", tc.header, err)
		}
	}
}

const (
	ourName   = "127.0.0.1:8091"
	unbindURI = "/_matrix/identity/v2/3pid/unbind"
)

func unbindBody(origin string) string {
	return fmt.Sprintf(`{"mxid":"@bob:%s","threepid":{"address":"bob@example.org","medium":"email"}}`, origin)
}

func newReq(method, uri, body string, auth ...string) *http.Request {
	r := httptest.NewRequest(method, uri, strings.NewReader(body))
	for _, a := range auth {
		r.Header.Add("Authorization", a)
	}
	return r
}

func TestVerifyRequest(t *testing.T) {
	hs := fedtest.Start(t)
	hs2 := fedtest.Start(t)
	c, _ := clientFor(t, hs)
	body := unbindBody(hs.Name)
	good := hs.SignRequest("POST", unbindURI, ourName, []byte(body))
	auth, _ := ParseXMatrix(good)

	// Signature in the newer federation style: "destination" instead of
	// "destination_is".
	newStyle, _ := signing.Signature(map[string]any{
		"method": "POST", "uri": unbindURI, "origin": hs.Name, "destination": ourName,
		"content": map[string]any{"mxid": "@bob:" + hs.Name, "threepid": map[string]any{"address": "bob@example.org", "medium": "email"}},
	}, hs.Key)
	header := func(origin, key, sig, dest string) string {
		h := fmt.Sprintf(`X-Matrix origin="%s",key="%s",sig="%s"`, origin, key, sig)
		if dest != "" {
			h += fmt.Sprintf(`,destination="%s"`, dest)
		}
		return h
	}
	withQuery := unbindURI + "?x=1&y=%2F"

	tests := []struct {
		name string
		req  *http.Request
		body string
		want error // nil: verified as hs.Name
	}{
		{"good", newReq("POST", unbindURI, body, good), body, nil},
		{"good without destination param (older Synapse)",
			newReq("POST", unbindURI, body, header(hs.Name, auth.Key, auth.Sig, "")), body, nil},
		{"good, newer destination form",
			newReq("POST", unbindURI, body, header(hs.Name, auth.Key, newStyle, ourName)), body, nil},
		{"good with query string",
			newReq("POST", withQuery, body, hs.SignRequest("POST", withQuery, ourName, []byte(body))), body, nil},
		{"good with empty body",
			newReq("GET", "/x", "", hs.SignRequest("GET", "/x", ourName, nil)), "", nil},
		{"good among several Authorization headers",
			newReq("POST", unbindURI, body, "Bearer abc", good), body, nil},
		{"missing header", newReq("POST", unbindURI, body), body, ErrMissingAuth},
		{"bearer only", newReq("POST", unbindURI, body, "Bearer abc"), body, ErrMissingAuth},
		{"tampered body", newReq("POST", unbindURI, body, good),
			strings.Replace(body, "bob@", "eve@", 1), ErrBadSignature},
		{"body not JSON", newReq("POST", unbindURI, "{", good), "{", ErrBadSignature},
		{"wrong method", newReq("PUT", unbindURI, body, good), body, ErrBadSignature},
		{"replay on another URI", newReq("POST", "/_matrix/identity/v2/3pid/bind", body, good), body, ErrBadSignature},
		{"replay with added query", newReq("POST", unbindURI+"?a=b", body, good), body, ErrBadSignature},
		{"signed for another identity server",
			newReq("POST", unbindURI, body, hs.SignRequest("POST", unbindURI, "other.example:443", []byte(body))), body, ErrBadSignature},
		{"signed for another identity server, destination param stripped",
			newReq("POST", unbindURI, body, header(hs.Name, auth.Key,
				sigOf(hs.SignRequest("POST", unbindURI, "other.example:443", []byte(body))), "")), body, ErrBadSignature},
		{"destination param lies",
			newReq("POST", unbindURI, body, header(hs.Name, auth.Key, auth.Sig, "other.example:443")), body, ErrBadSignature},
		{"unknown key id",
			newReq("POST", unbindURI, body, header(hs.Name, "ed25519:nope", auth.Sig, ourName)), body, ErrBadSignature},
		{"non-ed25519 key", newReq("POST", unbindURI, body, header(hs.Name, "curve:1", auth.Sig, ourName)), body, ErrBadSignature},
		{"malformed sig", newReq("POST", unbindURI, body, header(hs.Name, auth.Key, "!!!", ourName)), body, ErrBadSignature},
		{"origin not matching the signer",
			newReq("POST", unbindURI, body, header(hs2.Name, auth.Key, auth.Sig, ourName)), body, ErrBadSignature},
		{"invalid origin", newReq("POST", unbindURI, body, header("evil/x", auth.Key, auth.Sig, ourName)), body, ErrBadSignature},
		{"garbled header", newReq("POST", unbindURI, body, `X-Matrix origin="`+hs.Name), body, ErrBadSignature},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			origin, err := c.VerifyRequest(context.Background(), tc.req, []byte(tc.body), ourName)
			if tc.want == nil {
				if err != nil || origin != hs.Name {
					t.Fatalf("VerifyRequest = %q, %v; want %q", origin, err, hs.Name)
				}
				return
			}
			if !errors.Is(err, tc.want) || origin != "" {
				t.Fatalf("VerifyRequest = %q, %v; want %v", origin, err, tc.want)
			}
			if errors.Is(err, ErrUnreachable) {
				t.Fatalf("error %v must not be ErrUnreachable", err)
			}
		})
	}
	// One key fetch per homeserver; the unknown key ID did not refetch
	// because the cached keys were fresh.
	if n := hs.Requests(fedtest.KeysPath); n != 1 {
		t.Errorf("%d key fetches from hs, want 1", n)
	}
}

func sigOf(header string) string {
	a, err := ParseXMatrix(header)
	if err != nil {
		panic(err)
	}
	return a.Sig
}

func TestVerifyRequestOriginUnreachable(t *testing.T) {
	hs := fedtest.Start(t)
	c, _ := clientFor(t, hs)
	body := unbindBody(hs.Name)
	hdr := hs.SignRequest("POST", unbindURI, ourName, []byte(body))
	hs.Stop()
	start := time.Now()
	_, err := c.VerifyRequest(context.Background(), newReq("POST", unbindURI, body, hdr), []byte(body), ourName)
	if !errors.Is(err, ErrUnreachable) || errors.Is(err, ErrBadSignature) {
		t.Fatalf("err = %v, want ErrUnreachable only", err)
	}
	if time.Since(start) > 2*time.Second {
		t.Errorf("took %v", time.Since(start))
	}
	hs.Restart()
	if origin, err := c.VerifyRequest(context.Background(), newReq("POST", unbindURI, body, hdr), []byte(body), ourName); err != nil || origin != hs.Name {
		t.Fatalf("after restart: %q, %v", origin, err)
	}
}

// A homeserver that rotated its key: a request signed with a key ID we have
// not cached triggers a refetch, at most once a minute.
func TestVerifyRequestKeyRotation(t *testing.T) {
	hs := fedtest.Start(t)
	c, clk := clientFor(t, hs)
	body := unbindBody(hs.Name)
	if _, err := c.ServerKeys(context.Background(), hs.Name); err != nil {
		t.Fatal(err)
	}

	newKey, _ := signing.GenerateKey("ed25519:fed2")
	hs.Handle(fedtest.KeysPath, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		obj := map[string]any{
			"server_name":    hs.Name,
			"valid_until_ts": time.Now().Add(time.Hour).UnixMilli(),
			"verify_keys":    map[string]any{newKey.ID: map[string]any{"key": newKey.PublicBase64()}},
		}
		signed, _ := signing.SignJSON(obj, hs.Name, newKey)
		writeJSON(w, signed)
	}))
	sig, _ := signing.Signature(map[string]any{
		"method": "POST", "uri": unbindURI, "origin": hs.Name, "destination_is": ourName,
		"content": map[string]any{"mxid": "@bob:" + hs.Name, "threepid": map[string]any{"address": "bob@example.org", "medium": "email"}},
	}, newKey)
	hdr := fmt.Sprintf(`X-Matrix origin="%s",key="%s",sig="%s"`, hs.Name, newKey.ID, sig)
	verify := func() error {
		_, err := c.VerifyRequest(context.Background(), newReq("POST", unbindURI, body, hdr), []byte(body), ourName)
		return err
	}

	if err := verify(); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("fresh cache: err = %v, want ErrBadSignature", err)
	}
	if n := hs.Requests(fedtest.KeysPath); n != 1 {
		t.Fatalf("%d key requests, want 1 (no refetch within a minute)", n)
	}
	clk.advance(2 * time.Minute)
	if err := verify(); err != nil {
		t.Fatalf("after refetch: %v", err)
	}
	if n := hs.Requests(fedtest.KeysPath); n != 2 {
		t.Fatalf("%d key requests, want 2", n)
	}
}
