package relay

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Subscription defaults and bounds.
const (
	DefaultHeartbeat      = 15 * time.Second
	MinHeartbeat          = 100 * time.Millisecond
	DefaultAckDeadline    = 30 * time.Second
	DefaultMaxOutstanding = 1000
	DefaultMaxAttempts    = 10
)

// StartAt says where a subscription without a cursor or time starts.
type StartAt int

const (
	// StartLatest delivers only entries appended after the subscription started.
	StartLatest StartAt = iota
	// StartEarliest delivers everything retained first.
	StartEarliest
)

// SubscribeRequest is a validated subscription.
type SubscribeRequest struct {
	// Sources to read; the caller has checked they are allowed. Empty: all configured.
	Sources []string
	Types   TypeFilter
	Start   StartAt
	// After resumes after this cursor (overrides Start and Since).
	After *Cursor
	// Since replays from this time (overrides Start).
	Since time.Time
	// Heartbeat interval (default 15s).
	Heartbeat   time.Duration
	DeadLetters bool
	// Group, when Name is set, consumes as a durable consumer group.
	Group GroupOptions
}

// GroupOptions configure group consumption.
type GroupOptions struct {
	Name           string
	Consumer       string
	AckDeadline    time.Duration
	MaxOutstanding int
	MaxAttempts    int
}

// Message is one message of a subscription: a delivery or, when Entry is nil, a heartbeat.
type Message struct {
	Partition Partition
	Entry     *Entry
	// Cursor is the opaque position as of this message.
	Cursor string
	// AckID and Attempt are set in group mode.
	AckID   string
	Attempt int
	// ServerTime is the relay clock for heartbeats.
	ServerTime time.Time
}

type item struct {
	p       Partition
	e       Entry
	ackID   string
	attempt int
}

