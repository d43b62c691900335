package relay

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// hub runs one shared blocking reader per partition per process and fans the entries out in
// memory to every tail subscriber of that partition. Each subscriber has a bounded buffer; one
// that falls behind is cut at once (its subscription ends with CodeResourceExhausted without
// sending what it had queued) without slowing the others. A reader that finds entries trimmed
// between two reads (see gap.go) ends its subscribers after what they had queued.
//
// The same reader wakes the process's group subscriptions that wait for the partition to
// grow (watch): they read the group without blocking, so one blocking read per partition
// serves every subscription of the process, tail or group, and Redis connections grow with
// partitions, not subscriptions. A watcher takes the partition's wake channel before it reads
// and, when the read finds nothing, waits on that channel: an entry appended after the read
// began is seen by the reader's next read, which then closes the channel, so no wake-up is
// lost. While only watchers follow a partition, the reader reads at most two entries at a
// time and, when it finds two (a burst), moves to the stream's end (Store.Info) rather than
// reading the burst entry by entry: watchers only need to know that something arrived.
type hub struct {
	store   Store
	bufSize int
	block   time.Duration
	log     *slog.Logger

	mu      sync.Mutex
	readers map[Partition]*partReader
	watches map[Partition]*partWatch
	closed  bool
	done    chan struct{} // closed by close
	wg      sync.WaitGroup
}

// partWatch wakes the group subscriptions of the process that wait for a partition to grow.
type partWatch struct {
	n    int       // watchers (hub.mu)
	wake broadcast // signalled after every read of the partition that found entries
}

type partReader struct {
	p      Partition
	cancel context.CancelFunc
	ready  chan struct{} // closed once last is known (or err set)
	last   ID            // the reader's position: it delivers entries after it
	n      int64         // entries ever appended up to last; -1 unknown (see trail)
	err    error         // start-up failure
	subs   map[*tailSub]struct{}
	to     []*tailSub // the subscribers a batch goes to (reused by run)
}

// tailSub is one subscriber's view of a partition reader: batches as the shared reader read
// them, and how many entries are queued and not yet consumed.
type tailSub struct {
	r       *partReader
	ch      chan *tailBatch
	pending atomic.Int64
	err     error         // set before ch or cut is closed
	cut     chan struct{} // closed when the subscriber fell behind: stop without draining ch
	// hold is the transport's (SubscribeRequest.Hold), held once per batch queued on ch and
	// not handled yet; held counts those holds.
	hold WriteHold
	held atomic.Int64
}

// consumed tells the hub that a queued batch of n entries was handled (sent, or skipped).
func (t *tailSub) consumed(n int) {
	t.pending.Add(-int64(n))
	if t.hold == nil {
		return
	}
	for h := t.held.Load(); h > 0; h = t.held.Load() {
		if t.held.CompareAndSwap(h, h-1) {
			t.hold.Release()
			return
		}
	}
}

// releaseAll gives back every hold of the subscription, which has ended (unregister): what
// it had queued is dropped. Never under h.mu: a release may write (WriteHold).
func (t *tailSub) releaseAll() {
	if t.hold == nil {
		return
	}
	for n := t.held.Swap(0); n > 0; n-- {
		t.hold.Release()
	}
}

// tailBatch is one read of a shared reader, handed as it is to every subscriber of the
// partition, with a memo per entry in which the subscribers share their encodings of it.
type tailBatch struct {
	entries []Entry
	memos   []entryMemo
	prev    ID    // the reader's position before this batch: entries follows it with no gap
	n       int64 // entries ever appended up to the last of entries; -1 unknown
}

// maxQueuedBatches bounds a subscriber's channel (the reads of the stream queued for it, one
// batch each); the entry bound is hub.bufSize. At a trickle every event is a read, so this is
// the bound a stalled subscriber of a quiet stream meets first: 256 pointers per subscriber
// and partition, where a channel of tail_buffer (4096) would cost 32 KiB for each of up to
// subscribe.max_subscribers.
const maxQueuedBatches = 256

