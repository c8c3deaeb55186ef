package validate

import (
	"encoding/json"
	"net/http"
	"unicode/utf8"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/labstack/echo/v4"
)

// simpleParams is the fast path of parameter validation: an operation whose
// parameters are all plain strings in the query or the path, with at most
// a maxLength, is accepted without kin-openapi when each parameter is
// given once, not empty and not too long (kin-openapi's answer then is
// always yes; it cost a small request such as a v1 lookup about 5 % of its
// CPU). Anything else (a parameter missing, repeated, empty or too long)
// goes through kin-openapi as before, so every refusal is worded as it
// always was.
type simpleParams []simpleParam

type simpleParam struct {
	name     string
	inPath   bool
	required bool
	maxLen   int // runes; 0: no limit
}

// compileSimpleParams returns op's simple parameters, or ok false when one
// of them is not simple.
func compileSimpleParams(item *openapi3.PathItem, op *openapi3.Operation) (simpleParams, bool) {
	var out simpleParams
	all := append(openapi3.Parameters{}, item.Parameters...)
	all = append(all, op.Parameters...)
	for _, ref := range all {
		p := ref.Value
		if p == nil || (p.In != openapi3.ParameterInQuery && p.In != openapi3.ParameterInPath) ||
			p.Content != nil || p.AllowEmptyValue || p.Explode != nil || (p.Style != "" && p.Style != "form" && p.Style != "simple") ||
			p.Schema == nil || p.Schema.Value == nil {
			return nil, false
		}
		s := p.Schema.Value
		if !s.Type.Is(openapi3.TypeString) || !onlyKeys(s, "type", "maxLength", "example", "description") {
			return nil, false
		}
		sp := simpleParam{name: p.Name, inPath: p.In == openapi3.ParameterInPath, required: p.Required}
		if s.MaxLength != nil {
			sp.maxLen = int(*s.MaxLength)
			if sp.maxLen <= 0 {
				return nil, false
			}
		}
		out = append(out, sp)
	}
	return out, true
}

// onlyKeys reports whether s, as JSON, has no keyword but those given.
func onlyKeys(s *openapi3.Schema, allowed ...string) bool {
	raw, err := json.Marshal(s)
	if err != nil {
		return false
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return false
	}
	for k := range m {
		ok := false
		for _, a := range allowed {
			ok = ok || k == a
		}
		if !ok {
			return false
		}
	}
	return true
}

// accepts reports whether the request's parameters certainly pass.
func (ps simpleParams) accepts(c echo.Context, req *http.Request) bool {
	if len(ps) == 0 {
		return true
	}
	query := c.QueryParams() // Echo's, parsed once a request
	for _, p := range ps {
		var v string
		if p.inPath {
			v = c.Param(p.name)
			if v == "" {
				return false
			}
		} else {
			vs := query[p.name]
			switch {
			case len(vs) == 0 && !p.required:
				continue
			case len(vs) != 1 || vs[0] == "":
				return false
			}
			v = vs[0]
		}
		if p.maxLen > 0 && len(v) > p.maxLen && utf8.RuneCountInString(v) > p.maxLen {
			return false
		}
	}
	return true
}
