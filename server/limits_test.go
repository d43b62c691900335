package server

import (
	"testing"
	"time"

	"github.com/eventrelay/eventrelay/relay"
)

// TestWatchSends: a send blocked for the timeout interrupts the subscription with
// RESOURCE_EXHAUSTED; sends that each take half the timeout, one after the other, never do.
func TestWatchSends(t *testing.T) {
	const timeout = 100 * time.Millisecond
	t.Run("progressing", func(t *testing.T) {
		interrupted := make(chan error, 1)
		send, stop := watchSends(func(*relay.Message) error { time.Sleep(timeout / 2); return nil }, timeout,
			func(err error) { interrupted <- err })
		defer stop()
		for range 8 {
			_ = send(&relay.Message{})
		}
		select {
		case err := <-interrupted:
			t.Fatalf("interrupted while sends progressed: %v", err)
		default:
		}
	})
	t.Run("blocked", func(t *testing.T) {
		interrupted := make(chan error, 1)
		release := make(chan struct{})
		send, stop := watchSends(func(*relay.Message) error { <-release; return nil }, timeout,
			func(err error) { interrupted <- err })
		defer stop()
		go func() { _ = send(&relay.Message{}) }()
		defer close(release)
		select {
		case err := <-interrupted:
			if relay.ErrorCode(err) != relay.CodeResourceExhausted {
				t.Fatalf("interrupted with %v, want resource_exhausted", err)
			}
		case <-time.After(20 * timeout):
			t.Fatal("a blocked send was not interrupted")
		}
	})
}