func newHub(store Store, bufSize int, block time.Duration, log *slog.Logger) *hub {
	return &hub{store: store, bufSize: bufSize, block: block, log: log,
		readers: map[Partition]*partReader{}, watches: map[Partition]*partWatch{}, done: make(chan struct{})}
}

// readerLocked returns p's shared reader, starting it when there is none.
func (h *hub) readerLocked(p Partition) *partReader {
	if r, ok := h.readers[p]; ok {
		return r
	}
	r, ctx := h.newReaderLocked(p)
	h.wg.Add(1)
	go h.run(ctx, r)
	return r
}

// newReaderLocked records a new reader of p, for run to run with the returned context.
func (h *hub) newReaderLocked(p Partition) (*partReader, context.Context) {
	ctx, cancel := context.WithCancel(context.Background())
	r := &partReader{p: p, cancel: cancel, ready: make(chan struct{}), subs: map[*tailSub]struct{}{}}
	h.readers[p] = r
	return r, ctx
}

// watch has the process's group subscriptions woken whenever p's stream grows (see hub) and
// returns the watch and the function that stops it. It returns once the reader knows where
// the stream ends (or ctx is done, or the reader failed to start: the watcher then polls
// until a new reader takes over, a second later), so that an entry appended after it returns
// is seen by the reader.
func (h *hub) watch(ctx context.Context, p Partition) (*partWatch, func()) {
	h.mu.Lock()
	w := h.watches[p]
	if w == nil {
		w = &partWatch{}
		h.watches[p] = w
	}
	w.n++
	var r *partReader
	if !h.closed {
		r = h.readerLocked(p)
	}
	h.mu.Unlock()
	if r != nil {
		select {
		case <-r.ready:
		case <-ctx.Done():
		}
	}
	var once sync.Once
	return w, func() {
		once.Do(func() {
			h.mu.Lock()
			defer h.mu.Unlock()
			if w.n--; w.n == 0 && h.watches[p] == w {
				delete(h.watches, p)
			}
		})
	}
}

// wakeLocked wakes the watchers of p.
func (h *hub) wakeLocked(p Partition) {
	if w := h.watches[p]; w != nil {
		w.wake.signal()
	}
}

// register subscribes to p's shared reader, starting it if needed, and returns the position
// after which the subscription receives every entry (with its count, see trail). hold, when
// not nil, is held for every batch queued for the subscription (SubscribeRequest.Hold).
func (h *hub) register(ctx context.Context, p Partition, hold WriteHold) (*tailSub, trail, error) {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, trail{}, Errorf(CodeUnavailable, "relay is shutting down")
	}
	r := h.readerLocked(p)
	sub := &tailSub{r: r, ch: make(chan *tailBatch, min(h.bufSize, maxQueuedBatches)), cut: make(chan struct{}), hold: hold}
	r.subs[sub] = struct{}{}
	h.mu.Unlock()

	select {
	case <-r.ready:
	case <-ctx.Done():
		h.unregister(sub)
		return nil, trail{}, ctx.Err()
	}
	h.mu.Lock()
	if r.err != nil {
		h.removeLocked(sub)
		h.mu.Unlock()
		return nil, trail{}, r.err
	}
	if _, ok := r.subs[sub]; !ok { // ended between ready and now
		h.mu.Unlock()
		sub.releaseAll()
		return nil, trail{}, sub.err
	}
	defer h.mu.Unlock()
	return sub, trail{pos: r.last, n: r.n}, nil
}

// unregister ends a subscription. A reader left without subscribers stops when its read in
// progress returns (at most the block time later), not at once: a subscription that comes
// meanwhile joins it, and a blocking read is never abandoned while still holding a Redis
// connection (subscriptions that come and go quickly would otherwise pile up abandoned reads
// until the connection pool runs out).
func (h *hub) unregister(sub *tailSub) {
	h.mu.Lock()
	h.removeLocked(sub)
	h.mu.Unlock()
	// Nothing is queued for it any more; the holds are given back outside the lock, since
	// giving one back may write (WriteHold).
	sub.releaseAll()
}

func (h *hub) removeLocked(sub *tailSub) {
	r := sub.r
	if _, ok := r.subs[sub]; !ok {
		return
	}
	delete(r.subs, sub)
}

