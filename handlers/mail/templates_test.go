package mail_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sigil-matrix/sigil/handlers/mail"
)

func loadTemplates(t *testing.T, dir string) *mail.Templates {
	t.Helper()
	tpl, err := mail.LoadTemplates(dir)
	if err != nil {
		t.Fatalf("LoadTemplates(%q): %v", dir, err)
	}
	return tpl
}

func writeFile(t *testing.T, dir, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestBuiltinValidation(t *testing.T) {
	m, err := loadTemplates(t, "").Validation(mail.ValidationData{
		Address:    "alice@example.org",
		Token:      "123456",
		Link:       "https://id.example.org/submit?token=123456&sid=abc",
		ServerName: "id.example.org",
		SessionID:  "abc",
		ExpiresIn:  "24 hours",
	})
	if err != nil {
		t.Fatal(err)
	}
	if m.To != "alice@example.org" {
		t.Errorf("To = %q", m.To)
	}
	if m.Subject != "Confirm your email address for id.example.org" {
		t.Errorf("Subject = %q", m.Subject)
	}
	for _, want := range []string{"123456", "https://id.example.org/submit?token=123456&sid=abc", "24 hours", "alice@example.org"} {
		if !strings.Contains(m.Text, want) {
			t.Errorf("text lacks %q:\n%s", want, m.Text)
		}
	}
	for _, want := range []string{"123456", `href="https://id.example.org/submit?token=123456&amp;sid=abc"`, "24 hours"} {
		if !strings.Contains(m.HTML, want) {
			t.Errorf("html lacks %q:\n%s", want, m.HTML)
		}
	}
}

func TestBuiltinInvite(t *testing.T) {
	tests := []struct {
		name        string
		data        mail.InviteData
		wantSubject string
		wantText    string
	}{
		{
			name:        "display name and room name",
			data:        mail.InviteData{SenderID: "@alice:example.org", SenderDisplayName: "Alice", RoomName: "Book Club", RoomAlias: "#books:example.org"},
			wantSubject: "Alice has invited you to Book Club on Matrix",
			wantText:    "Alice (@alice:example.org) has invited you to Book Club (#books:example.org) on Matrix.",
		},
		{
			name:        "sender id and alias",
			data:        mail.InviteData{SenderID: "@alice:example.org", RoomAlias: "#books:example.org"},
			wantSubject: "@alice:example.org has invited you to #books:example.org on Matrix",
			wantText:    "@alice:example.org has invited you to #books:example.org on Matrix.",
		},
		{
			name:        "nothing known",
			data:        mail.InviteData{},
			wantSubject: "Someone has invited you to a room on Matrix",
			wantText:    "Someone has invited you to a room on Matrix.",
		},
	}
	tpl := loadTemplates(t, "")
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.data.Address = "bob@example.org"
			tc.data.WebClientLocation = "https://app.element.io"
			m, err := tpl.Invite(tc.data)
			if err != nil {
				t.Fatal(err)
			}
			if m.To != "bob@example.org" || m.Subject != tc.wantSubject {
				t.Errorf("To %q Subject %q, want subject %q", m.To, m.Subject, tc.wantSubject)
			}
			if !strings.Contains(m.Text, tc.wantText) {
				t.Errorf("text lacks %q:\n%s", tc.wantText, m.Text)
			}
			html := strings.NewReplacer("<strong>", "", "</strong>", "").Replace(strings.Join(strings.Fields(m.HTML), " "))
			if !strings.Contains(html, tc.wantText) {
				t.Errorf("html lacks %q:\n%s", tc.wantText, m.HTML)
			}
			for _, body := range []string{m.Text, m.HTML} {
				for _, want := range []string{"bob@example.org", "https://app.element.io", "sign up"} {
					if !strings.Contains(body, want) {
						t.Errorf("body lacks %q:\n%s", want, body)
					}
				}
			}
		})
	}
}

