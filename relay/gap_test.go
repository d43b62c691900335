package relay_test

// Tests of the live-stream promises of Subscribe (issue 12 items 1, 4 and 8) through
// relay.Service on the embedded server and a real redis-server: no silent gap when retention
// trims entries under a subscription, heartbeats on filtered streams, and a slow subscriber
// cut at once with the cursor of its last message.
//
// The gap tests hold the store calls of one path (the replay's history reads or the shared
// tail reader's blocking reads) at a gate, trim the stream meanwhile, then let the call
// through: what the subscriber gets is then exactly determined.

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eventrelay/eventrelay/relay"
	"github.com/eventrelay/eventrelay/relay/redisstore"
	"github.com/redis/go-redis/v9"
)

// gate holds the calls of one store method once armed, until released.
type gate struct {
	mu      sync.Mutex
	armed   bool
	passes  int           // calls that still pass once armed
	held    chan struct{} // closed when a call is being held
	heldSet bool
	open    chan struct{} // closed to let the held calls through
	once    sync.Once
}

func newGate() *gate { return &gate{held: make(chan struct{}), open: make(chan struct{})} }

// armAfter lets n more calls through, then holds the next ones.
func (g *gate) armAfter(n int) {
	g.mu.Lock()
	g.armed, g.passes = true, n
	g.mu.Unlock()
}

// release lets the held calls (and all later ones) through.
func (g *gate) release() { g.once.Do(func() { close(g.open) }) }

