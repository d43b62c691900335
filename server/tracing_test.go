package server

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	eventrelayv1 "github.com/eventrelay/eventrelay/gen/eventrelay/v1"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
)

const (
	incomingTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	incomingSpanID  = "00f067aa0ba902b7"
	incomingTP      = "00-" + incomingTraceID + "-" + incomingSpanID + "-01"
)

func attr(s sdktrace.ReadOnlySpan, key string) attribute.Value {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value
		}
	}
	return attribute.Value{}
}

// TestTracing follows one webhook: its server span continues the provider's traceparent,
// verify and append are its children, the stored trace_parent names the webhook span, and the
// delivery span links back to it.
func TestTracing(t *testing.T) {
	e := newEnv(t, envOptions{redisURL: redisURL(t), tracing: true})

	r := e.signedRequest("orders", []byte(`{"id":"evt_tr","type":"t"}`), time.Now())
	r.Header.Set("Traceparent", incomingTP)
	if a := e.do(r); a.status != 200 {
		t.Fatalf("%d %s", a.status, a.body)
	}
	web := e.waitSpan("POST /v1/webhooks/{source}")
	verify := e.waitSpan("eventrelay.verify")
	appendSpan := e.waitSpan("eventrelay.append")

	if web.SpanKind() != trace.SpanKindServer || web.SpanContext().TraceID().String() != incomingTraceID ||
		web.Parent().SpanID().String() != incomingSpanID || !web.Parent().IsRemote() {
		t.Fatalf("webhook span does not continue the traceparent: %v parent %v", web.SpanContext(), web.Parent())
	}
	if attr(web, "http.response.status_code").AsInt64() != 200 || attr(web, "eventrelay.source").AsString() != "orders" {
		t.Errorf("webhook span attributes %v", web.Attributes())
	}
	for _, child := range []sdktrace.ReadOnlySpan{verify, appendSpan} {
		if child.Parent().SpanID() != web.SpanContext().SpanID() || child.SpanContext().TraceID() != web.SpanContext().TraceID() {
			t.Errorf("%s is not a child of the webhook span", child.Name())
		}
	}
	if verify.EndTime().After(appendSpan.StartTime()) {
		t.Errorf("verify ends after the append starts")
	}
	if attr(appendSpan, "eventrelay.entry_id").AsString() == "" || attr(appendSpan, "eventrelay.duplicate").AsBool() {
		t.Errorf("append span attributes %v", appendSpan.Attributes())
	}

	got, err := e.events.GetEvent(context.Background(), &eventrelayv1.GetEventRequest{Source: "orders", Id: "evt_tr"})
	if err != nil {
		t.Fatal(err)
	}
	wantTP := "00-" + incomingTraceID + "-" + web.SpanContext().SpanID().String() + "-01"
	if got.Event.TraceParent != wantTP {
		t.Fatalf("stored trace_parent %q, want %q (the webhook span)", got.Event.TraceParent, wantTP)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := e.events.Subscribe(ctx, &eventrelayv1.SubscribeRequest{Sources: []string{"orders"},
		Start: eventrelayv1.StartPosition_START_POSITION_EARLIEST})
	if err != nil {
		t.Fatal(err)
	}
	for {
		m, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if m.GetDelivery() != nil {
			break
		}
	}
	deliver := e.waitSpan("eventrelay.deliver")
	if len(deliver.Links()) != 1 || deliver.Links()[0].SpanContext.SpanID() != web.SpanContext().SpanID() ||
		deliver.Links()[0].SpanContext.TraceID() != web.SpanContext().TraceID() {
		t.Fatalf("delivery links %v, want the webhook span %v", deliver.Links(), web.SpanContext())
	}
	if attr(deliver, "eventrelay.event_id").AsString() != "evt_tr" || deliver.SpanKind() != trace.SpanKindProducer {
		t.Errorf("delivery span %v %v", deliver.SpanKind(), deliver.Attributes())
	}

	t.Run("rejected signature", func(t *testing.T) {
		r := e.signedRequest("orders", []byte(`{"id":"evt_bad","type":"t"}`), time.Now())
		r.Header.Set("X-Signature", "sha256="+strings.Repeat("0", 64))
		if a := e.do(r); a.status != 401 {
			t.Fatalf("%d", a.status)
		}
		web := e.waitSpan("POST /v1/webhooks/{source}")
		v := e.waitSpan("eventrelay.verify")
		if attr(web, "http.response.status_code").AsInt64() != 401 || v.Status().Code != otelcodes.Error ||
			attr(v, "eventrelay.verify.reason").AsString() == "" {
			t.Fatalf("webhook %v, verify %v %v", web.Attributes(), v.Status(), v.Attributes())
		}
		if !web.SpanContext().TraceID().IsValid() || web.Parent().IsValid() {
			t.Errorf("without traceparent the webhook span is a root")
		}
		for _, s := range e.seen {
			if s.Name() == "eventrelay.append" {
				t.Fatalf("a rejected webhook was appended")
			}
		}
		if strings.Contains(v.Status().Description, ordersSecret) {
			t.Fatalf("secret in a span")
		}
	})
	t.Run("refused before verification", func(t *testing.T) {
		r := e.signedRequest("stripe", []byte(`{}`), time.Now())
		r.Header.Set("Content-Type", "text/plain")
		if a := e.do(r); a.status != 415 {
			t.Fatalf("%d", a.status)
		}
		if web := e.waitSpan("POST /v1/webhooks/{source}"); attr(web, "http.response.status_code").AsInt64() != 415 {
			t.Fatalf("%v", web.Attributes())
		}
	})
}

// TestTraceParentWithoutTracing: with tracing off the provider's traceparent is stored as it
// came; a malformed one is not stored.
func TestTraceParentWithoutTracing(t *testing.T) {
	e := newEnv(t, envOptions{})
	for i, tc := range []struct{ sent, want string }{
		{incomingTP, incomingTP},
		{"", ""},
		{"00-" + strings.Repeat("0", 32) + "-" + incomingSpanID + "-01", ""}, // all-zero trace id
		{"garbage", ""},
		{"00-" + incomingTraceID + "-" + incomingSpanID, ""},
	} {
		id := "evt_tp" + string(rune('a'+i))
		r := e.signedRequest("orders", []byte(`{"id":"`+id+`","type":"t"}`), time.Now())
		if tc.sent != "" {
			r.Header.Set("Traceparent", tc.sent)
		}
		if a := e.do(r); a.status != 200 {
			t.Fatalf("%d %s", a.status, a.body)
		}
		got, err := e.events.GetEvent(context.Background(), &eventrelayv1.GetEventRequest{Source: "orders", Id: id})
		if err != nil {
			t.Fatal(err)
		}
		if got.Event.TraceParent != tc.want {
			t.Errorf("sent %q: stored %q, want %q", tc.sent, got.Event.TraceParent, tc.want)
		}
	}
}

// fakeCollector is an OTLP/gRPC trace collector.
type fakeCollector struct {
	collectortrace.UnimplementedTraceServiceServer
	mu    sync.Mutex
	names []string
}

func (c *fakeCollector) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				c.names = append(c.names, s.GetName())
			}
		}
	}
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

