package relay

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Bounds of group options.
const (
	MinAckDeadline = 100 * time.Millisecond
	MaxAckDeadline = 12 * time.Hour
	MaxOutstanding = 100000
)

// normalize validates group options and fills defaults.
func (g *GroupOptions) normalize(now time.Time) error {
	if !ValidGroupName(g.Name) {
		return Errorf(CodeInvalid, "group: must match [A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
	}
	if g.Consumer == "" {
		g.Consumer = "c-" + NewUUIDv7(now)
	} else if !ValidGroupName(g.Consumer) {
		return Errorf(CodeInvalid, "consumer: must match [A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
	}
	switch {
	case g.AckDeadline == 0:
		g.AckDeadline = DefaultAckDeadline
	case g.AckDeadline < MinAckDeadline || g.AckDeadline > MaxAckDeadline:
		return Errorf(CodeInvalid, "ack_deadline: must be %s to %s", MinAckDeadline, MaxAckDeadline)
	}
	switch {
	case g.MaxOutstanding == 0:
		g.MaxOutstanding = DefaultMaxOutstanding
	case g.MaxOutstanding < 0 || g.MaxOutstanding > MaxOutstanding:
		return Errorf(CodeInvalid, "max_outstanding: must be 1 to %d", MaxOutstanding)
	}
	switch {
	case g.MaxAttempts == 0:
		g.MaxAttempts = DefaultMaxAttempts
	case g.MaxAttempts < 0 || g.MaxAttempts > 1000:
		return Errorf(CodeInvalid, "max_delivery_attempts: must be 1 to 1000")
	}
	return nil
}

// groupSub is one group subscription's shared state: the flow-control budget over all its
// partitions. The budget counts the distinct entries this stream delivered that are not
// acknowledged yet; inflight says which, so that an acknowledgement frees the budget of the
// stream that delivered the entry, not that of another stream of the same group.
type groupSub struct {
	opts        GroupOptions
	ackKey      []byte // authenticates the ack ids this stream issues
	outstanding atomic.Int64
	// reserved is budget claimed by reads in progress on some partition (reserve): the
	// partitions' feeders share one budget, so a read may only ask for what no other feeder
	// holds, and the stream never has more than MaxOutstanding deliveries unacknowledged.
	reserved atomic.Int64
	parts    int // partitions the stream reads
	// wake is broadcast when budget is freed (acks, reservations given back); waiting
	// counts the partitions waiting for budget, so that one whose read found nothing
	// yields to them instead of taking the budget again at once.
	wake    broadcast
	waiting atomic.Int32

	mu       sync.Mutex
	inflight map[Partition]map[ID]struct{}
	// late holds, per partition, acknowledgements of this stream's deliveries made with
	// AcknowledgeLater, for the partition's feeder to write with its next read; lateWake
	// tells the feeder (one per partition, fixed at the start). Once ended is set (the feeders
	// have stopped), AcknowledgeLater acknowledges at once instead.
	late     map[Partition][]ID
	lateN    map[Partition][]int64 // the delivery counts of late's ack ids (AckID.Deliveries)
	lateWake map[Partition]chan struct{}
	ended    bool
}

// deferAck queues the acknowledgement of p's entry id, of delivery count deliveries (0:
// any), for the partition's next read and reports whether it did: the entry must be in
// flight on this stream, which must not have ended. The store still checks the count when
// it writes the acknowledgement: another member may have claimed the entry meanwhile.
func (g *groupSub) deferAck(p Partition, id ID, deliveries int64) bool {
	g.mu.Lock()
	_, ok := g.inflight[p][id]
	wake := g.lateWake[p]
	if !ok || wake == nil || g.ended {
		g.mu.Unlock()
		return false
	}
	g.late[p] = append(g.late[p], id)
	g.lateN[p] = append(g.lateN[p], deliveries)
	g.mu.Unlock()
	select {
	case wake <- struct{}{}:
	default:
	}
	return true
}

// takeLate returns and forgets the queued acknowledgements of p, with their delivery counts.
func (g *groupSub) takeLate(p Partition) ([]ID, []int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	ids, deliveries := g.late[p], g.lateN[p]
	delete(g.late, p)
	delete(g.lateN, p)
	return ids, deliveries
}

// endLate ends the queueing and returns what was queued, per partition, with the delivery
// counts.
func (g *groupSub) endLate() (map[Partition][]ID, map[Partition][]int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.ended = true
	late, lateN := g.late, g.lateN
	g.late, g.lateN = map[Partition][]ID{}, map[Partition][]int64{}
	return late, lateN
}

// track records a delivery of p's entry id and reports whether it was not in flight on this
// stream already (a redelivery of an entry the stream still holds costs no more budget).
func (g *groupSub) track(p Partition, id ID) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	ids := g.inflight[p]
	if ids == nil {
		ids = map[ID]struct{}{}
		g.inflight[p] = ids
	}
	if _, ok := ids[id]; ok {
		return false
	}
	ids[id] = struct{}{}
	g.outstanding.Add(1)
	return true
}

// untrack forgets settled entries of p that this stream delivered and frees their budget.
func (g *groupSub) untrack(p Partition, ids []ID) {
	g.mu.Lock()
	n := int64(0)
	for _, id := range ids {
		if _, ok := g.inflight[p][id]; ok {
			delete(g.inflight[p], id)
			n++
		}
	}
	g.mu.Unlock()
	if n > 0 {
		g.release(n)
	}
}

// forget frees the budget of every entry of p in flight on this stream (none of them is
// pending for the consumer any more: acknowledged through another replica, or claimed).
func (g *groupSub) forget(p Partition) {
	g.mu.Lock()
	n := int64(len(g.inflight[p]))
	delete(g.inflight, p)
	g.mu.Unlock()
	if n > 0 {
		g.release(n)
	}
}

// reserve claims up to n of the free budget for one read and returns how much it got (0:
// none free); unreserve gives it back once what was read is tracked. While both count an
// entry the budget is underestimated, never overestimated.
func (g *groupSub) reserve(n int) int {
	for {
		held := g.reserved.Load()
		k := min(int64(n), int64(g.opts.MaxOutstanding)-g.outstanding.Load()-held)
		if k <= 0 {
			return 0
		}
		if g.reserved.CompareAndSwap(held, held+k) {
			return int(k)
		}
	}
}

func (g *groupSub) unreserve(k int) {
	if k > 0 {
		g.reserved.Add(-int64(k))
		g.wake.signal()
	}
}

func (g *groupSub) release(n int64) {
	g.outstanding.Add(-n)
	g.wake.signal()
}

// subscribeGroup consumes parts as a durable consumer group: per partition, the consumer's
// own pending entries first, then entries idle past the ack deadline reclaimed from anyone
// (dead-lettered past max attempts), then new entries; never more than MaxOutstanding
// unacknowledged deliveries in flight.
func (s *Service) subscribeGroup(ctx context.Context, req SubscribeRequest, parts []Partition, send func(*Message) error) error {
	gs := s.store
	if req.After != nil {
		return Errorf(CodeInvalid, "after_cursor: a consumer group resumes from its own position; omit after_cursor in group mode")
	}
	asked := GroupSettings{Types: normalTypes(req.Types), Filter: req.Filter, AckDeadline: req.Group.AckDeadline, MaxAttempts: req.Group.MaxAttempts}
	anonymous := req.Group.Consumer == "" // a consumer name generated for this stream alone
	if err := req.Group.normalize(s.opts.Now()); err != nil {
		return err
	}
	if err := s.groupSettings(ctx, gs, partitionSources(parts), asked, &req); err != nil {
		return err
	}
	if req.Filter != asked.Filter { // the group's filter, taken by a member that omitted it
		f, err := s.compileFilter(req.Filter)
		if err != nil {
			return Errorf(CodeFailedPrecondition, "group %q: its recorded filter does not compile: %s", req.Group.Name, ErrorMessage(err))
		}
		req.filter = f
	}
	start := MaxID
	switch {
	case !req.Since.IsZero():
		start = IDFromTime(req.Since).Prev()
	case req.Start == StartEarliest:
		start = ID{}
	}
	for _, p := range parts {
		if err := gs.EnsureGroup(ctx, p, req.Group.Name, start); err != nil {
			return err
		}
	}
	key, err := s.ackKey(ctx)
	if err != nil {
		return err
	}
	g := &groupSub{opts: req.Group, ackKey: key, parts: len(parts), inflight: map[Partition]map[ID]struct{}{},
		late: map[Partition][]ID{}, lateN: map[Partition][]int64{}, lateWake: map[Partition]chan struct{}{}}
	for _, p := range parts {
		g.lateWake[p] = make(chan struct{}, 1)
	}
	s.groups.add(g)
	defer s.groups.remove(g)
	if anonymous {
		// Nobody can come back as this consumer: when the stream ends with nothing pending,
		// it is deleted rather than left in the group for ever. One that still holds pending
		// deliveries stays (deleting it would drop them); the others reclaim them after the
		// ack deadline, and the empty consumer is then left behind.
		defer s.removeConsumer(gs, parts, req.Group)
	}
	// Once the feeders have stopped: acknowledgements still queued for them are written now,
	// and later ones at once (AcknowledgeLater).
	defer func() {
		late, lateN := g.endLate()
		for p, ids := range late {
			s.writeLate(gs, p, req.Group.Name, ids, lateN[p])
		}
	}()

	out := make(chan []item, 16)
	ctx, stop := runFeeders(ctx, parts, func(ctx context.Context, p Partition) error {
		return s.feedGroup(ctx, gs, g, p, out)
	})
	defer stop()
	return s.sendLoop(ctx, req, out, send)
}

func (s *Service) feedGroup(ctx context.Context, gs Store, g *groupSub, p Partition, out chan<- []item) error {
	o := g.opts
	// toItem tracks e as in flight to this stream and makes it a delivery.
	toItem := func(e Entry) item {
		g.track(p, e.ID)
		ack := EncodeAckID(AckID{Partition: p, ID: e.ID, Group: o.Name, Deliveries: e.DeliveryCount}, g.ackKey)
		return item{p: p, e: e, ackID: ack, attempt: int(e.DeliveryCount)}
	}
	// A read's deliveries go to the send loop together, so that a transport that batches
	// (SubscribeRequest.MaxBatch) sends them together.
	var its []item
	deliverAll := func() bool {
		if len(its) == 0 {
			return true
		}
		ok := s.emit(ctx, out, its)
		its = nil // the send loop owns the slice now
		return ok
	}
	// handle queues an entry for delivery or dead-letters it past the attempt limit.
	handle := func(e Entry) error {
		if e.DeliveryCount > int64(o.MaxAttempts) {
			// The claim that found it counted one more delivery than was made: the dead letter
			// records the attempts made, as Reject does.
			dead := e
			dead.DeliveryCount = max(e.DeliveryCount-1, 1)
			if _, err := gs.DeadLetter(ctx, p, o.Name, dead, 0); err != nil {
				return err
			}
			s.log.Info("event dead-lettered", "partition", p.String(), "group", o.Name, "entry", e.ID.String(), "attempts", e.DeliveryCount-1)
			return nil
		}
		its = append(its, toItem(e))
		return nil
	}
	budget := func() int {
		return o.MaxOutstanding - int(g.outstanding.Load()) - int(g.reserved.Load())
	}
	// flushLate writes the acknowledgements queued for the next read on their own: before
	// waiting for budget (they free it), when they waited Options.AckDelay, and at the end.
	flushLate := func() {
		ids, deliveries := g.takeLate(p)
		s.writeLate(gs, p, o.Name, ids, deliveries)
	}
	defer flushLate()
	lateWake := g.lateWake[p] // acknowledgements were queued
	// handleAll handles es read under a reservation of k, then gives the reservation back.
	handleAll := func(es []Entry, k int) (bool, error) {
		defer g.unreserve(k)
		for _, e := range es {
			if err := handle(e); err != nil {
				deliverAll() // those before it
				return false, err
			}
		}
		return deliverAll(), nil
	}

	// 1. The consumer's own pending entries (delivered before a disconnect), all of them, before
	// anything else: read page by page, each page a share of the budget, waiting for the
	// budget as the stream acknowledges them. Every partition takes its share at once, so none
	// waits for another's pending entries.
	share := max(1, o.MaxOutstanding/g.parts)
	for after := (ID{}); ; {
		k := g.reserve(share)
		for k == 0 {
			flushLate()
			select {
			case <-ctx.Done():
				return nil
			case <-g.wake.wait():
			case <-lateWake: // flushed by the next turn
			case <-time.After(250 * time.Millisecond):
			}
			k = g.reserve(share)
		}
		page, err := gs.ReadPending(ctx, p, o.Name, o.Consumer, after, k)
		if err != nil {
			g.unreserve(k)
			return err
		}
		// Held entries (DeliveryCount 0) are redelivered by the claim path when their hold
		// falls due, not now.
		pending := slices.DeleteFunc(slices.Clone(page), func(e Entry) bool { return e.DeliveryCount == 0 })
		if ok, err := handleAll(pending, k); err != nil || !ok {
			return err
		}
		if len(page) < k {
			break
		}
		after = page[len(page)-1].ID
	}

	watch, unwatch := s.hub.watch(ctx, p)
	defer unwatch()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	ackTimer := time.NewTimer(time.Hour)
	ackTimer.Stop()
	defer ackTimer.Stop()

	claimEvery := min(max(o.AckDeadline/4, 50*time.Millisecond), maxClaimInterval)
	lastClaim := time.Time{}
	nextHold := time.Time{} // when the group's next held entry falls due (zero: none known)
	lastSync := time.Now()
	for ctx.Err() == nil {
		// Flow control: wait for acks when the budget is spent. Acks through this replica wake us;
		// acks through another replica are seen by re-counting the pending entries.
		for woken := g.wake.wait(); budget() <= 0; woken = g.wake.wait() {
			flushLate()
			g.waiting.Add(1)
			if time.Since(lastSync) > 200*time.Millisecond {
				n, err := gs.PendingCount(ctx, p, o.Name, o.Consumer)
				if err != nil {
					g.waiting.Add(-1)
					return err
				}
				lastSync = time.Now()
				if n == 0 { // the budget is shared by the partitions: free only this one's share
					g.forget(p)
				}
			}
			select {
			case <-ctx.Done():
				g.waiting.Add(-1)
				return nil
			case <-woken:
			case <-lateWake: // flushed by the next turn
			case <-time.After(250 * time.Millisecond):
			}
			g.waiting.Add(-1)
		}
		// 2. Entries idle past the ack deadline, from any consumer of the group. They come
		// before new entries: a claim that is due and finds no free budget waits for it rather
		// than letting new entries of the partition be read first, and a claim that filled its
		// reservation claims again before any new read (redeliveries keep their place ahead of
		// later entries, which per-key ordering relies on).
		if time.Since(lastClaim) >= claimEvery || !nextHold.IsZero() && !s.opts.Now().Before(nextHold) {
			k := g.reserve(100)
			if k == 0 {
				continue // back to the budget wait above
			}
			var claimed []Entry
			var err error
			claimed, nextHold, err = gs.ClaimDue(ctx, p, o.Name, o.Consumer, o.AckDeadline, k, s.opts.Now())
			if err != nil {
				g.unreserve(k)
				return err
			}
			if len(claimed) < k {
				lastClaim = time.Now() // everything due is claimed
			}
			if ok, err := handleAll(claimed, k); err != nil || !ok {
				return err
			}
			if len(claimed) == k {
				continue
			}
		}
		// 3. New entries: a share of the free budget, so that the partitions share it. The read
		// does not block: when it finds nothing, the feeder waits for the partition's shared
		// reader (one blocking read per partition for the whole process, see hub) or its next
		// claim, so Redis connections grow with partitions, not with subscriptions.
		n := g.reserve(max(1, min(500, budget()/g.parts)))
		if n <= 0 {
			continue
		}
		wait := claimEvery
		if !nextHold.IsZero() {
			wait = min(wait, max(nextHold.Sub(s.opts.Now()), time.Millisecond))
		}
		arrived := watch.wake.wait() // before the read: nothing appended after it is missed
		// The read is not abandoned when the subscription ends: entries it hands this
		// consumer after the end are released for immediate redelivery instead.
		// The acknowledgements queued since the last read go with it (AcknowledgeLater).
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		var es []Entry
		var err error
		if late, lateN := g.takeLate(p); len(late) > 0 {
			var acked []bool
			acked, es, err = gs.AckReadGroup(rctx, p, o.Name, o.Consumer, late, lateN, n)
			s.lateWritten(p, o.Name, late, acked, err)
		} else {
			es, err = gs.ReadGroup(rctx, p, o.Name, o.Consumer, false, n, 0)
		}
		rcancel()
		if ctx.Err() != nil {
			g.unreserve(n)
			s.releaseUndelivered(gs, p, o, es)
			return nil
		}
		if err != nil {
			g.unreserve(n)
			return err
		}
		for _, e := range es {
			if e.DeliveryCount == 0 {
				e.DeliveryCount = 1
			}
			its = append(its, toItem(e))
		}
		if !deliverAll() {
			g.unreserve(n)
			s.releaseUndelivered(gs, p, o, es)
			return nil
		}
		g.unreserve(n)
		if len(es) < n {
			// Nothing more here: the read took everything new (an entry appended since wakes
			// arrived, taken before it), so at a trickle one read per entry is enough. Waiting
			// also lets partitions waiting for budget take it.
			// Acknowledgements queued meanwhile wait for the read that arrived entries bring,
			// or Options.AckDelay at most.
			timer.Reset(wait)
			var ackDue <-chan time.Time
			armAck := func() {
				if ackDue == nil {
					ackTimer.Reset(s.opts.AckDelay)
					ackDue = ackTimer.C
				}
			}
		waiting:
			for {
				select {
				case <-ctx.Done():
					timer.Stop()
					ackTimer.Stop()
					return nil
				case <-arrived:
					timer.Stop()
					break waiting
				case <-timer.C:
					break waiting
				case <-lateWake:
					armAck()
				case <-ackDue:
					ackDue = nil
					flushLate()
				}
			}
			if ackDue != nil {
				ackTimer.Stop()
			}
		}
	}
	return nil
}

// writeLate writes queued acknowledgements of p on their own (AcknowledgeLater).
func (s *Service) writeLate(gs Store, p Partition, group string, ids []ID, deliveries []int64) {
	if len(ids) == 0 {
		return
	}
	// Written even as the subscription ends: the deliveries were settled.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	acked, err := gs.Ack(ctx, p, group, ids, deliveries)
	s.lateWritten(p, group, ids, acked, err)
}

// lateWritten frees the budget of queued acknowledgements once written, or logs that they
// were not (the deliveries are then redelivered after their ack deadline).
func (s *Service) lateWritten(p Partition, group string, ids []ID, acked []bool, err error) {
	if err != nil {
		s.log.Warn("acknowledging deliveries failed; they are delivered again after the ack deadline",
			"partition", p.String(), "group", group, "deliveries", len(ids), "err", err)
		return
	}
	settled := ids[:0:0]
	for i, id := range ids {
		if i < len(acked) && acked[i] {
			settled = append(settled, id)
		}
	}
	if len(settled) > 0 {
		s.groups.released(group, p, settled)
	}
}

// releaseUndelivered makes entries read for a subscription that ended before sending them
// claimable by the group's other consumers at once.
func (s *Service) releaseUndelivered(gc Store, p Partition, o GroupOptions, es []Entry) {
	if len(es) == 0 {
		return
	}
	ids := make([]ID, len(es))
	for i, e := range es {
		ids[i] = e.ID
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := gc.Unread(ctx, p, o.Name, ids); err != nil {
		s.log.Warn("releasing undelivered group entries failed; they are redelivered after the ack deadline",
			"partition", p.String(), "group", o.Name, "err", err)
	}
}

// groupRegistry lets acknowledgements through this replica return flow-control budget to the
// local subscriptions at once.
type groupRegistry struct {
	mu   sync.Mutex
	subs map[*groupSub]struct{}
}

func (r *groupRegistry) add(g *groupSub) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.subs == nil {
		r.subs = map[*groupSub]struct{}{}
	}
	r.subs[g] = struct{}{}
}

func (r *groupRegistry) remove(g *groupSub) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.subs, g)
}