// pass blocks an armed call until the gate opens.
func (g *gate) pass(ctx context.Context) error {
	g.mu.Lock()
	hold := g.armed && g.passes == 0
	if g.armed && g.passes > 0 {
		g.passes--
	}
	if hold && !g.heldSet {
		g.heldSet = true
		close(g.held)
	}
	g.mu.Unlock()
	if !hold {
		return nil
	}
	select {
	case <-g.open:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// waitHeld waits until a call is held.
func (g *gate) waitHeld(t *testing.T) {
	t.Helper()
	select {
	case <-g.held:
	case <-time.After(15 * time.Second):
		t.Fatal("no store call reached the gate")
	}
}

// gatedStore holds the history reads (Range) and the shared reader's blocking reads at their
// gates.
type gatedStore struct {
	relay.Store
	ranges, reads *gate
}

func (s *gatedStore) Range(ctx context.Context, p relay.Partition, start, end relay.ID, count int, reverse bool) ([]relay.Entry, error) {
	if err := s.ranges.pass(ctx); err != nil {
		return nil, err
	}
	return s.Store.Range(ctx, p, start, end, count, reverse)
}

func (s *gatedStore) Read(ctx context.Context, after map[relay.Partition]relay.ID, count int, block time.Duration) ([]relay.ReadResult, error) {
	if block > 0 {
		if err := s.reads.pass(ctx); err != nil {
			return nil, err
		}
	}
	return s.Store.Read(ctx, after, count, block)
}

type gapFixture struct {
	*fixture
	gated *gatedStore
	rdb   redis.UniversalClient
	p     relay.Partition
}

// newGapService is newService over a gatedStore, with one source "s" capped at maxLen
// (0: no cap), on an emptied database.
func newGapService(t *testing.T, url string, opts relay.Options, maxLen int64) *gapFixture {
	t.Helper()
	st, err := redisstore.Open(url, false, "", redisstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Client().FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	if opts.ReadBlock == 0 {
		opts.ReadBlock = 200 * time.Millisecond // the shared reader comes back to its gate soon
	}
	g := &gatedStore{Store: st, ranges: newGate(), reads: newGate()}
	c := relay.SourceConfig{Name: "s", MaxLen: maxLen}
	c.SetDefaults()
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	svc, err := relay.NewService(g, []*relay.Source{{Config: c, Verifier: acceptAll{}}}, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		g.ranges.release()
		g.reads.release()
		_ = svc.Close()
		_ = st.Close()
	})
	return &gapFixture{fixture: &fixture{svc: svc, store: st}, gated: g, rdb: st.Client(), p: relay.Partition{Source: "s"}}
}

// oldest reads the oldest retained entry straight from Redis: its id and event id.
func (f *gapFixture) oldest(t *testing.T) (relay.ID, string) {
	t.Helper()
	msgs, err := f.rdb.XRangeN(context.Background(), redisstore.StreamKey(f.p), "-", "+", 1).Result()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("XRANGE: %v %v", msgs, err)
	}
	id, err := relay.ParseID(msgs[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := msgs[0].Values["e"].(string)
	ev, err := relay.DecodeEvent([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return id, ev.Id
}

// entryID returns the stream id of event id, straight from Redis.
func (f *gapFixture) entryID(t *testing.T, eventID string) relay.ID {
	t.Helper()
	msgs, err := f.rdb.XRange(context.Background(), redisstore.StreamKey(f.p), "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		s, _ := m.Values["e"].(string)
		if ev, err := relay.DecodeEvent([]byte(s)); err == nil && ev.Id == eventID {
			id, err := relay.ParseID(m.ID)
			if err != nil {
				t.Fatal(err)
			}
			return id
		}
	}
	t.Fatalf("event %s is not in the stream", eventID)
	return relay.ID{}
}

// trimBefore removes every entry before id exactly (XTRIM MINID =), as an operator or an
// exact retention would.
func (f *gapFixture) trimBefore(t *testing.T, id relay.ID) {
	t.Helper()
	if err := f.rdb.XTrimMinID(context.Background(), redisstore.StreamKey(f.p), id.String()).Err(); err != nil {
		t.Fatal(err)
	}
}

// publishAll publishes the given event ids to "s" in order.
func (f *gapFixture) publishAll(t *testing.T, ids []string) {
	t.Helper()
	for _, id := range ids {
		f.publish(t, "s", id, "t", "")
	}
}

// embeddedBackend reports whether backends runs t on the embedded server.
func embeddedBackend(t *testing.T) bool { return strings.HasSuffix(t.Name(), "/embedded") }

// end waits for the subscription to end and returns its error.
func (s *sub) end(t *testing.T) error {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(15 * time.Second):
		t.Fatal("the subscription did not end")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// deliveredIDs returns the event ids delivered so far.
func (s *sub) deliveredIDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.ids...)
}

// wantOutOfRange checks that err is OUT_OF_RANGE naming a cursor that moves partition p to
// just before first (and keeps the other positions of cursor), and returns that cursor.
func wantOutOfRange(t *testing.T, err error, p relay.Partition, first relay.ID) string {
	t.Helper()
	var re *relay.Error
	if !errors.As(err, &re) || re.Code != relay.CodeOutOfRange {
		t.Fatalf("stream ended with %v, want OUT_OF_RANGE", err)
	}
	if re.ResumeCursor == "" || !strings.Contains(re.Message, "after_cursor="+re.ResumeCursor) ||
		!strings.Contains(re.Message, "oldest available entry is "+first.String()) {
		t.Fatalf("OUT_OF_RANGE does not name the cursor of the oldest entry %s: %q (cursor %q)", first, re.Message, re.ResumeCursor)
	}
	cur, derr := relay.DecodeCursor(re.ResumeCursor)
	if derr != nil {
		t.Fatal(derr)
	}
	if got := cur.Positions[p]; got != first.Prev() {
		t.Fatalf("the resume cursor puts %s at %s, want just before the oldest entry %s", p, got, first)
	}
	return re.ResumeCursor
}

// resumeAnswer resubscribes after cursor and returns the first delivery's event id or the
// error the subscription ended with.
func resumeAnswer(t *testing.T, svc *relay.Service, cursor string) (string, error) {
	t.Helper()
	cur, err := relay.DecodeCursor(cursor)
	if err != nil {
		t.Fatal(err)
	}
	r := subscribe(t, svc, relay.SubscribeRequest{After: &cur}, nil)
	select {
	case <-r.done:
		return "", r.err
	case <-r.notify:
	case <-time.After(15 * time.Second):
		t.Fatal("resumed subscription got nothing")
	}
	got := r.deliveredIDs()
	r.stop()
	return got[0], nil
}

// TestLiveGapReplay: a replay reads history in batches; retention trims the entries it has
// not read yet. The subscriber gets every entry before the gap, in order, then OUT_OF_RANGE
// naming the cursor of the oldest retained entry: the same answer a resume with its last
// cursor gets. Before the fix the replay jumped to the oldest retained entry silently.
func TestLiveGapReplay(t *testing.T) {
	backends(t, func(t *testing.T, url string) {
		const maxLen = 40
		f := newGapService(t, url, relay.Options{ReplayBatch: 10}, maxLen)
		f.publishAll(t, ids("a", maxLen))
		f.gated.ranges.armAfter(1) // the first history read passes, the second waits
		s := subscribe(t, f.svc, relay.SubscribeRequest{Start: relay.StartEarliest}, nil)
		f.gated.ranges.waitHeld(t)
		f.publishAll(t, ids("b", 100)) // MAXLEN ~40 trims a000..a039 and more
		first, _ := f.oldest(t)
		f.gated.ranges.release()
		err := s.end(t)
		if got, want := s.deliveredIDs(), ids("a", 10); !slices.Equal(got, want) {
			t.Fatalf("delivered %v, want exactly the first history batch %v", got, want)
		}
		cursor := wantOutOfRange(t, err, f.p, first)

		// A resume with the last cursor gets the same answer.
		msgs := s.messages()
		if _, rerr := resumeAnswer(t, f.svc, msgs[len(msgs)-1].Cursor); relay.ErrorMessage(rerr) != relay.ErrorMessage(err) {
			t.Fatalf("resume with the last cursor: %v\nlive stream: %v", rerr, err)
		}
		// The named cursor resumes at the oldest retained entry.
		_, firstEvent := f.oldest(t)
		if got, rerr := resumeAnswer(t, f.svc, cursor); rerr != nil || got != firstEvent {
			t.Fatalf("resume with the named cursor: %s %v, want %s", got, rerr, firstEvent)
		}
	})
}

// tailAt starts a tail subscription (plus a second one on the same shared reader) on a
// stream that already holds one entry, and leaves the shared reader held at its next read
// after it delivered a000 to both.
func tailAt(t *testing.T, f *gapFixture) (*sub, *sub) {
	t.Helper()
	f.publish(t, "s", "pre", "t", "") // the stream exists: the reader knows its count
	hb := relay.SubscribeRequest{Heartbeat: relay.MinHeartbeat}
	beat := make(chan struct{}, 1)
	a := subscribe(t, f.svc, hb, func(m *relay.Message) error {
		if m.Entry == nil {
			select {
			case beat <- struct{}{}:
			default:
			}
		}
		return nil
	})
	select {
	case <-beat: // the subscription (and its shared reader) is running
	case <-time.After(15 * time.Second):
		t.Fatal("no heartbeat")
	}
	b := subscribe(t, f.svc, relay.SubscribeRequest{}, nil)
	f.gated.reads.armAfter(1) // the read in progress (or the next one) returns a000
	f.publish(t, "s", "a000", "t", "")
	a.wait(t, 1)
	f.gated.reads.waitHeld(t)
	// The entries published next get ids of a later millisecond than a000's, so that the
	// first of them is not a000's id successor: the check has to count.
	time.Sleep(2 * time.Millisecond)
	return a, b
}

// TestLiveGapSharedReader: the shared tail reader itself falls behind retention (its next
// read is held while more than max_len entries arrive). Every subscriber of that reader ends
// with OUT_OF_RANGE naming the cursor of the oldest retained entry, after what it was sent,
// and nothing after the gap is delivered.
func TestLiveGapSharedReader(t *testing.T) {
	backends(t, func(t *testing.T, url string) {
		f := newGapService(t, url, relay.Options{}, 40)
		a, b := tailAt(t, f)
		f.publishAll(t, ids("b", 100)) // MAXLEN ~40 trims a000 and the first b's
		first, _ := f.oldest(t)
		f.gated.reads.release()
		for _, s := range []*sub{a, b} {
			err := s.end(t)
			if got := s.deliveredIDs(); len(got) > 1 {
				t.Fatalf("delivered %v after the gap, want only a000", got)
			}
			wantOutOfRange(t, err, f.p, first)
		}
		if n := f.svc.Subscribers(); n != 0 {
			t.Fatalf("%d tail subscribers left", n)
		}
	})
}

// TestLiveGapBoundary: a subscriber whose position is exactly the last trimmed entry lost
// nothing and goes on; one entry further is a gap. Positions taken at the stream's end (a
// tail) know how many entries precede them, so the live check is exact on Redis 7 whatever
// the ids. A resume cursor carries no such count: its check is conservative on Redis 7.0
// (see gap.go), and the boundary it accepts exactly is the cursor that OUT_OF_RANGE names.
func TestLiveGapBoundary(t *testing.T) {
	backends(t, func(t *testing.T, url string) {
		t.Run("at the last trimmed entry", func(t *testing.T) {
			f := newGapService(t, url, relay.Options{}, 0)
			a, _ := tailAt(t, f)
			f.publishAll(t, ids("b", 10))
			f.trimBefore(t, f.entryID(t, "b000")) // a000, the reader's position, is the last trimmed
			f.gated.reads.release()
			if got, want := a.wait(t, 11), append([]string{"a000"}, ids("b", 10)...); !slices.Equal(got, want) {
				t.Fatalf("delivered %v, want %v", got, want)
			}
		})
		t.Run("one past the last trimmed entry", func(t *testing.T) {
			f := newGapService(t, url, relay.Options{}, 0)
			a, _ := tailAt(t, f)
			f.publishAll(t, ids("b", 10))
			first := f.entryID(t, "b001")
			f.trimBefore(t, first) // b000 is gone too
			f.gated.reads.release()
			err := a.end(t)
			if got := a.deliveredIDs(); !slices.Equal(got, []string{"a000"}) {
				t.Fatalf("delivered %v, want only a000", got)
			}
			cursor := wantOutOfRange(t, err, f.p, first)
			// The named cursor is the resume check's exact boundary: accepted, from b001 on.
			if got, rerr := resumeAnswer(t, f.svc, cursor); rerr != nil || got != "b001" {
				t.Fatalf("resume with the named cursor: %s %v, want b001", got, rerr)
			}
			// One id before it, the resume check refuses with the same cursor named.
			cur, _ := relay.DecodeCursor(cursor)
			cur.Positions[f.p] = first.Prev().Prev()
			_, rerr := resumeAnswer(t, f.svc, relay.EncodeCursor(cur))
			wantOutOfRange(t, rerr, f.p, first)
		})
	})
}
