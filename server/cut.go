package server

import (
	"time"

	"github.com/eventrelay/eventrelay/relay"
)

// Ending a stream whose send is blocked.
//
// grpc-go's SendMsg blocks while the stream's write quota and flow-control window are used
// up (a client that stopped reading, or reads one message a second), and nothing the handler
// owns interrupts it; a handler stuck in it keeps the stream, its goroutine and the
// subscribers gauge until the client makes room. So the relay subscription runs in a
// goroutine of its own: when the relay ends it while a send may be blocked (a tail subscriber
// that fell behind by its buffer is cut, relay.SubscribeRequest.Interrupt), the handler
// returns that error within interruptGrace, whether or not the send came back. Returning ends
// the stream: grpc-go queues the status after the messages already queued for the client and
// cancels the stream, which makes the blocked SendMsg fail (its message is not sent) and the
// subscription goroutine exit. The client gets what was on its way, then the status.

// interruptGrace is how long a handler waits, once the relay ended its subscription, for the
// subscription to return by itself (it does at once unless a send is blocked).
const interruptGrace = 100 * time.Millisecond

// runInterruptible runs sub, a relay subscription of sr, beside the handler and returns its
// error, or the error the relay ended it with (through sr.Interrupt) when sub has not
// returned interruptGrace after that.
func runInterruptible(sr *relay.SubscribeRequest, sub func() error) error {
	done := make(chan error, 1)
	failed := make(chan error, 1)
	sr.Interrupt = func(err error) {
		select {
		case failed <- err:
		default:
		}
	}
	go func() { done <- sub() }()
	select {
	case err := <-done:
		return err
	case err := <-failed:
		t := time.NewTimer(interruptGrace)
		defer t.Stop()
		select {
		case derr := <-done:
			return derr
		case <-t.C:
			return err
		}
	}
}
