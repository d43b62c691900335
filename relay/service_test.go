package relay_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventrelay/eventrelay/internal/redistest"
	"github.com/eventrelay/eventrelay/relay"
	"github.com/eventrelay/eventrelay/relay/embedded"
	"github.com/eventrelay/eventrelay/relay/redisstore"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

// acceptAll is a Verifier for service tests: every request is valid, id from the body.
type acceptAll struct{}

func (acceptAll) Verify(req *relay.WebhookRequest, now time.Time) (*relay.Verified, error) {
	id, _ := relay.JSONLookup(req.Body, "id")
	typ, _ := relay.JSONLookup(req.Body, "type")
	return &relay.Verified{Provider: "test", Scheme: "none", ID: id, Type: typ}, nil
}

// backends runs fn against the embedded server and a real redis-server.
func backends(t *testing.T, fn func(t *testing.T, url string)) {
	t.Run("embedded", func(t *testing.T) {
		srv, err := embedded.Start()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(srv.Close)
		fn(t, srv.URL())
	})
	t.Run("redis", func(t *testing.T) {
		fn(t, redistest.Start(t))
	})
}

type fixture struct {
	svc   *relay.Service
	store *redisstore.Store
}

func newService(t *testing.T, url string, opts relay.Options, cfgs ...relay.SourceConfig) *fixture {
	t.Helper()
	st, err := redisstore.Open(url, false, "", redisstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var srcs []*relay.Source
	for _, c := range cfgs {
		c.SetDefaults()
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
		srcs = append(srcs, &relay.Source{Config: c, Verifier: acceptAll{}})
	}
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	svc, err := relay.NewService(st, srcs, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = svc.Close()
		_ = st.Close()
	})
	return &fixture{svc: svc, store: st}
}

// over returns a second service over st (a wrapper of f.store) with f's source named source
// and opts[0], when given.
func (f *fixture) over(t *testing.T, st relay.Store, source string, opts ...relay.Options) *relay.Service {
	t.Helper()
	src, err := f.svc.Source(source)
	if err != nil {
		t.Fatal(err)
	}
	var o relay.Options
	if len(opts) > 0 {
		o = opts[0]
	}
	o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	svc, err := relay.NewService(st, []*relay.Source{{Config: src.Config, Verifier: acceptAll{}}}, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Close() })
	return svc
}

func (f *fixture) publish(t *testing.T, source, id, typ, key string) {
	t.Helper()
	_, err := f.svc.Publish(context.Background(), relay.PublishInput{Source: source, ID: id, Type: typ, PartitionKey: key, Data: []byte(`{"id":"` + id + `"}`)})
	if err != nil {
		t.Fatal(err)
	}
}

// sub runs a subscription in the background and collects its deliveries.
type sub struct {
	mu     sync.Mutex
	msgs   []relay.Message
	ids    []string
	err    error
	done   chan struct{}
	cancel context.CancelFunc
	notify chan struct{}
	ready  chan struct{} // closed at the first message, heartbeat or delivery
	once   sync.Once
}

func subscribe(t *testing.T, svc *relay.Service, req relay.SubscribeRequest, onMsg func(m *relay.Message) error) *sub {
	ctx, cancel := context.WithCancel(context.Background())
	s := &sub{done: make(chan struct{}), cancel: cancel, notify: make(chan struct{}, 1), ready: make(chan struct{})}
	go func() {
		defer close(s.done)
		err := svc.Subscribe(ctx, req, func(m *relay.Message) error {
			s.once.Do(func() { close(s.ready) })
			if onMsg != nil {
				if err := onMsg(m); err != nil {
					return err
				}
			}
			if m.Entry == nil {
				return nil
			}
			ev, err := relay.DecodeEvent(m.Entry.Event)
			if err != nil {
				return err
			}
			s.mu.Lock()
			s.msgs = append(s.msgs, *m)
			s.ids = append(s.ids, ev.Id)
			s.mu.Unlock()
			select {
			case s.notify <- struct{}{}:
			default:
			}
			return nil
		})
		s.mu.Lock()
		s.err = err
		s.mu.Unlock()
	}()
	t.Cleanup(s.stop)
	return s
}

// tailing subscribes at the latest position and returns once the subscription's position
// is fixed: the send loop starts after every partition's start position was resolved, and
// its first message is a heartbeat (at the shortest interval). Everything appended after
// that is delivered.
func started(t *testing.T, svc *relay.Service, req relay.SubscribeRequest, onMsg func(m *relay.Message) error) *sub {
	t.Helper()
	req.Heartbeat = relay.MinHeartbeat
	s := subscribe(t, svc, req, onMsg)
	select {
	case <-s.ready:
	case <-s.done:
		t.Fatalf("subscription ended before its first heartbeat: %v", s.err)
	case <-time.After(15 * time.Second):
		t.Fatal("no heartbeat within 15s")
	}
	return s
}

func (s *sub) stop() {
	s.cancel()
	<-s.done
}

// wait blocks until the subscription has n deliveries (or fails the test after 15s).
func (s *sub) wait(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		s.mu.Lock()
		got := len(s.ids)
		ids := append([]string(nil), s.ids...)
		err := s.err
		s.mu.Unlock()
		if got >= n {
			return ids
		}
		select {
		case <-s.done:
			s.mu.Lock()
			err = s.err
			s.mu.Unlock()
			if len(s.ids) >= n {
				continue
			}
			t.Fatalf("subscription ended after %d of %d deliveries: %v", got, n, err)
		case <-s.notify:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("timed out with %d of %d deliveries", got, n)
		}
	}
}

func (s *sub) messages() []relay.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]relay.Message(nil), s.msgs...)
}

func ids(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%03d", prefix, i)
	}
	return out
}

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestTailFanOut(t *testing.T) {
	backends(t, func(t *testing.T, url string) {
		f := newService(t, url, relay.Options{}, relay.SourceConfig{Name: "s"})
		var subs []*sub
		for range 3 {
			subs = append(subs, started(t, f.svc, relay.SubscribeRequest{Sources: []string{"s"}}, nil))
		}
		want := ids("e", 200)
		for _, id := range want {
			f.publish(t, "s", id, "t", "")
		}
		for i, s := range subs {
			if got := s.wait(t, 200); !slices.Equal(got, want) {
				t.Fatalf("subscriber %d got %v", i, got[:10])
			}
		}
	})
}

func TestTypeFilter(t *testing.T) {
	backends(t, func(t *testing.T, url string) {
		f := newService(t, url, relay.Options{}, relay.SourceConfig{Name: "s"})
		for i, typ := range []string{"invoice.paid", "charge.failed", "invoice.created", "customer"} {
			f.publish(t, "s", fmt.Sprint("e", i), typ, "")
		}
		s := subscribe(t, f.svc, relay.SubscribeRequest{Start: relay.StartEarliest, Types: relay.TypeFilter{"invoice.*"}}, nil)
		if got := s.wait(t, 2); !slices.Equal(got, []string{"e0", "e2"}) {
			t.Fatalf("got %v", got)
		}
	})
}

