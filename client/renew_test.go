package client_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/eventrelay/eventrelay/client"
	eventrelayv1 "github.com/eventrelay/eventrelay/gen/eventrelay/v1"
	"github.com/eventrelay/eventrelay/internal/e2e"
)

// silencer is a stream interceptor that, once silence is called, silences the Subscribe
// streams asking for the type marker on the connection they ran on then: their Recv blocks
// until the stream ends, as over a path that died, while every other stream on that
// connection goes on as before. Streams on other connections are not touched.
type silencer struct {
	marker  string
	started chan struct{} // a marked stream was opened

	mu     sync.Mutex
	last   *grpc.ClientConn // the connection of the latest marked stream
	silent *grpc.ClientConn // marked streams on it are silent
	conns  map[*grpc.ClientConn]bool
}

func newSilencer(marker string) *silencer {
	return &silencer{marker: marker, started: make(chan struct{}, 1), conns: map[*grpc.ClientConn]bool{}}
}

func (s *silencer) intercept(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	s.mu.Lock()
	s.conns[cc] = true
	s.mu.Unlock()
	cs, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil {
		return cs, err
	}
	return &silencedStream{ClientStream: cs, s: s, ctx: ctx, cc: cc}, nil
}

// silence silences the marked streams on the connection of the latest one.
func (s *silencer) silence() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.silent = s.last
}

func (s *silencer) isSilent(cc *grpc.ClientConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return cc == s.silent
}

// connections is how many connections streams were opened on.
func (s *silencer) connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

type silencedStream struct {
	grpc.ClientStream
	s      *silencer
	ctx    context.Context
	cc     *grpc.ClientConn
	marked bool
}

func (c *silencedStream) SendMsg(m any) error {
	if req, ok := m.(*eventrelayv1.SubscribeRequest); ok && slices.Contains(req.GetTypes(), c.s.marker) {
		c.marked = true
		c.s.mu.Lock()
		c.s.last = c.cc
		c.s.mu.Unlock()
		select {
		case c.s.started <- struct{}{}:
		default:
		}
	}
	return c.ClientStream.SendMsg(m)
}

func (c *silencedStream) RecvMsg(m any) error {
	if c.marked && c.s.isSilent(c.cc) {
		<-c.ctx.Done()
		return status.FromContextError(c.ctx.Err()).Err()
	}
	return c.ClientStream.RecvMsg(m)
}

// TestRenewResumesOtherReceives: several Receive calls share one Client. One of them finds
// its own stream silent (no heartbeat for three intervals) and replaces the connection,
// which cuts the streams of the others although they were healthy. They resume on the new
// connection like after any break: none returns, every event posted afterwards reaches each
// of them (the tails exactly once, from their cursors; the group member at least once).
func TestRenewResumesOtherReceives(t *testing.T) {
	// The relayd is shared by the package's tests: names of this run's own.
	run := fmt.Sprintf("renew%d", time.Now().UnixNano())
	s := newSilencer(run + ".silent")
	c := newClient(t, shared.GRPC, client.WithDialOptions(grpc.WithChainStreamInterceptor(s.intercept)))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	type ended struct {
		name string
		err  error
	}
	var (
		done     = make(chan ended, 8)
		progress = make(chan struct{}, 1)
		stale    = make(chan error, 1)
		running  = 0
	)
	wake := func() {
		select {
		case progress <- struct{}{}:
		default:
		}
	}
	receive := func(name string, sub client.Subscription, h client.Handler) {
		running++
		go func() { done <- ended{name, c.Receive(ctx, sub, h)} }()
	}

	// The Receive that goes silent: a short heartbeat, no event of its own.
	receive("silent", client.Subscription{Sources: []string{"orders"}, Types: []string{s.marker}, Heartbeat: 100 * time.Millisecond,
		OnResume: func(err error, _ time.Duration) {
			select {
			case stale <- err:
			default:
			}
		}},
		func(context.Context, *client.Message) error { return nil })

	// The others: heartbeats far apart, so that none of them finds its own stream silent.
	type other struct {
		name    string
		exactly bool
		got     counter
		mu      sync.Mutex
		resumed []error
	}
	others := []*other{{name: "tail", exactly: true}, {name: "tail, concurrent", exactly: true}, {name: "group"}}
	for i, o := range others {
		sub := client.Subscription{Sources: []string{"orders"}, Types: []string{run + ".ev"}, Start: client.StartEarliest, Heartbeat: time.Hour,
			OnResume: func(err error, _ time.Duration) {
				o.mu.Lock()
				o.resumed = append(o.resumed, err)
				o.mu.Unlock()
			}}
		switch i {
		case 1:
			sub.MaxConcurrency = 4
		case 2:
			sub.Group = run + "-group"
		}
		receive(o.name, sub, func(ctx context.Context, m *client.Message) error {
			o.got.add(m.Event.GetId())
			wake()
			return nil
		})
	}

	// wait waits for cond, failing if a Receive ends meanwhile.
	wait := func(what string, cond func() bool) {
		t.Helper()
		for !cond() {
			select {
			case <-progress:
			case e := <-done:
				running--
				t.Fatalf("%s: Receive %q ended: %v", what, e.name, e.err)
			case <-ctx.Done():
				t.Fatalf("%s: timed out", what)
			}
		}
	}
	all := func(n int) func() bool {
		return func() bool {
			for _, o := range others {
				if o.got.distinct() < n {
					return false
				}
			}
			return true
		}
	}

	select {
	case <-s.started:
	case <-ctx.Done():
		t.Fatal("the silent Receive never subscribed")
	}
	// Every stream is up on the one connection once each of the others got an event.
	e2e.MustPost(t, shared.HTTP, "orders", run+"-0", run+".ev", 0)
	wait("before the silence", all(1))

	s.silence()
	select {
	case err := <-stale:
		t.Logf("the silent Receive resumes after: %v", err)
	case e := <-done:
		t.Fatalf("Receive %q ended: %v", e.name, e.err)
	case <-ctx.Done():
		t.Fatal("the silent stream was never found silent")
	}
	const n = 20
	for i := 1; i <= n; i++ {
		e2e.MustPost(t, shared.HTTP, "orders", fmt.Sprintf("%s-%d", run, i), run+".ev", i)
	}
	wait("after the silence", all(n+1))

	if got := s.connections(); got < 2 {
		t.Errorf("streams on %d connections, want the connection replaced", got)
	}
	for _, o := range others {
		o.got.check(t, run, n+1, o.exactly)
		o.mu.Lock()
		if len(o.resumed) == 0 {
			t.Errorf("Receive %q never resumed: its stream on the replaced connection was not cut?", o.name)
		}
		t.Logf("Receive %q resumed after: %v", o.name, o.resumed)
		o.mu.Unlock()
	}
	cancel()
	for range running {
		if e := <-done; e.err != nil {
			t.Errorf("Receive %q ended with %v after its context was cancelled, want nil", e.name, e.err)
		}
	}
}
