package daemon

// End-to-end tests of the live-stream promises of Subscribe (issue 12 items 1, 4, 8 and the
// HTTP stream's content type) through relayd's Main, over gRPC and the HTTP NDJSON form, on
// real redis-server processes and the embedded store where it can tell.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	eventrelayv1 "github.com/eventrelay/eventrelay/gen/eventrelay/v1"
	"github.com/eventrelay/eventrelay/internal/e2e"
	"github.com/eventrelay/eventrelay/internal/redistest"
	"github.com/eventrelay/eventrelay/relay"
)

// paddedBody is a webhook payload of about size bytes.
func paddedBody(id string, size int) []byte {
	return []byte(fmt.Sprintf(`{"id":%q,"type":"order.created","pad":%q}`, id, strings.Repeat("x", size)))
}

// postPadded posts the events named prefix000.. in order, each about size bytes.
func postPadded(t testing.TB, m *Main, source, prefix string, n, size int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s%03d", prefix, i)
		r := postHook(context.Background(), http.DefaultClient, m.HTTPAddr, source, paddedBody(ids[i], size))
		if r.err != nil || r.status != http.StatusOK {
			t.Fatalf("POST %s: %d %v", ids[i], r.status, r.err)
		}
	}
	return ids
}

// ndjsonLine is one line of the HTTP Subscribe stream.
type ndjsonLine struct {
	Result *struct {
		Delivery *struct {
			Event  struct{ ID string } `json:"event"`
			Cursor string              `json:"cursor"`
		} `json:"delivery"`
		Heartbeat *struct {
			Cursor string `json:"cursor"`
		} `json:"heartbeat"`
	} `json:"result"`
	Error *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Details []struct {
			Reason   string            `json:"reason"`
			Metadata map[string]string `json:"metadata"`
		} `json:"details"`
	} `json:"error"`
}

// ndjsonStream is an open GET /v1/events:subscribe read line by line.
type ndjsonStream struct {
	resp *http.Response
	r    *bufio.Reader
}

func openNDJSON(t testing.TB, m *Main, query url.Values) *ndjsonStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+m.HTTPAddr+"/v1/events:subscribe?"+query.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); resp.Body.Close() })
	return &ndjsonStream{resp: resp, r: bufio.NewReaderSize(resp.Body, 1<<20)}
}

// next returns the next line, or nil at the end of the stream.
func (s *ndjsonStream) next(t testing.TB) *ndjsonLine {
	t.Helper()
	b, err := s.r.ReadBytes('\n')
	if err == io.EOF && len(bytes.TrimSpace(b)) == 0 {
		return nil
	}
	if err != nil && err != io.EOF {
		t.Fatalf("reading the stream: %v", err)
	}
	var l ndjsonLine
	if err := json.Unmarshal(b, &l); err != nil {
		t.Fatalf("line %q: %v", b, err)
	}
	return &l
}

// TestHTTPStreamIsNDJSON: GET /v1/events:subscribe is served as application/x-ndjson, one
// JSON object per line, and the OpenAPI document says so.
func TestHTTPStreamIsNDJSON(t *testing.T) {
	m := startMain(t, testConfig(""))
	mustPost(t, m.HTTPAddr, "orders", "evt_nd1")
	s := openNDJSON(t, m, url.Values{"sources": {"orders"}, "start": {"START_POSITION_EARLIEST"}})
	if ct := s.resp.Header.Get("Content-Type"); ct != "application/x-ndjson" {
		t.Fatalf("Content-Type %q, want application/x-ndjson", ct)
	}
	if l := s.next(t); l == nil || l.Result == nil || l.Result.Delivery == nil || l.Result.Delivery.Event.ID != "evt_nd1" {
		t.Fatalf("first line %+v", l)
	}
	// The OpenAPI document served on the admin port says so.
	code, doc := secGet(t, "http://"+m.AdminAddr+"/openapi.json")
	var spec struct {
		Paths map[string]map[string]struct{ Produces []string }
	}
	if err := json.Unmarshal([]byte(doc), &spec); err != nil || code != http.StatusOK {
		t.Fatalf("/openapi.json: %d %v", code, err)
	}
	if got := spec.Paths["/v1/events:subscribe"]["get"].Produces; !slices.Equal(got, []string{"application/x-ndjson"}) {
		t.Fatalf("OpenAPI: GET /v1/events:subscribe produces %v", got)
	}
}

