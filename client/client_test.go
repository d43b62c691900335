package client_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventrelay/eventrelay/client"
	"github.com/eventrelay/eventrelay/internal/e2e"
	"github.com/eventrelay/eventrelay/internal/redistest"
	"github.com/eventrelay/eventrelay/relay"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
)

// shared is a relayd on the embedded store for the examples and the quick tests.
var shared *e2e.Relayd

func TestMain(m *testing.M) {
	var err error
	shared, err = e2e.Launch("subscribe: {min_heartbeat: 100ms}\nsources:\n" + e2e.HMACSource("orders") + e2e.HMACSource("stripe"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	shared.Stop()
	e2e.Cleanup()
	os.Exit(code)
}

func newClient(t testing.TB, addr string, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.New(addr, append([]client.Option{client.WithBackoff(50*time.Millisecond, 500*time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// redisRelayd runs relayd on a real Redis (events survive relayd's SIGKILL).
func redisRelayd(t *testing.T) *e2e.Relayd {
	url := redistest.Start(t)
	return e2e.Start(t, "redis: {url: \""+url+"\"}\nsubscribe: {min_heartbeat: 100ms}\nsources:\n"+e2e.HMACSource("orders", "partitions: 2"))
}

// postAll posts events id-0..id-(n-1) through a relayd that may be restarting: each is
// retried until it is answered 200 (a redelivery is stored once).
func postAll(ctx context.Context, r *e2e.Relayd, prefix string, n int, pace time.Duration) error {
	for i := range n {
		for {
			code, err := e2e.Post(ctx, r.HTTP, "orders", e2e.Event(fmt.Sprintf("%s-%d", prefix, i), "order.created", i))
			if err == nil && code == http.StatusOK {
				break
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(pace)
	}
	return nil
}

// counter counts the handled events by id.
type counter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *counter) add(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[id]++
	return c.n[id]
}

func (c *counter) distinct() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.n)
}

func (c *counter) check(t *testing.T, prefix string, n int, exactly bool) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range n {
		id := fmt.Sprintf("%s-%d", prefix, i)
		switch got := c.n[id]; {
		case got == 0:
			t.Errorf("%s never handled", id)
		case exactly && got != 1:
			t.Errorf("%s handled %d times, want exactly once", id, got)
		}
	}
	if len(c.n) != n {
		t.Errorf("%d distinct events handled, want %d", len(c.n), n)
	}
}

// TestTailExactlyOnceAcrossKills: a tail Receive with a FileCursorStore, while relayd is
// SIGKILLed and restarted twice mid-stream and the consumer process itself restarts (a new
// Receive from the same file): every event is handled exactly once.
func TestTailExactlyOnceAcrossKills(t *testing.T) {
	e2e.Slow(t)
	r := redisRelayd(t)
	c := newClient(t, r.GRPC)
	store := &tracedCursors{CursorStore: client.FileCursorStore{Path: filepath.Join(t.TempDir(), "cursor")}}
	const n = 300
	var handled counter
	var trace handlings // for the failure message: who handled what, at which cursor
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sub := client.Subscription{Sources: []string{"orders"}, Start: client.StartEarliest, CursorStore: store,
		Heartbeat: 100 * time.Millisecond, MaxConcurrency: 4}
	receives := 0
	receive := func(ctx context.Context) chan error {
		receives++
		store.mark(fmt.Sprintf("receive %d starts", receives))
		r := receives
		done := make(chan error, 1)
		go func() {
			done <- c.Receive(ctx, sub, func(ctx context.Context, m *client.Message) error {
				handled.add(m.Event.GetId())
				trace.add(m.Event.GetId(), fmt.Sprintf("receive %d at %s", r, cursorPositions(m.Cursor)))
				return nil
			})
		}()
		return done
	}
	defer func() {
		if t.Failed() {
			trace.explain(t, &handled, store)
		}
	}()
	posted := make(chan error, 1)
	go func() { posted <- postAll(ctx, r, "t", n, 2*time.Millisecond) }()

	rctx, stop := context.WithCancel(ctx)
	done := receive(rctx)
	e2e.Eventually(t, "a third of the events handled", func() bool { return handled.distinct() >= n/3 })
	store.mark("relayd killed")
	r.Kill()
	if err := r.Restart(); err != nil {
		t.Fatal(err)
	}
	e2e.Eventually(t, "half of the events handled", func() bool { return handled.distinct() >= n/2 })
	stop() // the consumer process restarts: a new Receive resumes from the cursor file
	if err := <-done; err != nil {
		t.Fatalf("Receive after cancel: %v", err)
	}
	done = receive(ctx)
	e2e.Eventually(t, "two thirds of the events handled", func() bool { return handled.distinct() >= 2*n/3 })
	store.mark("relayd killed")
	r.Kill()
	if err := r.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := <-posted; err != nil {
		t.Fatal(err)
	}
	e2e.Eventually(t, "every event handled", func() bool { return handled.distinct() >= n })
	time.Sleep(300 * time.Millisecond) // a repeat would come now
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Receive: %v", err)
	}
	handled.check(t, "t", n, true)
}

// tracedCursors records every cursor saved and loaded, with marks, for a failure message.
type tracedCursors struct {
	client.CursorStore
	mu  sync.Mutex
	log []string
}

func (s *tracedCursors) mark(what string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log = append(s.log, "-- "+what)
}

func (s *tracedCursors) Load(ctx context.Context) (string, error) {
	c, err := s.CursorStore.Load(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log = append(s.log, "load "+cursorPositions(c))
	return c, err
}

func (s *tracedCursors) Save(ctx context.Context, c string) error {
	err := s.CursorStore.Save(ctx, c)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log = append(s.log, "save "+cursorPositions(c))
	return err
}

// cursorPositions shows a cursor's positions (relay's encoding: the test may look inside).
func cursorPositions(c string) string {
	if c == "" {
		return "(none)"
	}
	cur, err := relay.DecodeCursor(c)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	var ps []string
	for p, id := range cur.Positions {
		ps = append(ps, p.String()+"="+id.String())
	}
	slices.Sort(ps)
	return strings.Join(ps, " ")
}

// handlings records, per event id, each handling's description.
type handlings struct {
	mu sync.Mutex
	by map[string][]string
}

func (h *handlings) add(id, what string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.by == nil {
		h.by = map[string][]string{}
	}
	h.by[id] = append(h.by[id], what)
}

// explain logs the handlings of the first events handled more than once and the cursors
// saved and loaded, in order (the saves are many: the first and last of each run of saves
// between two marks).
func (h *handlings) explain(t *testing.T, c *counter, s *tracedCursors) {
	h.mu.Lock()
	c.mu.Lock()
	shown := 0
	for id, n := range c.n {
		if n > 1 && shown < 3 {
			t.Logf("%s handled by: %s", id, strings.Join(h.by[id], "; "))
			shown++
		}
	}
	c.mu.Unlock()
	h.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, l := range s.log {
		first := i == 0 || !strings.HasPrefix(s.log[i-1], "save ")
		last := i == len(s.log)-1 || !strings.HasPrefix(s.log[i+1], "save ")
		if !strings.HasPrefix(l, "save ") || first || last {
			t.Logf("cursor store: %s", l)
		}
	}
}

// TestGroupAtLeastOnceAcrossKills: a group Receive whose handler fails the first attempt of
// every tenth event, while relayd is SIGKILLed and restarted: every event is handled
// successfully (acknowledged), the failed ones again with attempt 2 or more, and nothing is
// left pending or undelivered.
func TestGroupAtLeastOnceAcrossKills(t *testing.T) {
	e2e.Slow(t)
	r := redisRelayd(t)
	c := newClient(t, r.GRPC)
	const n = 200
	var ok, failed counter
	var retried atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sub := client.Subscription{Sources: []string{"orders"}, Group: "billing", Consumer: "w1", Start: client.StartEarliest,
		AckDeadline: 2 * time.Second, Heartbeat: 100 * time.Millisecond, MaxConcurrency: 8,
		NackDelay: func(int) time.Duration { return 50 * time.Millisecond }}
	done := make(chan error, 1)
	go func() {
		done <- c.Receive(ctx, sub, func(ctx context.Context, m *client.Message) error {
			id := m.Event.GetId()
			var i int
			_, _ = fmt.Sscanf(id, "g-%d", &i)
			if i%10 == 0 && failed.add(id) == 1 {
				return errors.New("first attempt fails")
			}
			if m.Attempt > 1 {
				retried.Add(1)
			}
			ok.add(id)
			return nil
		})
	}()
	posted := make(chan error, 1)
	go func() { posted <- postAll(ctx, r, "g", n, 2*time.Millisecond) }()
	e2e.Eventually(t, "half of the events handled", func() bool { return ok.distinct() >= n/2 })
	r.Kill()
	if err := r.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := <-posted; err != nil {
		t.Fatal(err)
	}
	e2e.Eventually(t, "every event handled", func() bool { return ok.distinct() >= n })
	ok.check(t, "g", n, false)
	if retried.Load() < n/10 {
		t.Errorf("%d redelivered events handled, want at least the %d that failed once", retried.Load(), n/10)
	}
	// Nothing pending, nothing left to deliver (the admin endpoint's group numbers).
	e2e.Eventually(t, "the group fully acknowledged", func() bool {
		g, err := groupStatus(r, "orders", "billing")
		return err == nil && g.Pending == 0 && g.Lag == 0
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Receive: %v", err)
	}
}

// TestGroupHandsBackUnhandledOnCancel: a group member whose handler cancels Receive on the
// first of ten events it was sent (in one batch) hands the nine it will not handle back, so
// another member gets them at once, as second attempts, rather than after the five-minute
// ack deadline.
func TestGroupHandsBackUnhandledOnCancel(t *testing.T) {
	c := newClient(t, shared.GRPC)
	run := fmt.Sprintf("handback%d", time.Now().UnixNano()) // the shared relayd: names of this run's own
	for i := range 10 {
		e2e.MustPost(t, shared.HTTP, "orders", fmt.Sprintf("%s-%d", run, i), run+".t", i)
	}
	sub := client.Subscription{Sources: []string{"orders"}, Types: []string{run + ".*"}, Group: run, Start: client.StartEarliest,
		AckDeadline: 5 * time.Minute}
	var first string
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := c.Receive(ctx, sub, func(_ context.Context, m *client.Message) error {
		first = m.Event.GetId()
		cancel()
		return nil
	})
	if err != nil || first == "" {
		t.Fatalf("first member: handled %q, err %v", first, err)
	}

	ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var mu sync.Mutex
	got := map[string]int{} // id -> attempt
	err = c.Receive(ctx, sub, func(_ context.Context, m *client.Message) error {
		mu.Lock()
		defer mu.Unlock()
		got[m.Event.GetId()] = m.Attempt
		if len(got) == 9 {
			cancel()
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	if err != nil || len(got) != 9 {
		t.Fatalf("second member: handled %v (err %v), want the nine events the first one did not handle", got, err)
	}
	for id, attempt := range got {
		if id == first || attempt != 2 {
			t.Errorf("second member handled %s as attempt %d; want the first member's unhandled events as attempt 2", id, attempt)
		}
	}
}

// TestStaleStreamResumed: when the connection stays up but nothing arrives for three
// heartbeat intervals (a frozen network path), Receive reconnects and goes on.
func TestStaleStreamResumed(t *testing.T) {
	p := newFreezingProxy(t, shared.GRPC)
	c := newClient(t, p.addr())
	var got atomic.Value
	// The relayd is shared by the package's tests: names of this run's own, so that -count=N
	// does not find the events of an earlier run (nor have its posts deduplicated).
	run := fmt.Sprintf("stale%d", time.Now().UnixNano())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	heard := make(chan struct{}, 16)
	go func() {
		done <- c.Receive(ctx, client.Subscription{Sources: []string{"orders"}, Types: []string{run + ".*"}, Start: client.StartEarliest, Heartbeat: 100 * time.Millisecond},
			func(ctx context.Context, m *client.Message) error {
				got.Store(m.Event.GetId())
				heard <- struct{}{}
				return nil
			})
	}()
	e2e.MustPost(t, shared.HTTP, "orders", run+"-warmup", run+".first", 0)
	<-heard
	p.freeze() // the open connection goes silent; new connections work
	e2e.MustPost(t, shared.HTTP, "orders", run+"-after", run+".second", 1)
	select {
	case <-heard:
	case <-ctx.Done():
		t.Fatal("the event posted while the stream was frozen never came")
	}
	if id := got.Load(); id != run+"-after" {
		t.Errorf("after the resume: %v, want %s-after", id, run)
	}
	if p.connections() < 2 {
		t.Errorf("%d connections, want a reconnection", p.connections())
	}
	cancel()
	<-done
}

// TestOutOfRange: a cursor older than the retained history ends Receive with an
// *OutOfRangeError carrying the cursor to resume from.
func TestOutOfRange(t *testing.T) {
	r := e2e.Start(t, "redis: {url: \""+redistest.Start(t)+"\"}\nsources:\n"+e2e.HMACSource("orders", "max_len: 5"))
	c := newClient(t, r.GRPC)
	e2e.MustPost(t, r.HTTP, "orders", "o-first", "t", 0)
	first := firstCursor(t, c)
	// max_len trims approximately (whole stream nodes of 100 entries): 250 more drop the first.
	for i := range 250 {
		e2e.MustPost(t, r.HTTP, "orders", fmt.Sprintf("o-%d", i), "t", i)
	}
	ctx, cancel := context.WithTimeout(context.Background(), e2e.Wait)
	defer cancel()
	err := c.Receive(ctx, client.Subscription{Sources: []string{"orders"}, After: first},
		func(context.Context, *client.Message) error { return nil })
	var oe *client.OutOfRangeError
	if !errors.As(err, &oe) || oe.ResumeCursor == "" {
		t.Fatalf("Receive from a trimmed cursor: %v, want an *OutOfRangeError with a resume cursor", err)
	}
}

// TestPermissionDenied: a token that may not read the source ends Receive with a
// *StatusError (no retry loop).
func TestPermissionDenied(t *testing.T) {
	r := e2e.Start(t, "auth:\n  tokens:\n    - {name: other, token: other-token-123, sources: [stripe]}\nsources:\n"+e2e.HMACSource("orders")+e2e.HMACSource("stripe"))
	c := newClient(t, r.GRPC, client.WithToken("other-token-123"))
	err := c.Receive(context.Background(), client.Subscription{Sources: []string{"orders"}},
		func(context.Context, *client.Message) error { return nil })
	var se *client.StatusError
	if !errors.As(err, &se) || se.Code != codes.PermissionDenied {
		t.Fatalf("Receive without permission: %v, want a *StatusError PermissionDenied", err)
	}
}

// TestTailHandlerError: a tail handler's error ends Receive with a *HandlerError, and the
// CursorStore keeps the position before the failed event, so the next Receive starts at it.
func TestTailHandlerError(t *testing.T) {
	c := newClient(t, shared.GRPC)
	store := &client.MemoryCursorStore{}
	sub := client.Subscription{Sources: []string{"orders"}, Types: []string{"herr.*"}, Start: client.StartEarliest, CursorStore: store}
	for i, id := range []string{"herr-a", "herr-b", "herr-c"} {
		e2e.MustPost(t, shared.HTTP, "orders", id, "herr.t", i)
	}
	var seen []string
	err := c.Receive(context.Background(), sub, func(ctx context.Context, m *client.Message) error {
		seen = append(seen, m.Event.GetId())
		if m.Event.GetId() == "herr-b" {
			return errors.New("boom")
		}
		return nil
	})
	var he *client.HandlerError
	if !errors.As(err, &he) || he.EventID != "herr-b" {
		t.Fatalf("Receive: %v, want a *HandlerError for herr-b", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var again []string
	_ = c.Receive(ctx, sub, func(ctx context.Context, m *client.Message) error {
		again = append(again, m.Event.GetId())
		if len(again) == 2 {
			cancel()
		}
		return nil
	})
	if fmt.Sprint(seen) != "[herr-a herr-b]" || fmt.Sprint(again) != "[herr-b herr-c]" {
		t.Errorf("first run %v, second %v; want [herr-a herr-b] then [herr-b herr-c]", seen, again)
	}
}

// TestNoHandlerAfterCancel: once the handler cancels Receive's context, no further event is
// handed to it, even one already received (50 runs: the race was between the cancelled
// context and a waiting worker).
func TestNoHandlerAfterCancel(t *testing.T) {
	c := newClient(t, shared.GRPC)
	for i, id := range []string{"cancel-a", "cancel-b", "cancel-c"} {
		e2e.MustPost(t, shared.HTTP, "orders", id, "cancel.t", i)
	}
	sub := client.Subscription{Sources: []string{"orders"}, Types: []string{"cancel.*"}, Start: client.StartEarliest}
	for run := range 50 {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		var seen []string
		err := c.Receive(ctx, sub, func(ctx context.Context, m *client.Message) error {
			seen = append(seen, m.Event.GetId())
			cancel()
			return nil
		})
		deadline := ctx.Err()
		cancel()
		if err != nil || len(seen) != 1 || errors.Is(deadline, context.DeadlineExceeded) {
			t.Fatalf("run %d: handled %v (err %v), want only the first event", run, seen, err)
		}
	}
}

// TestOrderedByPartitionKey: with 4 handlers at once, each key's events are handled in
// order, one at a time, while different keys run concurrently.
func TestOrderedByPartitionKey(t *testing.T) {
	r := e2e.Start(t, "sources:\n"+e2e.HMACSource("orders", "partition_key: customer"))
	c := newClient(t, r.GRPC)
	const keys, per = 4, 15
	for i := range per {
		for k := range keys {
			body := fmt.Sprintf(`{"id":"k%d-%d","type":"t","customer":"cus_%d","n":%d}`, k, i, k, i)
			if code, err := e2e.Post(context.Background(), r.HTTP, "orders", []byte(body)); err != nil || code != 200 {
				t.Fatal(code, err)
			}
		}
	}
	var mu sync.Mutex
	last := map[string]int{}
	running := map[string]bool{}
	var total, concurrent, most atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := c.Receive(ctx, client.Subscription{Sources: []string{"orders"}, Start: client.StartEarliest, MaxConcurrency: 4, OrderedByPartitionKey: true},
		func(ctx context.Context, m *client.Message) error {
			key := m.Event.GetPartitionKey()
			var body struct{ N int }
			if err := m.DecodeJSON(&body); err != nil {
				return err
			}
			mu.Lock()
			if running[key] {
				t.Errorf("two handlers of key %s at once", key)
			}
			if prev, ok := last[key]; ok && body.N != prev+1 {
				t.Errorf("key %s: %d after %d", key, body.N, prev)
			}
			running[key], last[key] = true, body.N
			mu.Unlock()
			now := concurrent.Add(1)
			for m := most.Load(); now > m && !most.CompareAndSwap(m, now); m = most.Load() {
			}
			time.Sleep(5 * time.Millisecond)
			concurrent.Add(-1)
			mu.Lock()
			running[key] = false
			mu.Unlock()
			if total.Add(1) == keys*per {
				cancel()
			}
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	if total.Load() != keys*per || most.Load() < 2 {
		t.Errorf("%d handled, at most %d at once; want %d and some concurrency", total.Load(), most.Load(), keys*per)
	}
}

// TestTraceContext: the handler's context carries the span context of the event's
// trace_parent.
func TestTraceContext(t *testing.T) {
	c := newClient(t, shared.GRPC)
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	publishTraced(t, c, "trace-1", tp)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var sc trace.SpanContext
	_ = c.Receive(ctx, client.Subscription{Sources: []string{"orders"}, Types: []string{"traced"}, Start: client.StartEarliest},
		func(hctx context.Context, m *client.Message) error {
			sc = trace.SpanContextFromContext(hctx)
			cancel()
			return nil
		})
	if sc.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || sc.SpanID().String() != "00f067aa0ba902b7" || !sc.IsRemote() {
		t.Errorf("span context %v, want the trace_parent's", sc)
	}
}

// TestReceiveLeaksNoGoroutine: once Receive returned and the client is closed, none of its
// goroutines (stream reader, stale watchdog, handlers, deadline extension) is left.
func TestReceiveLeaksNoGoroutine(t *testing.T) {
	e2e.MustPost(t, shared.HTTP, "orders", "leak-1", "leak.t", 1)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent()) // after the post: its keep-alive connection stays
	c, err := client.New(shared.GRPC)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), e2e.Wait)
	defer cancel()
	for _, sub := range []client.Subscription{
		{Sources: []string{"orders"}, Types: []string{"leak.*"}, Start: client.StartEarliest, MaxConcurrency: 4, Heartbeat: 100 * time.Millisecond},
		{Sources: []string{"orders"}, Types: []string{"leak.*"}, Start: client.StartEarliest, Group: "leak", AckDeadline: time.Second, MaxConcurrency: 4, OrderedByPartitionKey: true},
	} {
		rctx, stop := context.WithCancel(ctx)
		if err := c.Receive(rctx, sub, func(context.Context, *client.Message) error { stop(); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}