// deferAck queues the acknowledgement of a for the next read of the local stream that
// delivered it, and reports whether there was one (see groupSub.deferAck).
func (r *groupRegistry) deferAck(a AckID) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for g := range r.subs {
		if g.opts.Name == a.Group && g.deferAck(a.Partition, a.ID, a.Deliveries) {
			return true
		}
	}
	return false
}

// released frees the budget of the local streams of group that delivered the settled ids.
func (r *groupRegistry) released(group string, p Partition, ids []ID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for g := range r.subs {
		if g.opts.Name == group {
			g.untrack(p, ids)
		}
	}
}

type ackKey struct {
	p     Partition
	group string
}

// MaxAckIDs bounds the ack ids of one Acknowledge, Nack or ModifyAckDeadline.
const MaxAckIDs = 10000

// AckAuthorizer decides whether the caller may settle the delivery an ack id names (its
// source and group); an error refuses the whole call before anything is settled. A nil
// AckAuthorizer allows every ack id.
type AckAuthorizer func(AckID) error

// Acknowledge acknowledges group deliveries and returns the ack ids that were expired or
// already acknowledged. An ack id that is not authentic (malformed, altered, forged) is a
// CodeInvalid error and nothing is settled.
func (s *Service) Acknowledge(ctx context.Context, ackIDs []string, authz AckAuthorizer) ([]string, error) {
	return s.settle(ctx, ackIDs, authz, true, ackOp(ctx))
}