func TestSlowSubscriberIsCutOff(t *testing.T) {
	backends(t, func(t *testing.T, url string) {
		f := newService(t, url, relay.Options{TailBuffer: 64}, relay.SourceConfig{Name: "s"})
		hold := &countingHold{} // the cut gives back the holds of what it had queued
		slow := started(t, f.svc, relay.SubscribeRequest{Hold: hold}, func(m *relay.Message) error {
			if m.Entry != nil {
				time.Sleep(20 * time.Millisecond) // a consumer far slower than the stream
			}
			return nil
		})
		fast := started(t, f.svc, relay.SubscribeRequest{}, nil)
		want := ids("e", 500)
		for _, id := range want {
			f.publish(t, "s", id, "t", "")
		}
		if got := fast.wait(t, 500); !slices.Equal(got, want) {
			t.Fatal("fast subscriber missed events")
		}
		select {
		case <-slow.done:
		case <-time.After(15 * time.Second):
			t.Fatal("slow subscriber was not cut off")
		}
		if relay.ErrorCode(slow.err) != relay.CodeResourceExhausted {
			t.Fatalf("slow subscriber ended with %v", slow.err)
		}
		hold.settled(t, "cut")
	})
}

func TestPartitionedCursorResume(t *testing.T) {
	backends(t, func(t *testing.T, url string) {
		f := newService(t, url, relay.Options{ReplayBatch: 7}, relay.SourceConfig{Name: "p", Partitions: 4}, relay.SourceConfig{Name: "q"})
		keys := []string{"cus_a", "cus_b", "cus_c", "cus_d", "cus_e"}
		perKey := map[string][]string{}
		for i := range 60 {
			k := keys[i%len(keys)]
			id := fmt.Sprintf("e%03d", i)
			f.publish(t, "p", id, "t", k)
			perKey[k] = append(perKey[k], id)
		}
		f.publish(t, "q", "q0", "t", "")
		all := subscribe(t, f.svc, relay.SubscribeRequest{Start: relay.StartEarliest}, nil)
		got := all.wait(t, 61)
		all.stop()
		// Order within each key.
		pos := map[string]int{}
		for i, id := range got {
			pos[id] = i
		}
		for k, list := range perKey {
			for i := 1; i < len(list); i++ {
				if pos[list[i-1]] > pos[list[i]] {
					t.Fatalf("key %s out of order: %s after %s", k, list[i-1], list[i])
				}
			}
		}
		// Resume after every 10th cursor: exactly the rest, no gap, no repeat.
		msgs := all.messages()
		for k := 0; k < 60; k += 10 {
			cur, err := relay.DecodeCursor(msgs[k].Cursor)
			if err != nil {
				t.Fatal(err)
			}
			rest := subscribe(t, f.svc, relay.SubscribeRequest{After: &cur}, nil)
			got2 := rest.wait(t, 60-k)
			rest.stop()
			seen := map[string]bool{}
			for _, id := range got2 {
				if seen[id] {
					t.Fatalf("after %d: %s repeated", k, id)
				}
				seen[id] = true
			}
			for _, id := range got[k+1:] {
				if !seen[id] {
					t.Fatalf("after %d: %s missing", k, id)
				}
			}
			if seen[got[k]] {
				t.Fatalf("after %d: the cursor's own event was repeated", k)
			}
		}
	})
}

func TestGroupRedeliveryAndDeadLetters(t *testing.T) {
	backends(t, func(t *testing.T, url string) {
		f := newService(t, url, relay.Options{}, relay.SourceConfig{Name: "s", Partitions: 2})
		for _, id := range ids("e", 6) {
			f.publish(t, "s", id, "t", id)
		}
		opts := relay.GroupOptions{Name: "g", Consumer: "never-acks", AckDeadline: 150 * time.Millisecond, MaxAttempts: 2}
		s := subscribe(t, f.svc, relay.SubscribeRequest{Start: relay.StartEarliest, Group: opts}, nil)
		s.wait(t, 12) // each event twice: attempt 1, then reclaimed as attempt 2
		attempts := map[string][]int{}
		for _, m := range s.messages() {
			ev, _ := relay.DecodeEvent(m.Entry.Event)
			attempts[ev.Id] = append(attempts[ev.Id], m.Attempt)
			if m.AckID == "" {
				t.Fatal("group delivery without ack id")
			}
		}
		for id, a := range attempts {
			if len(a) < 2 || a[0] != 1 || a[1] != 2 {
				t.Fatalf("%s attempts %v", id, a)
			}
		}
		// Past max attempts the events move to the dead letters.
		deadline := time.Now().Add(15 * time.Second)
		for {
			items, _, err := f.svc.ListEvents(context.Background(), relay.ListQuery{Source: "s", DeadLetters: true, Group: "g"})
			if err != nil {
				t.Fatal(err)
			}
			if len(items) == 6 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d dead letters", len(items))
			}
			time.Sleep(50 * time.Millisecond)
		}
		s.stop()
		// Dead letters are readable as a stream.
		dl := subscribe(t, f.svc, relay.SubscribeRequest{DeadLetters: true, Group: relay.GroupOptions{Name: "g"}, Start: relay.StartEarliest}, nil)
		dl.wait(t, 6)
		dl.stop()
		// Redrive one by id, then the rest.
		for _, bad := range [][]string{{""}, {"e003", strings.Repeat("x", relay.MaxEventIDLen+1)}, {"a b"}} {
			if _, err := f.svc.Redrive(context.Background(), "s", "g", bad); relay.ErrorCode(err) != relay.CodeInvalid {
				t.Fatalf("redrive of ids %q: %v, want INVALID_ARGUMENT", bad, err)
			}
		}
		n, err := f.svc.Redrive(context.Background(), "s", "g", []string{"e003"})
		if err != nil || n != 1 {
			t.Fatalf("redrive e003: %d %v", n, err)
		}
		n, err = f.svc.Redrive(context.Background(), "s", "g", nil)
		if err != nil || n != 5 {
			t.Fatalf("redrive all: %d %v", n, err)
		}
		// A fresh consumer of the group gets the redriven events and acks them.
		var acker *sub
		acker = subscribe(t, f.svc, relay.SubscribeRequest{Group: relay.GroupOptions{Name: "g", Consumer: "acks"}}, func(m *relay.Message) error {
			if m.Entry != nil {
				unknown, err := f.svc.Acknowledge(context.Background(), []string{m.AckID}, nil)
				if err != nil || len(unknown) != 0 {
					return fmt.Errorf("ack: %v %v", unknown, err)
				}
			}
			return nil
		})
		got := acker.wait(t, 6)
		seen := map[string]bool{}
		for _, id := range got {
			seen[id] = true
		}
		if len(seen) != 6 {
			t.Fatalf("redriven: %v", got)
		}
		// Acking again reports the ids as unknown.
		m := acker.messages()[0]
		unknown, err := f.svc.Acknowledge(context.Background(), []string{m.AckID}, nil)
		if err != nil || len(unknown) != 1 {
			t.Fatalf("second ack: %v %v", unknown, err)
		}
		// An ack id the relay did not issue refuses the whole call.
		if _, err := f.svc.Acknowledge(context.Background(), []string{m.AckID, "garbage"}, nil); relay.ErrorCode(err) != relay.CodeInvalid {
			t.Fatalf("ack with garbage: %v", err)
		}
	})
}

