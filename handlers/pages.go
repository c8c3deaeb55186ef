package handlers

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"os"
	"path/filepath"
)

// The pages shown to people who click a validation link (GET
// submitToken): they are meant to be read, not parsed. Like the mails,
// each comes from a built-in template that a file of the same name in the
// templates directory replaces.
const (
	SuccessPageFile = "submit_success.html"
	FailurePageFile = "submit_failure.html"
	ExpiredPageFile = "submit_expired.html"
)

//go:embed templates/*.html
var builtinPages embed.FS

// PageData is what the page templates see.
type PageData struct {
	// Medium is "email" or "msisdn".
	Medium string
	// Message and Errcode describe a failure (empty on success).
	Message, Errcode string
}

// Pages are the parsed page templates.
type Pages struct {
	success, failure, expired *template.Template
}

// LoadPages parses the built-in pages, each replaced by the file of the
// same name in dir when it exists there ("" means built-ins only).
func LoadPages(dir string) (*Pages, error) {
	load := func(name string) (*template.Template, error) {
		src, err := fs.ReadFile(builtinPages, "templates/"+name)
		origin := "built-in " + name
		if dir != "" {
			p := filepath.Join(dir, name)
			switch b, ferr := os.ReadFile(p); {
			case ferr == nil:
				src, origin = b, p
			case !errors.Is(ferr, fs.ErrNotExist):
				return nil, fmt.Errorf("pages: %w", ferr)
			}
		}
		if err != nil {
			return nil, err
		}
		t, err := template.New(name).Option("missingkey=error").Parse(string(src))
		if err != nil {
			return nil, fmt.Errorf("pages: %s: %w", origin, err)
		}
		// Render once so a broken override fails at start, not on a click.
		if err := t.Execute(new(bytes.Buffer), PageData{Medium: "email", Message: "m", Errcode: "M_UNKNOWN"}); err != nil {
			return nil, fmt.Errorf("pages: %s: %w", origin, err)
		}
		return t, nil
	}
	var p Pages
	var err error
	if p.success, err = load(SuccessPageFile); err != nil {
		return nil, err
	}
	if p.failure, err = load(FailurePageFile); err != nil {
		return nil, err
	}
	if p.expired, err = load(ExpiredPageFile); err != nil {
		return nil, err
	}
	return &p, nil
}

func mustDefaultPages() *Pages {
	p, err := LoadPages("")
	if err != nil {
		panic(err) // the built-ins are tested
	}
	return p
}

func render(t *template.Template, d PageData) []byte {
	var b bytes.Buffer
	if err := t.Execute(&b, d); err != nil {
		// Templates are checked at load; a failure here is a bug.
		return []byte("<!DOCTYPE html><title>Error</title><p>" + template.HTMLEscapeString(d.Message) + "</p>")
	}
	return b.Bytes()
}

// successPage is the page of a verified 3PID of medium.
func (p *Pages) successPage(medium string) []byte { return render(p.success, PageData{Medium: medium}) }

// errorPage is the page of a refused click: the expired page for an
// expired session, the failure page otherwise.
func (p *Pages) errorPage(medium, message, errcode string) []byte {
	t := p.failure
	if errcode == "M_SESSION_EXPIRED" {
		t = p.expired
	}
	return render(t, PageData{Medium: medium, Message: message, Errcode: errcode})
}
