package mail

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	texttemplate "text/template"
)

//go:embed templates/*
var builtinTemplates embed.FS

// ValidationData is the data of the validation mail templates.
type ValidationData struct {
	Address    string // the address being validated (the recipient)
	Token      string
	Link       string // GET submitToken URL
	ServerName string
	SessionID  string
	ExpiresIn  string // e.g. "24 hours"
}

// InviteData is the data of the invite mail templates. Values come from the
// inviting user and must be treated as hostile.
type InviteData struct {
	Address           string // the invited address (the recipient)
	RoomID            string
	RoomName          string
	RoomAlias         string
	RoomAvatarURL     string
	RoomType          string
	RoomJoinRules     string
	SenderID          string
	SenderDisplayName string
	SenderAvatarURL   string
	Token             string
	ServerName        string
	WebClientLocation string
	Extra             map[string]string // other store-invite parameters
}

// Template file names; a file with the same name in the override directory
// replaces the built-in one.
const (
	ValidationSubjectFile = "validation.subject.txt"
	ValidationTextFile    = "validation.txt"
	ValidationHTMLFile    = "validation.html"
	InviteSubjectFile     = "invite.subject.txt"
	InviteTextFile        = "invite.txt"
	InviteHTMLFile        = "invite.html"
)

type executor interface {
	Execute(w io.Writer, data any) error
}

type tmpl struct {
	origin string // file path, or "built-in <name>"
	exec   executor
}

type mailTemplates struct {
	subject, text, html tmpl
}

// Templates renders the validation and invite mails.
type Templates struct {
	validation mailTemplates
	invite     mailTemplates
}

// LoadTemplates parses the built-in templates, each replaced by the file of
// the same name in dir when it exists there. dir "" means built-ins only.
func LoadTemplates(dir string) (*Templates, error) {
	if dir != "" {
		st, err := os.Stat(dir)
		if err != nil {
			return nil, fmt.Errorf("mail: template directory: %w", err)
		}
		if !st.IsDir() {
			return nil, fmt.Errorf("mail: template directory %s is not a directory", dir)
		}
	}
	l := loader{dir: dir}
	t := &Templates{
		validation: mailTemplates{
			subject: l.load(ValidationSubjectFile),
			text:    l.load(ValidationTextFile),
			html:    l.load(ValidationHTMLFile),
		},
		invite: mailTemplates{
			subject: l.load(InviteSubjectFile),
			text:    l.load(InviteTextFile),
			html:    l.load(InviteHTMLFile),
		},
	}
	if l.err != nil {
		return nil, l.err
	}
	return t, nil
}

// loader keeps the first error so LoadTemplates reads straight.
type loader struct {
	dir string
	err error
}

func (l *loader) load(name string) tmpl {
	if l.err != nil {
		return tmpl{}
	}
	src, origin, err := l.read(name)
	if err != nil {
		l.err = err
		return tmpl{}
	}
	var exec executor
	if strings.HasSuffix(name, ".html") {
		exec, err = htmltemplate.New(name).Parse(string(src))
	} else {
		exec, err = texttemplate.New(name).Parse(string(src))
	}
	if err != nil {
		l.err = fmt.Errorf("mail: parse template %s: %w", origin, err)
		return tmpl{}
	}
	return tmpl{origin: origin, exec: exec}
}

func (l *loader) read(name string) (src []byte, origin string, err error) {
	if l.dir != "" {
		p := filepath.Join(l.dir, name)
		src, err := os.ReadFile(p)
		if err == nil {
			return src, p, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, p, fmt.Errorf("mail: read template %s: %w", p, err)
		}
	}
	src, err = builtinTemplates.ReadFile("templates/" + name)
	if err != nil {
		return nil, "", fmt.Errorf("mail: built-in template %s: %w", name, err)
	}
	return src, "built-in " + name, nil
}

// Validation renders the address validation mail for d.Address.
func (t *Templates) Validation(d ValidationData) (Message, error) {
	return t.validation.render(d.Address, d)
}

// Invite renders the third-party invite mail for d.Address.
func (t *Templates) Invite(d InviteData) (Message, error) {
	return t.invite.render(d.Address, d)
}

func (m mailTemplates) render(to string, data any) (Message, error) {
	subject, err := m.subject.execute(data)
	if err != nil {
		return Message{}, err
	}
	subject = strings.TrimSpace(subject)
	if strings.ContainsAny(subject, "\r\n") {
		return Message{}, fmt.Errorf("mail: template %s: subject must be a single line", m.subject.origin)
	}
	text, err := m.text.execute(data)
	if err != nil {
		return Message{}, err
	}
	html, err := m.html.execute(data)
	if err != nil {
		return Message{}, err
	}
	return Message{To: to, Subject: subject, Text: text, HTML: html}, nil
}

func (t tmpl) execute(data any) (string, error) {
	var b bytes.Buffer
	if err := t.exec.Execute(&b, data); err != nil {
		return "", fmt.Errorf("mail: execute template %s: %w", t.origin, err)
	}
	return b.String(), nil
}
