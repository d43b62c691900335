package server

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	eventrelayv1 "github.com/eventrelay/eventrelay/gen/eventrelay/v1"
	"github.com/eventrelay/eventrelay/relay"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Tracing. With a TracerProvider configured, relayd records these OpenTelemetry spans:
//
//	POST /v1/webhooks/{source}   server span of a webhook request, child of the request's
//	                             W3C traceparent; covers every answer (403, 413, 429, ...)
//	  eventrelay.verify          signature verification and building the event
//	  eventrelay.append          the store append (dedupe check + XADD), with the entry id
//	eventrelay.deliver           one per delivery on a Subscribe stream, linked to the
//	                             webhook span through the event's stored trace_parent
//
// Event.trace_parent is the traceparent of the webhook span (same trace id as the
// provider's traceparent), so a consumer continuing the trace hangs off the ingest. With no
// TracerProvider nothing is recorded and the provider's own traceparent is stored as it came.

// tracerName is the instrumentation scope of eventrelay's spans.
const tracerName = "github.com/eventrelay/eventrelay/server"

// traceContext is the W3C trace-context propagator (traceparent, tracestate).
var traceContext = propagation.TraceContext{}

func tracerOf(tp trace.TracerProvider) trace.Tracer {
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	return tp.Tracer(tracerName)
}

// TracingOptions configure NewTracerProvider.
type TracingOptions struct {
	// OTLPEndpoint is the OTLP/gRPC collector: "host:port" or "http://host:port" (plaintext,
	// as collectors listen on 4317 by default) or "https://host:port" (TLS). "" turns
	// tracing off. The OTEL_EXPORTER_OTLP_* environment variables (headers, certificates,
	// compression) are honoured by the exporter.
	OTLPEndpoint string
	// SampleRatio is the share of new root traces recorded (0..1); a request that arrives
	// with a sampled traceparent is always recorded (parent-based sampling).
	SampleRatio float64
	// ServiceName is the service.name resource attribute (default "relayd").
	ServiceName string
}

// NewTracerProvider returns the tracer provider of opts and a shutdown function that flushes
// pending spans. With no endpoint it returns a nil provider (tracing off) and a no-op
// shutdown. The exporter connects lazily: an unreachable collector is not a start-up error.
func NewTracerProvider(ctx context.Context, opts TracingOptions) (trace.TracerProvider, func(context.Context) error, error) {
	if opts.OTLPEndpoint == "" {
		return nil, func(context.Context) error { return nil }, nil
	}
	var eopts []otlptracegrpc.Option
	switch {
	case strings.HasPrefix(opts.OTLPEndpoint, "https://"):
		eopts = append(eopts, otlptracegrpc.WithEndpointURL(opts.OTLPEndpoint))
	case strings.HasPrefix(opts.OTLPEndpoint, "http://"):
		eopts = append(eopts, otlptracegrpc.WithEndpointURL(opts.OTLPEndpoint), otlptracegrpc.WithInsecure())
	default:
		if _, err := url.Parse("http://" + opts.OTLPEndpoint); err != nil || strings.Contains(opts.OTLPEndpoint, "/") {
			return nil, nil, fmt.Errorf("tracing.otlp_endpoint: want host:port, http://host:port or https://host:port")
		}
		eopts = append(eopts, otlptracegrpc.WithEndpoint(opts.OTLPEndpoint), otlptracegrpc.WithInsecure())
	}
	exp, err := otlptracegrpc.New(ctx, eopts...)
	if err != nil {
		return nil, nil, fmt.Errorf("tracing.otlp_endpoint: %w", err)
	}
	name := opts.ServiceName
	if name == "" {
		name = "relayd"
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(attribute.String("service.name", name)))
	if err != nil {
		res = resource.Default()
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(opts.SampleRatio))),
	)
	return tp, tp.Shutdown, nil
}

// startWebhookSpan starts the server span of a webhook request, continuing the request's
// traceparent. The returned function ends it with the answer's status.
func startWebhookSpan(tracer trace.Tracer, r *http.Request, source string) (context.Context, func(status int)) {
	ctx := traceContext.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	ctx, span := tracer.Start(ctx, r.Method+" /v1/webhooks/{source}", trace.WithSpanKind(trace.SpanKindServer))
	if !span.IsRecording() {
		return ctx, func(int) {}
	}
	span.SetAttributes(
		attribute.String("http.request.method", r.Method),
		attribute.String("http.route", "/v1/webhooks/{source}"),
		attribute.String("eventrelay.source", source),
	)
	return ctx, func(status int) {
		span.SetAttributes(attribute.Int("http.response.status_code", status))
		if status >= 500 {
			span.SetStatus(otelcodes.Error, http.StatusText(status))
		}
		span.End()
	}
}

// ingestSpans is what the webhook service leaves in the context of an ingest for the store
// wrapper: the verify span, which ends when the append starts.
type ingestSpans struct {
	once   sync.Once
	verify trace.Span
}

type ingestSpansKey struct{}

