package metrics

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// Whether an onbind delivery went through on the first attempt is
// answerable: deliveries are counted by result and first attempt or not,
// attempts by result.
func TestOnBindCountsDeliveriesAndAttempts(t *testing.T) {
	m := New()
	m.OnBind("delivered", 1) // first time
	m.OnBind("retry", 1)
	m.OnBind("retry", 2)
	m.OnBind("delivered", 3) // after two failures
	m.OnBind("failed", 1)    // refused at once
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		`sigil_onbind_attempts_total{result="delivered"} 2`,
		`sigil_onbind_attempts_total{result="retry"} 2`,
		`sigil_onbind_attempts_total{result="failed"} 1`,
		`sigil_onbind_attempts_total{result="interrupted"} 0`,
		`sigil_onbind_deliveries_total{first_attempt="yes",result="delivered"} 1`,
		`sigil_onbind_deliveries_total{first_attempt="no",result="delivered"} 1`,
		`sigil_onbind_deliveries_total{first_attempt="yes",result="failed"} 1`,
		`sigil_onbind_deliveries_total{first_attempt="no",result="failed"} 0`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// Requests land in the series of their operation and status, however the
// series are cached, and the latency histogram counts each.
func TestRequestSeries(t *testing.T) {
	m := New()
	m.Request("LookupV1", 200, "", 2*time.Millisecond)
	m.Request("LookupV1", 200, "", 3*time.Millisecond)
	m.Request("LookupV1", 404, "M_UNRECOGNIZED", time.Millisecond)
	m.Request("LookupV2", 429, "M_LIMIT_EXCEEDED", time.Millisecond)
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		`sigil_http_requests_total{operation="LookupV1",status="200"} 2`,
		`sigil_http_requests_total{operation="LookupV1",status="404"} 1`,
		`sigil_http_requests_total{operation="LookupV2",status="429"} 1`,
		`sigil_http_request_duration_seconds_count{operation="LookupV1"} 3`,
		`sigil_http_request_duration_seconds_bucket{operation="LookupV1",le="0.0025"} 2`,
		`sigil_rate_limited_total{operation="LookupV2"} 1`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