// A member that comes back under its name gets its unacknowledged deliveries of every
// partition again at once, not after the ack deadline (an hour here): each partition reads
// its own pending entries first, even when another partition took the budget first, and all
// of them, page by page, even when they are more than its share of the budget.
func TestGroupMemberGetsItsPendingBackOnEveryPartition(t *testing.T) {
	backends(t, func(t *testing.T, url string) {
		f := newService(t, url, relay.Options{}, relay.SourceConfig{Name: "s", Partitions: 4})
		req := relay.SubscribeRequest{Sources: []string{"s"},
			Group: relay.GroupOptions{Name: "g", Consumer: "c1", AckDeadline: time.Hour, MaxOutstanding: 64}}
		first := started(t, f.svc, req, nil)
		want := ids("e", 40)
		for _, id := range want {
			f.publish(t, "s", id, "t", id) // keys spread the events over the 4 partitions
		}
		first.wait(t, len(want))
		first.stop() // nothing acknowledged
		// Back with a budget of 8 (2 per partition): the 40 come back page by page, as the
		// member acknowledges them.
		req.Group.MaxOutstanding = 8
		again := started(t, f.svc, req, func(m *relay.Message) error {
			if m.AckID != "" {
				_, err := f.svc.Acknowledge(context.Background(), []string{m.AckID}, nil)
				return err
			}
			return nil
		})
		got := again.wait(t, len(want))
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("redelivered %v, want %v", got, want)
		}
		partitions := map[int]bool{}
		for _, m := range again.messages() {
			partitions[m.Partition.Index] = true
			// Delivered once before the disconnect and once now, however many pages the
			// member read (paging must not count the later pages' entries again).
			if m.Attempt != 2 {
				t.Errorf("redelivery of %s is attempt %d, want 2", m.Entry.ID, m.Attempt)
			}
		}
		if len(partitions) != 4 {
			t.Errorf("redeliveries came from partitions %v, want all 4", partitions)
		}
	})
}