// ackOp is settle's operation for acknowledgements.
func ackOp(ctx context.Context) func(Store, ackKey, []ID, []int64) ([]bool, error) {
	return func(gs Store, k ackKey, ids []ID, deliveries []int64) ([]bool, error) {
		return gs.Ack(ctx, k.p, k.group, ids, deliveries)
	}
}

// AcknowledgeLater acknowledges group deliveries for a consumer in this process that does
// not wait for the outcome (a push destination). The acknowledgement of a delivery still in
// flight on a group subscription of this Service is written together with that
// subscription's next read of the partition (one Redis round trip for both: at a steady
// trickle, one per event instead of two), or on its own after Options.AckDelay when no read
// comes first, before the subscription waits for flow-control budget, and when it ends. The
// others are acknowledged at once, as by Acknowledge. An ack id that is not authentic is a
// CodeInvalid error and nothing is settled; a deferred acknowledgement that cannot be
// written is logged, and its delivery is redelivered after the ack deadline.
func (s *Service) AcknowledgeLater(ctx context.Context, ackIDs []string) error {
	decoded, err := s.DecodeAckIDs(ctx, ackIDs)
	if err != nil {
		return err
	}
	var now []string
	var nowDecoded []AckID
	for i, a := range decoded {
		if !s.groups.deferAck(a) {
			now, nowDecoded = append(now, ackIDs[i]), append(nowDecoded, a)
		}
	}
	if len(now) == 0 {
		return nil
	}
	_, err = s.settleDecoded(ctx, now, nowDecoded, nil, true, ackOp(ctx))
	return err
}

