package mailtest

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name                string
		raw                 string
		subject, text, html string
	}{
		{
			name:    "plain 7bit",
			raw:     "Subject: hi\r\n\r\nhello\r\nworld\r\n",
			subject: "hi", text: "hello\nworld\n",
		},
		{
			name: "nested multipart with base64 and quoted-printable",
			raw: "Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n" +
				"Content-Type: multipart/mixed; boundary=outer\r\n\r\n" +
				"--outer\r\nContent-Type: multipart/alternative; boundary=inner\r\n\r\n" +
				"--inner\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
				"dG9rZW46\r\nIGFiYw==\r\n" +
				"--inner\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" +
				"<p>=C3=BC long=\r\n line</p>\r\n" +
				"--inner--\r\n--outer--\r\n",
			subject: "Grüße", text: "token: abc", html: "<p>ü long line</p>",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.raw))
			if err != nil {
				t.Fatal(err)
			}
			if c.Subject != tc.subject || c.Text != tc.text || strings.TrimSpace(c.HTML) != tc.html {
				t.Errorf("got subject %q text %q html %q", c.Subject, c.Text, c.HTML)
			}
		})
	}
}
