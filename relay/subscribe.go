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
// The send function gets a Message that is valid only during the call (copy what you keep);
// Entry must not be modified.
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
	// Shared, when set, is shared by every tail subscriber that sends this same entry with
	// this same Cursor (and no AckID): a transport may keep its encoding of the delivery there
	// and send those bytes to all of them (encode once). Nil for replayed history, group
	// deliveries and heartbeats.
	Shared *SharedEncoding
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

	enc := newCursorEncoder(pos, req.DeadLetters)
	out := make(chan batch, 2)
	ctx, stop := runFeeders(ctx, parts, func(ctx context.Context, p Partition) error {
		f := feeder{s: s, ctx: ctx, p: p, slot: enc.slot(p), out: out}
		if req.DeadLetters {
			return f.deadLetters(pos[p], req.Heartbeat)
		}
		return f.partition(pos[p])
	})
	defer stop()
	return s.run(ctx, req, enc, nil, out, send)
}

// batch is a run of entries of one partition, in order, for the send loop.
type batch struct {
	p       Partition
	slot    int // the partition's slot in the cursor encoder
	entries []Entry
	memos   []entryMemo // parallel to entries for batches of the shared tail reader, else nil
	tail    *tailSub    // told when the batch is handled (nil: history)
	count   int         // entries of the shared reader's batch this one stands for
}

// runFeeders runs feed for every partition in a goroutine of its own, under a context that
// the first feeder error cancels with that error as its cause (which ends the stream even
// while a send is in progress; see streamCause). stop cancels the context and waits for the
// feeders.
func runFeeders(ctx context.Context, parts []Partition, feed func(ctx context.Context, p Partition) error) (_ context.Context, stop func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	var wg sync.WaitGroup
	for _, p := range parts {
		wg.Go(func() {
			if err := feed(ctx, p); err != nil && ctx.Err() == nil {
				cancel(err)
			}
		})
	}
	return ctx, func() {
		cancel(nil)
		wg.Wait()
	}
}

// sendLoop sends the items of a group subscription (positions are the group's, so the
// cursor stays empty).
func (s *Service) sendLoop(ctx context.Context, req SubscribeRequest, out <-chan item, send func(*Message) error) error {
	return s.run(ctx, req, newCursorEncoder(nil, false), out, nil, send)
}

// run is the send loop: it sends the group items of items and the batches of batches
// (either may be nil) in the order received, advancing the cursor of batches, with
// heartbeats when idle.
func (s *Service) run(ctx context.Context, req SubscribeRequest, enc *cursorEncoder, items <-chan item, batches <-chan batch, send func(*Message) error) error {
	hb := time.NewTicker(req.Heartbeat)
	defer hb.Stop()
	done := ctx.Done()
	var m Message
	for {
		select {
		case <-done:
			return streamCause(ctx)
		default:
		}
		select {
		case <-done:
			return streamCause(ctx)
		case <-hb.C:
			if err := send(&Message{Cursor: string(enc.bytes()), ServerTime: s.opts.Now()}); err != nil {
				return err
			}
		case it := <-items: // group deliveries: the cursor stays empty
			if !req.Types.Match(EventType(it.e.Event)) {
				if it.ackID != "" { // filtered group deliveries are acknowledged as handled
					s.ackFiltered(ctx, it)
				}
				continue
			}
			e := it.e
			m = Message{Partition: it.p, Entry: &e, Cursor: string(enc.bytes()), AckID: it.ackID, Attempt: it.attempt}
			if err := send(&m); err != nil {
				return err
			}
			hb.Reset(req.Heartbeat)
		case b := <-batches:
			err := s.sendBatch(ctx, req, enc, &m, b, send)
			if b.tail != nil {
				b.tail.consumed(b.count)
			}
			if err != nil {
				return err
			}
			hb.Reset(req.Heartbeat)
		}
	}
}