func TestGroupSharesWorkAndNack(t *testing.T) {
	backends(t, func(t *testing.T, url string) {
		f := newService(t, url, relay.Options{}, relay.SourceConfig{Name: "s"})
		ack := func(m *relay.Message) error {
			if m.Entry != nil {
				_, err := f.svc.Acknowledge(context.Background(), []string{m.AckID}, nil)
				return err
			}
			return nil
		}
		g := relay.GroupOptions{Name: "workers", AckDeadline: 10 * time.Second}
		ga, gb := g, g
		ga.Consumer, gb.Consumer = "a", "b"
		a := started(t, f.svc, relay.SubscribeRequest{Start: relay.StartEarliest, Group: ga}, ack)
		b := started(t, f.svc, relay.SubscribeRequest{Start: relay.StartEarliest, Group: gb}, ack)
		for _, id := range ids("w", 100) {
			f.publish(t, "s", id, "t", "")
		}
		deadline := time.Now().Add(15 * time.Second)
		for {
			na, nb := len(a.messages()), len(b.messages())
			if na+nb >= 100 {
				if na+nb != 100 {
					t.Fatalf("%d+%d deliveries for 100 events", na, nb)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d+%d deliveries", na, nb)
			}
			time.Sleep(20 * time.Millisecond)
		}
		a.stop()
		b.stop()

		// Nack: the delivery comes back with attempt 2.
		nacked := false
		n := subscribe(t, f.svc, relay.SubscribeRequest{Group: relay.GroupOptions{Name: "workers", Consumer: "n"}}, func(m *relay.Message) error {
			if m.Entry == nil {
				return nil
			}
			if !nacked {
				nacked = true
				unknown, err := f.svc.Nack(context.Background(), []string{m.AckID}, 100*time.Millisecond, nil)
				if err != nil || len(unknown) != 0 {
					return fmt.Errorf("nack: %v %v", unknown, err)
				}
				return nil
			}
			_, err := f.svc.Acknowledge(context.Background(), []string{m.AckID}, nil)
			return err
		})
		f.publish(t, "s", "nack-me", "t", "")
		got := n.wait(t, 2)
		for _, m := range n.messages() {
			t.Logf("attempt %d ack %s", m.Attempt, m.AckID)
		}
		if got[0] != "nack-me" || got[1] != "nack-me" || n.messages()[1].Attempt != 2 {
			t.Fatalf("got %v attempts %d", got, n.messages()[1].Attempt)
		}
	})
}

func TestCloseEndsStreamsUnavailable(t *testing.T) {
	backends(t, func(t *testing.T, url string) {
		f := newService(t, url, relay.Options{}, relay.SourceConfig{Name: "s"})
		tail := started(t, f.svc, relay.SubscribeRequest{}, nil)
		group := started(t, f.svc, relay.SubscribeRequest{Group: relay.GroupOptions{Name: "g"}}, nil)
		_ = f.svc.Close()
		for _, s := range []*sub{tail, group} {
			select {
			case <-s.done:
			case <-time.After(10 * time.Second):
				t.Fatal("stream did not end")
			}
			if relay.ErrorCode(s.err) != relay.CodeUnavailable {
				t.Fatalf("ended with %v", s.err)
			}
		}
	})
}

func TestSubscribeValidation(t *testing.T) {
	srv, err := embedded.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	f := newService(t, srv.URL(), relay.Options{}, relay.SourceConfig{Name: "s"})
	for _, tc := range []struct {
		name string
		req  relay.SubscribeRequest
		want relay.Code
	}{
		{"unknown source", relay.SubscribeRequest{Sources: []string{"nope"}}, relay.CodeNotFound},
		{"tiny heartbeat", relay.SubscribeRequest{Heartbeat: time.Microsecond}, relay.CodeInvalid},
		{"bad group", relay.SubscribeRequest{Group: relay.GroupOptions{Name: "bad name"}}, relay.CodeInvalid},
		{"bad deadline", relay.SubscribeRequest{Group: relay.GroupOptions{Name: "g", AckDeadline: time.Millisecond}}, relay.CodeInvalid},
		{"group + cursor", relay.SubscribeRequest{Group: relay.GroupOptions{Name: "g"}, After: &relay.Cursor{}}, relay.CodeInvalid},
		{"dlq cursor", relay.SubscribeRequest{After: &relay.Cursor{DeadLetters: true}}, relay.CodeInvalid},
		{"dead letters without a group", relay.SubscribeRequest{DeadLetters: true}, relay.CodeInvalid},
		{"dead letters with a consumer", relay.SubscribeRequest{DeadLetters: true, Group: relay.GroupOptions{Name: "g", Consumer: "c"}}, relay.CodeInvalid},
		{"another group's dlq cursor", relay.SubscribeRequest{DeadLetters: true, Group: relay.GroupOptions{Name: "g"}, After: &relay.Cursor{DeadLetters: true, Group: "h"}}, relay.CodeInvalid},
		{"stream cursor for dead letters", relay.SubscribeRequest{DeadLetters: true, Group: relay.GroupOptions{Name: "g"}, After: &relay.Cursor{}}, relay.CodeInvalid},
		{"bad outstanding", relay.SubscribeRequest{Group: relay.GroupOptions{Name: "g", MaxOutstanding: -1}}, relay.CodeInvalid},
	} {
		err := f.svc.Subscribe(context.Background(), tc.req, func(*relay.Message) error { return errors.New("unexpected message") })
		if c := relay.ErrorCode(err); c != tc.want {
			t.Errorf("%s: %v, want %s", tc.name, err, tc.want)
		}
	}
}

// TestDedupeWindowHonoured configures the shortest dedupe_window (1s): a redelivery inside it
// is answered duplicate and not stored, one after it is stored again. The wait is a
// condition (publish until stored), not a sleep; the only use of the clock is to tell
// whether the "inside" redelivery really was inside the window.
func TestDedupeWindowHonoured(t *testing.T) {
	backends(t, func(t *testing.T, url string) {
		const window = time.Second
		f := newService(t, url, relay.Options{}, relay.SourceConfig{Name: "w", DedupeWindow: window})
		ctx := context.Background()
		pub := func() *relay.IngestResult {
			t.Helper()
			res, err := f.svc.Publish(ctx, relay.PublishInput{Source: "w", ID: "evt_w", Type: "t", Data: []byte(`{"id":"evt_w"}`)})
			if err != nil {
				t.Fatal(err)
			}
			return res
		}
		stored := func() int {
			t.Helper()
			es, err := f.store.Range(ctx, relay.Partition{Source: "w"}, relay.ID{}, relay.MaxID, 100, false)
			if err != nil {
				t.Fatal(err)
			}
			return len(es)
		}
		start := time.Now()
		if res := pub(); res.Duplicate {
			t.Fatal("first delivery answered duplicate")
		}
		res := pub()
		if inside := time.Since(start) < window; inside && !res.Duplicate {
			t.Fatal("redelivery inside dedupe_window was stored again")
		}
		if res.Duplicate && stored() != 1 {
			t.Fatalf("a duplicate changed the stream: %d entries", stored())
		}
		deadline := time.Now().Add(30 * time.Second)
		for res.Duplicate {
			if time.Now().After(deadline) {
				t.Fatalf("redelivery still a duplicate 30s after a %s dedupe_window", window)
			}
			time.Sleep(50 * time.Millisecond) // polling interval, not synchronisation
			res = pub()
		}
		if n := stored(); n != 2 {
			t.Fatalf("after the window: %d entries, want 2", n)
		}
		if res := pub(); !res.Duplicate {
			t.Fatal("the redelivery stored after the window did not open a new window")
		}
	})
}

// reportsMaxDeleted is a store whose Info reports MaxDeleted as the id of the last trimmed
// entry, exactly, as Redis 7.2+ (and any store that records trimming) does.
type reportsMaxDeleted struct {
	relay.Store
	maxDeleted relay.ID
}

func (s reportsMaxDeleted) Info(ctx context.Context, p relay.Partition) (relay.StreamInfo, error) {
	info, err := s.Store.Info(ctx, p)
	info.MaxDeleted = s.maxDeleted
	return info, err
}

// TestCursorAtLastTrimmedEntry is the OUT_OF_RANGE boundary: a cursor exactly at the last
// trimmed entry lost nothing (everything after it is retained) and resumes; a cursor one
// entry older lost the entry after it and is OUT_OF_RANGE. The service reads through a store
// reporting MaxDeleted exactly (as Redis 7.2 does); on Redis the entries are really deleted
// first.
func TestCursorAtLastTrimmedEntry(t *testing.T) {
	backends(t, func(t *testing.T, url string) {
		f := newService(t, url, relay.Options{}, relay.SourceConfig{Name: "c"})
		for _, id := range []string{"e0", "e1", "e2"} {
			f.publish(t, "c", id, "t", "")
		}
		all := subscribe(t, f.svc, relay.SubscribeRequest{Start: relay.StartEarliest}, nil)
		all.wait(t, 3)
		ms := all.messages()
		all.stop()
		p := relay.Partition{Source: "c"}
		if !strings.HasSuffix(t.Name(), "/embedded") { // the embedded server cannot XDEL
			opt, err := redis.ParseURL(url)
			if err != nil {
				t.Fatal(err)
			}
			rdb := redis.NewClient(opt)
			defer rdb.Close()
			if err := rdb.XDel(context.Background(), redisstore.StreamKey(p), ms[0].Entry.ID.String(), ms[1].Entry.ID.String()).Err(); err != nil {
				t.Fatal(err)
			}
			// Redis 7.2 records e1 exactly; 7.0 records only XDEL, and the store then falls back
			// to "everything before the first retained entry may be gone".
			info, err := f.store.Info(context.Background(), p)
			if err != nil || info.MaxDeleted.Less(ms[1].Entry.ID) || !info.MaxDeleted.Less(ms[2].Entry.ID) {
				t.Fatalf("after XDEL of e0 and e1: MaxDeleted %s (%v), want from e1 %s to before e2 %s", info.MaxDeleted, err, ms[1].Entry.ID, ms[2].Entry.ID)
			}
		}
		// The service sees a store that reports the last trimmed entry exactly.
		svc := f.over(t, reportsMaxDeleted{f.store, ms[1].Entry.ID}, "c")
		cursor := func(m relay.Message) *relay.Cursor {
			c, err := relay.DecodeCursor(m.Cursor)
			if err != nil {
				t.Fatal(err)
			}
			return &c
		}
		// At the last trimmed entry (e1): resumes with e2.
		s := subscribe(t, svc, relay.SubscribeRequest{After: cursor(ms[1])}, nil)
		if got := s.wait(t, 1); !slices.Equal(got, []string{"e2"}) {
			t.Fatalf("after the last trimmed entry: got %v, want [e2]", got)
		}
		// Before it (e0): e1 is gone, OUT_OF_RANGE.
		err := svc.Subscribe(context.Background(), relay.SubscribeRequest{After: cursor(ms[0])}, func(*relay.Message) error { return nil })
		if relay.ErrorCode(err) != relay.CodeOutOfRange {
			t.Fatalf("cursor before the last trimmed entry: got %v, want out_of_range", err)
		}
	})
}

// ListEvents with Types lists only matching events, newest or oldest first, over several
// partitions and pages, reading on past pages of events left out.
func TestListEventsTypes(t *testing.T) {
	backends(t, func(t *testing.T, url string) {
		f := newService(t, url, relay.Options{}, relay.SourceConfig{Name: "s", Partitions: 3, PartitionKey: "id"})
		// 30 events: every tenth is invoice.paid, the rest order.created.
		var want []string
		for i := range 30 {
			id, typ := fmt.Sprintf("e%02d", i), "order.created"
			if i%10 == 3 {
				typ = "invoice.paid"
				want = append(want, id)
			}
			f.publish(t, "s", id, typ, id)
		}
		for _, newest := range []bool{false, true} {
			var got []string
			token, pages := "", 0
			for {
				items, next, err := f.svc.ListEvents(context.Background(), relay.ListQuery{Source: "s", PageSize: 2, PageToken: token,
					NewestFirst: newest, Types: relay.TypeFilter{"invoice.*"}})
				if err != nil {
					t.Fatal(err)
				}
				for _, it := range items {
					ev, err := relay.DecodeEvent(it.Entry.Event)
					if err != nil {
						t.Fatal(err)
					}
					got = append(got, ev.Id)
				}
				pages++
				if token = next; token == "" || pages > 10 {
					break
				}
			}
			w := slices.Clone(want) // e03 e13 e23
			if newest {
				slices.Reverse(w)
			}
			if !slices.Equal(got, w) {
				t.Errorf("newest first %v: listed %v, want %v", newest, got, w)
			}
		}
		_, _, err := f.svc.ListEvents(context.Background(), relay.ListQuery{Source: "s", Types: make(relay.TypeFilter, 101)})
		if relay.ErrorCode(err) != relay.CodeInvalid {
			t.Errorf("101 type filters: %v, want invalid", err)
		}
	})
}

// countingStore counts the store calls a group subscription makes at a trickle. While
// failReads is set, its blocking reads fail.
type countingStore struct {
	relay.Store
	readNew, reads, infos, claims atomic.Int64
	acks, ackReads                atomic.Int64
	failReads                     atomic.Bool
	failed                        atomic.Int64 // reads failed while failReads was set
}

func (s *countingStore) ReadGroup(ctx context.Context, p relay.Partition, group, consumer string, pending bool, count int, block time.Duration) ([]relay.Entry, error) {
	if !pending {
		s.readNew.Add(1)
	}
	return s.Store.ReadGroup(ctx, p, group, consumer, pending, count, block)
}

func (s *countingStore) Read(ctx context.Context, after map[relay.Partition]relay.ID, count int, block time.Duration) ([]relay.ReadResult, error) {
	s.reads.Add(1)
	if s.failReads.Load() {
		s.failed.Add(1)
		return nil, errors.New("connection refused")
	}
	return s.Store.Read(ctx, after, count, block)
}

func (s *countingStore) Ack(ctx context.Context, p relay.Partition, group string, ids []relay.ID, deliveries []int64) ([]bool, error) {
	s.acks.Add(1)
	return s.Store.Ack(ctx, p, group, ids, deliveries)
}

func (s *countingStore) AckReadGroup(ctx context.Context, p relay.Partition, group, consumer string, ack []relay.ID, deliveries []int64, count int) ([]bool, []relay.Entry, error) {
	s.ackReads.Add(1)
	return s.Store.AckReadGroup(ctx, p, group, consumer, ack, deliveries, count)
}

func (s *countingStore) Info(ctx context.Context, p relay.Partition) (relay.StreamInfo, error) {
	s.infos.Add(1)
	return s.Store.Info(ctx, p)
}

func (s *countingStore) ClaimDue(ctx context.Context, p relay.Partition, group, consumer string, minIdle time.Duration, count int, now time.Time) ([]relay.Entry, time.Time, error) {
	s.claims.Add(1)
	return s.Store.ClaimDue(ctx, p, group, consumer, minIdle, count, now)
}

// countedMember starts a group member of source "s" on a second service over a countingStore.
func countedMember(t *testing.T, url string) (*fixture, *countingStore, *relay.Service, *sub) {
	t.Helper()
	f := newService(t, url, relay.Options{}, relay.SourceConfig{Name: "s"})
	st := &countingStore{Store: f.store}
	svc := f.over(t, st, "s")
	g := started(t, svc, relay.SubscribeRequest{Group: relay.GroupOptions{Name: "g", Consumer: "c", AckDeadline: time.Hour}}, nil)
	return f, st, svc, g
}

// At a trickle (each event published once the previous one was delivered), a group member
// reads the group once per event, and the partition's shared reader reads the stream once per
// event: a read that found fewer entries than it asked for found everything there was, so
// reading again before the next wake-up, or looking up the stream's end after finding one,
// would find nothing new. Claims on their timer may add one read each.
func TestGroupTrickleReadsOncePerEvent(t *testing.T) {
	backends(t, func(t *testing.T, url string) {
		f, st, _, g := countedMember(t, url)
		f.publish(t, "s", "warm-up", "t", "")
		g.wait(t, 1)
		st.readNew.Store(0)
		st.reads.Store(0)
		st.infos.Store(0)
		st.claims.Store(0)
		const events = 40
		began := time.Now()
		for i, id := range ids("e", events) {
			f.publish(t, "s", id, "t", "")
			g.wait(t, i+2)
		}
		// Slack for a slow machine: a claim on its timer may read once more, and once more
		// again when an event arrives just then; the shared read times out every 2s
		// (Options.ReadBlock) and reads again.
		claims := st.claims.Load()
		if n, most := st.readNew.Load(), events+2*claims+2; n > most {
			t.Errorf("%d group reads for %d events (%d claims), want at most %d", n, events, claims, most)
		}
		if n, most := st.reads.Load(), int64(events+2)+int64(time.Since(began)/(2*time.Second)); n > most {
			t.Errorf("%d shared reads for %d events, want at most %d", n, events, most)
		}
		// With only group members following the partition, its reader looks the stream's end
		// up only after a read that found two entries, which one at a time happens only when it
		// lags (a slow machine): a few, not one per event.
		if n := st.infos.Load(); n > events/4 {
			t.Errorf("%d lookups of the stream's end for %d events one at a time, want at most %d", n, events, events/4)
		}
	})
}

// One blocking read per partition serves the tail subscribers and the group members of a
// process alike: at a trickle, one read per event wakes both.
func TestTailAndGroupShareOneRead(t *testing.T) {
	backends(t, func(t *testing.T, url string) {
		f, st, svc, g := countedMember(t, url)
		tail := started(t, svc, relay.SubscribeRequest{}, nil)
		f.publish(t, "s", "warm-up", "t", "")
		g.wait(t, 1)
		tail.wait(t, 1)
		st.reads.Store(0)
		const events = 40
		began := time.Now()
		want := ids("e", events)
		for i, id := range want {
			f.publish(t, "s", id, "t", "")
			g.wait(t, i+2)
			tail.wait(t, i+2)
		}
		if n, most := st.reads.Load(), int64(events+2)+int64(time.Since(began)/(2*time.Second)); n > most {
			t.Errorf("%d blocking reads for %d events to a tail subscriber and a group member, want at most %d (one shared read per event)", n, events, most)
		}
		for name, s := range map[string]*sub{"group": g, "tail": tail} {
			if got := s.wait(t, events+1)[1:]; !slices.Equal(got, want) {
				t.Errorf("%s received %v, want %v", name, got, want)
			}
		}
	})
}

// A group member waiting for new entries keeps being woken after the shared reader failed:
// a new reader takes over (a second later), with no tail subscriber to start one.
func TestGroupWakeUpsSurviveAFailedRead(t *testing.T) {
	backends(t, func(t *testing.T, url string) {
		f, st, _, g := countedMember(t, url)
		st.failReads.Store(true)
		f.publish(t, "s", "during", "t", "") // the failing reader misses it; the member's claim timer finds it
		g.wait(t, 1)
		for deadline := time.Now().Add(15 * time.Second); st.failed.Load() == 0; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("no failed read within 15s")
			}
		}
		failed := st.reads.Load()
		st.failReads.Store(false)
		// The new reader reads again: without it, reads stay where the failure left them.
		for deadline := time.Now().Add(15 * time.Second); st.reads.Load() <= failed; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%d blocking reads, none since the failed one within 15s", st.reads.Load())
			}
		}
		f.publish(t, "s", "after", "t", "")
		if got := g.wait(t, 2); !slices.Equal(got, []string{"during", "after"}) {
			t.Errorf("received %v, want [during after]", got)
		}
	})
}

