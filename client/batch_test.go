package client_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/eventrelay/eventrelay/client"
	eventrelayv1 "github.com/eventrelay/eventrelay/gen/eventrelay/v1"
	"github.com/eventrelay/eventrelay/internal/e2e"
)

// subscribeSpy records, for the Subscribe streams of a connection, the max_batch each asked
// for and how many messages came as batches.
type subscribeSpy struct {
	mu       sync.Mutex
	asked    []int32
	batches  int
	messages int
}

func (s *subscribeSpy) intercept(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	cs, err := streamer(ctx, desc, cc, method, opts...)
	return spiedStream{cs, s}, err
}

type spiedStream struct {
	grpc.ClientStream
	s *subscribeSpy
}

func (c spiedStream) SendMsg(m any) error {
	if req, ok := m.(*eventrelayv1.SubscribeRequest); ok {
		c.s.mu.Lock()
		c.s.asked = append(c.s.asked, req.GetMaxBatch())
		c.s.mu.Unlock()
	}
	return c.ClientStream.SendMsg(m)
}

func (c spiedStream) RecvMsg(m any) error {
	err := c.ClientStream.RecvMsg(m)
	if resp, ok := m.(*eventrelayv1.SubscribeResponse); ok && err == nil && resp.GetHeartbeat() == nil {
		c.s.mu.Lock()
		c.s.messages++
		if resp.GetBatch() != nil {
			c.s.batches++
		}
		c.s.mu.Unlock()
	}
	return err
}

// TestReceiveBatched: Receive asks relayd for batches (max_batch 100 unless MaxBatch says
// otherwise), a replay arrives in them, and the handler still gets every event once, in order,
// one at a time.
func TestReceiveBatched(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const n = 250
	var want []string
	for i := range n {
		id := fmt.Sprintf("batched-%03d", i)
		if code, err := e2e.Post(ctx, shared.HTTP, "stripe", e2e.Event(id, "order.created", i)); err != nil || code != http.StatusOK {
			t.Fatalf("post %s: %d %v", id, code, err)
		}
		want = append(want, id)
	}
	for _, tc := range []struct {
		maxBatch int
		asked    int32
		batched  bool
	}{{0, 100, true}, {1000, 1000, true}, {1, 1, false}} {
		t.Run(fmt.Sprint(tc.maxBatch), func(t *testing.T) {
			spy := &subscribeSpy{}
			c := newClient(t, shared.GRPC, client.WithDialOptions(grpc.WithStreamInterceptor(spy.intercept)))
			rctx, stop := context.WithCancel(ctx)
			var got []string
			err := c.Receive(rctx, client.Subscription{Sources: []string{"stripe"}, Start: client.StartEarliest, MaxBatch: tc.maxBatch},
				func(_ context.Context, m *client.Message) error {
					if id := m.Event.GetId(); strings.HasPrefix(id, "batched-") {
						if got = append(got, id); len(got) == n {
							stop()
						}
					}
					return nil
				})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("handled %d events, not each once in order: %v", len(got), got)
			}
			spy.mu.Lock()
			defer spy.mu.Unlock()
			if !slices.Equal(spy.asked, []int32{tc.asked}) {
				t.Fatalf("asked for max_batch %v, want [%d]", spy.asked, tc.asked)
			}
			if (spy.batches > 0) != tc.batched {
				t.Fatalf("%d of %d messages were batches", spy.batches, spy.messages)
			}
		})
	}
}

// TestReceiveBadMaxBatch: MaxBatch outside 0..1000 fails before anything is sent.
func TestReceiveBadMaxBatch(t *testing.T) {
	c := newClient(t, shared.GRPC)
	for _, n := range []int{-1, 1001} {
		err := c.Receive(context.Background(), client.Subscription{MaxBatch: n}, func(context.Context, *client.Message) error { return nil })
		if err == nil || !strings.Contains(err.Error(), "MaxBatch") {
			t.Fatalf("MaxBatch %d: %v", n, err)
		}
	}
}