// sendBatch sends the entries of b that pass the type filter, each with the cursor as of it.
func (s *Service) sendBatch(ctx context.Context, req SubscribeRequest, enc *cursorEncoder, m *Message, b batch, send func(*Message) error) error {
	done := ctx.Done()
	for i := range b.entries {
		select {
		case <-done:
			return streamCause(ctx)
		default:
		}
		e := &b.entries[i]
		enc.set(b.slot, b.p, e.ID)
		if len(req.Types) > 0 && !req.Types.Match(EventType(e.Event)) {
			continue
		}
		*m = Message{Partition: b.p, Entry: e}
		if b.memos != nil {
			m.Shared = b.memos[i].get(enc.proto(), enc.String)
		}
		if m.Shared != nil {
			m.Cursor = m.Shared.cursor
		} else {
			m.Cursor = enc.String()
		}
		if err := send(m); err != nil {
			return err
		}
	}
	return nil
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

// feeder reads one partition of a (non-group) subscription and hands its entries to the
// send loop in batches: history in ReplayBatch-sized ranges (the next range is read while
// the send loop sends the previous one), then the shared tail reader's batches as they are.
type feeder struct {
	s    *Service
	ctx  context.Context
	p    Partition
	slot int
	out  chan<- batch
}

func (f *feeder) emit(b batch) bool {
	select {
	case f.out <- b:
		return true
	case <-f.ctx.Done():
		return false
	}
}

// catchUp sends every entry of the partition after *pos up to end, in batches, and advances
// *pos.
func (f *feeder) catchUp(pos *ID, end ID, rng func(context.Context, Partition, ID, ID, int, bool) ([]Entry, error)) error {
	n := f.s.opts.ReplayBatch
	for f.ctx.Err() == nil && pos.Less(end) {
		es, err := rng(f.ctx, f.p, pos.Next(), end, n, false)
		if err != nil {
			return err
		}
		if len(es) > 0 {
			if !f.emit(batch{p: f.p, slot: f.slot, entries: es}) {
				return nil
			}
			*pos = es[len(es)-1].ID
		}
		if len(es) < n {
			return nil
		}
	}
	return nil
}

// partition replays the partition after from, then follows the shared tail reader with no
// gap and no repeat.
func (f *feeder) partition(from ID) error {
	s := f.s
	pos := from
	for f.ctx.Err() == nil {
		// Unbounded history first, so the shared reader's buffer only covers the last stretch.
		if err := f.catchUp(&pos, MaxID, s.store.Range); err != nil {
			return err
		}
		sub, readerPos, err := s.hub.register(f.ctx, f.p)
		if err != nil {
			if f.ctx.Err() != nil {
				return nil
			}
			return err
		}
		err = f.follow(&pos, sub, readerPos)
		s.hub.unregister(sub)
		if errors.Is(err, errCatchUpLagged) {
			continue // fell behind while catching up: read history again
		}
		return err
	}
	return nil
}

var errCatchUpLagged = errors.New("lagged during catch-up")

func (f *feeder) follow(pos *ID, sub *tailSub, readerPos ID) error {
	if err := f.catchUp(pos, readerPos, f.s.store.Range); err != nil {
		return err
	}
	caughtUp := false // an overflow before the first receive happened while catching up
	for {
		select {
		case <-f.ctx.Done():
			return nil
		case tb, ok := <-sub.ch:
			if !ok {
				if ErrorCode(sub.err) == CodeResourceExhausted && !caughtUp {
					return errCatchUpLagged
				}
				return sub.err
			}
			caughtUp = true
			// Entries up to *pos were sent already (history read past the reader's start).
			k := 0
			for k < len(tb.entries) && !pos.Less(tb.entries[k].ID) {
				k++
			}
			if k == len(tb.entries) {
				sub.consumed(len(tb.entries))
				continue
			}
			if !f.emit(batch{p: f.p, slot: f.slot, entries: tb.entries[k:], memos: tb.memos[k:], tail: sub, count: len(tb.entries)}) {
				return nil
			}
			*pos = tb.entries[len(tb.entries)-1].ID
		}
	}
}

// deadLetters replays the partition's dead letters after from, then polls for new ones.
func (f *feeder) deadLetters(from ID, poll time.Duration) error {
	gs, ok := f.s.store.(GroupStore)
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
		if err := f.catchUp(&pos, MaxID, gs.RangeDeadLetters); err != nil {
			return err
		}
		select {
		case <-f.ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (s *Service) ackFiltered(ctx context.Context, it item) {
	if _, err := s.Acknowledge(ctx, []string{it.ackID}, nil); err != nil {
		s.log.Warn("acknowledging a filtered delivery failed", "partition", it.p.String(), "err", err)
	}
}

// Subscribers returns how many tail subscriptions the process serves.
func (s *Service) Subscribers() int { return s.hub.subscribers() }
