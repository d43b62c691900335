package relay_test

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventrelay/eventrelay/relay"
)

// countingHold is a relay.WriteHold that counts, and records a Release that has no Hold to
// give back.
type countingHold struct {
	holds, releases atomic.Int64
	excess          atomic.Int64
}

func (h *countingHold) Hold() { h.holds.Add(1) }

func (h *countingHold) Release() {
	if h.releases.Add(1) > h.holds.Load() {
		h.excess.Add(1)
	}
}

func (h *countingHold) out() int64 { return h.holds.Load() - h.releases.Load() }

// settled waits until every hold of h was given back, and checks that h was held at all
// and never released more often than held.
func (h *countingHold) settled(t *testing.T, name string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for h.out() != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := h.out(); n != 0 {
		t.Errorf("%s: %d holds never given back (%d taken)", name, n, h.holds.Load())
	}
	if n := h.excess.Load(); n != 0 {
		t.Errorf("%s: %d releases without a hold", name, n)
	}
	if h.holds.Load() == 0 {
		t.Errorf("%s: never held", name)
	}
}

// heldWhileSent fails a live delivery sent while no hold of h is out: the hold of a read
// must last until its deliveries were passed to send.
func heldWhileSent(h *countingHold, bad *atomic.Int64) func(m *relay.Message) error {
	return func(m *relay.Message) error {
		if m.Entry != nil && m.Shared != nil && h.out() < 1 {
			bad.Add(1)
		}
		return nil
	}
}

// TestWriteHolds checks SubscribeRequest.Hold: every read of the shared tail reader handed
// to a subscription is held before the subscription sends it and given back once after,
// also when the subscription is stopped with reads still queued (and when it is cut:
// TestSlowSubscriberIsCutOff).
func TestWriteHolds(t *testing.T) {
	backends(t, func(t *testing.T, url string) {
		f := newService(t, url, relay.Options{TailBuffer: 64}, relay.SourceConfig{Name: "s"}, relay.SourceConfig{Name: "p", Partitions: 4})

		t.Run("one connection, three subscribers", func(t *testing.T) {
			conn := &countingHold{}
			var bad atomic.Int64
			var subs []*sub
			for range 3 {
				subs = append(subs, started(t, f.svc, relay.SubscribeRequest{Sources: []string{"s"}, Hold: conn}, heldWhileSent(conn, &bad)))
			}
			want := ids("a", 100)
			for _, id := range want {
				f.publish(t, "s", id, "t", "")
			}
			for i, s := range subs {
				if got := s.wait(t, len(want)); !slices.Equal(got, want) {
					t.Fatalf("subscriber %d got %v", i, got)
				}
			}
			conn.settled(t, "connection")
			if n := bad.Load(); n != 0 {
				t.Errorf("%d live deliveries sent with no hold out", n)
			}
			if conn.holds.Load() < int64(len(subs)) {
				t.Errorf("%d holds for %d subscribers", conn.holds.Load(), len(subs))
			}
		})

		t.Run("partitioned source", func(t *testing.T) {
			h := &countingHold{}
			var bad atomic.Int64
			s := started(t, f.svc, relay.SubscribeRequest{Sources: []string{"p"}, Hold: h}, heldWhileSent(h, &bad))
			for i := range 40 {
				f.publish(t, "p", fmt.Sprintf("b%03d", i), "t", fmt.Sprint("k", i%7))
			}
			s.wait(t, 40)
			h.settled(t, "partitioned")
			if n := bad.Load(); n != 0 {
				t.Errorf("%d live deliveries sent with no hold out", n)
			}
		})

		t.Run("stopped with reads queued", func(t *testing.T) {
			h := &countingHold{}
			block := make(chan struct{})
			s := started(t, f.svc, relay.SubscribeRequest{Sources: []string{"s"}, Hold: h}, func(m *relay.Message) error {
				if m.Entry != nil {
					<-block
				}
				return nil
			})
			for i := range 20 {
				f.publish(t, "s", fmt.Sprintf("d%03d", i), "t", "")
			}
			deadline := time.Now().Add(10 * time.Second)
			for h.out() < 2 && time.Now().Before(deadline) { // one being sent, more queued
				time.Sleep(5 * time.Millisecond)
			}
			if h.out() < 2 {
				t.Fatalf("%d holds out with the subscriber blocked", h.out())
			}
			s.cancel()
			close(block)
			<-s.done
			h.settled(t, "stopped")
		})
	})
}

// TestHeartbeatOnlyAfterQuiet: a heartbeat goes out once nothing was sent for the heartbeat
// interval, never sooner after a delivery, also while deliveries keep coming more often than
// the interval; and once they stop, one comes.
func TestHeartbeatOnlyAfterQuiet(t *testing.T) {
	backends(t, func(t *testing.T, url string) {
		f := newService(t, url, relay.Options{}, relay.SourceConfig{Name: "s"})
		const interval = 300 * time.Millisecond
		type msg struct {
			at   time.Time
			beat bool
		}
		var mu sync.Mutex
		var msgs []msg
		s := subscribe(t, f.svc, relay.SubscribeRequest{Heartbeat: interval}, func(m *relay.Message) error {
			mu.Lock()
			msgs = append(msgs, msg{time.Now(), m.Entry == nil})
			mu.Unlock()
			return nil
		})
		select {
		case <-s.ready: // the first heartbeat: the subscription is in place
		case <-time.After(15 * time.Second):
			t.Fatal("no first heartbeat")
		}
		for i := range 20 {
			f.publish(t, "s", fmt.Sprintf("q%03d", i), "t", "")
			time.Sleep(interval / 6)
		}
		s.wait(t, 20)
		deadline := time.Now().Add(15 * time.Second)
		for {
			mu.Lock()
			last := msgs[len(msgs)-1]
			mu.Unlock()
			if last.beat {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("no heartbeat after the deliveries stopped")
			}
			time.Sleep(10 * time.Millisecond)
		}
		mu.Lock()
		defer mu.Unlock()
		for i := 1; i < len(msgs); i++ {
			if gap := msgs[i].at.Sub(msgs[i-1].at); msgs[i].beat && gap < interval-time.Millisecond {
				t.Errorf("heartbeat %s after the message before it, interval %s", gap, interval)
			}
		}
	})
}