// Nack hands group deliveries back for redelivery after delay (0 to MaxAckDeadline, whatever
// the ack deadline) and returns the ack ids that were not pending.
func (s *Service) Nack(ctx context.Context, ackIDs []string, delay time.Duration, authz AckAuthorizer) ([]string, error) {
	if delay < 0 || delay > MaxAckDeadline {
		return nil, Errorf(CodeInvalid, "delay: must be 0 to %s", MaxAckDeadline)
	}
	return s.hold(ctx, ackIDs, delay, true, authz)
}

// ModifyAckDeadline sets the ack deadline of group deliveries to deadline from now (0 to
// MaxAckDeadline): a delivery not acknowledged by then is redelivered, and not before, so a
// consumer extends the deadline of long work by calling it again before it passes; 0
// redelivers at once (like Nack). It returns the ack ids that were not pending.
func (s *Service) ModifyAckDeadline(ctx context.Context, ackIDs []string, deadline time.Duration, authz AckAuthorizer) ([]string, error) {
	if deadline < 0 || deadline > MaxAckDeadline {
		return nil, Errorf(CodeInvalid, "ack_deadline: must be 0 to %s", MaxAckDeadline)
	}
	return s.hold(ctx, ackIDs, deadline, deadline == 0, authz)
}

// Reject dead-letters group deliveries at once, recording attempts as their delivery
// count, for a consumer that knows more attempts cannot help (a push destination past its
// retry limits). It returns the ack ids that were not pending. Like a dead letter made
// after max_delivery_attempts, each is redrivable (Redrive).
func (s *Service) Reject(ctx context.Context, ackIDs []string, attempts int, authz AckAuthorizer) ([]string, error) {
	return s.settle(ctx, ackIDs, authz, true, func(gs Store, k ackKey, ids []ID, deliveries []int64) ([]bool, error) {
		ok := make([]bool, len(ids))
		for i, id := range ids {
			// The store takes the payload from the stream and does nothing when the entry is
			// not pending (acknowledged, or dead-lettered already) or was delivered again since.
			done, err := gs.DeadLetter(ctx, k.p, k.group, Entry{ID: id, DeliveryCount: int64(max(attempts, 1))}, deliveries[i])
			if err != nil {
				return nil, err
			}
			ok[i] = done
			if done {
				s.log.Info("event dead-lettered", "partition", k.p.String(), "group", k.group, "entry", id.String(), "attempts", attempts)
			}
		}
		return ok, nil
	})
}

