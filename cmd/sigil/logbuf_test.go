package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// The process's logger hands the access log's fast path to the HTTP
// stack; a derived logger (with attributes) must not, as the fast path
// would drop them.
func TestAccessLogFastPathOnlyForTheProcessLogger(t *testing.T) {
	for _, format := range []string{"text", "json"} {
		log, err := processLogger("info", format, newLogBuffer(io.Discard))
		if err != nil {
			t.Fatal(err)
		}
		al := accessLogOf(log)
		if al == nil || al.JSON != (format == "json") {
			t.Fatalf("%s: access log %+v", format, al)
		}
		if accessLogOf(log.With("component", "x")) != nil || accessLogOf(log.WithGroup("g")) != nil {
			t.Errorf("%s: a derived logger kept the fast path", format)
		}
	}
}

// Through build, as `sigil serve` wires it: the lines the server writes
// are the access log's, in the configured format.
func TestServerAccessLogThroughProcessLogger(t *testing.T) {
	for _, format := range []string{"text", "json"} {
		var out bytes.Buffer
		lb := newLogBuffer(&out)
		log, err := processLogger("info", format, lb)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := LoadConfig(newSetup(t, "").config, nil)
		if err != nil {
			t.Fatal(err)
		}
		a, err := build(t.Context(), cfg, log)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(a.Close)
		for _, path := range []string{"/_matrix/identity/v2", "/_matrix/identity/v2/nowhere"} {
			rec := httptest.NewRecorder()
			a.http.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		}
		_ = lb.Flush()
		var lines []string
		for _, l := range strings.Split(out.String(), "\n") {
			if strings.Contains(l, "request_id") {
				lines = append(lines, l)
			}
		}
		if len(lines) != 2 {
			t.Fatalf("%s: %d access-log lines:\n%s", format, len(lines), out.String())
		}
		for i, want := range []string{"GetPingV2", "unrouted"} {
			if format == "json" {
				var m map[string]any
				if err := json.Unmarshal([]byte(lines[i]), &m); err != nil || m["op"] != want || m["msg"] != "request" {
					t.Errorf("json line %q: %v %v", lines[i], m, err)
				}
			} else if !strings.Contains(lines[i], "level=INFO msg=request ") || !strings.Contains(lines[i], " op="+want+" ") {
				t.Errorf("text line %q", lines[i])
			}
		}
	}
}