// idleLocked forgets r and reports true when it has no subscriber and no watcher left (its
// run then ends).
func (h *hub) idleLocked(r *partReader) bool {
	if len(r.subs) > 0 || h.watches[r.p] != nil {
		return false
	}
	r.cancel()
	if h.readers[r.p] == r {
		delete(h.readers, r.p)
	}
	return true
}

// endLocked ends every subscriber of r with err and forgets r.
func (h *hub) endLocked(r *partReader, err error) {
	for sub := range r.subs {
		sub.err = err
		close(sub.ch)
		delete(r.subs, sub)
	}
	r.cancel()
	if h.readers[r.p] == r {
		delete(h.readers, r.p)
	}
}

// How a reader's follow ended.
const (
	readerIdle   = iota // no subscriber or watcher left, or the hub closed
	readerGap           // entries were trimmed before it read them
	readerFailed        // the store failed
)

// run runs r, and the readers that take over from it, until p has no subscriber and no
// watcher left. A reader that fails or finds a gap ends its subscribers (they resume by
// cursor) and is forgotten; a partition still watched then gets a new reader from here (a
// tail subscription that comes first starts one itself), a second later when the store failed
// (the watchers poll meanwhile).
func (h *hub) run(ctx context.Context, r *partReader) {
	defer h.wg.Done()
	for {
		end := h.follow(ctx, r)
		if end == readerIdle {
			return
		}
		h.mu.Lock()
		h.wakeLocked(r.p) // whatever arrived meanwhile is read by the woken
		h.mu.Unlock()
		if end == readerFailed {
			select {
			case <-h.done:
				return
			case <-time.After(time.Second):
			}
		}
		h.mu.Lock()
		if h.closed || h.watches[r.p] == nil || h.readers[r.p] != nil {
			h.mu.Unlock()
			return
		}
		r, ctx = h.newReaderLocked(r.p)
		h.mu.Unlock()
	}
}

// streamEnd is the position after which a reader that starts now delivers: the stream's last
// generated id, with its count when the store knows it.
func streamEnd(info StreamInfo) trail {
	t := trail{pos: info.LastGenerated, n: -1}
	if info.Added > 0 {
		t.n = info.Added // LastGenerated is the Added-th entry
	}
	if t.pos.Less(info.Last) {
		t = trail{pos: info.Last, n: -1}
	}
	return t
}