// TestOTLPExport sends spans to a collector on loopback: shutdown flushes them.
func TestOTLPExport(t *testing.T) {
	for _, bad := range []string{"a/b", "host:1/path"} {
		if _, _, err := NewTracerProvider(context.Background(), TracingOptions{OTLPEndpoint: bad, SampleRatio: 1}); err == nil {
			t.Errorf("endpoint %q accepted", bad)
		}
	}
	if tp, shutdown, err := NewTracerProvider(context.Background(), TracingOptions{}); tp != nil || err != nil || shutdown(context.Background()) != nil {
		t.Fatalf("no endpoint: tracing must be off (%v, %v)", tp, err)
	}

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	col := &fakeCollector{}
	gs := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(gs, col)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)

	for _, endpoint := range []string{lis.Addr().String(), "http://" + lis.Addr().String()} {
		t.Run(endpoint, func(t *testing.T) {
			col.mu.Lock()
			col.names = nil
			col.mu.Unlock()
			tp, shutdown, err := NewTracerProvider(context.Background(), TracingOptions{OTLPEndpoint: endpoint, SampleRatio: 1})
			if err != nil {
				t.Fatal(err)
			}
			_, span := tp.Tracer("test").Start(context.Background(), "exported-span")
			span.End()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := shutdown(ctx); err != nil {
				t.Fatal(err)
			}
			col.mu.Lock()
			defer col.mu.Unlock()
			if len(col.names) != 1 || col.names[0] != "exported-span" {
				t.Fatalf("collector got %v", col.names)
			}
		})
	}
}
