package signing

import (
	"encoding/json"
	"testing"
)

// typicalAssociation mirrors a signed 3PID association as returned by
// /_matrix/identity/v2/3pid/bind and lookups.
func typicalAssociation() map[string]any {
	return map[string]any{
		"address":    "alice@example.com",
		"medium":     "email",
		"mxid":       "@alice:example.com",
		"not_before": json.Number("1700000000000"),
		"not_after":  json.Number("4853600000000"),
		"ts":         json.Number("1700000000000"),
	}
}

func BenchmarkCanonical(b *testing.B) {
	v := typicalAssociation()
	v["signatures"] = map[string]any{"id.example.com": map[string]any{"ed25519:0": "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Canonical(v); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCanonicalBytes(b *testing.B) {
	raw, _ := json.Marshal(typicalAssociation())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := CanonicalBytes(raw); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSignJSON(b *testing.B) {
	k := vecKey(b)
	v := typicalAssociation()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := SignJSON(v, "id.example.com", k); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLookupHash(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = LookupHash("alice@example.com", "email", "matrixrocks")
	}
}
