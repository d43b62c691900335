package push

import (
	"context"
	"sync"
	"time"
)

// keyQueues are the events of an ordered destination waiting per partition key: the head of
// each queue is being delivered by that key's runner, the rest wait for it.
type keyQueues struct {
	mu sync.Mutex
	q  map[string][]*delivery
}

func newKeyQueues() *keyQueues { return &keyQueues{q: map[string][]*delivery{}} }

// push queues dl behind key's others and reports whether it is the head (then the caller
// starts the key's runner).
func (k *keyQueues) push(key string, dl *delivery) (first bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.q[key] = append(k.q[key], dl)
	return len(k.q[key]) == 1
}

// next returns the head of key's queue, or nil (and forgets the key) when it is empty.
func (k *keyQueues) next(key string) *delivery {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.q[key]) == 0 {
		delete(k.q, key)
		return nil
	}
	return k.q[key][0]
}

// done removes the head of key's queue.
func (k *keyQueues) done(key string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.q[key] = k.q[key][1:]
}

// takeLease waits until this replica holds the lease of the destination: an ordered
// destination is delivered by one replica at a time. A replica that takes the lease while the
// group has pending deliveries (a previous holder died, or this one restarted) first waits
// until their holds have lapsed, so that the group's claim gives them back before any later
// event of the same key is read. false when ctx ended.
func (d *destination) takeLease(ctx context.Context) bool {
	st := d.p.svc.Store()
	for {
		ok, err := st.Lease(ctx, d.group, d.p.opts.Consumer, leaseTTL)
		if ok {
			break
		}
		if err != nil && ctx.Err() == nil {
			d.log.Warn("push: lease check failed", "error", err)
		}
		d.state.Store("standby")
		if !sleep(ctx, leaseTTL/3) {
			return false
		}
	}
	if d.pending(ctx) > 0 {
		d.state.Store("standby")
		d.log.Info("push: waiting for the previous holder's deliveries to come back before sending", "wait", holdFor)
		return sleep(ctx, holdFor+time.Second)
	}
	return true
}

// keepLease renews the lease while the subscription runs and ends it (cancel) when the
// lease is lost; it releases the lease when ctx ends.
func (d *destination) keepLease(ctx context.Context, cancel context.CancelFunc) {
	st := d.p.svc.Store()
	defer func() {
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer rcancel()
		_, _ = st.Lease(rctx, d.group, d.p.opts.Consumer, 0)
	}()
	t := time.NewTicker(leaseTTL / 3)
	defer t.Stop()
	renewed := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ok, err := st.Lease(ctx, d.group, d.p.opts.Consumer, leaseTTL)
		switch {
		case ok:
			renewed = time.Now()
		case err == nil || time.Since(renewed) > leaseTTL*2/3:
			d.log.Warn("push: lost the ordering lease; another replica delivers the destination")
			cancel()
			return
		}
	}
}

// pending returns the deliveries of the destination's group not yet acknowledged.
func (d *destination) pending(ctx context.Context) int64 {
	stats, err := d.p.svc.Stats(ctx)
	if err != nil {
		return 1 // unknown: assume some
	}
	var n int64
	for _, s := range stats {
		for _, g := range s.Groups {
			if g.Name == d.group {
				n += g.Pending
			}
		}
	}
	return n
}
