package relay

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// hub runs one shared blocking reader per partition per process and fans the entries out in
// memory to every tail subscriber of that partition. Each subscriber has a bounded buffer; one
// that falls behind is ended with CodeResourceExhausted without slowing the others.
type hub struct {
	store   Store
	bufSize int
	block   time.Duration
	log     *slog.Logger

	mu      sync.Mutex
	readers map[Partition]*partReader
	closed  bool
	wg      sync.WaitGroup
}

type partReader struct {
	p      Partition
	cancel context.CancelFunc
	ready  chan struct{} // closed once last is known (or err set)
	last   ID            // the reader's position: it delivers entries after it
	err    error         // start-up failure
	subs   map[*tailSub]struct{}
}

// tailSub is one subscriber's view of a partition reader: batches as the shared reader read
// them, and how many entries are queued and not yet consumed.
type tailSub struct {
	r       *partReader
	ch      chan *tailBatch
	pending atomic.Int64
	err     error // set before ch is closed
}

// consumed tells the hub that n queued entries were handled (sent, or skipped).
func (t *tailSub) consumed(n int) { t.pending.Add(-int64(n)) }

// tailBatch is one read of a shared reader, handed as it is to every subscriber of the
// partition, with a memo per entry in which the subscribers share their encodings of it.
type tailBatch struct {
	entries []Entry
	memos   []entryMemo
}

// maxQueuedBatches bounds a subscriber's channel; the entry bound is hub.bufSize.
const maxQueuedBatches = 256

func newHub(store Store, bufSize int, block time.Duration, log *slog.Logger) *hub {
	return &hub{store: store, bufSize: bufSize, block: block, log: log, readers: map[Partition]*partReader{}}
}

// register subscribes to p's shared reader, starting it if needed, and returns the position
// after which the subscription receives every entry.
func (h *hub) register(ctx context.Context, p Partition) (*tailSub, ID, error) {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, ID{}, Errorf(CodeUnavailable, "relay is shutting down")
	}
	r, ok := h.readers[p]
	if !ok {
		rctx, cancel := context.WithCancel(context.Background())
		r = &partReader{p: p, cancel: cancel, ready: make(chan struct{}), subs: map[*tailSub]struct{}{}}
		h.readers[p] = r
		h.wg.Add(1)
		go h.run(rctx, r)
	}
	sub := &tailSub{r: r, ch: make(chan *tailBatch, min(h.bufSize, maxQueuedBatches))}
	r.subs[sub] = struct{}{}
	h.mu.Unlock()

	select {
	case <-r.ready:
	case <-ctx.Done():
		h.unregister(sub)
		return nil, ID{}, ctx.Err()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if r.err != nil {
		h.removeLocked(sub)
		return nil, ID{}, r.err
	}
	if _, ok := r.subs[sub]; !ok { // ended between ready and now
		return nil, ID{}, sub.err
	}
	return sub, r.last, nil
}

// unregister ends a subscription; the reader stops when its last subscriber leaves.
func (h *hub) unregister(sub *tailSub) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.removeLocked(sub)
}

func (h *hub) removeLocked(sub *tailSub) {
	r := sub.r
	if _, ok := r.subs[sub]; !ok {
		return
	}
	delete(r.subs, sub)
	if len(r.subs) == 0 {
		r.cancel()
		if h.readers[r.p] == r {
			delete(h.readers, r.p)
		}
	}
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

func (h *hub) run(ctx context.Context, r *partReader) {
	defer h.wg.Done()
	info, err := h.store.Info(ctx, r.p)
	h.mu.Lock()
	if err != nil {
		r.err = err
		close(r.ready)
		h.endLocked(r, err)
		h.mu.Unlock()
		return
	}
	r.last = info.LastGenerated
	if r.last.Less(info.Last) {
		r.last = info.Last
	}
	close(r.ready)
	h.mu.Unlock()

	last := r.last
	for ctx.Err() == nil {
		res, err := h.store.Read(ctx, map[Partition]ID{r.p: last}, 1000, h.block)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			h.log.Warn("shared stream reader failed; ending its subscriptions", "partition", r.p.String(), "err", err)
			h.mu.Lock()
			h.endLocked(r, WrapError(CodeUnavailable, err, "store unavailable; resume from the last cursor"))
			h.mu.Unlock()
			return
		}
		for _, rr := range res {
			if len(rr.Entries) == 0 {
				continue
			}
			batch := &tailBatch{entries: rr.Entries, memos: make([]entryMemo, len(rr.Entries))}
			n := int64(len(batch.entries))
			h.mu.Lock()
			for sub := range r.subs {
				// A subscriber with nothing queued always takes the batch; one that has queued
				// entries may not exceed the buffer.
				if q := sub.pending.Load(); q > 0 && q+n > int64(h.bufSize) {
					h.cutLocked(r, sub)
					continue
				}
				sub.pending.Add(n)
				select {
				case sub.ch <- batch:
				default:
					h.cutLocked(r, sub)
				}
			}
			last = rr.Entries[len(rr.Entries)-1].ID
			r.last = last
			if len(r.subs) == 0 {
				r.cancel()
				if h.readers[r.p] == r {
					delete(h.readers, r.p)
				}
			}
			h.mu.Unlock()
		}
	}
}

// cutLocked ends a subscriber that fell behind.
func (h *hub) cutLocked(r *partReader, sub *tailSub) {
	sub.err = Errorf(CodeResourceExhausted, "subscriber fell behind the stream; resume from the last cursor")
	close(sub.ch)
	delete(r.subs, sub)
}

// close ends every reader and subscriber and waits for the readers to exit.
func (h *hub) close() {
	h.mu.Lock()
	h.closed = true
	for _, r := range h.readers {
		h.endLocked(r, Errorf(CodeUnavailable, "relay is shutting down; resume from the last cursor"))
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