// hold holds deliveries until now+d; release frees their flow-control budget (they are
// handed back rather than still being worked on).
func (s *Service) hold(ctx context.Context, ackIDs []string, d time.Duration, release bool, authz AckAuthorizer) ([]string, error) {
	until := s.opts.Now().Add(d)
	return s.settle(ctx, ackIDs, authz, release, func(gs Store, k ackKey, ids []ID, deliveries []int64) ([]bool, error) {
		return gs.Hold(ctx, k.p, k.group, ids, deliveries, until)
	})
}

// settle authenticates and authorizes every ack id, then applies op per partition and
// group; ack ids of sources or partitions no longer configured, and those op reports as not
// pending, are returned as unknown.
func (s *Service) settle(ctx context.Context, ackIDs []string, authz AckAuthorizer, release bool, op func(Store, ackKey, []ID, []int64) ([]bool, error)) ([]string, error) {
	decoded, err := s.DecodeAckIDs(ctx, ackIDs)
	if err != nil {
		return nil, err
	}
	return s.settleDecoded(ctx, ackIDs, decoded, authz, release, op)
}

// settleDecoded is settle for ack ids decoded already (decoded[i] is ackIDs[i]).
func (s *Service) settleDecoded(ctx context.Context, ackIDs []string, decoded []AckID, authz AckAuthorizer, release bool, op func(Store, ackKey, []ID, []int64) ([]bool, error)) ([]string, error) {
	gs := s.store
	if authz != nil {
		for _, a := range decoded {
			if err := authz(a); err != nil {
				return nil, err
			}
		}
	}
	byKey := map[ackKey][]int{}
	var unknown []string
	for i, a := range decoded {
		src, err := s.Source(a.Partition.Source)
		if err != nil || a.Partition.Index >= src.Config.Partitions {
			unknown = append(unknown, ackIDs[i])
			continue
		}
		k := ackKey{a.Partition, a.Group}
		byKey[k] = append(byKey[k], i)
	}
	for k, idx := range byKey {
		ids := make([]ID, len(idx))
		deliveries := make([]int64, len(idx))
		for j, i := range idx {
			ids[j], deliveries[j] = decoded[i].ID, decoded[i].Deliveries
		}
		ok, err := op(gs, k, ids, deliveries)
		if err != nil {
			return nil, err
		}
		var settled []ID
		for j, i := range idx {
			if j < len(ok) && ok[j] {
				settled = append(settled, ids[j])
			} else {
				unknown = append(unknown, ackIDs[i])
			}
		}
		if release && len(settled) > 0 {
			s.groups.released(k.group, k.p, settled)
		}
	}
	return unknown, nil
}