// pendingOf returns how many deliveries of group g on s:0 consumer c holds.
func pendingOf(t *testing.T, st relay.Store, c string) int64 {
	t.Helper()
	n, err := st.PendingCount(context.Background(), relay.Partition{Source: "s"}, "g", c)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// eventually fails t unless cond holds within 15s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// AcknowledgeLater writes an acknowledgement with the subscription's next read of the
// partition: at a trickle, no acknowledgement round trip of its own. What is still queued
// when the subscription ends is written then.
func TestAcknowledgeLaterRidesOnTheNextRead(t *testing.T) {
	backends(t, func(t *testing.T, url string) {
		f := newService(t, url, relay.Options{}, relay.SourceConfig{Name: "s"})
		st := &countingStore{Store: f.store}
		svc := f.over(t, st, "s", relay.Options{AckDelay: time.Hour})
		later := func(m *relay.Message) error {
			if m.AckID != "" {
				return svc.AcknowledgeLater(context.Background(), []string{m.AckID})
			}
			return nil
		}
		g := started(t, svc, relay.SubscribeRequest{Group: relay.GroupOptions{Name: "g", Consumer: "c", AckDeadline: time.Hour}}, later)
		const events = 20
		for i, id := range ids("e", events) {
			f.publish(t, "s", id, "t", "")
			g.wait(t, i+1)
		}
		if n := st.acks.Load(); n != 0 {
			t.Errorf("%d acknowledgement round trips of their own for %d events at a trickle, want 0", n, events)
		}
		// Each event's read carried the previous one's acknowledgement.
		if n := st.ackReads.Load(); n < events-1 {
			t.Errorf("%d reads carried acknowledgements for %d events, want at least %d", n, events, events-1)
		}
		if n := pendingOf(t, f.store, "c"); n > 1 {
			t.Errorf("%d deliveries pending after %d acknowledged, want at most the last one", n, events)
		}
		g.stop()
		if n := pendingOf(t, f.store, "c"); n != 0 {
			t.Errorf("%d deliveries pending once the subscription ended, want 0 (the queued acknowledgement is written at its end)", n)
		}
		if err := svc.AcknowledgeLater(context.Background(), []string{"garbage"}); relay.ErrorCode(err) != relay.CodeInvalid {
			t.Errorf("AcknowledgeLater of a malformed ack id: %v, want invalid", err)
		}
	})
}

// An acknowledgement that no read comes for is written after Options.AckDelay; one whose
// subscription waits for flow-control budget is written before the wait; one of a delivery
// not in flight on this process is written at once.
func TestAcknowledgeLaterWithoutARead(t *testing.T) {
	backends(t, func(t *testing.T, url string) {
		f := newService(t, url, relay.Options{}, relay.SourceConfig{Name: "s"})
		t.Run("delay", func(t *testing.T) {
			// AckDelay is far below the subscription's polling read (every 200ms with this
			// ack deadline), which would otherwise carry it.
			st := &countingStore{Store: f.store}
			svc := f.over(t, st, "s", relay.Options{AckDelay: 5 * time.Millisecond})
			g := started(t, svc, relay.SubscribeRequest{Group: relay.GroupOptions{Name: "g", Consumer: "d", AckDeadline: time.Hour}}, func(m *relay.Message) error {
				if m.AckID != "" {
					return svc.AcknowledgeLater(context.Background(), []string{m.AckID})
				}
				return nil
			})
			f.publish(t, "s", "only", "t", "")
			g.wait(t, 1)
			eventually(t, "the acknowledgement written with no further event", func() bool { return pendingOf(t, f.store, "d") == 0 })
			if n := st.acks.Load(); n != 1 {
				t.Errorf("%d acknowledgement round trips of their own, want 1 (written on its own after AckDelay)", n)
			}
			g.stop()
		})
		t.Run("budget", func(t *testing.T) {
			svc := f.over(t, f.store, "s", relay.Options{AckDelay: time.Hour})
			g := started(t, svc, relay.SubscribeRequest{Group: relay.GroupOptions{Name: "g", Consumer: "b", AckDeadline: time.Hour, MaxOutstanding: 1}}, func(m *relay.Message) error {
				if m.AckID != "" {
					return svc.AcknowledgeLater(context.Background(), []string{m.AckID})
				}
				return nil
			})
			want := ids("b", 5)
			for _, id := range want {
				f.publish(t, "s", id, "t", "")
			}
			if got := g.wait(t, 5); !slices.Equal(got, want) {
				t.Errorf("received %v, want %v", got, want)
			}
			g.stop()
		})
		t.Run("not in flight here", func(t *testing.T) {
			svc := f.over(t, f.store, "s", relay.Options{AckDelay: time.Hour})
			g := started(t, svc, relay.SubscribeRequest{Group: relay.GroupOptions{Name: "g", Consumer: "n", AckDeadline: time.Hour}}, nil)
			f.publish(t, "s", "elsewhere", "t", "")
			g.wait(t, 1)
			g.stop() // the delivery stays pending for consumer n
			if n := pendingOf(t, f.store, "n"); n != 1 {
				t.Fatalf("%d pending after the subscription ended unacknowledged, want 1", n)
			}
			if err := svc.AcknowledgeLater(context.Background(), []string{g.messages()[0].AckID}); err != nil {
				t.Fatal(err)
			}
			if n := pendingOf(t, f.store, "n"); n != 0 {
				t.Errorf("%d pending right after AcknowledgeLater with no subscription to carry it, want 0", n)
			}
		})
	})
}

// The cursor of a found or listed event resumes after it in every partition of its source:
// a subscription from it gets exactly the events appended after it. Before, the cursor held
// the event's own partition only, and the others started at the subscription's start: the
// events that followed in them were skipped (or, from the earliest, all repeated).
func TestEventCursorCoversEveryPartition(t *testing.T) {
	backends(t, func(t *testing.T, url string) {
		f := newService(t, url, relay.Options{}, relay.SourceConfig{Name: "s", Partitions: 4})
		for _, id := range ids("before", 10) {
			f.publish(t, "s", id, "t", id) // keys spread the events over the 4 partitions
		}
		// Stream ids order a source's partitions to the millisecond: the event and those
		// around it each get milliseconds of their own, so no repeat is allowed below.
		time.Sleep(3 * time.Millisecond)
		f.publish(t, "s", "x", "t", "x")
		time.Sleep(3 * time.Millisecond)
		after := ids("after", 20)
		for _, id := range after {
			f.publish(t, "s", id, "t", id)
		}
		found, err := f.svc.FindEvent(context.Background(), "s", "x")
		if err != nil {
			t.Fatal(err)
		}
		items, _, err := f.svc.ListEvents(context.Background(), relay.ListQuery{Source: "s", PageSize: 100})
		if err != nil {
			t.Fatal(err)
		}
		listed := ""
		for _, it := range items {
			if ev, _ := relay.DecodeEvent(it.Entry.Event); ev.GetId() == "x" {
				listed = it.Cursor
			}
		}
		for name, cursor := range map[string]string{"FindEvent": found.Cursor, "ListEvents": listed} {
			t.Run(name, func(t *testing.T) {
				cur, err := relay.DecodeCursor(cursor)
				if err != nil {
					t.Fatalf("cursor %q: %v", cursor, err)
				}
				if len(cur.Positions) != 4 {
					t.Fatalf("cursor covers %d partitions, want 4", len(cur.Positions))
				}
				s := subscribe(t, f.svc, relay.SubscribeRequest{Sources: []string{"s"}, After: &cur}, nil)
				got := s.wait(t, len(after))
				slices.Sort(got)
				if !slices.Equal(got, after) {
					t.Fatalf("resumed after x: %v, want %v", got, after)
				}
			})
		}
	})
}

// An ack id settles the delivery it came with, not a later redelivery of the event: member x
// lets its deadline pass, the event goes to y, and x's ack id, acknowledged or nacked, is
// then unknown and leaves y's delivery alone; y's own acknowledgement settles it. Before, every
// delivery of an event to a group carried the same ack id.
func TestStaleAckIDLeavesTheRedelivery(t *testing.T) {
	backends(t, func(t *testing.T, url string) {
		f := newService(t, url, relay.Options{}, relay.SourceConfig{Name: "s"})
		opts := relay.GroupOptions{Name: "g", Consumer: "x", AckDeadline: 200 * time.Millisecond, MaxAttempts: 10}
		x := started(t, f.svc, relay.SubscribeRequest{Sources: []string{"s"}, Group: opts}, nil)
		f.publish(t, "s", "e1", "t", "")
		x.wait(t, 1)
		x.stop() // x never settles its delivery
		x.mu.Lock()
		first := x.msgs[0]
		x.mu.Unlock()
		opts.Consumer = "y"
		y := started(t, f.svc, relay.SubscribeRequest{Sources: []string{"s"}, Group: opts}, nil)
		y.wait(t, 1) // redelivered to y once x's deadline passed
		y.mu.Lock()
		second := y.msgs[0]
		y.mu.Unlock()
		if second.Attempt != first.Attempt+1 || second.AckID == first.AckID {
			t.Fatalf("redelivery: attempt %d, ack id same as the first's: %v; want attempt %d and a new ack id",
				second.Attempt, second.AckID == first.AckID, first.Attempt+1)
		}
		ctx := context.Background()
		if unknown, err := f.svc.Nack(ctx, []string{first.AckID}, 0, nil); err != nil || len(unknown) != 1 {
			t.Fatalf("x's nack of its expired delivery: unknown %v, %v; want it unknown", unknown, err)
		}
		if unknown, err := f.svc.Acknowledge(ctx, []string{first.AckID}, nil); err != nil || len(unknown) != 1 {
			t.Fatalf("x's ack of its expired delivery: unknown %v, %v; want it unknown", unknown, err)
		}
		if unknown, err := f.svc.Acknowledge(ctx, []string{second.AckID}, nil); err != nil || len(unknown) != 0 {
			t.Fatalf("y's ack of its delivery: unknown %v, %v; want it settled", unknown, err)
		}
	})
}

// A member of a group over several sources takes the group's settings from the first source
// that has them, and the group is recorded with those on the others; settings that differ
// between two sources refuse the member, whichever source comes first. Before, a member
// omitting every setting was refused (the group was recorded with defaults on the new source
// first), and a first source without a type filter hid the one of the second.
func TestGroupSettingsAcrossSources(t *testing.T) {
	backends(t, func(t *testing.T, url string) {
		f := newService(t, url, relay.Options{}, relay.SourceConfig{Name: "a"}, relay.SourceConfig{Name: "b"})
		member := func(sources []string, group, consumer string, types ...string) *sub {
			return subscribe(t, f.svc, relay.SubscribeRequest{Sources: sources, Types: types, Heartbeat: relay.MinHeartbeat,
				Group: relay.GroupOptions{Name: group, Consumer: consumer}}, nil)
		}
		refusal := func(s *sub) error {
			select {
			case <-s.done:
			case <-s.ready:
				s.stop()
				return nil
			case <-time.After(15 * time.Second):
				t.Fatal("subscription neither refused nor started")
			}
			return s.err
		}
		// G reads type x on a; a member of a and b that omits types takes them on both.
		if err := refusal(member([]string{"a"}, "G", "m1", "x")); err != nil {
			t.Fatalf("first member: %v", err)
		}
		both := started(t, f.svc, relay.SubscribeRequest{Sources: []string{"a", "b"}, Group: relay.GroupOptions{Name: "G", Consumer: "m2"}}, nil)
		f.publish(t, "b", "b-y", "y", "")
		f.publish(t, "b", "b-x", "x", "")
		if got := both.wait(t, 1); !slices.Equal(got, []string{"b-x"}) {
			t.Fatalf("member of a and b got %v, want [b-x] (the group's types on b too)", got)
		}
		both.stop()
		// H reads every type on b and type x on a: a member of both is refused, either way round.
		if err := refusal(member([]string{"b"}, "H", "m1")); err != nil {
			t.Fatal(err)
		}
		if err := refusal(member([]string{"a"}, "H", "m2", "x")); err != nil {
			t.Fatal(err)
		}
		for _, order := range [][]string{{"b", "a"}, {"a", "b"}} {
			err := refusal(member(order, "H", "m3"))
			if relay.ErrorCode(err) != relay.CodeFailedPrecondition || !strings.Contains(relay.ErrorMessage(err), "other settings on source") {
				t.Fatalf("member of %v with settings differing between them: %v, want FAILED_PRECONDITION naming both", order, err)
			}
		}
		// K reads every type on b; a member of a and b asking for type x is refused, and K is
		// not created on a (it would be, with type x, for good).
		if err := refusal(member([]string{"b"}, "K", "m1")); err != nil {
			t.Fatal(err)
		}
		if err := refusal(member([]string{"a", "b"}, "K", "m2", "x")); relay.ErrorCode(err) != relay.CodeFailedPrecondition {
			t.Fatalf("member of a and b asking for type x: %v, want FAILED_PRECONDITION", err)
		}
		if _, ok, err := f.store.GroupSettings(context.Background(), "a", "K"); err != nil || ok {
			t.Fatalf("K recorded on a after a refused member: %v, %v", ok, err)
		}
	})
}

// ListEvents pages end before MaxListPageBytes of events (a page of large events is short,
// with a next page token), and reading partitions a chunk at a time still lists every event
// once, oldest first, across pages.
func TestListEventsPageBounds(t *testing.T) {
	backends(t, func(t *testing.T, url string) {
		f := newService(t, url, relay.Options{}, relay.SourceConfig{Name: "big", Partitions: 2}, relay.SourceConfig{Name: "small", Partitions: 3})
		ctx := context.Background()
		pad := strings.Repeat("x", 700<<10)
		for i := range 12 {
			id := fmt.Sprintf("big%03d", i)
			if _, err := f.svc.Publish(ctx, relay.PublishInput{Source: "big", ID: id, Type: "t", PartitionKey: id, Data: []byte(`{"pad":"` + pad + `"}`)}); err != nil {
				t.Fatal(err)
			}
		}
		small := ids("small", 150)
		for _, id := range small {
			f.publish(t, "small", id, "t", id)
		}
		for _, tc := range []struct {
			source   string
			pageSize int
			want     []string
			maxPage  int
		}{
			{"big", 100, ids("big", 12), 4}, // 4 x 700 KiB fit in 3 MiB, 5 do not
			{"small", 200, small, 150},
			{"small", 40, small, 40},
		} {
			var got []string
			var order []relay.ID
			token := ""
			for pages := 0; ; pages++ {
				if pages > 50 {
					t.Fatalf("%s: more than 50 pages", tc.source)
				}
				items, next, err := f.svc.ListEvents(ctx, relay.ListQuery{Source: tc.source, PageSize: tc.pageSize, PageToken: token})
				if err != nil {
					t.Fatal(err)
				}
				if len(items) > tc.maxPage || len(items) == 0 && next != "" {
					t.Fatalf("%s page %d: %d events (next %q), want 1 to %d", tc.source, pages, len(items), next, tc.maxPage)
				}
				for _, it := range items {
					ev, _ := relay.DecodeEvent(it.Entry.Event)
					got, order = append(got, ev.GetId()), append(order, it.Entry.ID)
				}
				if token = next; token == "" {
					break
				}
			}
			if !slices.Equal(slices.Sorted(slices.Values(got)), tc.want) {
				t.Fatalf("%s by pages of %d: listed %d events %v, want each of the %d once", tc.source, tc.pageSize, len(got), got, len(tc.want))
			}
			if !slices.IsSortedFunc(order, func(a, b relay.ID) int { return cmpID(a, b) }) {
				t.Fatalf("%s by pages of %d: not oldest first by stream id: %v", tc.source, tc.pageSize, order)
			}
		}
	})
}

func cmpID(a, b relay.ID) int {
	switch {
	case a.Less(b):
		return -1
	case b.Less(a):
		return 1
	}
	return 0
}

// firstMessage is the first delivery s received.
func (s *sub) firstMessage(t *testing.T) relay.Message {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.msgs) == 0 {
		t.Fatal("no delivery")
	}
	return s.msgs[0]
}

