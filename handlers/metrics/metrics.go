// Package metrics is Sigil's Prometheus instrumentation: requests by
// operation and status with their latency, mail and SMS sent and failed,
// rate-limit refusals, and, read at each scrape, the onbind queue, the
// lookup index and the database pools. It is served on its own listener
// (metrics_listen), never through the API.
package metrics

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sigil-matrix/sigil/handlers/mail"
	"github.com/sigil-matrix/sigil/handlers/sms"
	"github.com/sigil-matrix/sigil/store"
)

// Metrics holds the registry and the series Sigil updates as it runs.
type Metrics struct {
	reg         *prometheus.Registry
	requests    *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	mail        *prometheus.CounterVec
	sms         *prometheus.CounterVec
	rateLimited *prometheus.CounterVec
	onbindTries *prometheus.CounterVec
	onbindDone  *prometheus.CounterVec
	// series caches the request series of an operation and status:
	// WithLabelValues hashes and checks its labels on every call, a
	// request's largest metrics cost.
	series sync.Map // seriesKey -> requestSeries
}

type seriesKey struct {
	operation string
	status    int
}

type requestSeries struct {
	count   prometheus.Counter
	latency prometheus.Observer
}

// New registers Sigil's series and Go's runtime and process collectors.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sigil_http_requests_total", Help: "Requests answered, by operation id and status.",
		}, []string{"operation", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sigil_http_request_duration_seconds", Help: "Time to answer a request, by operation id.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10},
		}, []string{"operation"}),
		mail: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sigil_mail_total", Help: "Mails handed to the mail sender, by result (sent, failed).",
		}, []string{"result"}),
		sms: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sigil_sms_total", Help: "Text messages handed to the SMS sender, by result (sent, failed).",
		}, []string{"result"}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sigil_rate_limited_total", Help: "Requests refused with M_LIMIT_EXCEEDED, by operation id.",
		}, []string{"operation"}),
		onbindTries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sigil_onbind_attempts_total",
			Help: "Onbind calls made, by result: delivered, retry (failed, tried again later), failed (given up), interrupted (cut at shutdown).",
		}, []string{"result"}),
		onbindDone: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sigil_onbind_deliveries_total",
			Help: "Onbind deliveries finished, by result (delivered, failed: given up) and whether on the first attempt (first_attempt: yes, no).",
		}, []string{"result", "first_attempt"}),
	}
	// Every series exists from the start, at 0: a rate of "failed" or of
	// refusals can be graphed and alerted on before the first one.
	for _, r := range []string{"sent", "failed"} {
		m.mail.WithLabelValues(r)
		m.sms.WithLabelValues(r)
	}
	for _, r := range []string{"delivered", "retry", "failed", "interrupted"} {
		m.onbindTries.WithLabelValues(r)
	}
	for _, r := range []string{"delivered", "failed"} {
		for _, first := range []string{"yes", "no"} {
			m.onbindDone.WithLabelValues(r, first)
		}
	}
	m.reg.MustRegister(m.requests, m.latency, m.mail, m.sms, m.rateLimited, m.onbindTries, m.onbindDone,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry is where the series live (for tests and extra collectors).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Request records one answered request (handlers.Observer).
func (m *Metrics) Request(operation string, status int, errcode string, d time.Duration) {
	k := seriesKey{operation, status}
	v, ok := m.series.Load(k)
	if !ok {
		// Operations and statuses are bounded (unknown routes are all
		// "unrouted"), so the cache is too.
		v, _ = m.series.LoadOrStore(k, requestSeries{
			count:   m.requests.WithLabelValues(operation, strconv.Itoa(status)),
			latency: m.latency.WithLabelValues(operation),
		})
	}
	rs := v.(requestSeries)
	rs.count.Inc()
	rs.latency.Observe(d.Seconds())
	if errcode == "M_LIMIT_EXCEEDED" {
		m.rateLimited.WithLabelValues(operation).Inc()
	}
}

// Operations creates, at 0, the per-operation series that exist before
// any request (rate-limit refusals); handlers.NewHTTP calls it with every
// operation id of the document.
func (m *Metrics) Operations(ids []string) {
	for _, op := range ids {
		m.rateLimited.WithLabelValues(op)
	}
}

// OnBind records one onbind attempt (identity.Deps.OnBindObserver): its
// outcome (identity.OnBindOutcomes) and its number, 1 for the first. A
// delivered or failed outcome also ends the delivery.
func (m *Metrics) OnBind(outcome string, attempt int) {
	m.onbindTries.WithLabelValues(outcome).Inc()
	if outcome == "delivered" || outcome == "failed" {
		first := "no"
		if attempt == 1 {
			first = "yes"
		}
		m.onbindDone.WithLabelValues(outcome, first).Inc()
	}
}

// Mail wraps a sender so that every mail is counted.
func (m *Metrics) Mail(s mail.Sender) mail.Sender { return countMail{s, m.mail} }

// SMS wraps a sender so that every text message is counted.
func (m *Metrics) SMS(s sms.Sender) sms.Sender { return countSMS{s, m.sms} }

type countMail struct {
	mail.Sender
	c *prometheus.CounterVec
}

func (s countMail) Send(ctx context.Context, msg mail.Message) error {
	err := s.Sender.Send(ctx, msg)
	s.c.WithLabelValues(result(err)).Inc()
	return err
}

type countSMS struct {
	sms.Sender
	c *prometheus.CounterVec
}

func (s countSMS) Send(ctx context.Context, msg sms.Message) error {
	err := s.Sender.Send(ctx, msg)
	s.c.WithLabelValues(result(err)).Inc()
	return err
}

func result(err error) string {
	if err != nil {
		return "failed"
	}
	return "sent"
}

// WatchStore adds the series read from the store at each scrape: the
// onbind queue (from the database, so every instance agrees), the lookup
// index and the connection pools.
func (m *Metrics) WatchStore(st *store.Store, log *slog.Logger) {
	m.reg.MustRegister(&storeCollector{st: st, log: log})
	for role, db := range st.Pools() {
		// go_sql_* series, labelled db_name="read" or "write".
		m.reg.MustRegister(collectors.NewDBStatsCollector(db, role))
	}
}

var (
	onbindQueued = prometheus.NewDesc("sigil_onbind_queue_depth",
		"Onbind deliveries waiting (neither delivered nor given up).", nil, nil)
	onbindAttempts = prometheus.NewDesc("sigil_onbind_queue_attempts",
		"Delivery attempts made so far on the waiting onbind deliveries.", nil, nil)
	onbindFailed = prometheus.NewDesc("sigil_onbind_failed",
		"Onbind deliveries given up after their last retry.", nil, nil)
	onbindOldest = prometheus.NewDesc("sigil_onbind_oldest_age_seconds",
		"Age of the oldest waiting onbind delivery (0 when none waits).", nil, nil)
	indexLoaded = prometheus.NewDesc("sigil_lookup_index_loaded",
		"1 while lookups are answered from the in-memory index, 0 while it loads.", nil, nil)
	indexEntries = prometheus.NewDesc("sigil_lookup_index_entries",
		"Bindings in the in-memory lookup index.", nil, nil)
	indexBytes = prometheus.NewDesc("sigil_lookup_index_bytes",
		"Memory held by the lookup index (outside the Go heap).", nil, nil)
	indexLoads = prometheus.NewDesc("sigil_lookup_index_loads",
		"Completed loads of the lookup index.", nil, nil)
	indexLoadSeconds = prometheus.NewDesc("sigil_lookup_index_load_seconds",
		"Duration of the last completed index load.", nil, nil)
)

type storeCollector struct {
	st  *store.Store
	log *slog.Logger
}

func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{onbindQueued, onbindAttempts, onbindFailed, onbindOldest,
		indexLoaded, indexEntries, indexBytes, indexLoads, indexLoadSeconds} {
		ch <- d
	}
}

func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	ix := c.st.IndexStats()
	loaded := 0.0
	if ix.Loaded {
		loaded = 1
	}
	gauge := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	gauge(indexLoaded, loaded)
	gauge(indexEntries, float64(ix.Entries))
	gauge(indexBytes, float64(ix.Bytes))
	gauge(indexLoads, float64(ix.Loads))
	gauge(indexLoadSeconds, ix.LoadTime.Seconds())

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	q, err := c.st.OnBindQueueStats(ctx)
	if err != nil {
		// Leave the series out rather than report a false zero.
		c.log.Warn("metrics: onbind queue figures unavailable", "err", err)
		return
	}
	gauge(onbindQueued, float64(q.Queued))
	gauge(onbindAttempts, float64(q.Attempts))
	gauge(onbindFailed, float64(q.Failed))
	age := 0.0
	if !q.Oldest.IsZero() {
		age = time.Since(q.Oldest).Seconds()
	}
	gauge(onbindOldest, age)
}