// follow reads p for r's subscribers and p's watchers until it ends (see run).
func (h *hub) follow(ctx context.Context, r *partReader) int {
	// A failure is logged as a warning when it ends subscriptions. A reader that only wakes
	// group subscriptions (which poll meanwhile) retries every second during an outage: at
	// debug level, since relayd reports the outage itself ("redis unreachable").
	logFailure := func(subs int, msg string, err error, attrs ...any) {
		level := slog.LevelDebug
		if subs > 0 {
			level = slog.LevelWarn
		}
		h.log.Log(context.Background(), level, msg, append([]any{"partition", r.p.String(), "subscriptions", subs, "err", err}, attrs...)...)
	}
	info, err := h.store.Info(ctx, r.p)
	h.mu.Lock()
	if err != nil {
		r.err = err
		close(r.ready)
		subs := len(r.subs)
		h.endLocked(r, err)
		h.mu.Unlock()
		if ctx.Err() != nil {
			return readerIdle
		}
		logFailure(subs, "shared stream reader failed to start; ending its subscriptions", err)
		return readerFailed
	}
	pos := streamEnd(info)
	r.last, r.n = pos.pos, pos.n
	close(r.ready)
	h.mu.Unlock()

	fail := func(err error) int {
		h.mu.Lock()
		subs := len(r.subs)
		h.endLocked(r, WrapError(CodeUnavailable, err, "store unavailable; resume from the last cursor"))
		h.mu.Unlock()
		logFailure(subs, "shared stream reader failed; ending its subscriptions", err)
		return readerFailed
	}
	for ctx.Err() == nil {
		h.mu.Lock()
		idle := h.idleLocked(r)
		watchOnly := len(r.subs) == 0
		h.mu.Unlock()
		if idle {
			return readerIdle
		}
		count := 1000
		if watchOnly {
			count = 2
		}
		res, err := h.store.Read(ctx, map[Partition]ID{r.p: pos.pos}, count, h.block)
		if ctx.Err() != nil {
			return readerIdle
		}
		if err != nil {
			return fail(err)
		}
		for _, rr := range res {
			if len(rr.Entries) == 0 {
				continue
			}
			if watchOnly && len(rr.Entries) == count {
				// A burst, and only watchers to tell: move to the stream's end. Its end is
				// taken before the wake-up, so a watcher woken reads everything up to it, and
				// whatever arrives later is the next read's.
				info, err := h.store.Info(ctx, r.p)
				if ctx.Err() != nil {
					return readerIdle
				}
				if err != nil {
					return fail(err)
				}
				h.mu.Lock()
				if len(r.subs) == 0 { // else a subscriber came during the read: it gets them
					pos = streamEnd(info)
					r.last, r.n = pos.pos, pos.n
					h.wakeLocked(r.p)
					h.mu.Unlock()
					continue
				}
				h.mu.Unlock()
			}
			prev := pos.pos
			if err := advance(ctx, h.store, r.p, &pos, rr.Entries, rr.AfterRetained); err != nil {
				if ctx.Err() != nil {
					return readerIdle
				}
				if gap := (*gapError)(nil); !errors.As(err, &gap) {
					return fail(err)
				}
				// Entries were trimmed before this reader read them: every subscriber is at
				// or before its position, so each one has lost them.
				h.mu.Lock()
				subs := len(r.subs)
				h.endLocked(r, err)
				h.mu.Unlock()
				logFailure(subs, "shared stream reader fell behind retention; ending its subscriptions with OUT_OF_RANGE", err, "position", prev.String())
				return readerGap
			}
			batch := &tailBatch{entries: rr.Entries, memos: make([]entryMemo, len(rr.Entries)), prev: prev, n: pos.n}
			n := int64(len(batch.entries))
			h.mu.Lock()
			to := r.to[:0]
			for sub := range r.subs {
				// A subscriber with nothing queued always takes the batch; one that has queued
				// entries may not exceed the buffer.
				if q := sub.pending.Load(); q > 0 && q+n > int64(h.bufSize) {
					h.cutLocked(r, sub)
					continue
				}
				sub.pending.Add(n)
				// Every hold is taken before any subscriber can see the batch, so that the
				// first to finish does not find its transport's holds all given back.
				if sub.hold != nil {
					sub.held.Add(1)
					sub.hold.Hold()
				}
				to = append(to, sub)
			}
			for i, sub := range to {
				select {
				case sub.ch <- batch:
				default:
					h.cutLocked(r, sub)
				}
				to[i] = nil
			}
			r.to = to[:0]
			r.last, r.n = pos.pos, pos.n
			h.wakeLocked(r.p)
			h.mu.Unlock()
		}
	}
	return readerIdle
}

// errFellBehind ends a tail subscriber whose buffer overflowed; the send loop turns it into
// fellBehind with the subscriber's cursor.
var errFellBehind = Errorf(CodeResourceExhausted, "subscriber fell behind the stream; resume from the last cursor")

// cutLocked ends a subscriber that fell behind: its feeder stops at once, without handing on
// what it had queued (the cursor of what it was sent is where it resumes).
func (h *hub) cutLocked(r *partReader, sub *tailSub) {
	sub.err = errFellBehind
	close(sub.cut)
	close(sub.ch)
	delete(r.subs, sub)
}

// close ends every reader and subscriber and waits for the readers to exit.
func (h *hub) close() {
	h.mu.Lock()
	if !h.closed {
		h.closed = true
		close(h.done)
	}
	for _, r := range h.readers {
		h.endLocked(r, Errorf(CodeUnavailable, "relay is shutting down; resume from the last cursor"))
	}
	for p := range h.watches {
		h.wakeLocked(p)
	}
	h.mu.Unlock()
	h.wg.Wait()
}

// subscribers returns the number of tail subscriptions per partition (for metrics).
func (h *hub) subscribers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, r := range h.readers {
		n += len(r.subs)
	}
	return n
}
