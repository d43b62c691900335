package server

import (
	"context"
	"strconv"
	"time"

	"github.com/eventrelay/eventrelay/relay"
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
	batchSize     *prometheus.HistogramVec
	redisErrors   *prometheus.CounterVec
	filterErrors  prometheus.Counter
	bodyBytes     prometheus.Gauge
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
		batchSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "eventrelay_append_batch_size", Help: "Appends per pipelined Redis round trip (group commit), by source.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024},
		}, []string{"source"}),
		redisErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventrelay_redis_errors_total", Help: "Failed Redis commands (network errors, timeouts, error replies), by command.",
		}, []string{"command"}),
		filterErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eventrelay_filter_errors_total", Help: "Events a subscription's filter could not be evaluated on (counted as not matching).",
		}),
		bodyBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "eventrelay_webhook_body_bytes", Help: "Bytes of webhook bodies held while they arrive, are verified and are stored (bounded by http.max_body_memory).",
		}),
	}
	r.MustRegister(m.requests, m.verifyFails, m.verifyKeys, m.appendSeconds, m.ingestedTotal, m.dedupeHits,
		m.subscribers, m.deliveries, m.redeliveries, m.acks, m.storeErrors, m.batchSize, m.redisErrors, m.filterErrors, m.bodyBytes,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// bodyHeld adds delta to the bytes of webhook bodies held.
func (m *Metrics) bodyHeld(delta int64) {
	if m != nil {
		m.bodyBytes.Add(float64(delta))
	}
}

// FilterError counts an event a subscription's filter could not be evaluated on (wire it to
// relay.Options.OnFilterError).
func (m *Metrics) FilterError(error) {
	if m != nil {
		m.filterErrors.Inc()
	}
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

// ObserveBatch records one append round trip of n appends to a partition of source (wire it
// to redisstore.Store.ObserveBatches).
func (m *Metrics) ObserveBatch(source string, n int) {
	if m != nil {
		m.batchSize.WithLabelValues(source).Observe(float64(n))
	}
}

// RedisError counts a failed Redis command in eventrelay_redis_errors_total (wire it to
// redisstore.Store.ObserveErrors); command is a lower-case command name or "dial".
func (m *Metrics) RedisError(command string) {
	if m != nil {
		m.redisErrors.WithLabelValues(command).Inc()
	}
}

// WatchStreams registers a collector that reads, on every scrape, the state of each source's
// streams (relay.Service.Stats): eventrelay_stream_length (entries retained),
// eventrelay_dead_letters (entries in the dead-letter streams of all its groups), and per
// consumer group eventrelay_group_lag (entries not yet delivered to the group; left out when
// unknown) and eventrelay_group_pending (delivered, not acknowledged), summed over the
// source's partitions. The read is bounded by timeout; when the store does not answer in time
// the scrape carries none of these series (and eventrelay_stream_scrape_errors_total counts
// it) rather than stale values.
func (m *Metrics) WatchStreams(svc *relay.Service, timeout time.Duration) {
	if m == nil {
		return
	}
	c := &streamCollector{svc: svc, timeout: timeout,
		length:  prometheus.NewDesc("eventrelay_stream_length", "Entries retained in the source's streams (all partitions).", []string{"source"}, nil),
		dead:    prometheus.NewDesc("eventrelay_dead_letters", "Entries in the source's dead-letter streams (all partitions).", []string{"source"}, nil),
		lag:     prometheus.NewDesc("eventrelay_group_lag", "Entries of the source not yet delivered to the consumer group (all partitions).", []string{"source", "group"}, nil),
		pending: prometheus.NewDesc("eventrelay_group_pending", "Entries delivered to the consumer group and not yet acknowledged (all partitions).", []string{"source", "group"}, nil),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eventrelay_stream_scrape_errors_total", Help: "Scrapes that could not read the stream state from Redis.",
		}),
	}
	m.Registry.MustRegister(c)
}

type streamCollector struct {
	svc                        *relay.Service
	timeout                    time.Duration
	length, dead, lag, pending *prometheus.Desc
	errors                     prometheus.Counter
}

func (c *streamCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.length
	ch <- c.dead
	ch <- c.lag
	ch <- c.pending
	c.errors.Describe(ch)
}

func (c *streamCollector) Collect(ch chan<- prometheus.Metric) {
	defer c.errors.Collect(ch)
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	stats, err := c.svc.Stats(ctx)
	if err != nil {
		c.errors.Inc()
		return
	}
	for _, s := range stats {
		ch <- prometheus.MustNewConstMetric(c.length, prometheus.GaugeValue, float64(s.Length), s.Name)
		ch <- prometheus.MustNewConstMetric(c.dead, prometheus.GaugeValue, float64(s.DeadLetters), s.Name)
		for _, g := range s.Groups {
			ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(g.Pending), s.Name, g.Name)
			if g.Lag >= 0 {
				ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, float64(g.Lag), s.Name, g.Name)
			}
		}
	}
}