func TestInviteHTMLEscapesHostileValues(t *testing.T) {
	m, err := loadTemplates(t, "").Invite(mail.InviteData{
		Address:           "bob@example.org",
		RoomName:          `<script>alert("room")</script>`,
		RoomAlias:         `#"><img src=x onerror=alert(1)>:example.org`,
		SenderDisplayName: `<b onclick="x()">Mallory</b>`,
		SenderID:          "@mallory:evil.example",
		WebClientLocation: "javascript:alert(1)",
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"<script", "<img", "<b onclick", `href="javascript:`} {
		if strings.Contains(m.HTML, bad) {
			t.Errorf("html contains %q:\n%s", bad, m.HTML)
		}
	}
	for _, want := range []string{"&lt;script&gt;", "&lt;img src=x onerror=alert(1)&gt;", "&lt;b onclick=", `href="#ZgotmplZ"`} {
		if !strings.Contains(m.HTML, want) {
			t.Errorf("html lacks escaped %q:\n%s", want, m.HTML)
		}
	}
	// The text part is text/plain: values appear verbatim there by design.
	if !strings.Contains(m.Text, `<script>alert("room")</script>`) {
		t.Errorf("text part lost the room name:\n%s", m.Text)
	}
}

func TestTemplateOverrideWins(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, mail.ValidationSubjectFile, "  Custom {{.ServerName}} subject \n")
	writeFile(t, dir, mail.InviteHTMLFile, `<p>Custom {{.RoomName}}</p>`)
	tpl := loadTemplates(t, dir)

	v, err := tpl.Validation(mail.ValidationData{Address: "a@example.org", Token: "t0k", ServerName: "id.example.org"})
	if err != nil {
		t.Fatal(err)
	}
	if v.Subject != "Custom id.example.org subject" {
		t.Errorf("overridden subject = %q", v.Subject)
	}
	if !strings.Contains(v.Text, "t0k") {
		t.Errorf("built-in text not used for files absent from the dir:\n%s", v.Text)
	}

	i, err := tpl.Invite(mail.InviteData{Address: "a@example.org", RoomName: "<x>"})
	if err != nil {
		t.Fatal(err)
	}
	if i.HTML != "<p>Custom &lt;x&gt;</p>" {
		t.Errorf("overridden html = %q", i.HTML)
	}
	if i.Subject != "Someone has invited you to <x> on Matrix" {
		t.Errorf("built-in invite subject = %q", i.Subject)
	}
}

func TestTemplateOverrideExtra(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, mail.InviteTextFile, `org={{index .Extra "org.example.team"}} missing={{index .Extra "nope"}}`)
	m, err := loadTemplates(t, dir).Invite(mail.InviteData{Address: "a@example.org", Extra: map[string]string{"org.example.team": "Ops"}})
	if err != nil {
		t.Fatal(err)
	}
	if m.Text != "org=Ops missing=" {
		t.Errorf("text = %q", m.Text)
	}
}

func TestBrokenTemplateNamesFile(t *testing.T) {
	for _, name := range []string{
		mail.ValidationSubjectFile, mail.ValidationTextFile, mail.ValidationHTMLFile,
		mail.InviteSubjectFile, mail.InviteTextFile, mail.InviteHTMLFile,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, dir, name, "Hello {{.Address")
			_, err := mail.LoadTemplates(dir)
			if err == nil {
				t.Fatal("LoadTemplates: want parse error")
			}
			if !strings.Contains(err.Error(), filepath.Join(dir, name)) {
				t.Errorf("error %q does not name %s", err, filepath.Join(dir, name))
			}
		})
	}
}

func TestTemplateExecutionErrors(t *testing.T) {
	tests := []struct {
		name, file, content, wantErr string
	}{
		{"unknown field", mail.ValidationTextFile, "{{.NoSuchField}}", mail.ValidationTextFile},
		{"multi-line subject", mail.ValidationSubjectFile, "line one\nline two", "single line"},
		{"subject from hostile data", mail.ValidationSubjectFile, "Code {{.Token}}", "single line"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, dir, tc.file, tc.content)
			_, err := loadTemplates(t, dir).Validation(mail.ValidationData{Address: "a@example.org", Token: "x\nBcc: eve@evil.example"})
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Validation = %v, want error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestLoadTemplatesBadDir(t *testing.T) {
	if _, err := mail.LoadTemplates(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("missing dir: want error")
	}
	dir := t.TempDir()
	writeFile(t, dir, "file", "")
	if _, err := mail.LoadTemplates(filepath.Join(dir, "file")); err == nil {
		t.Error("file as dir: want error")
	}
}