// Redrive delivers dead letters of group on source (eventIDs empty: all of them) again to
// that group only and returns how many were redriven: each goes back to the group as a
// first delivery of its original entry, so the group's members receive it again while other
// groups and tail subscribers see nothing new and the stream does not grow. A dead letter
// whose original entry retention has removed stays a dead letter.
func (s *Service) Redrive(ctx context.Context, source, group string, eventIDs []string) (int, error) {
	src, err := s.Source(source)
	if err != nil {
		return 0, err
	}
	if err := checkDeadLetterGroup(group); err != nil {
		return 0, err
	}
	gs := s.store
	want := map[string]bool{}
	for i, id := range eventIDs {
		if err := ValidateEventID(id); err != nil {
			return 0, Errorf(CodeInvalid, "ids[%d]: %s", i, ErrorMessage(err))
		}
		want[id] = true
	}
	total := 0
	for _, p := range src.Partitions() {
		var ids []ID
		if len(want) > 0 {
			// Find the dead-letter entries of the requested event ids.
			from := ID{}
			for {
				es, err := gs.RangeDeadLetters(ctx, p, group, from, MaxID, 1000, false)
				if err != nil {
					return total, err
				}
				for _, e := range es {
					if ev, err := DecodeEvent(e.Event); err == nil && want[ev.Id] {
						ids = append(ids, e.ID)
					}
				}
				if len(es) < 1000 {
					break
				}
				from = es[len(es)-1].ID.Next()
			}
			if len(ids) == 0 {
				continue
			}
		}
		n, err := gs.Redrive(ctx, p, group, ids)
		total += n
		if err != nil {
			return total, err
		}
	}
	if total == 0 {
		// Nothing to redrive: say so when the group does not exist on the source at all (a
		// misspelt name, or a destination's group without its dest: prefix).
		stats, err := gs.Stats(ctx, src.Partitions())
		if err != nil {
			return 0, err
		}
		exists := slices.ContainsFunc(stats, func(ps PartitionStats) bool {
			return slices.ContainsFunc(ps.Groups, func(g GroupStats) bool { return g.Name == group })
		})
		if !exists {
			return 0, Errorf(CodeNotFound, "no consumer group %q on source %s (a push destination's group is dest:<name>)", group, source)
		}
	}
	return total, nil
}

