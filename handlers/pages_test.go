package handlers_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sigil-matrix/sigil/handlers"
	"github.com/sigil-matrix/sigil/handlers/apitest"
)

// The GET submitToken result pages come from templates a directory can
// override one by one, as the mails do.
func TestResultPagesAreOverridable(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, handlers.SuccessPageFile), []byte(`<p>ACME: your {{.Medium}} is verified</p>`), 0o600)
	os.WriteFile(filepath.Join(dir, handlers.ExpiredPageFile), []byte(`<p>ACME: too late ({{.Errcode}})</p>`), 0o600)
	pages, err := handlers.LoadPages(dir)
	if err != nil {
		t.Fatal(err)
	}
	env := apitest.New(t, func(s *apitest.Setup) { s.HTTP.Pages = pages })

	sid, link := requestToken(t, env, "page@example.org", "secret", 1)
	if r := env.Get(link.RequestURI()); r.Status != 200 || string(r.Body) != "<p>ACME: your email is verified</p>" {
		t.Errorf("success page: %d %s", r.Status, r.Body)
	}
	// Not overridden: the built-in failure page.
	r := env.Get(v1 + "/validate/email/submitToken?sid=" + sid + "&client_secret=secret&token=nope")
	if r.Status != 400 || !strings.Contains(string(r.Body), "Something went wrong") || !strings.Contains(string(r.Body), "M_TOKEN_INCORRECT") {
		t.Errorf("failure page: %d %s", r.Status, r.Body)
	}
	_, link2 := requestToken(t, env, "late@example.org", "secret", 1)
	env.Clock.Advance(25 * time.Hour)
	if r := env.Get(link2.RequestURI()); r.Status != 400 || string(r.Body) != "<p>ACME: too late (M_SESSION_EXPIRED)</p>" {
		t.Errorf("expired page: %d %s", r.Status, r.Body)
	}
}

func TestBrokenPageTemplateIsRefusedAtLoad(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, handlers.FailurePageFile), []byte(`{{.Nope}}`), 0o600)
	if _, err := handlers.LoadPages(dir); err == nil || !strings.Contains(err.Error(), handlers.FailurePageFile) {
		t.Errorf("a template naming an unknown field loaded: %v", err)
	}
}
