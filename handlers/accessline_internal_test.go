package handlers

import (
	"bytes"
	"context"
	"log/slog"
	"testing"
	"time"
)

// slogLine is what slog's own handler writes for l: the layout the access
// log's fast path must reproduce byte for byte.
func slogLine(t *testing.T, l accessLine, json bool) string {
	t.Helper()
	var buf bytes.Buffer
	var h slog.Handler = slog.NewTextHandler(&buf, nil)
	if json {
		h = slog.NewJSONHandler(&buf, nil)
	}
	r := slog.NewRecord(l.at, slog.LevelInfo, "request", 0)
	r.AddAttrs(slog.String("request_id", l.id), slog.String("op", l.op), slog.String("method", l.method),
		slog.String("route", l.route), slog.Int("status", l.status), slog.String("errcode", l.errcode),
		slog.Float64("duration_ms", l.durationMS))
	if err := h.Handle(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

func TestAccessLineIsSlogsLayout(t *testing.T) {
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		paris = time.FixedZone("CET", 3600)
	}
	base := accessLine{at: time.Date(2026, 12, 5, 17, 11, 18, 123456789, time.UTC), id: "e5f917775b12dae2afc830e2",
		op: "LookupV1", method: "GET", route: "/_matrix/identity/api/v1/lookup", status: 200, durationMS: 0.038}
	cases := []struct {
		name string
		edit func(*accessLine)
	}{
		{"success", func(*accessLine) {}},
		{"error code", func(l *accessLine) { l.status, l.errcode = 403, "M_TERMS_NOT_SIGNED" }},
		{"unrouted, no route", func(l *accessLine) { l.op, l.route, l.status, l.errcode = unrouted, "", 404, "M_UNRECOGNIZED" }},
		{"whole millisecond", func(l *accessLine) { l.at = l.at.Truncate(time.Millisecond) }},
		{"whole second", func(l *accessLine) { l.at = l.at.Truncate(time.Second) }},
		{"other zone", func(l *accessLine) { l.at = l.at.In(paris) }},
		{"zero duration", func(l *accessLine) { l.durationMS = 0 }},
		{"long duration", func(l *accessLine) { l.durationMS = 61234.567 }},
		{"huge duration", func(l *accessLine) { l.durationMS = 1e7 }},
		{"route with braces", func(l *accessLine) { l.route = "/_matrix/identity/v2/pubkey/{keyId}" }},
		{"proxy's request id", func(l *accessLine) { l.id = "a-b_c.d" }},
		{"odd method token", func(l *accessLine) { l.method = "M!#$%&'*+^`|~" }},
	}
	for _, c := range cases {
		for _, json := range []bool{false, true} {
			l := base
			c.edit(&l)
			var buf bytes.Buffer
			if !(&AccessLog{W: &buf, JSON: json}).write(&l) {
				t.Errorf("%s (json %v): the fast path declined a plain line", c.name, json)
				continue
			}
			if got, want := buf.String(), slogLine(t, l, json); got != want {
				t.Errorf("%s (json %v):\n got %q\nwant %q", c.name, json, got, want)
			}
		}
	}
}

// Values slog would quote or escape are left to slog.
func TestAccessLineDeclinesWhatSlogQuotes(t *testing.T) {
	for _, route := range []string{"a b", "a=b", `a"b`, `a\b`, "a\nb", "a\x7fb", "é", "\u2028"} {
		for _, json := range []bool{false, true} {
			var buf bytes.Buffer
			l := accessLine{at: time.Now(), id: "x", op: "o", method: "GET", route: route, status: 200}
			if (&AccessLog{W: &buf, JSON: json}).write(&l) || buf.Len() > 0 {
				t.Errorf("route %q (json %v): written by the fast path: %q", route, json, buf.String())
			}
		}
	}
}