// checkDeadLetterGroup validates the group of a dead-letter listing or redrive: dead
// letters belong to a group, so it must be named.
func checkDeadLetterGroup(group string) error {
	if group == "" {
		return Errorf(CodeInvalid, "group: dead letters belong to a consumer group; name the group")
	}
	if !ValidGroupName(group) {
		return Errorf(CodeInvalid, "group: must match [A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
	}
	return nil
}

// deadLetterReader validates the group options of a dead-letter subscription: the group
// whose dead letters are read, and nothing else (it reads as a tail, without consuming).
func (g GroupOptions) deadLetterReader() error {
	if err := checkDeadLetterGroup(g.Name); err != nil {
		return err
	}
	if g.Consumer != "" || g.AckDeadline != 0 || g.MaxOutstanding != 0 || g.MaxAttempts != 0 {
		return Errorf(CodeInvalid, "dead_letters: a group's dead letters are read without consuming; omit consumer, ack_deadline, max_outstanding and max_delivery_attempts")
	}
	return nil
}

// removeConsumer deletes o's consumer from every partition where it has nothing pending.
func (s *Service) removeConsumer(cr Store, parts []Partition, o GroupOptions) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, p := range parts {
		if _, err := cr.RemoveConsumer(ctx, p, o.Name, o.Consumer); err != nil {
			s.log.Debug("removing a stream's consumer failed", "partition", p.String(), "group", o.Name, "consumer", o.Consumer, "err", err)
		}
	}
}

// broadcast wakes every waiter at once (a sync.Cond usable in a select).
type broadcast struct {
	mu sync.Mutex
	ch chan struct{}
}

// wait returns a channel closed by the next signal.
func (b *broadcast) wait() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch == nil {
		b.ch = make(chan struct{})
	}
	return b.ch
}

// signal wakes everyone waiting.
func (b *broadcast) signal() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch != nil {
		close(b.ch)
		b.ch = nil
	}
}
