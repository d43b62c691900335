package server

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	eventrelayv1 "github.com/eventrelay/eventrelay/gen/eventrelay/v1"
	"github.com/eventrelay/eventrelay/internal/redistest"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/durationpb"
)

// metricValue gathers reg and returns the value of the series name{labels} (a histogram's
// sample count), and whether it exists.
func metricValue(t testing.TB, reg prometheus.Gatherer, name string, labels ...string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue series
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue(), true
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue(), true
			case m.GetHistogram() != nil:
				return float64(m.GetHistogram().GetSampleCount()), true
			}
		}
	}
	return 0, false
}

func TestMetrics(t *testing.T) {
	for _, backend := range []string{"redis", "embedded"} {
		t.Run(backend, func(t *testing.T) {
			url := ""
			if backend == "redis" {
				url = redisURL(t)
			}
			testMetrics(t, newEnv(t, envOptions{redisURL: url}))
		})
	}
}

func testMetrics(t *testing.T, e *env) {
	reg := e.metrics.Registry
	want := func(name string, v float64, labels ...string) {
		t.Helper()
		got, ok := metricValue(t, reg, name, labels...)
		if !ok || got != v {
			t.Errorf("%s%v = %v (present %v), want %v", name, labels, got, ok, v)
		}
	}
	for i := range 3 {
		if a := e.do(e.signedRequest("orders", []byte(fmt.Sprintf(`{"id":"evt_m%d","type":"t"}`, i)), time.Now())); a.status != 200 {
			t.Fatalf("%d %s", a.status, a.body)
		}
	}
	e.do(e.signedRequest("orders", []byte(`{"id":"evt_m0","type":"t"}`), time.Now())) // duplicate
	r := e.signedRequest("orders", []byte(`{"id":"evt_bad","type":"t"}`), time.Now())
	r.Header.Set("X-Signature", "sha256=00")
	e.do(r)

	want("eventrelay_webhook_requests_total", 4, "source", "orders", "status", "200")
	want("eventrelay_webhook_requests_total", 1, "source", "orders", "status", "401")
	want("eventrelay_events_ingested_total", 3, "source", "orders")
	want("eventrelay_dedupe_hits_total", 1, "source", "orders")
	want("eventrelay_append_duration_seconds", 4, "source", "orders")
	if n, _ := metricValue(t, reg, "eventrelay_append_batch_size", "source", "orders"); n < 1 || n > 4 {
		t.Errorf("batch size observations %v, want 1..4 (one per round trip)", n)
	}
	if n, _ := metricValue(t, reg, "eventrelay_verification_failures_total", "source", "orders"); n != 1 {
		t.Errorf("verification failures %v", n)
	}
	want("eventrelay_stream_length", 3, "source", "orders")
	want("eventrelay_stream_length", 0, "source", "billing")
	want("eventrelay_dead_letters", 0, "source", "orders")

	// A group that was handed one entry and has not acknowledged it.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	st, err := e.events.Subscribe(ctx, &eventrelayv1.SubscribeRequest{Sources: []string{"orders"}, Group: "g",
		MaxOutstanding: 1, Start: eventrelayv1.StartPosition_START_POSITION_EARLIEST, HeartbeatInterval: durationpb.New(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	var d *eventrelayv1.Delivery
	for d == nil {
		m, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		d = m.GetDelivery()
	}
	cancel()
	want("eventrelay_deliveries_total", 1, "source", "orders")
	lag, okLag := metricValue(t, reg, "eventrelay_group_lag", "source", "orders", "group", "g")
	pending, okPending := metricValue(t, reg, "eventrelay_group_pending", "source", "orders", "group", "g")
	if !okLag || !okPending || pending < 1 || lag+pending != 3 {
		t.Fatalf("group lag %v (%v) + pending %v (%v), want 3 with pending >= 1", lag, okLag, pending, okPending)
	}

	// Dead-letter the delivered entry.
	as, err := e.svc.DecodeAckIDs(context.Background(), []string{d.AckId})
	if err != nil {
		t.Fatal(err)
	}
	a := as[0]
	ev, err := e.events.GetEvent(context.Background(), &eventrelayv1.GetEventRequest{Source: "orders", Id: d.Event.Id})
	if err != nil || ev == nil {
		t.Fatal(err)
	}
	entries, err := e.store.Range(context.Background(), a.Partition, a.ID, a.ID, 1, false)
	if err != nil || len(entries) != 1 {
		t.Fatalf("%v %v", entries, err)
	}
	entries[0].DeliveryCount = 1
	if _, err := e.store.DeadLetter(context.Background(), a.Partition, "g", entries[0], 0); err != nil {
		t.Fatal(err)
	}
	want("eventrelay_dead_letters", 1, "source", "orders")
	if p2, _ := metricValue(t, reg, "eventrelay_group_pending", "source", "orders", "group", "g"); p2 != pending-1 {
		t.Errorf("pending after dead-lettering %v, want %v", p2, pending-1)
	}
	if n, ok := metricValue(t, reg, "eventrelay_redis_errors_total"); ok && n > 0 {
		t.Errorf("redis errors counted while Redis is fine: %v", n)
	}
}

// TestMetricsRedisDown: with Redis stopped, failed commands are counted and a scrape carries
// no stream series (rather than stale ones) and counts the failure.
func TestMetricsRedisDown(t *testing.T) {
	srv := redistest.StartWith(t)
	e := newEnv(t, envOptions{redisURL: srv.URL()})
	if _, ok := metricValue(t, e.metrics.Registry, "eventrelay_stream_length", "source", "orders"); !ok {
		t.Fatal("no stream length while Redis is up")
	}
	srv.Stop()
	if err := e.store.Ping(context.Background()); err == nil {
		t.Fatal("ping succeeded with Redis stopped")
	}
	if n, _ := metricValue(t, e.metrics.Registry, "eventrelay_redis_errors_total", "command", "ping"); n < 1 {
		t.Errorf("failed ping not counted")
	}
	if _, ok := metricValue(t, e.metrics.Registry, "eventrelay_stream_length", "source", "orders"); ok {
		t.Errorf("stream length reported while Redis is down")
	}
	if n, _ := metricValue(t, e.metrics.Registry, "eventrelay_stream_scrape_errors_total"); n < 1 {
		t.Errorf("scrape error not counted")
	}
	// A webhook now gets 503 with Retry-After and counts as a store error.
	a := e.do(e.signedRequest("orders", []byte(`{"id":"evt_down","type":"t"}`), time.Now()))
	if a.status != 503 || a.header.Get("Retry-After") != "1" || strings.Contains(a.body, "127.0.0.1") {
		t.Fatalf("%d %q %s", a.status, a.header.Get("Retry-After"), a.body)
	}
	if n, _ := metricValue(t, e.metrics.Registry, "eventrelay_store_errors_total"); n != 1 {
		t.Errorf("store errors %v", n)
	}
}