// A consumer that comes back under its name while one of its deliveries is held (its deadline
// extended) gets it back neither as a delivery nor counted as one: the ack id of the delivery
// it is working on still settles it. Before, re-reading its pending entries counted a
// delivery of the held one too, which expired that ack id.
func TestHeldDeliveryKeepsItsAckID(t *testing.T) {
	backends(t, func(t *testing.T, url string) {
		f := newService(t, url, relay.Options{}, relay.SourceConfig{Name: "s"})
		ctx := context.Background()
		req := relay.SubscribeRequest{Sources: []string{"s"}, Group: relay.GroupOptions{Name: "g", Consumer: "c", AckDeadline: 10 * time.Second}}
		first := started(t, f.svc, req, nil)
		f.publish(t, "s", "e1", "t", "")
		first.wait(t, 1)
		ack := first.firstMessage(t).AckID
		if unknown, err := f.svc.ModifyAckDeadline(ctx, []string{ack}, time.Minute, nil); err != nil || len(unknown) != 0 {
			t.Fatalf("extend: unknown %v, %v", unknown, err)
		}
		first.stop()
		again := started(t, f.svc, req, nil) // its first heartbeat: its pending entries were read
		f.publish(t, "s", "e2", "t", "")
		if got := again.wait(t, 1); !slices.Equal(got, []string{"e2"}) {
			t.Fatalf("the consumer back got %v, want [e2] (e1 is held)", got)
		}
		if unknown, err := f.svc.Acknowledge(ctx, []string{ack}, nil); err != nil || len(unknown) != 0 {
			t.Fatalf("ack of the held delivery after the consumer came back: unknown %v, %v; want settled", unknown, err)
		}
	})
}