// TestLiveGapOutOfRange is the scenario scaled down, over gRPC: a source capped at
// max_len 80 holds 80 events; a subscriber replaying it from the start reads one and stops
// reading while 150 more arrive; then it reads on. It must get a gapless prefix of the
// events, in order, then OUT_OF_RANGE naming the cursor of the oldest retained entry (the
// same answer a resume with its last cursor gets), never a silent jump. The client's flow-control window is the
// gRPC minimum (64 KiB, no dynamic growth) and the history is read 10 entries at a time
// (subscribe.replay_batch), so the relay holds only a few dozen of the 8 KiB events when the
// subscriber stops: the rest it must read from Redis after retention trimmed them.
func TestLiveGapOutOfRange(t *testing.T) {
	t.Run("embedded", func(t *testing.T) { testLiveGapOutOfRange(t, embeddedURL(t)) })
	t.Run("redis", func(t *testing.T) { testLiveGapOutOfRange(t, gapRedisURL(t)) })
}

// gapRedisURL starts a redis-server whose MAXLEN ~ trims nearly exactly (the embedded server
// trims exactly).
func gapRedisURL(t *testing.T) string {
	return redistest.StartWith(t, "--stream-node-max-entries", "10").URL()
}

func testLiveGapOutOfRange(t *testing.T, url string) {
	cfg := testConfig(url)
	cfg.Sources[0].MaxLen = 80
	cfg.Sources[0].MaxBodyBytes = 16 << 10
	cfg.Subscribe.ReplayBatch = 10
	m := startMain(t, cfg)
	rdb := redisClient(t, url)
	posted := postPadded(t, m, "orders", "a", 80, 8<<10)

	conn, err := grpc.NewClient(m.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := eventrelayv1.NewEventServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	stream, err := c.Subscribe(ctx, &eventrelayv1.SubscribeRequest{Sources: []string{"orders"}, Start: eventrelayv1.StartPosition_START_POSITION_EARLIEST})
	if err != nil {
		t.Fatal(err)
	}
	var got []*eventrelayv1.Delivery
	msg, err := stream.Recv()
	if err != nil || msg.GetDelivery() == nil {
		t.Fatalf("first message %v %v", msg, err)
	}
	got = append(got, msg.GetDelivery())
	posted = append(posted, postPadded(t, m, "orders", "b", 150, 8<<10)...) // the subscriber does not read
	for {
		msg, err = stream.Recv()
		if err != nil {
			break
		}
		if d := msg.GetDelivery(); d != nil {
			got = append(got, d)
		}
	}
	for i, d := range got {
		if d.Event.Id != posted[i] {
			t.Fatalf("delivery %d is %s, want %s: a silent jump over trimmed entries", i, d.Event.Id, posted[i])
		}
	}
	if status.Code(err) != codes.OutOfRange {
		t.Fatalf("after %d deliveries (%s..%s) the stream ended with %v, want OUT_OF_RANGE", len(got), got[0].Event.Id, got[len(got)-1].Event.Id, err)
	}
	oldest := streamEventIDs(t, rdb, "orders")[0]
	cursor := resumeCursorOf(t, err)
	t.Logf("%d deliveries (up to %s), then %v", len(got), got[len(got)-1].Event.Id, err)

	// The named cursor resumes at the oldest retained entry.
	if d := collect(t, c, &eventrelayv1.SubscribeRequest{AfterCursor: cursor}, 1); d[0].Event.Id != oldest {
		t.Fatalf("resuming with the named cursor delivered %s, want the oldest retained %s", d[0].Event.Id, oldest)
	}
	// A resume with the cursor of the last delivery gets the same answer as the live stream.
	rs, rerr := c.Subscribe(context.Background(), &eventrelayv1.SubscribeRequest{AfterCursor: got[len(got)-1].Cursor})
	if rerr == nil {
		_, rerr = rs.Recv()
	}
	if status.Code(rerr) != codes.OutOfRange || status.Convert(rerr).Message() != status.Convert(err).Message() {
		t.Fatalf("resume with the last cursor: %v\nlive stream: %v", rerr, err)
	}
}

// resumeCursorOf checks that a subscription's OUT_OF_RANGE or RESOURCE_EXHAUSTED names its
// resume cursor in the message and as ErrorInfo metadata resume_cursor, and returns it.
func resumeCursorOf(t testing.TB, err error) string {
	t.Helper()
	st := status.Convert(err)
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			c := info.GetMetadata()["resume_cursor"]
			if c == "" || !strings.Contains(st.Message(), "after_cursor="+c) {
				t.Fatalf("status %q: resume_cursor %q not in the message", st.Message(), c)
			}
			if _, derr := relay.DecodeCursor(c); derr != nil {
				t.Fatalf("resume_cursor %q: %v", c, derr)
			}
			return c
		}
	}
	t.Fatalf("status %v has no ErrorInfo", st)
	return ""
}

