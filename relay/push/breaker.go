package push

import (
	"context"
	"sync"
	"time"
)

// BreakerState is the state of a destination's circuit breaker.
type BreakerState string

// The breaker's states.
const (
	BreakerClosed   BreakerState = "closed"    // sending
	BreakerOpen     BreakerState = "open"      // not sending until the cool-down ends
	BreakerHalfOpen BreakerState = "half_open" // one probe in flight; the others wait for it
)

// breaker opens after a number of consecutive failed attempts, sends nothing for a
// cool-down, then lets one probe through: its success closes the breaker, its failure opens
// it again.
type breaker struct {
	failures int
	cooldown time.Duration

	mu      sync.Mutex
	state   BreakerState
	run     int       // consecutive failures
	until   time.Time // end of the cool-down (open)
	probing bool      // a probe is in flight (half open)
	changed chan struct{}
}

func newBreaker(b Breaker) *breaker {
	return &breaker{failures: b.Failures, cooldown: b.Cooldown, state: BreakerClosed, changed: make(chan struct{})}
}

// State returns the current state.
func (b *breaker) State() BreakerState {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state == BreakerOpen && !time.Now().Before(b.until) {
		return BreakerHalfOpen
	}
	return b.state
}

// wait blocks until an attempt may be made; probe is set when the attempt is the probe of a
// half-open breaker, whose outcome (done) decides for the others.
func (b *breaker) wait(ctx context.Context) (probe bool, err error) {
	for {
		b.mu.Lock()
		now := time.Now()
		if b.state == BreakerOpen && !now.Before(b.until) {
			b.state = BreakerHalfOpen
		}
		switch {
		case b.state == BreakerClosed:
			b.mu.Unlock()
			return false, nil
		case b.state == BreakerHalfOpen && !b.probing:
			b.probing = true
			b.mu.Unlock()
			return true, nil
		}
		ch, wait := b.changed, time.Hour
		if b.state == BreakerOpen {
			wait = b.until.Sub(now)
		}
		b.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return false, ctx.Err()
		case <-ch:
		case <-t.C:
		}
		t.Stop()
	}
}

// done records an attempt's outcome; probe as wait returned it. It reports whether the
// breaker opened.
func (b *breaker) done(probe, ok bool) (opened bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if probe {
		b.probing = false
	}
	if ok {
		b.run = 0
		if b.state != BreakerClosed {
			b.state = BreakerClosed
			b.signal()
		}
		return false
	}
	b.run++
	if probe || (b.state == BreakerClosed && b.run >= b.failures) {
		b.state, b.until = BreakerOpen, time.Now().Add(b.cooldown)
		b.signal()
		return true
	}
	return false
}

// abandon gives back a probe that was not made (the attempt was cancelled).
func (b *breaker) abandon(probe bool) {
	if !probe {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.probing = false
	b.signal()
}

func (b *breaker) signal() {
	close(b.changed)
	b.changed = make(chan struct{})
}

// limiter is a token bucket: rps tokens per second, up to burst; nil: no limit.
type limiter struct {
	mu     sync.Mutex
	rps    float64
	burst  float64
	tokens float64
	last   time.Time
}

func newLimiter(rps float64, burst int) *limiter {
	if rps <= 0 {
		return nil
	}
	return &limiter{rps: rps, burst: float64(burst), tokens: float64(burst), last: time.Now()}
}

// wait takes a token, waiting for one when the bucket is empty.
func (l *limiter) wait(ctx context.Context) error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	now := time.Now()
	l.tokens = min(l.burst, l.tokens+now.Sub(l.last).Seconds()*l.rps)
	l.last = now
	l.tokens-- // reserve, possibly into debt: later callers wait longer
	debt := -l.tokens
	l.mu.Unlock()
	if debt <= 0 {
		return nil
	}
	t := time.NewTimer(time.Duration(debt / l.rps * float64(time.Second)))
	defer t.Stop()
	select {
	case <-ctx.Done():
		l.mu.Lock()
		l.tokens++ // give the reservation back
		l.mu.Unlock()
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
