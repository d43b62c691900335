package server

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics are eventrelay's Prometheus metrics, all prefixed eventrelay_. A nil *Metrics
// observes nothing, so tests and embedders may leave it out.
type Metrics struct {
	Registry *prometheus.Registry

	requests      *prometheus.CounterVec
	verifyFails   *prometheus.CounterVec
	verifyKeys    *prometheus.CounterVec
	appendSeconds *prometheus.HistogramVec
	ingestedTotal *prometheus.CounterVec
	dedupeHits    *prometheus.CounterVec
	subscribers   prometheus.Gauge
	deliveries    *prometheus.CounterVec
	redeliveries  *prometheus.CounterVec
	acks          prometheus.Counter
	storeErrors   prometheus.Counter
}

// NewMetrics registers eventrelay's metrics (and the Go and process collectors) in a new
// registry.
func NewMetrics() *Metrics {
	r := prometheus.NewRegistry()
	m := &Metrics{
		Registry: r,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventrelay_webhook_requests_total", Help: "Webhook requests by source and HTTP status.",
		}, []string{"source", "status"}),
		verifyFails: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventrelay_verification_failures_total", Help: "Rejected webhook signatures by source and reason.",
		}, []string{"source", "reason"}),
		verifyKeys: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventrelay_verifications_total", Help: "Accepted webhook signatures by source and matching key (index or id).",
		}, []string{"source", "key"}),
		appendSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "eventrelay_append_duration_seconds", Help: "Time from a verified request to the store's acknowledgement.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"source"}),
		ingestedTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventrelay_events_ingested_total", Help: "Events appended, by source.",
		}, []string{"source"}),
		dedupeHits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventrelay_dedupe_hits_total", Help: "Deliveries already stored within the dedupe window, by source.",
		}, []string{"source"}),
		subscribers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "eventrelay_subscribers", Help: "Open Subscribe streams.",
		}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventrelay_deliveries_total", Help: "Events sent on Subscribe streams, by source.",
		}, []string{"source"}),
		redeliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventrelay_redeliveries_total", Help: "Group deliveries with attempt > 1, by source.",
		}, []string{"source"}),
		acks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eventrelay_acks_total", Help: "Acknowledged group deliveries.",
		}),
		storeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eventrelay_store_errors_total", Help: "Requests that failed because the store (Redis) was unavailable.",
		}),
	}
	r.MustRegister(m.requests, m.verifyFails, m.verifyKeys, m.appendSeconds, m.ingestedTotal, m.dedupeHits,
		m.subscribers, m.deliveries, m.redeliveries, m.acks, m.storeErrors,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *Metrics) request(source string, status int) {
	if m != nil {
		m.requests.WithLabelValues(source, strconv.Itoa(status)).Inc()
	}
}

func (m *Metrics) verifyFailed(source, reason string) {
	if m != nil {
		m.verifyFails.WithLabelValues(source, reason).Inc()
	}
}

func (m *Metrics) verifiedKey(source, key string) {
	if m != nil {
		m.verifyKeys.WithLabelValues(source, key).Inc()
	}
}

func (m *Metrics) appended(source string, d time.Duration) {
	if m != nil {
		m.appendSeconds.WithLabelValues(source).Observe(d.Seconds())
	}
}

func (m *Metrics) ingested(source string, duplicate bool) {
	if m == nil {
		return
	}
	if duplicate {
		m.dedupeHits.WithLabelValues(source).Inc()
	} else {
		m.ingestedTotal.WithLabelValues(source).Inc()
	}
}

func (m *Metrics) subscriberAdd(n float64) {
	if m != nil {
		m.subscribers.Add(n)
	}
}

func (m *Metrics) delivered(source string, attempt int) {
	if m == nil {
		return
	}
	m.deliveries.WithLabelValues(source).Inc()
	if attempt > 1 {
		m.redeliveries.WithLabelValues(source).Inc()
	}
}

func (m *Metrics) acked(n int) {
	if m != nil && n > 0 {
		m.acks.Add(float64(n))
	}
}

func (m *Metrics) storeError() {
	if m != nil {
		m.storeErrors.Inc()
	}
}
