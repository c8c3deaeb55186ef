package handlers_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/sigil-matrix/sigil/handlers/apitest"
)

// With the v1 API switched off, /versions lists no r0 release (they define
// the v1 API): clients and sigil-conformance trust the list (found by
// sigil-conformance, which ran every v1 case against a server answering
// 404 to all of them).
func TestVersionsWithoutV1ListNoR0Release(t *testing.T) {
	versions := func(env *apitest.Env) []string {
		var out []string
		vs, _ := env.Get("/_matrix/identity/versions").JSON()["versions"].([]any)
		for _, v := range vs {
			out = append(out, v.(string))
		}
		return out
	}
	off := versions(apitest.New(t, func(s *apitest.Setup) { s.HTTP.DisableV1 = true }))
	if !slices.Contains(off, "v1.1") || slices.ContainsFunc(off, func(v string) bool { return strings.HasPrefix(v, "r0.") }) {
		t.Errorf("v1 off: versions %v, want v1.x only", off)
	}
	on := versions(apitest.New(t))
	if !slices.Contains(on, "r0.2.1") || !slices.Contains(on, "v1.1") {
		t.Errorf("v1 on: versions %v, want the r0 releases and v1.x", on)
	}
}