// startVerifySpan starts eventrelay.verify as a child of ctx's span and returns ctx marked so
// that the traced store ends it when the append begins; end ends it otherwise (a rejected
// signature, a handshake).
func startVerifySpan(ctx context.Context, source string) (context.Context, func(err error)) {
	parent := trace.SpanFromContext(ctx)
	if !parent.IsRecording() {
		return ctx, func(error) {}
	}
	_, span := parent.TracerProvider().Tracer(tracerName).Start(ctx, "eventrelay.verify",
		trace.WithAttributes(attribute.String("eventrelay.source", source)))
	is := &ingestSpans{verify: span}
	return context.WithValue(ctx, ingestSpansKey{}, is), func(err error) {
		is.once.Do(func() {
			if err != nil && relay.ErrorCode(err) != relay.CodeUnavailable {
				span.SetStatus(otelcodes.Error, relay.ErrorMessage(err))
				if reason := relay.ErrorReason(err); reason != "" {
					span.SetAttributes(attribute.String("eventrelay.verify.reason", reason))
				}
			}
			span.End()
		})
	}
}

// injectTraceParent returns h with the traceparent of ctx's span (the webhook span) in place
// of the one the provider sent, so the stored Event.trace_parent names the ingest span.
// Without a valid span context the header is returned without any traceparent.
func injectTraceParent(ctx context.Context, h http.Header) http.Header {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() && h.Get("Traceparent") == "" {
		return h
	}
	h = h.Clone()
	h.Del("Traceparent")
	h.Del("Tracestate")
	traceContext.Inject(ctx, propagation.HeaderCarrier(h))
	return h
}

// TraceStore wraps a store so that an append made within a traced request records an
// eventrelay.append span (and ends the request's eventrelay.verify span). Appends outside a
// recording span cost one context lookup.
func TraceStore(s relay.Store) relay.Store { return tracedStore{s} }

type tracedStore struct{ relay.Store }

func (s tracedStore) Append(ctx context.Context, req relay.AppendRequest) (relay.AppendResult, error) {
	return traceAppend(ctx, req, s.Store.Append)
}

func traceAppend(ctx context.Context, req relay.AppendRequest, next func(context.Context, relay.AppendRequest) (relay.AppendResult, error)) (relay.AppendResult, error) {
	if is, ok := ctx.Value(ingestSpansKey{}).(*ingestSpans); ok {
		is.once.Do(func() { is.verify.End() })
	}
	parent := trace.SpanFromContext(ctx)
	if !parent.IsRecording() {
		return next(ctx, req)
	}
	ctx, span := parent.TracerProvider().Tracer(tracerName).Start(ctx, "eventrelay.append",
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(
			attribute.String("db.system.name", "redis"),
			attribute.String("eventrelay.source", req.Partition.Source),
			attribute.Int("eventrelay.partition", req.Partition.Index),
			attribute.String("eventrelay.event_id", req.DedupeKey),
		))
	defer span.End()
	res, err := next(ctx, req)
	if err != nil {
		span.SetStatus(otelcodes.Error, relay.ErrorMessage(err))
		return res, err
	}
	span.SetAttributes(attribute.String("eventrelay.entry_id", res.ID.String()), attribute.Bool("eventrelay.duplicate", res.Duplicate))
	return res, nil
}

// startDeliverySpan starts eventrelay.deliver for one delivery of ev on a Subscribe stream,
// linked to the span named by ev's trace_parent. It is a no-op without a TracerProvider.
func startDeliverySpan(ctx context.Context, tp trace.TracerProvider, ev *eventrelayv1.Event, m *relay.Message, group string) func(error) {
	if tp == nil {
		return func(error) {}
	}
	opts := []trace.SpanStartOption{
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(
			attribute.String("eventrelay.source", ev.GetSource()),
			attribute.String("eventrelay.event_id", ev.GetId()),
			attribute.String("eventrelay.event_type", ev.GetType()),
			attribute.Int("eventrelay.partition", m.Partition.Index),
			attribute.Int("eventrelay.delivery_attempt", m.Attempt),
		),
	}
	if group != "" {
		opts = append(opts, trace.WithAttributes(attribute.String("eventrelay.group", group)))
	}
	if tpv := ev.GetTraceParent(); tpv != "" {
		lctx := traceContext.Extract(context.Background(), propagation.MapCarrier{"traceparent": tpv})
		if sc := trace.SpanContextFromContext(lctx); sc.IsValid() {
			opts = append(opts, trace.WithLinks(trace.Link{SpanContext: sc,
				Attributes: []attribute.KeyValue{attribute.String("eventrelay.link", "ingest")}}))
		}
	}
	if rt := ev.GetReceivedTime(); rt != nil && rt.IsValid() {
		opts = append(opts, trace.WithAttributes(attribute.String("eventrelay.received_time", rt.AsTime().Format(time.RFC3339Nano))))
	}
	_, span := tracerOf(tp).Start(ctx, "eventrelay.deliver", opts...)
	return func(err error) {
		if err != nil {
			span.SetStatus(otelcodes.Error, "send failed")
		}
		span.End()
	}
}
