package server

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/eventrelay/eventrelay/relay"
)

// SubscribeLimits bound EventService subscriptions (over gRPC and, through the gateway,
// HTTP: both reach the same EventServer).
type SubscribeLimits struct {
	// MaxSubscribers bounds the subscriptions open at once; beyond it Subscribe fails with
	// RESOURCE_EXHAUSTED. 0: no bound.
	MaxSubscribers int
	// SendTimeout ends a subscription whose send has been blocked that long (a client that
	// stopped reading keeps the stream's flow-control window full) with RESOURCE_EXHAUSTED.
	// 0: never.
	SendTimeout time.Duration
}

// subscriptions counts the open subscriptions, in all and per token.
type subscriptions struct {
	mu      sync.Mutex
	total   int
	byToken map[string]int
}

// open admits a subscription of p, or refuses it with CodeResourceExhausted when the server
// (max) or p's token (auth.tokens[].max_subscriptions) has as many open as it may.
func (s *subscriptions) open(p *Principal, max int) (release func(), err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if max > 0 && s.total >= max {
		return nil, relay.Errorf(relay.CodeResourceExhausted, "too many subscriptions: relayd serves at most %d at once (subscribe.max_subscribers)", max)
	}
	if p.maxSubs > 0 && s.byToken[p.Name] >= p.maxSubs {
		return nil, relay.Errorf(relay.CodeResourceExhausted, "token %q holds %d subscriptions, its limit (auth.tokens[].max_subscriptions)", p.Name, p.maxSubs)
	}
	if s.byToken == nil {
		s.byToken = map[string]int{}
	}
	s.total++
	s.byToken[p.Name]++
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.total--
			if s.byToken[p.Name]--; s.byToken[p.Name] <= 0 {
				delete(s.byToken, p.Name)
			}
		})
	}, nil
}

// watchSends wraps send so that a send blocked for timeout interrupts the subscription
// (interrupt: relay.SubscribeRequest.Interrupt, see cut.go) with CodeResourceExhausted: the
// handler then returns and grpc-go cancels the stream, which fails the blocked send. stop
// ends the watch.
//
// The send path only counts sends begun and ended (no clock read per delivery: it is the
// fan-out path); a watchdog ticking every timeout/4 sees a send in progress that is the same
// one for timeout's worth of ticks, so a blocked send ends within timeout + timeout/4.
func watchSends(send func(*relay.Message) error, timeout time.Duration, interrupt func(error)) (func(*relay.Message) error, func()) {
	var begun, ended atomic.Uint64
	done := make(chan struct{})
	go func() {
		tick := max(timeout/4, 10*time.Millisecond)
		t := time.NewTicker(tick)
		defer t.Stop()
		var last uint64
		var stuck time.Duration
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			b := begun.Load()
			if b == ended.Load() || b != last {
				last, stuck = b, 0 // idle, or another send since the last tick
				continue
			}
			if stuck += tick; stuck >= timeout && interrupt != nil {
				interrupt(relay.Errorf(relay.CodeResourceExhausted,
					"the client accepted nothing for %s (subscribe.send_timeout): stream ended; resume from the last cursor", timeout))
				return
			}
		}
	}()
	var once sync.Once
	return func(m *relay.Message) error {
			begun.Add(1)
			err := send(m)
			ended.Add(1)
			return err
		}, func() {
			once.Do(func() { close(done) })
		}
}
