package push

import (
	"bytes"
	"context"
	"net/http"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/eventrelay/eventrelay/relay"
)

// The headers of every POST besides the Standard Webhooks ones (docs/destinations.md).
const (
	HeaderSource      = "Eventrelay-Source"      // the event's source
	HeaderType        = "Eventrelay-Type"        // the event's type (when it has one)
	HeaderCursor      = "Eventrelay-Cursor"      // a Subscribe cursor just after the event
	HeaderAttempt     = "Eventrelay-Attempt"     // 1 for the first attempt
	HeaderDestination = "Eventrelay-Destination" // the destination's name
)

var traceContext = propagation.TraceContext{}

// attempt makes one attempt to POST dl, after the breaker and the rate limit allow it. ok is
// false when ctx ended first (the event was not settled and stays pending).
func (d *destination) attempt(ctx context.Context, dl *delivery) (r result, ok bool) {
	probe, err := d.breaker.wait(ctx)
	if err != nil {
		return result{}, false
	}
	if err := d.limit.wait(ctx); err != nil {
		d.breaker.abandon(probe)
		return result{}, false
	}
	ev := dl.ev
	// Once sent, an attempt runs to its answer or its timeout even when ctx ends (relayd
	// stopping): its outcome is then settled rather than the event sent again.
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.cfg.Timeout)
	defer cancel()
	actx, span := d.startSpan(actx, dl)
	req, err := http.NewRequestWithContext(actx, http.MethodPost, d.cfg.URL, bytes.NewReader(ev.GetData()))
	if err != nil { // the URL was validated; nothing else can fail here
		d.breaker.abandon(probe)
		span.End()
		return result{class: ClassConnection, err: "bad request: " + err.Error()}, true
	}
	h := req.Header
	for k, v := range d.cfg.Headers {
		h.Set(k, v)
	}
	ct := ev.GetDataContentType()
	if ct == "" {
		ct = "application/octet-stream"
	}
	now := time.Now()
	h.Set("Content-Type", ct)
	h.Set("User-Agent", "eventrelay-push")
	h.Set("Webhook-Id", ev.GetId())
	h.Set("Webhook-Timestamp", strconv.FormatInt(now.Unix(), 10))
	h.Set("Webhook-Signature", d.signer.sign(ev.GetId(), now, ev.GetData()))
	h.Set(HeaderSource, ev.GetSource())
	if ev.GetType() != "" {
		h.Set(HeaderType, ev.GetType())
	}
	h.Set(HeaderCursor, relay.EncodeCursor(relay.Cursor{Positions: map[relay.Partition]relay.ID{dl.part: dl.id}}))
	h.Set(HeaderAttempt, strconv.Itoa(dl.attempt))
	h.Set(HeaderDestination, d.cfg.Name)
	if span.SpanContext().IsValid() {
		traceContext.Inject(actx, propagation.HeaderCarrier(h))
	}

	d.inFlight.Add(1)
	start := time.Now()
	resp, err := d.client.Do(req)
	latency := time.Since(start)
	d.inFlight.Add(-1)

	r = classify(resp, err, time.Now())
	if resp != nil {
		drain(resp.Body)
	}
	r.latency = latency
	d.attempts.Add(1)
	success := r.class == ClassSuccess
	if opened := d.breaker.done(probe, success); opened {
		d.log.Warn("push: circuit breaker opened", "after", r.err, "cooldown", d.cfg.Breaker.Cooldown)
	}
	d.lastMu.Lock()
	if success {
		d.delivered.Add(1)
		d.lastDelivered = now
	} else {
		d.failed.Add(1)
		d.lastError, d.lastErrorTime = r.err, now
	}
	d.lastMu.Unlock()
	if o := d.p.opts.Observer; o != nil {
		o.Attempt(d.cfg.Name, r.class, latency)
	}
	if r.status != 0 {
		span.SetAttributes(attribute.Int("http.response.status_code", r.status))
	}
	if !success {
		span.SetStatus(otelcodes.Error, string(r.class))
	}
	span.End()
	return r, true
}

// startSpan starts the span of one attempt, linked to the span that ingested the event.
func (d *destination) startSpan(ctx context.Context, dl *delivery) (context.Context, trace.Span) {
	tp := d.p.opts.TracerProvider
	if tp == nil {
		return ctx, trace.SpanFromContext(context.Background())
	}
	opts := []trace.SpanStartOption{
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(
			attribute.String("eventrelay.destination", d.cfg.Name),
			attribute.String("eventrelay.source", dl.ev.GetSource()),
			attribute.String("eventrelay.event_id", dl.ev.GetId()),
			attribute.Int("eventrelay.delivery_attempt", dl.attempt),
		),
	}
	if tpv := dl.ev.GetTraceParent(); tpv != "" {
		lctx := traceContext.Extract(context.Background(), propagation.MapCarrier{"traceparent": tpv})
		if sc := trace.SpanContextFromContext(lctx); sc.IsValid() {
			opts = append(opts, trace.WithLinks(trace.Link{SpanContext: sc,
				Attributes: []attribute.KeyValue{attribute.String("eventrelay.link", "ingest")}}))
		}
	}
	return tp.Tracer("github.com/eventrelay/eventrelay/relay/push").Start(ctx, "eventrelay.push", opts...)
}
