package e2e

import (
	"context"
	"testing"
	"time"

	eventrelayv1 "github.com/eventrelay/eventrelay/gen/eventrelay/v1"
)

// Stream is an open Subscribe stream read by a goroutine: deliveries queue in Deliveries,
// the first heartbeat closes the ready signal, and the end of the stream is kept.
type Stream struct {
	// Deliveries receives every delivery, in order (buffered).
	Deliveries chan *eventrelayv1.Delivery
	beat       chan struct{} // closed at the first heartbeat
	done       chan struct{} // closed when the stream ended; err is then set
	err        error
	cancel     context.CancelFunc
}

// Subscribe opens a Subscribe stream on c; it is closed at cleanup.
func Subscribe(t testing.TB, c eventrelayv1.EventServiceClient, req *eventrelayv1.SubscribeRequest) *Stream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := c.Subscribe(ctx, req)
	if err != nil {
		cancel()
		t.Fatalf("Subscribe: %v", err)
	}
	s := &Stream{Deliveries: make(chan *eventrelayv1.Delivery, 4096), beat: make(chan struct{}), done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(s.done)
		beat := false
		for {
			msg, err := stream.Recv()
			if err != nil {
				s.err = err
				return
			}
			ds := msg.GetBatch().GetDeliveries() // SubscribeRequest.max_batch
			if d := msg.GetDelivery(); d != nil {
				ds = []*eventrelayv1.Delivery{d}
			}
			for _, d := range ds {
				select {
				case s.Deliveries <- d:
				case <-ctx.Done():
				}
			}
			if msg.GetHeartbeat() != nil && !beat {
				beat = true
				close(s.beat)
			}
		}
	}()
	t.Cleanup(s.Close)
	return s
}

// Ready waits for the first heartbeat: the subscription is running (a group exists).
func (s *Stream) Ready(t testing.TB) {
	t.Helper()
	select {
	case <-s.beat:
	case <-s.done:
		t.Fatalf("stream ended before its first heartbeat: %v", s.err)
	case <-time.After(Wait):
		t.Fatal("no heartbeat")
	}
}

// Next returns the next delivery.
func (s *Stream) Next(t testing.TB) *eventrelayv1.Delivery {
	t.Helper()
	select {
	case d := <-s.Deliveries:
		return d
	default:
	}
	select {
	case d := <-s.Deliveries:
		return d
	case <-s.done:
		t.Fatalf("stream ended: %v", s.err)
	case <-time.After(Wait):
		t.Fatal("no delivery")
	}
	return nil
}

// Quiet fails when a delivery arrives within d (only to show that something that must not
// happen does not).
func (s *Stream) Quiet(t testing.TB, d time.Duration, why string) {
	t.Helper()
	select {
	case got := <-s.Deliveries:
		t.Errorf("%s: got %s (attempt %d)", why, got.Event.GetId(), got.DeliveryAttempt)
	case <-time.After(d):
	}
}

// Close cancels the stream and waits for its reader.
func (s *Stream) Close() {
	s.cancel()
	<-s.done
}

// End waits for the stream to end by itself and returns its error.
func (s *Stream) End(t testing.TB) error {
	t.Helper()
	select {
	case <-s.done:
		return s.err
	case <-time.After(Wait):
		t.Fatal("stream did not end")
	}
	return nil
}
