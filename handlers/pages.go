package handlers

import (
	"bytes"
	"html/template"
)

// page is the small HTML document shown to people who click a validation
// link: the GET submitToken answers are meant to be read, not parsed.
var page = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>body{font-family:system-ui,sans-serif;max-width:36em;margin:4em auto;padding:0 1em;color:#222}h1{font-size:1.4em}code{color:#666}</style>
</head><body><h1>{{.Title}}</h1><p>{{.Message}}</p>{{if .Code}}<p><code>{{.Code}}</code></p>{{end}}</body></html>
`))

func renderPage(title, message, code string) []byte {
	var b bytes.Buffer
	_ = page.Execute(&b, struct{ Title, Message, Code string }{title, message, code})
	return b.Bytes()
}

func successPage(title, message string) []byte { return renderPage(title, message, "") }