// AcknowledgeLater (a push destination's acknowledgement, written with the next read) and
// Reject (its dead-lettering) of an expired delivery leave the redelivery another member holds
// alone, as Acknowledge does.
func TestAcknowledgeLaterOfAnExpiredDelivery(t *testing.T) {
	backends(t, func(t *testing.T, url string) {
		f := newService(t, url, relay.Options{AckDelay: 5 * time.Millisecond}, relay.SourceConfig{Name: "s"})
		ctx := context.Background()
		// a's budget of one is spent on e1, which it keeps in flight: it claims nothing more, so
		// b claims e1 after the deadline.
		a := started(t, f.svc, relay.SubscribeRequest{Sources: []string{"s"}, Group: relay.GroupOptions{Name: "g", Consumer: "a", AckDeadline: 200 * time.Millisecond, MaxOutstanding: 1}}, nil)
		f.publish(t, "s", "e1", "t", "")
		a.wait(t, 1)
		stale := a.firstMessage(t).AckID
		b := started(t, f.svc, relay.SubscribeRequest{Sources: []string{"s"}, Group: relay.GroupOptions{Name: "g", Consumer: "b"}}, nil)
		b.wait(t, 1)
		current := b.firstMessage(t).AckID
		if unknown, err := f.svc.Reject(ctx, []string{stale}, 3, nil); err != nil || len(unknown) != 1 {
			t.Fatalf("Reject of the expired delivery: unknown %v, %v; want it unknown (not dead-lettered)", unknown, err)
		}
		if err := f.svc.AcknowledgeLater(ctx, []string{stale}); err != nil {
			t.Fatal(err)
		}
		a.stop() // writes what a had queued
		if unknown, err := f.svc.Acknowledge(ctx, []string{current}, nil); err != nil || len(unknown) != 0 {
			t.Fatalf("b's ack of its delivery after a's expired AcknowledgeLater: unknown %v, %v; want settled", unknown, err)
		}
	})
}
