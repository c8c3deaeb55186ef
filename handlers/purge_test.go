package handlers_test

import (
	"context"
	"testing"
	"time"

	"github.com/sigil-matrix/sigil/handlers/apitest"
)

// Expired sessions and old invites are purged once past their retention;
// a session within it still answers M_SESSION_EXPIRED.
func TestPurgeFollowsRetention(t *testing.T) {
	env := apitest.New(t, func(s *apitest.Setup) {
		s.Config.TokenLifetime = time.Hour
		s.Config.Retention.ExpiredSessions = time.Hour
		s.Config.Retention.Invites = 48 * time.Hour
	})
	r := env.Post(v1+"/validate/email/requestToken", map[string]any{"client_secret": "s3cret", "email": "old@example.org", "send_attempt": 1})
	if r.Status != 200 {
		t.Fatalf("requestToken: %d %s", r.Status, r.Body)
	}
	sid := r.String("sid")
	if r := storeInvite(t, env, "invitee@example.org"); r.Status != 200 {
		t.Fatalf("store-invite: %d %s", r.Status, r.Body)
	}
	purge := func() {
		t.Helper()
		if _, err := env.Identity.Purge(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	getValidated := func() string {
		t.Helper()
		return env.Get(v1 + "/3pid/getValidated3pid?sid=" + sid + "&client_secret=s3cret").Errcode()
	}

	env.Clock.Advance(90 * time.Minute) // expired, within retention
	purge()
	if got := getValidated(); got != "M_SESSION_EXPIRED" {
		t.Errorf("expired session within retention: %s", got)
	}
	env.Clock.Advance(time.Hour) // past retention
	purge()
	if got := getValidated(); got != "M_NO_VALID_SESSION" {
		t.Errorf("expired session past retention: %s, want it purged", got)
	}
	if n := invitesFor(t, env, "invitee@example.org"); n != 1 {
		t.Errorf("%d invites after 2.5 h, want 1", n)
	}
	env.Clock.Advance(48 * time.Hour)
	purge()
	if n := invitesFor(t, env, "invitee@example.org"); n != 0 {
		t.Errorf("%d invites after 50 h, want 0", n)
	}
}
