package relay

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Subscription defaults and bounds.
const (
	// MaxBatchBytes bounds a batch of deliveries (SubscribeRequest.MaxBatch), counting each
	// delivery as its event's, cursor's and ack id's lengths plus 64 bytes (batchSize): more
	// than any transport adds to frame them.
	MaxBatchBytes         = 1 << 20
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
	// Filter is an expression an event must match to be delivered (Options.CompileFilter),
	// on top of Types; "" matches every event. In group mode it is a group setting.
	Filter string
	filter Filter // Filter compiled
	Start  StartAt
	// After resumes after this cursor (overrides Start and Since).
	After *Cursor
	// Since replays from this time (overrides Start).
	Since time.Time
	// Heartbeat interval (default 15s).
	Heartbeat time.Duration
	// DeadLetters reads the dead letters of the group Group.Name (which must be set, with no
	// other group option) as a tail, without acknowledgements.
	DeadLetters bool
	// Group, when Name is set, consumes as a durable consumer group.
	Group GroupOptions
	// MaxBatch, above 1, lets the transport send up to this many deliveries that are ready
	// together as one message (Message.More), whose deliveries' sizes (batchSize) add up to
	// at most MaxBatchBytes, unless one delivery alone is larger.
	MaxBatch int
	// Hold, when set, is the writer the transport shares with other subscriptions (a
	// connection several streams send through). For every read of the shared tail reader it
	// hands this subscription, Hold is called before the subscription can see the read, and
	// Release once the read is handled (its deliveries passed to send, or skipped) or
	// dropped: while holds are out, the deliveries of one read are on their way to several
	// subscriptions, and the transport may hold its writes to send them together. Release
	// may come early (when the subscription ends), never more often than Hold; replayed
	// history, group deliveries and heartbeats take no holds.
	Hold WriteHold
	// Interrupt, when set, is called at most once, from another goroutine, when the
	// subscription fails while a send may be blocked (a client that stopped reading, a tail
	// subscriber cut for falling behind), with the error that ends it. A transport whose send
	// does not return may end the stream with that error at once; Subscribe itself returns
	// once the send does, with the same failure.
	Interrupt func(err error)
}

