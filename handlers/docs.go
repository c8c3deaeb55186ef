package handlers

import (
	"embed"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/labstack/echo/v4"
)

// The API's own documentation, outside /_matrix: the embedded OpenAPI
// document at a stable URL and an interactive page rendering it with
// Redoc, whose bundle is embedded too (pinned by .ci/redoc), so the page
// loads nothing from elsewhere.
const (
	DocsPath    = "/docs/"
	OpenAPIPath = "/docs/openapi.json"
)

//go:embed docs/index.html docs/redoc.standalone.js
var docsFS embed.FS

// docsCSP allows only this server's scripts; Redoc runs its search in a
// worker made from a blob and styles its components inline.
const docsCSP = "default-src 'none'; script-src 'self' blob:; worker-src 'self' blob:; style-src 'self' 'unsafe-inline'; " +
	"img-src 'self' data:; font-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// registerDocs adds the documentation routes and returns them, for the
// validator to pass through (they are no operations of the API).
func registerDocs(e *echo.Echo, doc *openapi3.T) ([]*echo.Route, error) {
	spec, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("docs: %w", err)
	}
	page, err := docsFS.ReadFile("docs/index.html")
	if err != nil {
		return nil, err
	}
	bundle, err := docsFS.ReadFile("docs/redoc.standalone.js")
	if err != nil {
		return nil, err
	}
	serve := func(contentType string, body []byte) echo.HandlerFunc {
		return func(c echo.Context) error {
			c.Set(operationKey, "docs")
			h := c.Response().Header()
			h.Set("Content-Security-Policy", docsCSP)
			h.Set("X-Content-Type-Options", "nosniff")
			h.Set("Cache-Control", "public, max-age=3600")
			return c.Blob(http.StatusOK, contentType, body)
		}
	}
	return []*echo.Route{
		e.GET(DocsPath, serve("text/html; charset=utf-8", page)),
		e.GET(DocsPath+"redoc.standalone.js", serve("text/javascript; charset=utf-8", bundle)),
		e.GET(OpenAPIPath, serve("application/json", spec)),
		e.GET("/docs", func(c echo.Context) error { return c.Redirect(http.StatusMovedPermanently, DocsPath) }),
	}, nil
}
