package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestRawConnReadsEveryFraming holds the generator's client to what the
// servers send: Content-Length and chunked bodies (large answers without a
// length), error bodies reported, and keep-alive kept across requests.
func TestRawConnReadsEveryFraming(t *testing.T) {
	big := strings.Repeat("x", 100<<10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/len":
			w.Header().Set("Content-Length", "2")
			fmt.Fprint(w, "{}")
		case "/chunked":
			fmt.Fprint(w, big) // no length: net/http chunks it
		case "/err":
			w.Header().Set("Authorization-Seen", r.Header.Get("Authorization"))
			http.Error(w, `{"errcode":"M_NOT_FOUND"}`, http.StatusNotFound)
		}
	}))
	defer srv.Close()
	rc := newRawConn(strings.TrimPrefix(srv.URL, "http://"))
	defer rc.close()
	deadline := time.Now().Add(10 * time.Second)
	for range 3 {
		for _, tc := range []struct {
			uri  string
			code int
			body string
		}{{"/len", 200, ""}, {"/chunked", 200, ""}, {"/err", 404, `{"errcode":"M_NOT_FOUND"}`}} {
			code, errBody, err := rc.do(request{method: "POST", uri: tc.uri, auth: "Bearer t", body: []byte(`{"a":1}`)}, deadline)
			if err != nil || code != tc.code || strings.TrimSpace(errBody) != tc.body {
				t.Fatalf("%s: code %d, body %q, err %v; want %d %q", tc.uri, code, errBody, err, tc.code, tc.body)
			}
		}
	}
}
