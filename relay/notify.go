package relay

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// notifier tells group subscriptions when a partition's stream has new entries, so that
// they read it without blocking: one blocking read per partition that some group
// subscription of this process waits on, whatever the number of subscriptions, instead of
// one blocking XREADGROUP per subscription and partition (each holding a Redis connection).
//
// A watcher takes the partition's wake channel before it reads and, when the read finds
// nothing, waits on that channel: an entry appended after the read began is seen by the
// partition's watcher read, which then closes the channel, so no wake-up is lost. The
// partition's read runs while anyone watches it; after its last watcher leaves it stops
// when its read in progress returns (a watcher that comes meanwhile reuses it), so that
// subscriptions that come and go quickly never pile up abandoned blocking reads, each
// holding a Redis connection.
type notifier struct {
	store Store
	block time.Duration
	log   *slog.Logger

	mu       sync.Mutex
	watchers map[Partition]*partWatch
	closed   bool
	wg       sync.WaitGroup
}

type partWatch struct {
	n      int // watchers
	cancel context.CancelFunc
	wake   broadcast
}

func newNotifier(store Store, block time.Duration, log *slog.Logger) *notifier {
	return &notifier{store: store, block: block, log: log, watchers: map[Partition]*partWatch{}}
}

// watch starts watching p and returns the watch and the function that stops it.
func (n *notifier) watch(p Partition) (*partWatch, func()) {
	n.mu.Lock()
	defer n.mu.Unlock()
	w := n.watchers[p]
	if w == nil {
		ctx, cancel := context.WithCancel(context.Background())
		w = &partWatch{cancel: cancel}
		n.watchers[p] = w
		if !n.closed {
			n.wg.Add(1)
			go n.run(ctx, p, w)
		}
	}
	w.n++
	var once sync.Once
	return w, func() {
		once.Do(func() {
			n.mu.Lock()
			defer n.mu.Unlock()
			w.n--
		})
	}
}

// run reads p from its newest entry on and wakes the watchers whenever entries arrive. Only
// the newest id matters, so a wake-up costs one read of at most two entries, and when it
// found two, one lookup of the newest. A failing store is retried after a pause; the
// watchers poll meanwhile (they never wait longer than their claim interval).
func (n *notifier) run(ctx context.Context, p Partition, w *partWatch) {
	defer n.wg.Done()
	newest := func() (ID, error) {
		es, err := n.store.Range(ctx, p, ID{}, MaxID, 1, true)
		if err != nil || len(es) == 0 {
			return ID{}, err
		}
		return es[0].ID, nil
	}
	pause := func() bool {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(time.Second):
			return true
		}
	}
	last, err := newest()
	for ctx.Err() == nil {
		n.mu.Lock()
		idle := w.n == 0
		if idle {
			w.cancel()
			if n.watchers[p] == w {
				delete(n.watchers, p)
			}
		}
		n.mu.Unlock()
		if idle {
			return
		}
		if err != nil {
			if ctx.Err() == nil {
				n.log.Debug("partition watcher read failed; retrying", "partition", p.String(), "err", err)
			}
			if !pause() {
				return
			}
			last, err = newest()
			w.wake.signal() // whatever arrived meanwhile is read by the woken
			continue
		}
		var res []ReadResult
		res, err = n.store.Read(ctx, map[Partition]ID{p: last}, 2, n.block)
		if err != nil || len(res) == 0 || len(res[0].Entries) == 0 {
			continue
		}
		// The newest id is taken before the wake-up: a subscription woken reads after it, so
		// it sees everything up to that id, and whatever arrives later is the next read's.
		// A read that found one entry found the newest (at a trickle, one read per entry);
		// one that found two looks the newest up rather than reading the burst entry by entry.
		es := res[0].Entries
		if last = es[0].ID; len(es) > 1 {
			last, err = newest()
			if err == nil && last.IsZero() { // trimmed meanwhile: go on after what was read
				last = es[len(es)-1].ID
			}
		}
		w.wake.signal()
	}
}

// close stops every watcher read and waits for them.
func (n *notifier) close() {
	n.mu.Lock()
	n.closed = true
	for _, w := range n.watchers {
		w.cancel()
	}
	n.mu.Unlock()
	n.wg.Wait()
}