// TestLiveGapOutOfRangeHTTP runs the same scenario over the HTTP NDJSON form: the deliveries
// read are a gapless prefix, and the stream's last line is the OUT_OF_RANGE error naming the
// cursor of the oldest retained entry (in the message and as resume_cursor). The events are
// larger (the HTTP path buffers more: the client's socket, the gateway).
func TestLiveGapOutOfRangeHTTP(t *testing.T) {
	t.Run("embedded", func(t *testing.T) { testLiveGapOutOfRangeHTTP(t, embeddedURL(t)) })
	t.Run("redis", func(t *testing.T) { testLiveGapOutOfRangeHTTP(t, gapRedisURL(t)) })
}

func testLiveGapOutOfRangeHTTP(t *testing.T, redisURL string) {
	cfg := testConfig(redisURL)
	const maxLen, size = 200, 60 << 10
	cfg.Sources[0].MaxLen = maxLen
	cfg.Sources[0].MaxBodyBytes = 64 << 10
	cfg.Subscribe.ReplayBatch = 5
	m := startMain(t, cfg)
	rdb := redisClient(t, redisURL)
	posted := postPadded(t, m, "orders", "a", maxLen, size)

	s := openNDJSON(t, m, url.Values{"sources": {"orders"}, "start": {"START_POSITION_EARLIEST"}})
	var got []string
	var last string
	l := s.next(t)
	if l == nil || l.Result == nil || l.Result.Delivery == nil {
		t.Fatalf("first line %+v", l)
	}
	got = append(got, l.Result.Delivery.Event.ID)
	posted = append(posted, postPadded(t, m, "orders", "b", 2*maxLen, size)...) // not reading
	var end *ndjsonLine
	for l = s.next(t); l != nil; l = s.next(t) {
		switch {
		case l.Error != nil:
			end = l
		case l.Result != nil && l.Result.Delivery != nil:
			got = append(got, l.Result.Delivery.Event.ID)
			last = l.Result.Delivery.Cursor
		}
	}
	for i, id := range got {
		if id != posted[i] {
			t.Fatalf("delivery %d is %s, want %s: a silent jump over trimmed entries", i, id, posted[i])
		}
	}
	if end == nil || end.Error.Code != int(codes.OutOfRange) {
		t.Fatalf("after %d deliveries (up to %s) the stream ended with %+v, want an OUT_OF_RANGE line", len(got), got[len(got)-1], end)
	}
	t.Logf("%d deliveries (up to %s), then %s", len(got), got[len(got)-1], end.Error.Message)
	var cursor string
	for _, d := range end.Error.Details {
		cursor = d.Metadata["resume_cursor"]
	}
	if cursor == "" || !strings.Contains(end.Error.Message, "after_cursor="+cursor) {
		t.Fatalf("error line %+v does not name its resume cursor", end.Error)
	}
	oldest := streamEventIDs(t, rdb, "orders")[0]
	r := openNDJSON(t, m, url.Values{"after_cursor": {cursor}})
	if l := r.next(t); l == nil || l.Result == nil || l.Result.Delivery == nil || l.Result.Delivery.Event.ID != oldest {
		t.Fatalf("resuming with the named cursor: %+v, want the oldest retained %s", l, oldest)
	}
	// A resume with the cursor of the last delivery is refused with the same message.
	resp, err := http.Get("http://" + m.HTTPAddr + "/v1/events:subscribe?" + url.Values{"after_cursor": {last}}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st ndjsonLine // refused before the stream starts: one error object, status 400
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || resp.StatusCode != http.StatusBadRequest || st.Error == nil || st.Error.Message != end.Error.Message {
		t.Fatalf("resume with the last cursor: %d %+v %v\nlive stream: %q", resp.StatusCode, st.Error, err, end.Error.Message)
	}
}

// subscribersGauge reads eventrelay_subscribers from the admin /metrics.
func subscribersGauge(t testing.TB, m *Main) int {
	t.Helper()
	code, body := secGet(t, "http://"+m.AdminAddr+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, "eventrelay_subscribers "); ok {
			var n float64
			if _, err := fmt.Sscan(v, &n); err != nil {
				t.Fatalf("%q: %v", line, err)
			}
			return int(n)
		}
	}
	t.Fatalf("no eventrelay_subscribers in /metrics")
	return 0
}

