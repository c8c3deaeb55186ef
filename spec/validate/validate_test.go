package validate

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

func TestEchoPath(t *testing.T) {
	tests := map[string]string{
		"/_matrix/identity/api/v1/pubkey/{keyId}": "/_matrix/identity/api/v1/pubkey/:keyId",
		"/a/{x}/b/{y}": "/a/:x/b/:y",
		"/plain":       "/plain",
		"/broken/{x":   "/broken/{x",
	}
	for in, want := range tests {
		if got := EchoPath(in); got != want {
			t.Errorf("EchoPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestFormToJSONTypesValues(t *testing.T) {
	schema := &openapi3.Schema{Properties: openapi3.Schemas{
		"send_attempt": {Value: &openapi3.Schema{Type: &openapi3.Types{"integer"}}},
		"flag":         {Value: &openapi3.Schema{Type: &openapi3.Types{"boolean"}}},
		"list":         {Value: &openapi3.Schema{Type: &openapi3.Types{"array"}, Items: &openapi3.SchemaRef{Value: &openapi3.Schema{Type: &openapi3.Types{"integer"}}}}},
		"email":        {Value: &openapi3.Schema{Type: &openapi3.Types{"string"}}},
	}}
	tests := []struct {
		form string
		want string
	}{
		{"send_attempt=2&email=a%40b.c", `{"email":"a@b.c","send_attempt":2}`},
		{"send_attempt=two", `{"send_attempt":"two"}`}, // left for the validator to refuse
		{"flag=true&list=1&list=2", `{"flag":true,"list":[1,2]}`},
		{"flag=yes", `{"flag":"yes"}`},
		{"unknown=7", `{"unknown":"7"}`},
		{"email=1", `{"email":"1"}`}, // a string stays a string
	}
	for _, tt := range tests {
		got, err := formToJSON([]byte(tt.form), schema)
		if err != nil {
			t.Fatalf("%s: %v", tt.form, err)
		}
		var a, b any
		json.Unmarshal(got, &a)
		json.Unmarshal([]byte(tt.want), &b)
		ga, _ := json.Marshal(a)
		gb, _ := json.Marshal(b)
		if string(ga) != string(gb) {
			t.Errorf("%s → %s, want %s", tt.form, got, tt.want)
		}
	}
	if _, err := formToJSON([]byte("%zz"), schema); err == nil {
		t.Error("a malformed form was accepted")
	}
}

func TestErrorsNeverEchoSchemas(t *testing.T) {
	// Regression: kin-openapi's Error() embeds the whole schema and value;
	// only the reason may reach the client.
	schema := openapi3.NewObjectSchema().WithProperty("sid", openapi3.NewStringSchema())
	schema.Required = []string{"sid", "mxid"}
	err := schema.VisitJSON(map[string]any{"sid": 5}, openapi3.MultiErrors())
	m, inv := schemaProblems(err)
	if strings.Join(m, ",") != "mxid" || len(inv) != 1 || strings.Contains(inv[0], "Schema") || !strings.HasPrefix(inv[0], "sid: ") {
		t.Errorf("missing %v invalid %v", m, inv)
	}
}