// WriteHold is a transport's writer shared by several subscriptions (SubscribeRequest.Hold).
// Its methods are called from many goroutines at once, and must not block: Hold is called
// under a lock of the shared reader's.
type WriteHold interface {
	Hold()
	Release()
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
	// More reports that this delivery and the next go in one batch (SubscribeRequest.MaxBatch):
	// the next was ready with it and is sent right after it, unless the stream ends first. A
	// transport holds a delivery with More and sends what it holds with the first one
	// without: the last of a run of deliveries ready together, or of a full batch. So a
	// transport that batches this way never delays a delivery, and the service counts a
	// delivery as sent (the cursor a cut subscriber is told to resume from) only once the
	// send of a message without More returned. Always false without MaxBatch, and for
	// heartbeats.
	More bool
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
	if min := max(s.opts.MinHeartbeat, MinHeartbeat); req.Heartbeat < min {
		return Errorf(CodeInvalid, "heartbeat_interval must be at least %s", min)
	}
	var err error
	if req.filter, err = s.compileFilter(req.Filter); err != nil {
		return err
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
	dlGroup := "" // the group whose dead letters are read
	if req.DeadLetters {
		if err := req.Group.deadLetterReader(); err != nil {
			return err
		}
		dlGroup = req.Group.Name
	} else if req.Group.Name != "" {
		return s.subscribeGroup(ctx, req, parts, send)
	}
	if req.After != nil {
		if err := req.After.kindMismatch("after_cursor", req.DeadLetters, dlGroup); err != nil {
			return err
		}
	}

	// Resolve the starting position of every partition.
	start := make(map[Partition]trail, len(parts))
	pos := make(map[Partition]ID, len(parts))
	for _, p := range parts {
		t, err := s.startPosition(ctx, p, req)
		if err != nil {
			return err
		}
		start[p], pos[p] = t, t.pos
	}

	enc := newCursorEncoder(pos, req.DeadLetters, dlGroup)
	out := make(chan batch, 2)
	ctx, stop := runFeeders(ctx, parts, func(ctx context.Context, p Partition) error {
		f := feeder{s: s, ctx: ctx, p: p, slot: enc.slot(p), out: out, handOver: len(parts) == 1, hold: req.Hold}
		if req.DeadLetters {
			return f.deadLetters(pos[p], dlGroup, req.Heartbeat)
		}
		return f.partition(start[p])
	})
	defer stop()
	return s.run(ctx, req, enc, nil, out, send)
}

// batch is a run of entries of one partition, in order, for the send loop, or the error that
// ends the stream after the batches before it (a gap).
type batch struct {
	p       Partition
	slot    int // the partition's slot in the cursor encoder
	entries []Entry
	memos   []entryMemo // parallel to entries for batches of the shared tail reader, else nil
	tail    *tailSub    // told when the batch is handled (nil: history)
	count   int         // entries of the shared reader's batch this one stands for
	err     error
	// follow, with no entries, hands the send loop the shared reader's subscription to
	// receive from itself from now on (see feeder.handOver), at position trail.
	follow *tailSub
	trail  trail
}

// runFeeders runs feed for every partition in a goroutine of its own, under a context that
// the first feeder error cancels with that error as its cause (which ends the stream even
// while a send is in progress; see streamCause). A feeder that handed its error to the send
// loop in order (errHandedOn) stops without cancelling. stop cancels the context and waits
// for the feeders.
func runFeeders(ctx context.Context, parts []Partition, feed func(ctx context.Context, p Partition) error) (_ context.Context, stop func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	var wg sync.WaitGroup
	for _, p := range parts {
		wg.Go(func() {
			if err := feed(ctx, p); err != nil && err != errHandedOn && ctx.Err() == nil {
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
func (s *Service) sendLoop(ctx context.Context, req SubscribeRequest, out <-chan []item, send func(*Message) error) error {
	return s.run(ctx, req, newCursorEncoder(nil, false, ""), out, nil, send)
}

// run is the send loop: it sends the group items of items and the batches of batches
// (either may be nil) in the order received, advancing the cursor of batches. A heartbeat
// goes out whenever nothing was sent for req.Heartbeat, however many entries the type filter
// held back meanwhile; its cursor is past every entry examined.
func (s *Service) run(ctx context.Context, req SubscribeRequest, enc *cursorEncoder, items <-chan []item, batches <-chan batch, send func(*Message) error) error {
	// The heartbeat timer is not reset on every send (a timer reset per delivery was 2% of
	// relayd's CPU at a trickle): it fires req.Heartbeat after it was armed, and re-arms
	// itself for what is left of the interval when something was sent meanwhile.
	hb := time.NewTimer(req.Heartbeat)
	defer hb.Stop()
	var lastSent time.Time
	st := &sendState{s: s, ctx: ctx, req: &req, enc: enc, send: send, last: enc.String()}
	if req.Interrupt != nil {
		stop := context.AfterFunc(ctx, func() {
			if c := streamCause(ctx); c != nil {
				req.Interrupt(st.final(c))
			}
		})
		defer stop()
	}
	done := ctx.Done()
	var (
		follow *followed         // the shared reader's subscription, once handed over
		tailCh <-chan *tailBatch // its batches (nil until then)
		cut    <-chan struct{}   // closed when it is cut (nil until then)
	)
	for {
		// An ended stream or a cut subscriber ends at once, before anything queued is sent
		// (one-case selects: no channel locks when nothing is ready).
		select {
		case <-done:
			return st.fail(nil)
		default:
		}
		select {
		case <-cut:
			return st.fail(follow.sub.err)
		default:
		}
		select {
		case <-done:
			return st.fail(nil)
		case <-cut:
			return st.fail(follow.sub.err)
		case tb, ok := <-tailCh:
			if !ok { // the reader ended it: a gap, after what it had queued, or a failure
				return st.fail(follow.sub.err)
			}
			b, err := follow.next(ctx, s.store, tb)
			if err != nil {
				return st.fail(err)
			}
			sent, err := st.sendBatch(b)
			follow.sub.consumed(len(tb.entries))
			if err != nil {
				return st.fail(err)
			}
			if sent {
				lastSent = time.Now()
			}
		case <-hb.C:
			if quiet := time.Since(lastSent); quiet < req.Heartbeat {
				hb.Reset(req.Heartbeat - quiet)
				continue
			}
			if err := st.emit(&Message{Cursor: string(enc.bytes()), ServerTime: s.opts.Now()}); err != nil {
				return st.fail(err)
			}
			lastSent = time.Now()
			hb.Reset(req.Heartbeat)
		case its := <-items: // group deliveries: the cursor stays empty
			sent, err := st.sendItems(its, items)
			if err != nil {
				return st.fail(err)
			}
			if sent {
				lastSent = time.Now()
			}
		case b := <-batches:
			if b.err != nil {
				return st.fail(b.err)
			}
			if b.follow != nil {
				follow = &followed{sub: b.follow, p: b.p, slot: b.slot, t: b.trail}
				tailCh, cut = b.follow.ch, b.follow.cut
				continue
			}
			sent, err := st.sendBatch(b)
			if b.tail != nil {
				b.tail.consumed(b.count)
			}
			if err != nil {
				return st.fail(err)
			}
			if sent {
				lastSent = time.Now()
			}
		}
	}
}

// followed is the shared reader's subscription of a partition that the send loop receives
// from itself (feeder.handOver), and the position it reached.
type followed struct {
	sub  *tailSub
	p    Partition
	slot int
	t    trail
}

// next returns the batch to send for tb: its entries after the position, after checking for
// a gap when they do not follow it (as feeder.follow does).
func (f *followed) next(ctx context.Context, store Store, tb *tailBatch) (batch, error) {
	k, check := f.t.take(tb)
	if check {
		if err := advance(ctx, store, f.p, &f.t, tb.entries, false); err != nil {
			return batch{}, err
		}
	}
	return batch{p: f.p, slot: f.slot, entries: tb.entries[k:], memos: tb.memos[k:]}, nil
}

// take moves t over the entries of tb, a batch of the shared reader, and returns how many of
// them are at or before t's position (sent already: history read past the reader's start).
// check reports that the batch does not follow t's position (catching up stopped short of
// the reader's, nothing more being left in the store): the caller then checks with advance
// whether entries in between were trimmed, which moves t.
func (t *trail) take(tb *tailBatch) (k int, check bool) {
	for k < len(tb.entries) && !t.pos.Less(tb.entries[k].ID) {
		k++
	}
	switch {
	case k == len(tb.entries):
		return k, false
	case k == 0 && t.pos.Less(tb.prev):
		return 0, true
	}
	t.pos = tb.entries[len(tb.entries)-1].ID
	switch {
	case tb.n >= 0:
		t.n = tb.n
	case t.n >= 0:
		t.n += int64(len(tb.entries) - k)
	}
	return k, false
}

// sendState is the send loop's state: the cursor, and the cursor of the last message sent.
type sendState struct {
	s    *Service
	ctx  context.Context
	req  *SubscribeRequest
	enc  *cursorEncoder
	send func(*Message) error
	m    Message

	// batchN and batchBytes are the deliveries of the batch the held one belongs to, and
	// their batchSize (see hold).
	batchN, batchBytes int

	mu   sync.Mutex // last is also read by Interrupt's goroutine
	last string     // cursor of the last message sent (or the starting cursor)
}

// emit sends m and, when m ends its batch (no More: the transport sent it and what it held),
// remembers its cursor.
func (st *sendState) emit(m *Message) error {
	if err := st.send(m); err != nil {
		return err
	}
	if !m.More {
		st.mu.Lock()
		st.last = m.Cursor
		st.mu.Unlock()
	}
	return nil
}

// final is the error that ends the stream for a failure err that ended it out of band
// (safe to call from another goroutine: gaps, which need the cursor encoder, come in band).
func (st *sendState) final(err error) error {
	if err == errFellBehind {
		st.mu.Lock()
		defer st.mu.Unlock()
		return fellBehind(st.s.opts.TailBuffer, st.last)
	}
	return err
}

// batchSize is what a delivery counts for against MaxBatchBytes.
func batchSize(m *Message) int { return len(m.Entry.Event) + len(m.Cursor) + len(m.AckID) + 64 }

// hold makes next, a delivery ready to send, the held one (st.m), after sending the one held
// before: with More when next joins its batch. Holding one back is how a delivery learns
// whether another follows it (Message.More).
func (st *sendState) hold(held bool, next *Message) error {
	size := batchSize(next)
	if held {
		more := st.batchN < st.req.MaxBatch && st.batchBytes+size <= MaxBatchBytes
		st.m.More = more
		if err := st.emit(&st.m); err != nil {
			return err
		}
		if more {
			st.batchN, st.batchBytes = st.batchN+1, st.batchBytes+size
			st.m = *next
			return nil
		}
	}
	st.batchN, st.batchBytes = 1, size // next starts a batch
	st.m = *next
	return nil
}

// sendHeld sends the held delivery, the last of its run (More false).
func (st *sendState) sendHeld(held bool) (bool, error) {
	if !held {
		return false, nil
	}
	st.m.More = false
	return true, st.emit(&st.m)
}

// sendItems sends the group deliveries its, and those queued behind them, that pass the
// filters, and reports whether it sent any. Filtered group deliveries are acknowledged as
// handled.
func (st *sendState) sendItems(its []item, items <-chan []item) (bool, error) {
	var (
		req  = st.req
		s    = st.s
		held = false // st.m is a delivery not sent yet (see hold)
	)
	for {
		for i := range its {
			it := &its[i]
			if req.Types.Match(EventType(it.e.Event)) && s.filterMatch(req.filter, nil, &it.e) {
				next := Message{Partition: it.p, Entry: &it.e, Cursor: string(st.enc.bytes()), AckID: it.ackID, Attempt: it.attempt}
				if err := st.hold(held, &next); err != nil {
					return true, err
				}
				held = true
			} else if it.ackID != "" {
				s.ackFiltered(st.ctx, *it)
			}
			select {
			case <-st.ctx.Done():
				return held, nil // run's next check reports why
			default:
			}
		}
		select {
		case its = <-items:
			continue
		default:
		}
		return st.sendHeld(held)
	}
}

// sendBatch sends the entries of b that pass the filters, each with the cursor as of it,
// and reports whether it sent any.
func (st *sendState) sendBatch(b batch) (bool, error) {
	done := st.ctx.Done()
	held := false // st.m is a delivery not sent yet (see hold)
	for i := range b.entries {
		select {
		case <-done:
			return held, nil // run's next check reports why
		default:
		}
		e := &b.entries[i]
		st.enc.set(b.slot, b.p, e.ID)
		if len(st.req.Types) > 0 && !st.req.Types.Match(EventType(e.Event)) {
			continue
		}
		if f := st.req.filter; f != nil {
			var in *FilterInput
			if b.memos != nil {
				in = b.memos[i].filterInput(e.Event)
			}
			if !st.s.filterMatch(f, in, e) {
				continue
			}
		}
		next := Message{Partition: b.p, Entry: e}
		if b.memos != nil {
			next.Shared = b.memos[i].get(st.enc.proto(), st.enc.String)
		}
		if next.Shared != nil {
			next.Cursor = next.Shared.cursor
		} else {
			next.Cursor = st.enc.String()
		}
		if err := st.hold(held, &next); err != nil {
			return true, err
		}
		held = true
	}
	return st.sendHeld(held)
}

// fail returns the error that ends the stream: the failure that ended it (a feeder's error,
// which also explains a send that Interrupt broke off), else err. A gap becomes
// OUT_OF_RANGE naming the cursor of the oldest retained entry, and a subscriber cut for
// falling behind gets RESOURCE_EXHAUSTED naming the cursor of the last message it was sent.
func (st *sendState) fail(err error) error {
	if c := streamCause(st.ctx); c != nil {
		err = c
	}
	var gap *gapError
	if errors.As(err, &gap) {
		i := st.enc.slot(gap.p)
		return outOfRange(gap.p, st.enc.ids[i], gap.info, movedCursor(st.enc.cursor(), gap.p, resumePoint(gap.info)))
	}
	return st.final(err)
}

// streamCause is why a subscription's context ended: a feeder's error, or nil when the
// caller went away.
func streamCause(ctx context.Context) error {
	if c := context.Cause(ctx); c != nil && !errors.Is(c, context.Canceled) && !errors.Is(c, context.DeadlineExceeded) {
		return c
	}
	return nil
}

// startPosition returns the position after which p is read. A resume cursor older than the
// retained history is CodeOutOfRange (the rule and the answer of gap.go).
func (s *Service) startPosition(ctx context.Context, p Partition, req SubscribeRequest) (trail, error) {
	if req.After != nil {
		if id, ok := req.After.Positions[p]; ok {
			if req.DeadLetters {
				return trail{pos: id, n: -1}, nil
			}
			info, err := s.store.Info(ctx, p)
			if err != nil {
				return trail{}, err
			}
			if id.Less(info.MaxDeleted) {
				return trail{}, outOfRange(p, id, info, movedCursor(*req.After, p, resumePoint(info)))
			}
			return trail{pos: id, n: -1}, nil
		}
	}
	if !req.Since.IsZero() {
		return trail{pos: IDFromTime(req.Since).Prev(), n: -1, fresh: true}, nil
	}
	if req.Start == StartEarliest || req.DeadLetters {
		// Dead letters are few: latest means everything still there.
		return trail{n: -1, fresh: true}, nil
	}
	info, err := s.store.Info(ctx, p)
	if err != nil {
		return trail{}, err
	}
	if info.LastGenerated.Less(info.Last) {
		return trail{pos: info.Last, n: -1}, nil
	}
	t := trail{pos: info.LastGenerated, n: -1}
	if info.Added > 0 {
		t.n = info.Added
	}
	return t, nil
}

func (s *Service) emit(ctx context.Context, out chan<- []item, it []item) bool {
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
	s          *Service
	ctx        context.Context
	p          Partition
	slot       int
	out        chan<- batch
	deadLetter bool // reads the dead letters
	// handOver: the subscription reads this partition alone, so once caught up with the
	// shared reader the feeder hands its subscription to the send loop, which then receives
	// the reader's batches itself: one goroutine hand-off per delivery instead of two (at a
	// trickle, waking goroutines is most of what a delivery costs). The feeder stays only
	// to end the stream at once when the subscriber is cut (see follow).
	handOver bool
	hold     WriteHold // SubscribeRequest.Hold
}

func (f *feeder) emit(b batch) bool {
	select {
	case f.out <- b:
		return true
	case <-f.ctx.Done():
		return false
	}
}

// errHandedOn is what a feeder returns after handing its error to the send loop in order.
var errHandedOn = errors.New("error handed to the send loop")

// handOn hands err (a gap) to the send loop after the batches emitted before it, so the
// subscriber gets every entry read before the gap, then the error. The feeder stops.
func (f *feeder) handOn(err error) error {
	f.emit(batch{p: f.p, err: err})
	return errHandedOn
}

// catchUp sends every entry of the partition after t's position up to end, in batches, and
// advances t. Entries of the main stream trimmed after t's position before they were read
// end the stream (a gap, handed on in order); dead letters (rng is not the main stream's
// Range) are not trimmed.
func (f *feeder) catchUp(t *trail, end ID, rng func(context.Context, Partition, ID, ID, int, bool) ([]Entry, error)) error {
	n := f.s.opts.ReplayBatch
	for f.ctx.Err() == nil && t.pos.Less(end) {
		// The main stream is read from the position itself: when its entry comes back first,
		// it was still retained, so nothing after it was trimmed (gap.go) and no separate
		// check is needed.
		from, ask := t.pos.Next(), n
		withPos := !f.deadLetter && !t.pos.IsZero()
		if withPos {
			from, ask = t.pos, n+1
		}
		es, err := rng(f.ctx, f.p, from, end, ask, false)
		if err != nil {
			return err
		}
		retained := withPos && len(es) > 0 && es[0].ID == t.pos
		if retained {
			es = es[1:]
		}
		if f.deadLetter {
			if len(es) > 0 {
				t.pos = es[len(es)-1].ID
			}
		} else if err := f.advance(t, es, retained); err != nil {
			return err
		}
		if len(es) > 0 && !f.emit(batch{p: f.p, slot: f.slot, entries: es}) {
			return nil
		}
		if len(es) < n {
			return nil
		}
	}
	return nil
}

// advance moves t over es, the entries read after its position, handing a gap on. retained:
// the read found the entry at t's position (see advance).
func (f *feeder) advance(t *trail, es []Entry, retained bool) error {
	err := advance(f.ctx, f.s.store, f.p, t, es, retained)
	if gap := (*gapError)(nil); errors.As(err, &gap) {
		return f.handOn(err)
	}
	return err
}

// partition replays the partition after from, then follows the shared tail reader with no
// gap and no repeat.
func (f *feeder) partition(from trail) error {
	s := f.s
	pos := from
	for f.ctx.Err() == nil {
		// Unbounded history first, so the shared reader's buffer only covers the last stretch.
		if err := f.catchUp(&pos, MaxID, s.store.Range); err != nil {
			return err
		}
		sub, reader, err := s.hub.register(f.ctx, f.p, f.hold)
		if err != nil {
			if f.ctx.Err() != nil {
				return nil
			}
			return err
		}
		err = f.follow(&pos, sub, reader)
		s.hub.unregister(sub)
		if errors.Is(err, errCatchUpLagged) {
			continue // fell behind while catching up: read history again
		}
		return err
	}
	return nil
}

var errCatchUpLagged = errors.New("lagged during catch-up")

// follow catches up from t to the shared reader's position, then hands on the reader's
// batches. A cut (the subscriber fell behind) ends it at once; the end of the reader (a gap,
// the store failing) after the batches queued before it.
func (f *feeder) follow(t *trail, sub *tailSub, reader trail) error {
	if err := f.catchUp(t, reader.pos, f.s.store.Range); err != nil {
		return err
	}
	if t.pos == reader.pos && t.n < 0 {
		t.n = reader.n
	}
	caughtUp := false // a cut before the first receive happened while catching up
	cut := func() error {
		if !caughtUp {
			return errCatchUpLagged
		}
		return sub.err
	}
	for {
		select {
		case <-sub.cut:
			return cut()
		default:
		}
		select {
		case <-f.ctx.Done():
			return nil
		case <-sub.cut:
			return cut()
		case tb, ok := <-sub.ch:
			if !ok {
				select {
				case <-sub.cut:
					return cut()
				default:
				}
				if gap := (*gapError)(nil); errors.As(sub.err, &gap) {
					return f.handOn(sub.err)
				}
				return sub.err
			}
			caughtUp = true
			k, check := t.take(tb)
			if k == len(tb.entries) {
				sub.consumed(len(tb.entries))
				continue
			}
			if check {
				if err := f.advance(t, tb.entries, false); err != nil {
					sub.consumed(len(tb.entries))
					return err
				}
			}
			select {
			case f.out <- batch{p: f.p, slot: f.slot, entries: tb.entries[k:], memos: tb.memos[k:], tail: sub, count: len(tb.entries)}:
			case <-sub.cut:
				return cut()
			case <-f.ctx.Done():
				return nil
			}
			if f.handOver {
				select {
				case f.out <- batch{p: f.p, slot: f.slot, follow: sub, trail: *t}:
				case <-sub.cut:
					return cut()
				case <-f.ctx.Done():
					return nil
				}
				// The send loop receives from now on. A cut still ends the stream from here,
				// at once, even while a send is blocked (runFeeders cancels with the cause).
				select {
				case <-sub.cut:
					return cut()
				case <-f.ctx.Done():
					return nil
				}
			}
		}
	}
}

// deadLetters replays group's dead letters on the partition after from, then polls for new
// ones.
func (f *feeder) deadLetters(from ID, group string, poll time.Duration) error {
	gs := f.s.store
	if poll > time.Second {
		poll = time.Second
	}
	f.deadLetter = true
	pos := trail{pos: from, n: -1}
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		if err := f.catchUp(&pos, MaxID, func(ctx context.Context, p Partition, start, end ID, count int, reverse bool) ([]Entry, error) {
			return gs.RangeDeadLetters(ctx, p, group, start, end, count, reverse)
		}); err != nil {
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