// pacedStream reads a Subscribe stream in the background, one message per token (or at
// full speed once fast is closed).
type pacedStream struct {
	tokens chan struct{}
	fast   chan struct{}
	done   chan struct{}

	mu    sync.Mutex
	got   []*eventrelayv1.Delivery
	beats int
	err   error
}

func readPaced(stream eventrelayv1.EventService_SubscribeClient) *pacedStream {
	p := &pacedStream{tokens: make(chan struct{}, 16), fast: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		for {
			select {
			case <-p.tokens:
			case <-p.fast:
			}
			msg, err := stream.Recv()
			p.mu.Lock()
			switch {
			case err != nil:
				p.err = err
			case msg.GetDelivery() != nil:
				p.got = append(p.got, msg.GetDelivery())
			case msg.GetBatch() != nil:
				p.got = append(p.got, msg.GetBatch().GetDeliveries()...)
			default:
				p.beats++
			}
			p.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return p
}

func (p *pacedStream) state() (got []*eventrelayv1.Delivery, beats int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*eventrelayv1.Delivery(nil), p.got...), p.beats
}

// TestSlowSubscriberCutPromptly: a tail subscriber that reads one message a second falls
// behind by its buffer (subscribe.tail_buffer 64) while 200 events of 8 KiB arrive. relayd
// ends its stream as soon as that happens, without sending it what it had queued: the
// subscribers gauge drops while the client is still reading one message a second, and the
// client then gets only what was already on its way (its 64 KiB flow-control window and
// grpc-go's 64 KiB write quota: about 16 of these events; before the fix, the 64 queued
// ones too), then RESOURCE_EXHAUSTED naming the cursor of the last delivery it got, from
// which it resumes with no gap and no repeat. A subscriber that stopped reading altogether
// (its send blocked for good) is ended the same way, and so is one that asked for batches
// (the cursor is then the last one of the last batch it got, not of one relayd held or
// could not send).
func TestSlowSubscriberCutPromptly(t *testing.T) {
	for _, tc := range []struct {
		backend string
		perSec  bool  // reads one message a second; else not at all until the gauge dropped
		batch   int32 // max_batch
	}{{"embedded", true, 0}, {"redis", true, 0}, {"redis", false, 0}, {"redis", true, 8}, {"redis", false, 8}} {
		name := tc.backend + "/one_a_second"
		if !tc.perSec {
			name = tc.backend + "/not_reading"
		}
		if tc.batch > 0 {
			name += "/batches"
		}
		t.Run(name, func(t *testing.T) {
			url := ""
			if tc.backend == "redis" {
				url = redistest.Start(t)
			}
			cfg := testConfig(url)
			cfg.Sources[0].MaxBodyBytes = 16 << 10
			cfg.Subscribe.TailBuffer = 64
			m := startMain(t, cfg)
			conn, err := grpc.NewClient(m.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
				grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { conn.Close() })
			c := eventrelayv1.NewEventServiceClient(conn)
			ctx, cancel := context.WithTimeout(context.Background(), 2*waitFor)
			defer cancel()
			stream, err := c.Subscribe(ctx, &eventrelayv1.SubscribeRequest{Sources: []string{"orders"}, HeartbeatInterval: durationpb.New(time.Second), MaxBatch: tc.batch})
			if err != nil {
				t.Fatal(err)
			}
			p := readPaced(stream)
			p.tokens <- struct{}{}
			secAwait(t, "the first heartbeat", func() bool { _, beats := p.state(); return beats > 0 })
			if n := subscribersGauge(t, m); n != 1 {
				t.Fatalf("gauge %d with one stream open", n)
			}

			// One message a second while 200 events of 8 KiB arrive.
			go func() {
				if !tc.perSec {
					return
				}
				tick := time.NewTicker(time.Second)
				defer tick.Stop()
				for {
					select {
					case <-tick.C:
						select {
						case p.tokens <- struct{}{}:
						default:
						}
					case <-p.done:
						return
					}
				}
			}()
			posted := postPadded(t, m, "orders", "s", 200, 8<<10)
			secAwait(t, "the subscribers gauge to drop", func() bool { return subscribersGauge(t, m) == 0 })
			got, _ := p.state()
			t.Logf("relayd ended the stream after the client read %d deliveries", len(got))

			close(p.fast) // the client reads what is already on its way
			select {
			case <-p.done:
			case <-time.After(waitFor):
				t.Fatal("the stream did not end on the client")
			}
			got, _ = p.state()
			t.Logf("the client got %d deliveries, then %v", len(got), status.Code(p.err))
			// 128 KiB in flight is 16 of these events; 24 leaves room for grpc-go's rounding
			// (and a batch more for batches).
			if most := 24 + int(tc.batch); len(got) == 0 || len(got) > most {
				t.Fatalf("%d deliveries after the cut, want 1 to %d: what was in flight, not the queued ones", len(got), most)
			}
			for i, d := range got {
				if d.Event.Id != posted[i] {
					t.Fatalf("delivery %d is %s, want %s", i, d.Event.Id, posted[i])
				}
			}
			if status.Code(p.err) != codes.ResourceExhausted {
				t.Fatalf("stream ended with %v, want RESOURCE_EXHAUSTED", p.err)
			}
			if c := resumeCursorOf(t, p.err); c != got[len(got)-1].Cursor {
				t.Fatalf("RESOURCE_EXHAUSTED names %s, want the cursor of the last delivery %s", c, got[len(got)-1].Cursor)
			}
			if d := collect(t, c, &eventrelayv1.SubscribeRequest{AfterCursor: got[len(got)-1].Cursor}, 1); d[0].Event.Id != posted[len(got)] {
				t.Fatalf("resuming delivered %s, want %s", d[0].Event.Id, posted[len(got)])
			}
		})
	}
}

// TestHeartbeatsOnFilteredStream: a subscriber of types ["rare.*"] with heartbeat_interval 1s
// gets heartbeats while only other types flow (one every 20 ms), and their cursors advance
// past the events examined: a resume from the last one does not rescan them and delivers
// only newer events.
func TestHeartbeatsOnFilteredStream(t *testing.T) {
	for _, backend := range []string{"embedded", "redis"} {
		t.Run(backend, func(t *testing.T) {
			url := ""
			if backend == "redis" {
				url = redistest.Start(t)
			}
			m := startMain(t, testConfig(url))
			c := client(t, m)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			stream, err := c.Subscribe(ctx, &eventrelayv1.SubscribeRequest{Sources: []string{"orders"}, Types: []string{"rare.*"},
				HeartbeatInterval: durationpb.New(time.Second)})
			if err != nil {
				t.Fatal(err)
			}
			msgs := make(chan *eventrelayv1.SubscribeResponse, 100)
			go func() {
				for {
					msg, err := stream.Recv()
					if err != nil {
						close(msgs)
						return
					}
					msgs <- msg
				}
			}()

			// Other types flow until two heartbeats came with different cursors; before the
			// fix no heartbeat came while events flowed.
			var posted, beats []string
			for len(beats) < 2 || beats[len(beats)-2] == beats[len(beats)-1] {
				if len(posted) == 1000 {
					t.Fatalf("%d non-matching events posted over about 20 s, heartbeats %d", len(posted), len(beats))
				}
				id := fmt.Sprintf("c%04d", len(posted))
				mustPostTyped(t, m, id, "common.event")
				posted = append(posted, id)
			drain:
				for {
					select {
					case msg, ok := <-msgs:
						if !ok {
							t.Fatal("stream ended")
						}
						if d := msg.GetDelivery(); d != nil {
							t.Fatalf("delivered %s of type %s to a rare.* subscriber", d.Event.Id, d.Event.Type)
						}
						beats = append(beats, msg.GetHeartbeat().GetCursor())
					default:
						break drain
					}
				}
				time.Sleep(20 * time.Millisecond) // the pace of the other types
			}
			cursor := beats[len(beats)-1]
			t.Logf("%d heartbeats while %d non-matching events flowed", len(beats), len(posted))

			// Resuming from the last heartbeat without a filter: a suffix of what was posted (no
			// repeat of what the heartbeat's cursor covers), then a new rare event.
			mustPostTyped(t, m, "r0001", "rare.thing")
			all := subscribe(t, c, &eventrelayv1.SubscribeRequest{AfterCursor: cursor})
			var rest []string
			for d := all.Next(t); d.Event.Id != "r0001"; d = all.Next(t) {
				rest = append(rest, d.Event.Id)
			}
			if len(rest) >= len(posted) || !slices.Equal(rest, posted[len(posted)-len(rest):]) {
				t.Fatalf("resuming from the heartbeat's cursor rescanned: %v of %d posted", rest, len(posted))
			}
			// With the filter, the rare event is the first delivery.
			if d := collect(t, c, &eventrelayv1.SubscribeRequest{AfterCursor: cursor, Types: []string{"rare.*"}}, 1); d[0].Event.Id != "r0001" {
				t.Fatalf("first delivery %s, want r0001", d[0].Event.Id)
			}
		})
	}
}

// mustPostTyped posts one webhook of the given type and requires a 200.
func mustPostTyped(t testing.TB, m *Main, id, typ string) {
	t.Helper()
	if r := postHook(context.Background(), http.DefaultClient, m.HTTPAddr, "orders", hookBody(id, typ)); r.status != http.StatusOK {
		t.Fatalf("POST %s: %d %v", id, r.status, r.err)
	}
}

// lockedBuffer is an io.Writer safe for concurrent use.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *lockedBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *lockedBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// TestDemoBannerBoundPort runs relayd with no configuration and -http-addr 127.0.0.1:0: the
// demo banner names the port it listens on (not "0"), and the command it prints, with the
// secret it prints, stores an event.
func TestDemoBannerBoundPort(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr lockedBuffer
	code := make(chan int, 1)
	go func() {
		code <- Command(ctx, []string{"-http-addr", "127.0.0.1:0", "-grpc-addr", "127.0.0.1:0", "-admin-addr", "127.0.0.1:0"}, nil, &stdout, &stderr)
	}()
	t.Cleanup(func() {
		cancel()
		if c := <-code; c != 0 {
			t.Errorf("relayd exited %d: %s", c, stderr.String())
		}
	})
	secAwait(t, "the demo banner", func() bool { return strings.Contains(stdout.String(), "curl ") })
	banner := stdout.String()
	var secret, port string
	for _, line := range strings.Split(banner, "\n") {
		if s, ok := strings.CutPrefix(line, "eventrelay demo source: secret "); ok {
			secret, _, _ = strings.Cut(s, " ")
		}
		if _, rest, ok := strings.Cut(line, "http://localhost:"); ok {
			port, _, _ = strings.Cut(rest, "/")
		}
	}
	if secret == "" || port == "" || port == "0" {
		t.Fatalf("banner names secret %q and port %q:\n%s", secret, port, banner)
	}
	body := []byte(`{"id":"evt_1","type":"demo.hello","text":"hi"}`)
	req, err := http.NewRequest(http.MethodPost, "http://localhost:"+port+"/v1/webhooks/demo", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Signature", e2e.Sign(secret, body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"event_id":"evt_1"`) {
		t.Fatalf("the banner's command: %d %s", resp.StatusCode, b)
	}
}
