package handlers_test

import (
	"fmt"
	"testing"

	"github.com/sigil-matrix/sigil/handlers/apitest"
	"github.com/sigil-matrix/sigil/handlers/federation/fedtest"
)

// matrix-js-sdk (Element) sends send_attempt as a JSON string
// (sendAttempt.toString()); the document marks the property
// x-numeric-string, so "1" is the attempt 1 on every requestToken, v1 and
// v2, email and msisdn, while any other string is still refused (issue 16).
func TestSendAttemptAsNumericStringIsAccepted(t *testing.T) {
	hs := fedtest.Start(t)
	env := apitest.New(t)
	tok := register(t, env, hs, "sam")
	n := 0
	for _, prefix := range []string{v1, v2} {
		for _, medium := range []string{"email", "msisdn"} {
			n++
			body := func(attempt any) map[string]any {
				b := map[string]any{"client_secret": fmt.Sprintf("secret%d", n), "send_attempt": attempt}
				if medium == "email" {
					b["email"] = fmt.Sprintf("sam%d@example.org", n)
				} else {
					b["country"], b["phone_number"] = "GB", fmt.Sprintf("0740012345%d", n)
				}
				return b
			}
			path := prefix + "/validate/" + medium + "/requestToken"
			post := func(attempt any) *apitest.Response {
				return env.Do(apitest.Request{Method: "POST", Path: path, Header: bearer(tok), Body: body(attempt)})
			}
			r := post("1")
			if r.Status != 200 || r.String("sid") == "" {
				t.Fatalf("%s with send_attempt \"1\": %d %s", path, r.Status, r.Body)
			}
			// The string was the attempt 1: the integer 1 is the same attempt.
			if again := post(1); again.String("sid") != r.String("sid") {
				t.Errorf("%s: send_attempt 1 after \"1\": %d %s", path, again.Status, again.Body)
			}
			for _, bad := range []any{"abc", "1.5", "-1", "", "01", "1e3", " 1"} {
				if got := post(bad); got.Status != 400 || got.Errcode() != "M_INVALID_PARAM" {
					t.Errorf("%s with send_attempt %q: %d %s", path, bad, got.Status, got.Body)
				}
			}
		}
	}
}
