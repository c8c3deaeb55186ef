package validate_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/sigil-matrix/sigil/spec/matrixerr"
)

// JSON is UTF-8 (RFC 8259, and the Matrix spec's "everything is UTF-8"):
// a body with invalid UTF-8 in a string is M_NOT_JSON, not quietly
// rewritten to U+FFFD by the decoder (found by sigil-conformance).
func TestInvalidUTF8IsNotJSON(t *testing.T) {
	v := newValidator(t)
	e := echo.New()
	var got error
	e.HTTPErrorHandler = func(err error, c echo.Context) { got = err; _ = c.NoContent(599) }
	e.Use(v.Middleware())
	e.POST("/_matrix/identity/api/v1/store-invite", func(c echo.Context) error { return c.NoContent(http.StatusNoContent) })
	// Bound as the generated router's handler would be.
	v.Bind([]*echo.Route{{Method: "POST", Path: "/_matrix/identity/api/v1/store-invite", Name: "gen.(*ServerInterfaceWrapper).StoreInvite-fm"}})
	for _, tc := range []struct {
		name    string
		body    string
		errcode string
	}{
		{"valid UTF-8", `{"medium":"email","address":"a@b.c","room_id":"!r:x","sender":"@s:x","room_name":"Café ☕ 😀"}`, ""},
		{"invalid byte", "{\"medium\":\"email\",\"address\":\"a@b.c\",\"room_id\":\"!r:x\",\"sender\":\"@s:x\",\"room_name\":\"bad \xff\xfe\"}", "M_NOT_JSON"},
		{"truncated sequence", "{\"medium\":\"email\",\"address\":\"a@b.c\",\"room_id\":\"!r:x\",\"sender\":\"@s:x\",\"room_name\":\"\xe2\x98\"}", "M_NOT_JSON"},
		{"invalid byte in a key", "{\"medium\":\"email\",\"address\":\"a@b.c\",\"room_id\":\"!r:x\",\"sender\":\"@s:x\",\"x\xff\":1}", "M_NOT_JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got = nil
			req := httptest.NewRequest("POST", "/_matrix/identity/api/v1/store-invite", bytes.NewReader([]byte(tc.body)))
			req.Header.Set("Content-Type", "application/json")
			e.ServeHTTP(httptest.NewRecorder(), req)
			if tc.errcode == "" {
				if got != nil {
					t.Fatalf("refused: %v", got)
				}
				return
			}
			me, ok := matrixerr.As(got)
			if !ok || me.Code != tc.errcode || me.Status != http.StatusBadRequest {
				t.Fatalf("error %v, want 400 %s", got, tc.errcode)
			}
		})
	}
}
