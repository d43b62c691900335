package server

import (
	"context"
	"log/slog"

	eventrelayv1 "github.com/eventrelay/eventrelay/gen/eventrelay/v1"
	"github.com/eventrelay/eventrelay/relay"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// EventServer implements eventrelay.v1.EventService over a relay.Service.
type EventServer struct {
	eventrelayv1.UnimplementedEventServiceServer
	svc  *relay.Service
	auth *Auth
	log  *slog.Logger
	opts EventServerOptions

	subs subscriptions
}

// EventServerOptions configure NewEventServer.
type EventServerOptions struct {
	// Auth authenticates callers (nil: every caller is allowed everything).
	Auth   *Auth
	Logger *slog.Logger
	// Metrics, when set, observes deliveries and acknowledgements.
	Metrics *Metrics
	// TracerProvider, when set, records an eventrelay.deliver span per delivery, linked to
	// the event's ingest span (see tracing.go).
	TracerProvider trace.TracerProvider
	// Limits bound the subscriptions.
	Limits SubscribeLimits
	// Writes, when set, lets the Subscribe streams on connections of its listener send one
	// read of the shared tail reader in one write per connection (see HeldWrites).
	Writes *HeldWrites
}

// NewEventServer returns the EventService implementation over svc.
func NewEventServer(svc *relay.Service, opts EventServerOptions) *EventServer {
	if opts.Auth == nil {
		opts.Auth = NewAuth(AuthOptions{})
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &EventServer{svc: svc, auth: opts.Auth, log: opts.Logger, opts: opts}
}

func (s *EventServer) err(ctx context.Context, err error) error { return toStatus(ctx, s.log, err) }

// Subscribe streams deliveries and heartbeats.
func (s *EventServer) Subscribe(req *eventrelayv1.SubscribeRequest, stream eventrelayv1.EventService_SubscribeServer) error {
	ctx := stream.Context()
	p, err := s.auth.Authenticate(ctx)
	if err != nil {
		return s.err(ctx, err)
	}
	sr, err := s.subscribeRequest(p, req)
	if err != nil {
		return s.err(ctx, err)
	}
	sr.Hold = s.opts.Writes.hold(ctx)
	release, err := s.subs.open(p, s.opts.Limits.MaxSubscribers)
	if err != nil {
		return s.err(ctx, err)
	}
	defer release()
	// Send headers at once so clients see the stream open before the first event.
	_ = stream.SendHeader(metadata.MD{})
	s.opts.Metrics.subscriberAdd(1)
	defer s.opts.Metrics.subscriberAdd(-1)
	counted := deliveryCounter{m: s.opts.Metrics}
	// The subscription runs beside the handler, so that a stream cut while a SendMsg is
	// blocked ends at once (cut.go), and so does one whose send is blocked too long.
	err = runInterruptible(&sr, func() error {
		send := s.sendFunc(ctx, stream, &sr, &counted)
		if s.opts.Limits.SendTimeout > 0 {
			var stop func()
			send, stop = watchSends(send, s.opts.Limits.SendTimeout, sr.Interrupt)
			defer stop()
		}
		return s.svc.Subscribe(ctx, sr, send)
	})
	if err == nil || ctx.Err() != nil {
		return nil
	}
	return s.err(ctx, err)
}

// sendFunc returns the send function of a Subscribe stream: heartbeats and deliveries, in
// batches (batcher) when the subscription asked for them.
func (s *EventServer) sendFunc(ctx context.Context, stream eventrelayv1.EventService_SubscribeServer, sr *relay.SubscribeRequest, counted *deliveryCounter) func(m *relay.Message) error {
	var b *batcher
	if sr.MaxBatch > 1 {
		b = &batcher{}
	}
	return func(m *relay.Message) error {
		if m.Entry == nil { // never while a batch is held: the relay ends it first (Message.More)
			return stream.Send(&eventrelayv1.SubscribeResponse{Kind: &eventrelayv1.SubscribeResponse_Heartbeat{
				Heartbeat: &eventrelayv1.Heartbeat{Cursor: m.Cursor, ServerTime: timestamppb.New(m.ServerTime)},
			}})
		}
		var end func(error)
		if s.opts.TracerProvider != nil {
			ev, err := relay.DecodeEvent(m.Entry.Event) // the span's attributes
			if err != nil {
				return err
			}
			end = startDeliverySpan(ctx, s.opts.TracerProvider, ev, m, sr.Group.Name)
		}
		if b != nil && (b.n > 0 || m.More) { // batched (delivery.go)
			counted.add(m.Partition.Source, m.Attempt)
			return b.add(m, end, stream.SendMsg)
		}
		// The stored Event bytes go out as they are, encoded once for every tail subscriber
		// with the same cursor (delivery.go).
		msg, err := deliveryMsg(m)
		if err != nil {
			if end != nil {
				end(err)
			}
			return err
		}
		counted.add(m.Partition.Source, m.Attempt)
		err = stream.SendMsg(msg)
		if end != nil {
			end(err)
		}
		return err
	}
}

// deliveryCounter counts one stream's deliveries, resolving the source's labelled counter
// once rather than per delivery (the lookup was a tenth of relayd's CPU in the fan-out
// profile).
type deliveryCounter struct {
	m      *Metrics
	source string
	c      prometheus.Counter
}

func (d *deliveryCounter) add(source string, attempt int) {
	switch {
	case d.m == nil:
		return
	case attempt > 1:
		d.m.delivered(source, attempt) // counts the redelivery too
		return
	case d.c == nil || source != d.source:
		d.source, d.c = source, d.m.deliveries.WithLabelValues(source)
	}
	d.c.Inc()
}

func (s *EventServer) subscribeRequest(p *Principal, req *eventrelayv1.SubscribeRequest) (relay.SubscribeRequest, error) {
	sr := relay.SubscribeRequest{
		Sources:     req.GetSources(),
		Types:       relay.TypeFilter(req.GetTypes()),
		Filter:      req.GetFilter(),
		DeadLetters: req.GetDeadLetters(),
		Group: relay.GroupOptions{
			Name:           req.GetGroup(),
			Consumer:       req.GetConsumer(),
			AckDeadline:    req.GetAckDeadline().AsDuration(),
			MaxOutstanding: int(req.GetMaxOutstanding()),
			MaxAttempts:    int(req.GetMaxDeliveryAttempts()),
		},
		Heartbeat: req.GetHeartbeatInterval().AsDuration(),
	}
	if len(sr.Sources) == 0 {
		for _, n := range s.svc.SourceNames() {
			if p.CanRead(n) {
				sr.Sources = append(sr.Sources, n)
			}
		}
		if len(sr.Sources) == 0 {
			return sr, relay.Errorf(relay.CodePermissionDenied, "token %q may read no configured source", p.Name)
		}
	}
	for _, n := range sr.Sources {
		if err := checkRead(p, n); err != nil {
			return sr, err
		}
		if _, err := s.svc.Source(n); err != nil {
			return sr, err
		}
	}
	if len(sr.Types) > 100 {
		return sr, relay.Errorf(relay.CodeInvalid, "types: at most 100 filters")
	}
	if req.GetConsumer() != "" && req.GetGroup() == "" {
		return sr, relay.Errorf(relay.CodeInvalid, "consumer: set group too")
	}
	if req.GetGroup() != "" {
		if err := checkGroup(p, req.GetGroup()); err != nil {
			return sr, err
		}
	}
	switch req.GetStart() {
	case eventrelayv1.StartPosition_START_POSITION_UNSPECIFIED, eventrelayv1.StartPosition_START_POSITION_LATEST:
		sr.Start = relay.StartLatest
	case eventrelayv1.StartPosition_START_POSITION_EARLIEST:
		sr.Start = relay.StartEarliest
	default:
		return sr, relay.Errorf(relay.CodeInvalid, "start: unknown start position %d", req.GetStart())
	}
	if req.GetSince() != nil {
		if err := req.GetSince().CheckValid(); err != nil {
			return sr, relay.Errorf(relay.CodeInvalid, "since: not a valid timestamp")
		}
		sr.Since = req.GetSince().AsTime()
	}
	if c := req.GetAfterCursor(); c != "" {
		cur, err := relay.DecodeCursor(c)
		if err != nil {
			return sr, err
		}
		for part := range cur.Positions {
			if err := checkRead(p, part.Source); err != nil {
				return sr, err
			}
		}
		sr.After = &cur
	}
	for _, d := range []struct {
		name string
		ok   bool
	}{
		{"ack_deadline", req.GetAckDeadline() == nil || req.GetAckDeadline().CheckValid() == nil && req.GetAckDeadline().AsDuration() >= 0},
		{"heartbeat_interval", req.GetHeartbeatInterval() == nil || req.GetHeartbeatInterval().CheckValid() == nil && req.GetHeartbeatInterval().AsDuration() >= 0},
	} {
		if !d.ok {
			return sr, relay.Errorf(relay.CodeInvalid, "%s: not a valid duration", d.name)
		}
	}
	if n := req.GetMaxBatch(); n < 0 || n > MaxBatch {
		return sr, relay.Errorf(relay.CodeInvalid, "max_batch: %d is not between 0 and %d", n, MaxBatch)
	}
	sr.MaxBatch = int(req.GetMaxBatch())
	return sr, nil
}

// authorize authenticates the caller and checks that it may read source (or, with write,
// publish to and redrive it), before saying whether the source exists, so that a scoped token
// learns nothing about sources outside its list.
func (s *EventServer) authorize(ctx context.Context, source string, write bool) error {
	return s.authorizeGroup(ctx, source, write, "")
}

// authorizeGroup is authorize, and when group is set also checks that the caller may use
// that consumer group (its dead letters belong to it).
func (s *EventServer) authorizeGroup(ctx context.Context, source string, write bool, group string) error {
	p, err := s.auth.Authenticate(ctx)
	if err != nil {
		return err
	}
	if write && !p.CanPublish(source) {
		return relay.Errorf(relay.CodePermissionDenied, "token %q may not publish to source %q", p.Name, source)
	}
	if err := checkRead(p, source); err != nil {
		return err
	}
	if group != "" {
		if err := checkGroup(p, group); err != nil {
			return err
		}
	}
	_, err = s.svc.Source(source)
	return err
}

// settleAuth authenticates the caller of a settling RPC and returns the check every ack id
// must pass: the caller reads the ack id's source and may use its group.
func (s *EventServer) settleAuth(ctx context.Context) (relay.AckAuthorizer, error) {
	p, err := s.auth.Authenticate(ctx)
	if err != nil {
		return nil, err
	}
	return func(a relay.AckID) error { return checkSettle(p, a) }, nil
}

// Acknowledge acknowledges group deliveries.
func (s *EventServer) Acknowledge(ctx context.Context, req *eventrelayv1.AcknowledgeRequest) (*eventrelayv1.AcknowledgeResponse, error) {
	authz, err := s.settleAuth(ctx)
	if err != nil {
		return nil, s.err(ctx, err)
	}
	unknown, err := s.svc.Acknowledge(ctx, req.GetAckIds(), authz)
	if err != nil {
		return nil, s.err(ctx, err)
	}
	s.opts.Metrics.acked(len(req.GetAckIds()) - len(unknown))
	return &eventrelayv1.AcknowledgeResponse{UnknownAckIds: unknown}, nil
}

// Nack hands group deliveries back for redelivery.
func (s *EventServer) Nack(ctx context.Context, req *eventrelayv1.NackRequest) (*eventrelayv1.NackResponse, error) {
	authz, err := s.settleAuth(ctx)
	if err != nil {
		return nil, s.err(ctx, err)
	}
	if req.GetDelay() != nil && req.GetDelay().CheckValid() != nil {
		return nil, s.err(ctx, relay.Errorf(relay.CodeInvalid, "delay: not a valid duration"))
	}
	unknown, err := s.svc.Nack(ctx, req.GetAckIds(), req.GetDelay().AsDuration(), authz)
	if err != nil {
		return nil, s.err(ctx, err)
	}
	return &eventrelayv1.NackResponse{UnknownAckIds: unknown}, nil
}

// ModifyAckDeadline sets the ack deadline of group deliveries from now.
func (s *EventServer) ModifyAckDeadline(ctx context.Context, req *eventrelayv1.ModifyAckDeadlineRequest) (*eventrelayv1.ModifyAckDeadlineResponse, error) {
	authz, err := s.settleAuth(ctx)
	if err != nil {
		return nil, s.err(ctx, err)
	}
	if req.GetAckDeadline() == nil {
		return nil, s.err(ctx, relay.Errorf(relay.CodeInvalid, "ack_deadline: required (0 to %s)", relay.MaxAckDeadline))
	}
	if req.GetAckDeadline().CheckValid() != nil {
		return nil, s.err(ctx, relay.Errorf(relay.CodeInvalid, "ack_deadline: not a valid duration"))
	}
	unknown, err := s.svc.ModifyAckDeadline(ctx, req.GetAckIds(), req.GetAckDeadline().AsDuration(), authz)
	if err != nil {
		return nil, s.err(ctx, err)
	}
	return &eventrelayv1.ModifyAckDeadlineResponse{UnknownAckIds: unknown}, nil
}

// Publish appends an event from an internal producer.
func (s *EventServer) Publish(ctx context.Context, req *eventrelayv1.PublishRequest) (*eventrelayv1.PublishResponse, error) {
	if err := s.authorize(ctx, req.GetSource(), true); err != nil {
		return nil, s.err(ctx, err)
	}
	in := relay.PublishInput{
		Source:          req.GetSource(),
		ID:              req.GetId(),
		Type:            req.GetType(),
		Subject:         req.GetSubject(),
		DataContentType: req.GetDataContentType(),
		Data:            req.GetData(),
		Headers:         req.GetHeaders(),
		PartitionKey:    req.GetPartitionKey(),
	}
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if tp := md.Get("traceparent"); len(tp) > 0 {
			in.TraceParent = tp[0]
		}
	}
	if req.GetTime() != nil {
		if err := req.GetTime().CheckValid(); err != nil {
			return nil, s.err(ctx, relay.Errorf(relay.CodeInvalid, "time: not a valid timestamp"))
		}
		in.Time = req.GetTime().AsTime()
	}
	res, err := s.svc.Publish(ctx, in)
	if err != nil {
		return nil, s.err(ctx, err)
	}
	s.opts.Metrics.ingested(req.GetSource(), res.Duplicate)
	return &eventrelayv1.PublishResponse{EventId: res.EventID, Duplicate: res.Duplicate}, nil
}

// GetEvent returns one event by id.
func (s *EventServer) GetEvent(ctx context.Context, req *eventrelayv1.GetEventRequest) (*eventrelayv1.GetEventResponse, error) {
	if err := s.authorize(ctx, req.GetSource(), false); err != nil {
		return nil, s.err(ctx, err)
	}
	it, err := s.svc.FindEvent(ctx, req.GetSource(), req.GetId())
	if err != nil {
		return nil, s.err(ctx, err)
	}
	ev, err := relay.DecodeEvent(it.Entry.Event)
	if err != nil {
		return nil, s.err(ctx, err)
	}
	return &eventrelayv1.GetEventResponse{Event: ev, Cursor: it.Cursor, Partition: int32(it.Partition.Index)}, nil
}

// ListEvents pages through history.
func (s *EventServer) ListEvents(ctx context.Context, req *eventrelayv1.ListEventsRequest) (*eventrelayv1.ListEventsResponse, error) {
	if err := s.authorizeGroup(ctx, req.GetSource(), false, req.GetGroup()); err != nil {
		return nil, s.err(ctx, err)
	}
	q := relay.ListQuery{
		Source:      req.GetSource(),
		PageSize:    int(req.GetPageSize()),
		PageToken:   req.GetPageToken(),
		NewestFirst: req.GetOrder() == eventrelayv1.ListOrder_LIST_ORDER_NEWEST_FIRST,
		DeadLetters: req.GetDeadLetters(),
		Group:       req.GetGroup(),
		Types:       relay.TypeFilter(req.GetTypes()),
	}
	for _, t := range []struct {
		name string
		ts   *timestamppb.Timestamp
		dst  *relay.ListQuery
		end  bool
	}{{"start_time", req.GetStartTime(), &q, false}, {"end_time", req.GetEndTime(), &q, true}} {
		if t.ts == nil {
			continue
		}
		if err := t.ts.CheckValid(); err != nil {
			return nil, s.err(ctx, relay.Errorf(relay.CodeInvalid, "%s: not a valid timestamp", t.name))
		}
		if t.end {
			q.End = t.ts.AsTime()
		} else {
			q.Start = t.ts.AsTime()
		}
	}
	items, next, err := s.svc.ListEvents(ctx, q)
	if err != nil {
		return nil, s.err(ctx, err)
	}
	resp := &eventrelayv1.ListEventsResponse{NextPageToken: next}
	for _, it := range items {
		ev, err := relay.DecodeEvent(it.Entry.Event)
		if err != nil {
			return nil, s.err(ctx, err)
		}
		d := &eventrelayv1.Delivery{Event: ev, Cursor: it.Cursor}
		if q.DeadLetters {
			d.DeliveryAttempt = int32(it.Entry.DeliveryCount)
		}
		resp.Deliveries = append(resp.Deliveries, d)
	}
	return resp, nil
}

// RedriveDeadLetters delivers dead letters of a group again to that group only.
func (s *EventServer) RedriveDeadLetters(ctx context.Context, req *eventrelayv1.RedriveDeadLettersRequest) (*eventrelayv1.RedriveDeadLettersResponse, error) {
	if err := s.authorizeGroup(ctx, req.GetSource(), true, req.GetGroup()); err != nil {
		return nil, s.err(ctx, err)
	}
	n, err := s.svc.Redrive(ctx, req.GetSource(), req.GetGroup(), req.GetIds())
	if err != nil {
		return nil, s.err(ctx, err)
	}
	return &eventrelayv1.RedriveDeadLettersResponse{Redriven: int32(n)}, nil
}
