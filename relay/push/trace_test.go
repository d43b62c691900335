package push_test

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/eventrelay/eventrelay/relay"
	"github.com/eventrelay/eventrelay/relay/push"
)

// Every attempt is a span linked to the span that ingested the event, and the POST carries
// the attempt's trace context.
func TestAttemptSpansLinkToIngest(t *testing.T) {
	svc := newService(t)
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	var n atomic.Int32
	rcv := newReceiver(t, func(delivery, http.ResponseWriter) int {
		if n.Add(1) == 1 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	start(t, svc, push.Options{TracerProvider: tp}, destination("hooks", rcv.URL))
	// The ingest span's context, written out by hand.
	const ingestTrace, ingestSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	_, err := svc.Publish(context.Background(), relay.PublishInput{Source: "s", ID: "e1", Type: "t",
		Data: []byte(`{}`), TraceParent: "00-" + ingestTrace + "-" + ingestSpan + "-01"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, rcv, "the second attempt", func() bool { return len(rcv.successes()) == 1 })
	waitFor(t, rcv, "two spans", func() bool { return len(spans.GetSpans()) == 2 })
	got := spans.GetSpans()
	for i, s := range got {
		if s.Name != "eventrelay.push" || len(s.Links) != 1 || s.Links[0].SpanContext.TraceID().String() != ingestTrace ||
			s.Links[0].SpanContext.SpanID().String() != ingestSpan {
			t.Errorf("span %d: %s with links %+v, want eventrelay.push linked to %s/%s", i, s.Name, s.Links, ingestTrace, ingestSpan)
		}
	}
	if got[0].Status.Code.String() != "Error" || got[1].Status.Code.String() != "Unset" {
		t.Errorf("span statuses %s, %s; want Error for the 500, Unset for the 200", got[0].Status.Code, got[1].Status.Code)
	}
	for i, d := range rcv.deliveries() {
		tp := d.header.Get("Traceparent")
		if !strings.Contains(tp, got[i].SpanContext.TraceID().String()) || !strings.Contains(tp, got[i].SpanContext.SpanID().String()) {
			t.Errorf("attempt %d traceparent %q, want span %s", i+1, tp, got[i].SpanContext.SpanID())
		}
	}
}
