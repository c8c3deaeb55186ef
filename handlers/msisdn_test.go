package handlers_test

import (
	"regexp"
	"testing"
	"time"

	"github.com/sigil-matrix/sigil/handlers/apitest"
)

var codeRE = regexp.MustCompile(`\b\d{6}\b`)

func TestPhoneValidationFlow(t *testing.T) {
	env := apitest.New(t)
	// As Synapse's msisdn delegate sends it (homeservers.md #14).
	r := env.Post(v1+"/validate/msisdn/requestToken", map[string]any{
		"client_secret": "secret3", "country": "GB", "phone_number": "07400 123456", "send_attempt": 1,
	})
	if r.Status != 200 || r.String("sid") == "" || r.String("msisdn") != "447400123456" || r.String("intl_fmt") != "+44 7400 123456" {
		t.Fatalf("requestToken: %d %s", r.Status, r.Body)
	}
	sid := r.String("sid")
	text := env.SMS.WaitFor(t, 1, 5*time.Second)[0]
	code := codeRE.FindString(text.Text)
	if text.To != "447400123456" || code == "" {
		t.Fatalf("sms %+v", text)
	}
	// Same attempt: same session, no second text.
	if r := env.Post(v1+"/validate/msisdn/requestToken", map[string]any{
		"client_secret": "secret3", "country": "GB", "phone_number": "+447400123456", "send_attempt": 1,
	}); r.String("sid") != sid {
		t.Errorf("retry: %s", r.Body)
	}
	if r := env.Post(v1+"/validate/msisdn/submitToken", map[string]any{"sid": sid, "client_secret": "secret3", "token": "000000"}); r.Errcode() != "M_TOKEN_INCORRECT" && code != "000000" {
		t.Errorf("wrong code: %d %s", r.Status, r.Body)
	}
	if r := env.Post(v1+"/validate/msisdn/submitToken", map[string]any{"sid": sid, "client_secret": "secret3", "token": code}); r.Status != 200 {
		t.Fatalf("submitToken: %d %s", r.Status, r.Body)
	}
	r = env.Get(v1 + "/3pid/getValidated3pid?sid=" + sid + "&client_secret=secret3")
	if r.Status != 200 || r.String("medium") != "msisdn" || r.String("address") != "447400123456" {
		t.Fatalf("getValidated3pid: %d %s", r.Status, r.Body)
	}
	if n := len(env.SMS.Messages()); n != 1 {
		t.Errorf("%d texts sent, want 1", n)
	}
}

func TestPhoneRefusals(t *testing.T) {
	env := apitest.New(t)
	for _, tt := range []struct{ country, number string }{{"GB", "123"}, {"XX", "07700900123"}, {"GB", "not a number"}} {
		r := env.Post(v1+"/validate/msisdn/requestToken", map[string]any{"client_secret": "s", "country": tt.country, "phone_number": tt.number, "send_attempt": 1})
		if r.Status != 400 || r.Errcode() != "M_INVALID_ADDRESS" {
			t.Errorf("%s %q: %d %s", tt.country, tt.number, r.Status, r.Body)
		}
	}
	env.SMS.SetStatus(503)
	r := env.Post(v1+"/validate/msisdn/requestToken", map[string]any{"client_secret": "s", "country": "US", "phone_number": "(201) 555-0123", "send_attempt": 1})
	if r.Status != 400 || r.Errcode() != "M_SEND_ERROR" {
		t.Errorf("provider down: %d %s", r.Status, r.Body)
	}
}

func TestSMSCodesCannotBeGuessed(t *testing.T) {
	env := apitest.New(t)
	r := env.Post(v1+"/validate/msisdn/requestToken", map[string]any{"client_secret": "s", "country": "GB", "phone_number": "07400123457", "send_attempt": 1})
	sid := r.String("sid")
	code := codeRE.FindString(env.SMS.WaitFor(t, 1, 5*time.Second)[0].Text)
	limited := false
	for i := 0; i < 30 && !limited; i++ {
		guess := "999999"
		if guess == code {
			guess = "999998"
		}
		r := env.Post(v1+"/validate/msisdn/submitToken", map[string]any{"sid": sid, "client_secret": "s", "token": guess})
		limited = r.Status == 429 && r.Errcode() == "M_LIMIT_EXCEEDED"
	}
	if !limited {
		t.Fatal("30 guesses of a six-digit code were all answered")
	}
}
