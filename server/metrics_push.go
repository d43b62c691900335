package server

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eventrelay/eventrelay/relay"
	"github.com/eventrelay/eventrelay/relay/push"
)

// PushMetrics are the push destinations' metrics; it is the push.Observer of a Pusher.
//
//   - eventrelay_push_attempts_total{destination,result}: attempts by result (success, or
//     the failure class: server_error, client_error, rate_limited, unavailable, gone,
//     redirect, timeout, connection, private)
//   - eventrelay_push_attempt_duration_seconds{destination}: the latency of attempts
//   - eventrelay_push_dead_letters_total{destination}: events dead-lettered past the limits
//   - eventrelay_push_in_flight{destination}, eventrelay_push_held{destination}: attempts in
//     flight, and events in this replica's hands (waiting, in flight, retrying in place)
//   - eventrelay_push_paused{destination}: 1 while paused by a 410 Gone
//   - eventrelay_push_breaker_open{destination}: 1 while the circuit breaker is open or half open
//   - eventrelay_push_backlog{destination}: events not yet delivered or not yet acknowledged
//     (the group's lag plus pending, all sources)
//   - eventrelay_push_oldest_age_seconds{destination}: age of the oldest of them
type PushMetrics struct {
	attempts *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	dead     *prometheus.CounterVec
}

// WatchPush registers the push metrics, reading p's state and the store's numbers (bounded
// by timeout) at each scrape, and returns the observer to give push.New (nil m: nil).
func (m *Metrics) WatchPush(svc *relay.Service, status func() []push.Status, timeout time.Duration) *PushMetrics {
	if m == nil {
		return nil
	}
	pm := &PushMetrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventrelay_push_attempts_total", Help: "Push delivery attempts by destination and result (success or failure class).",
		}, []string{"destination", "result"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "eventrelay_push_attempt_duration_seconds", Help: "Latency of push delivery attempts, response included.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"destination"}),
		dead: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventrelay_push_dead_letters_total", Help: "Events a destination dead-lettered past its retry limits.",
		}, []string{"destination"}),
	}
	c := &pushCollector{svc: svc, status: status, timeout: timeout,
		inFlight: prometheus.NewDesc("eventrelay_push_in_flight", "Push attempts in flight.", []string{"destination"}, nil),
		held:     prometheus.NewDesc("eventrelay_push_held", "Events in this replica's hands: waiting, in flight or retrying in place.", []string{"destination"}, nil),
		paused:   prometheus.NewDesc("eventrelay_push_paused", "1 while the destination is paused (a 410 Gone).", []string{"destination"}, nil),
		breaker:  prometheus.NewDesc("eventrelay_push_breaker_open", "1 while the destination's circuit breaker is open or half open.", []string{"destination"}, nil),
		backlog:  prometheus.NewDesc("eventrelay_push_backlog", "Events of the destination not yet delivered or acknowledged (all sources).", []string{"destination"}, nil),
		oldest:   prometheus.NewDesc("eventrelay_push_oldest_age_seconds", "Age of the destination's oldest event not yet acknowledged.", []string{"destination"}, nil),
	}
	m.Registry.MustRegister(pm.attempts, pm.latency, pm.dead, c)
	return pm
}

// Attempt counts one attempt (push.Observer).
func (pm *PushMetrics) Attempt(destination string, class push.Class, latency time.Duration) {
	pm.attempts.WithLabelValues(destination, string(class)).Inc()
	pm.latency.WithLabelValues(destination).Observe(latency.Seconds())
}

// DeadLettered counts one dead letter (push.Observer).
func (pm *PushMetrics) DeadLettered(destination string) {
	pm.dead.WithLabelValues(destination).Inc()
}

type pushCollector struct {
	svc                                              *relay.Service
	status                                           func() []push.Status
	timeout                                          time.Duration
	inFlight, held, paused, breaker, backlog, oldest *prometheus.Desc
}

func (c *pushCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.inFlight, c.held, c.paused, c.breaker, c.backlog, c.oldest} {
		ch <- d
	}
}

func (c *pushCollector) Collect(ch chan<- prometheus.Metric) {
	sts := c.status()
	if len(sts) == 0 {
		return
	}
	gauge := func(d *prometheus.Desc, v float64, name string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, name)
	}
	for _, s := range sts {
		gauge(c.inFlight, float64(s.InFlight), s.Name)
		gauge(c.held, float64(s.Held), s.Name)
		gauge(c.paused, b2f(s.State == "paused"), s.Name)
		gauge(c.breaker, b2f(s.Breaker != push.BreakerClosed), s.Name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	stats, err := c.svc.Stats(ctx)
	if err != nil {
		return // eventrelay_stream_scrape_errors_total counts the store's failures
	}
	for _, s := range sts {
		backlog, unknown := int64(0), false
		var oldest relay.ID
		for _, src := range stats {
			for _, g := range src.Groups {
				if g.Name != s.Group {
					continue
				}
				backlog += g.Pending
				if g.Lag < 0 {
					unknown = true
				}
				backlog += max(g.Lag, 0)
				if !g.Oldest.IsZero() && (oldest.IsZero() || g.Oldest.Less(oldest)) {
					oldest = g.Oldest
				}
			}
		}
		if !unknown {
			gauge(c.backlog, float64(backlog), s.Name)
		}
		age := 0.0
		if !oldest.IsZero() {
			age = max(time.Since(oldest.Time()).Seconds(), 0)
		}
		gauge(c.oldest, age, s.Name)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