// Subscribe streams req to send until ctx ends, send fails or the stream fails. It returns
// nil only when ctx ended.
func (s *Service) Subscribe(ctx context.Context, req SubscribeRequest, send func(*Message) error) error {
	if s.closing.Err() != nil {
		return errShuttingDown
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(s.closing, cancel)
	defer stop()
	err := s.subscribe(ctx, req, send)
	if s.closing.Err() != nil {
		return errShuttingDown
	}
	return err
}

var errShuttingDown = Errorf(CodeUnavailable, "relay is shutting down; resume from the last cursor")

func (s *Service) subscribe(ctx context.Context, req SubscribeRequest, send func(*Message) error) error {
	if req.Heartbeat == 0 {
		req.Heartbeat = DefaultHeartbeat
	}
	if req.Heartbeat < MinHeartbeat {
		return Errorf(CodeInvalid, "heartbeat_interval must be at least %s", MinHeartbeat)
	}
	names := req.Sources
	if len(names) == 0 {
		names = s.names
	}
	var parts []Partition
	seen := map[string]bool{}
	for _, n := range names {
		if seen[n] {
			continue
		}
		seen[n] = true
		src, err := s.Source(n)
		if err != nil {
			return err
		}
		parts = append(parts, src.Partitions()...)
	}
	if len(parts) == 0 {
		return Errorf(CodeInvalid, "no sources to subscribe to")
	}
	if req.Group.Name != "" {
		return s.subscribeGroup(ctx, req, parts, send)
	}
	if req.After != nil && req.After.DeadLetters != req.DeadLetters {
		return Errorf(CodeInvalid, "after_cursor: the cursor is from a %s subscription", map[bool]string{true: "dead-letter", false: "main-stream"}[req.After.DeadLetters])
	}

	// Resolve the starting position of every partition.
	pos := make(map[Partition]ID, len(parts))
	for _, p := range parts {
		id, err := s.startPosition(ctx, p, req)
		if err != nil {
			return err
		}
		pos[p] = id
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	out := make(chan item, 256)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel(nil)
	for _, p := range parts {
		wg.Add(1)
		go func(p Partition, from ID) {
			defer wg.Done()
			var err error
			if req.DeadLetters {
				err = s.feedDeadLetters(ctx, p, from, req.Heartbeat, out)
			} else {
				err = s.feedPartition(ctx, p, from, out)
			}
			if err != nil && ctx.Err() == nil {
				cancel(err) // ends the stream even while a send is in progress
			}
		}(p, pos[p])
	}
	return s.sendLoop(ctx, req, pos, out, send)
}

func (s *Service) sendLoop(ctx context.Context, req SubscribeRequest, pos map[Partition]ID, out <-chan item, send func(*Message) error) error {
	hb := time.NewTicker(req.Heartbeat)
	defer hb.Stop()
	cursor := func() string { return EncodeCursor(Cursor{Positions: pos, DeadLetters: req.DeadLetters}) }
	for {
		if ctx.Err() != nil {
			return streamCause(ctx)
		}
		select {
		case <-ctx.Done():
			return streamCause(ctx)
		case <-hb.C:
			if err := send(&Message{Cursor: cursor(), ServerTime: s.opts.Now()}); err != nil {
				return err
			}
		case it := <-out:
			if req.Group.Name == "" {
				pos[it.p] = it.e.ID
			}
			if !req.Types.Match(EventType(it.e.Event)) {
				if it.ackID != "" { // filtered group deliveries are acknowledged as handled
					s.ackFiltered(ctx, it)
				}
				continue
			}
			e := it.e
			if err := send(&Message{Partition: it.p, Entry: &e, Cursor: cursor(), AckID: it.ackID, Attempt: it.attempt}); err != nil {
				return err
			}
			hb.Reset(req.Heartbeat)
		}
	}
}

// streamCause is why a subscription's context ended: a feeder's error, or nil when the
// caller went away.
func streamCause(ctx context.Context) error {
	if c := context.Cause(ctx); c != nil && !errors.Is(c, context.Canceled) && !errors.Is(c, context.DeadlineExceeded) {
		return c
	}
	return nil
}

// startPosition returns the id after which p is read.
func (s *Service) startPosition(ctx context.Context, p Partition, req SubscribeRequest) (ID, error) {
	if req.After != nil {
		if id, ok := req.After.Positions[p]; ok {
			if req.DeadLetters {
				return id, nil
			}
			info, err := s.store.Info(ctx, p)
			if err != nil {
				return ID{}, err
			}
			if id.Less(info.MaxDeleted) {
				return ID{}, Errorf(CodeOutOfRange,
					"after_cursor: the position in %s (%s) is older than the retained history; the oldest available entry is %s; resubscribe with start=START_POSITION_EARLIEST or since",
					p, id, info.First)
			}
			return id, nil
		}
	}
	if !req.Since.IsZero() {
		return IDFromTime(req.Since).Prev(), nil
	}
	if req.Start == StartEarliest || req.DeadLetters && req.After == nil && req.Since.IsZero() && req.Start == StartEarliest {
		return ID{}, nil
	}
	if req.DeadLetters {
		return ID{}, nil // dead letters are few: latest means everything still there
	}
	info, err := s.store.Info(ctx, p)
	if err != nil {
		return ID{}, err
	}
	if info.LastGenerated.Less(info.Last) {
		return info.Last, nil
	}
	return info.LastGenerated, nil
}

func (s *Service) emit(ctx context.Context, out chan<- item, it item) bool {
	select {
	case out <- it:
		return true
	case <-ctx.Done():
		return false
	}
}

// catchUp sends every entry of p after *pos up to end, in batches, and advances *pos.
func (s *Service) catchUp(ctx context.Context, p Partition, pos *ID, end ID, out chan<- item,
	rng func(context.Context, Partition, ID, ID, int, bool) ([]Entry, error)) error {
	for ctx.Err() == nil && pos.Less(end) {
		es, err := rng(ctx, p, pos.Next(), end, s.opts.ReplayBatch, false)
		if err != nil {
			return err
		}
		for _, e := range es {
			if !s.emit(ctx, out, item{p: p, e: e}) {
				return nil
			}
			*pos = e.ID
		}
		if len(es) < s.opts.ReplayBatch {
			return nil
		}
	}
	return nil
}

// feedPartition replays p after from, then follows the shared tail reader with no gap and
// no repeat.
func (s *Service) feedPartition(ctx context.Context, p Partition, from ID, out chan<- item) error {
	pos := from
	for ctx.Err() == nil {
		// Unbounded history first, so the shared reader's buffer only covers the last stretch.
		if err := s.catchUp(ctx, p, &pos, MaxID, out, s.store.Range); err != nil {
			return err
		}
		sub, readerPos, err := s.hub.register(ctx, p)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		err = s.follow(ctx, p, &pos, sub, readerPos, out)
		s.hub.unregister(sub)
		if errors.Is(err, errCatchUpLagged) {
			continue // fell behind while catching up: read history again
		}
		return err
	}
	return nil
}

var errCatchUpLagged = errors.New("lagged during catch-up")

func (s *Service) follow(ctx context.Context, p Partition, pos *ID, sub *tailSub, readerPos ID, out chan<- item) error {
	if err := s.catchUp(ctx, p, pos, readerPos, out, s.store.Range); err != nil {
		return err
	}
	caughtUp := false // an overflow before the first receive happened while catching up
	for {
		select {
		case <-ctx.Done():
			return nil
		case batch, ok := <-sub.ch:
			if !ok {
				if ErrorCode(sub.err) == CodeResourceExhausted && !caughtUp {
					return errCatchUpLagged
				}
				return sub.err
			}
			caughtUp = true
			for _, e := range batch {
				if !pos.Less(e.ID) {
					continue
				}
				if !s.emit(ctx, out, item{p: p, e: e}) {
					return nil
				}
				*pos = e.ID
			}
			sub.consumed(len(batch))
		}
	}
}

// feedDeadLetters replays p's dead letters after from, then polls for new ones.
func (s *Service) feedDeadLetters(ctx context.Context, p Partition, from ID, poll time.Duration, out chan<- item) error {
	gs, ok := s.store.(GroupStore)
	if !ok {
		return Errorf(CodeUnimplemented, "this store has no dead letters")
	}
	if poll > time.Second {
		poll = time.Second
	}
	pos := from
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		if err := s.catchUp(ctx, p, &pos, MaxID, out, gs.RangeDeadLetters); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (s *Service) ackFiltered(ctx context.Context, it item) {
	if a, ok := DecodeAckID(it.ackID); ok {
		if _, err := s.Acknowledge(ctx, []string{it.ackID}); err != nil {
			s.log.Warn("acknowledging a filtered delivery failed", "partition", a.Partition.String(), "err", err)
		}
	}
}

// Subscribers returns how many tail subscriptions the process serves.
func (s *Service) Subscribers() int { return s.hub.subscribers() }
