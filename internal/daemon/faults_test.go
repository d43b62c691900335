package daemon

// Fault tests (issue 4): Redis SIGKILLed and restarted under load (append-only file with
// appendfsync always), relayd itself SIGKILLed and restarted under load, and relayd stopped
// with SIGTERM. The invariant everywhere: an event answered 2xx is in the stream.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	eventrelayv1 "github.com/eventrelay/eventrelay/gen/eventrelay/v1"
	"github.com/eventrelay/eventrelay/internal/e2e"
	"github.com/eventrelay/eventrelay/internal/redistest"
)

// durableRedis starts a redis-server that fsyncs every write before answering.
func durableRedis(t *testing.T) *redistest.Server {
	return redistest.StartWith(t, "--appendonly", "yes", "--appendfsync", "always")
}

// load posts webhooks with unique ids from several goroutines until halted.
type load struct {
	addr atomic.Pointer[string]
	hc   *http.Client
	stop chan struct{}
	wg   sync.WaitGroup

	mu  sync.Mutex
	res []hookResult
}

func startLoad(t testing.TB, addr, source, prefix string, workers int) *load {
	l := &load{
		hc:   &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: workers}},
		stop: make(chan struct{}),
	}
	l.setAddr(addr)
	for w := range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				id := fmt.Sprintf("%s-w%d-%05d", prefix, w, i)
				r := postHook(context.Background(), l.hc, *l.addr.Load(), source, hookBody(id, "load.event"))
				r.id = id
				l.mu.Lock()
				l.res = append(l.res, r)
				l.mu.Unlock()
				if r.err != nil || r.status != http.StatusOK {
					time.Sleep(10 * time.Millisecond) // no busy loop while the relay is down
				}
			}
		}()
	}
	t.Cleanup(func() { l.halt() })
	return l
}

func (l *load) setAddr(addr string) { l.addr.Store(&addr) }

// count returns how many results so far satisfy fn.
func (l *load) count(fn func(hookResult) bool) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, r := range l.res {
		if fn(r) {
			n++
		}
	}
	return n
}

// halt stops the load and returns every result. It is idempotent.
func (l *load) halt() []hookResult {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
	l.hc.CloseIdleConnections()
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.res)
}

func stored(r hookResult) bool { return r.err == nil && r.status == http.StatusOK }

// requireStored checks that every event answered 2xx is in the stream, and that the stream
// holds no event twice.
func requireStored(t *testing.T, res []hookResult, streamIDs []string) {
	t.Helper()
	in := map[string]bool{}
	for _, id := range streamIDs {
		if in[id] {
			t.Errorf("event %s is in the stream twice", id)
		}
		in[id] = true
	}
	n := 0
	for _, r := range res {
		if stored(r) {
			n++
			if !in[r.id] || r.answer.EventID != r.id || r.answer.Duplicate {
				t.Errorf("event %s answered 200 %+v, in the stream: %t", r.id, r.answer, in[r.id])
			}
		}
	}
	t.Logf("%d requests, %d answered 200, %d events in the stream", len(res), n, len(streamIDs))
}

// tailer follows a source from the beginning and resumes from its last cursor whenever the
// stream ends.
type tailer struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu   sync.Mutex
	ids  []string
	ends []error // what ended each stream (or each failed attempt to open one)
}

func startTailer(t testing.TB, c eventrelayv1.EventServiceClient, source string) *tailer {
	ctx, cancel := context.WithCancel(context.Background())
	tl := &tailer{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(tl.done)
		cursor := ""
		for ctx.Err() == nil {
			req := &eventrelayv1.SubscribeRequest{Sources: []string{source}, HeartbeatInterval: durationpb.New(100 * time.Millisecond)}
			if cursor == "" {
				req.Start = eventrelayv1.StartPosition_START_POSITION_EARLIEST
			} else {
				req.AfterCursor = cursor
			}
			stream, err := c.Subscribe(ctx, req)
			for err == nil {
				var msg *eventrelayv1.SubscribeResponse
				if msg, err = stream.Recv(); err != nil {
					break
				}
				if d := msg.GetDelivery(); d != nil {
					tl.mu.Lock()
					tl.ids = append(tl.ids, d.Event.Id)
					tl.mu.Unlock()
					cursor = d.Cursor
				} else {
					cursor = msg.GetHeartbeat().GetCursor()
				}
			}
			if ctx.Err() != nil {
				return
			}
			tl.mu.Lock()
			tl.ends = append(tl.ends, err)
			tl.mu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(tl.close)
	return tl
}

func (tl *tailer) close() {
	tl.cancel()
	<-tl.done
}

func (tl *tailer) delivered() []string {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return slices.Clone(tl.ids)
}

func (tl *tailer) ended() []error {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return slices.Clone(tl.ends)
}

// groupWorker consumes a source in a consumer group, processing (recording) and
// acknowledging every delivery, and reconnects whenever its stream ends.
type groupWorker struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu        sync.Mutex
	processed map[string]bool
	ends      []error
}

func startGroupWorker(t testing.TB, c eventrelayv1.EventServiceClient, source, group string) *groupWorker {
	ctx, cancel := context.WithCancel(context.Background())
	g := &groupWorker{cancel: cancel, done: make(chan struct{}), processed: map[string]bool{}}
	go func() {
		defer close(g.done)
		for ctx.Err() == nil {
			stream, err := c.Subscribe(ctx, &eventrelayv1.SubscribeRequest{Sources: []string{source}, Group: group, Consumer: "w1",
				Start: eventrelayv1.StartPosition_START_POSITION_EARLIEST, AckDeadline: durationpb.New(time.Second),
				HeartbeatInterval: durationpb.New(100 * time.Millisecond)})
			ackFailed := false
			for err == nil {
				var msg *eventrelayv1.SubscribeResponse
				if msg, err = stream.Recv(); err != nil {
					break
				}
				d := msg.GetDelivery()
				if d == nil {
					continue
				}
				g.mu.Lock()
				g.processed[d.Event.Id] = true
				g.mu.Unlock()
				if !ackFailed {
					// Once an ack failed (Redis down) the rest of this stream is left unacked
					// (it comes back after a reconnect) and read to its end. A failed ack may
					// still have happened: the event was processed either way.
					_, err := c.Acknowledge(ctx, &eventrelayv1.AcknowledgeRequest{AckIds: []string{d.AckId}})
					ackFailed = err != nil
				}
			}
			if ctx.Err() != nil {
				return
			}
			g.mu.Lock()
			g.ends = append(g.ends, err)
			g.mu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { g.cancel(); <-g.done })
	return g
}

func (g *groupWorker) hasProcessed(ids []string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, id := range ids {
		if !g.processed[id] {
			return false
		}
	}
	return true
}

func (g *groupWorker) ended() []error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.ends)
}

func allUnavailable(errs []error) bool {
	if len(errs) == 0 {
		return false
	}
	for _, err := range errs {
		if status.Code(err) != codes.Unavailable {
			return false
		}
	}
	return true
}

// httpStatus returns the status of GET url, or 0 when it cannot be fetched.
func httpStatus(url string) int {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestRedisKilledMidLoad SIGKILLs Redis (appendfsync always) while webhooks are posted and
// streams are open, then restarts it: relayd answers 503 with Retry-After meanwhile (never a
// 2xx), reports not ready, ends the streams with UNAVAILABLE, recovers by itself, and every
// event answered 200 is in the stream; the resumed tail has no gap and no repeat.
func TestRedisKilledMidLoad(t *testing.T) {
	e2e.Slow(t)
	rs := durableRedis(t)
	m := startMain(t, testConfig(rs.URL()))
	conn, err := grpc.NewClient(m.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := eventrelayv1.NewEventServiceClient(conn)
	health := healthpb.NewHealthClient(conn)
	serving := func() healthpb.HealthCheckResponse_ServingStatus {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := health.Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			return healthpb.HealthCheckResponse_UNKNOWN
		}
		return resp.Status
	}
	readyz := "http://" + m.AdminAddr + "/readyz"
	if httpStatus(readyz) != http.StatusOK || serving() != healthpb.HealthCheckResponse_SERVING {
		t.Fatal("not ready at start")
	}

	tail := startTailer(t, c, "orders")
	worker := startGroupWorker(t, c, "orders", "fault")
	ld := startLoad(t, m.HTTPAddr, "orders", "evt", 8)
	e2e.Eventually(t, "50 events stored", func() bool { return ld.count(stored) >= 50 })
	e2e.Eventually(t, "the tail to follow", func() bool { return len(tail.delivered()) >= 20 })

	killed := time.Now()
	rs.Kill()
	after := func(at time.Time, code int) func(hookResult) bool {
		return func(r hookResult) bool { return r.start.After(at) && r.err == nil && r.status == code }
	}
	e2e.Eventually(t, "503s while Redis is down", func() bool { return ld.count(after(killed, http.StatusServiceUnavailable)) >= 10 })
	e2e.Eventually(t, "/readyz 503", func() bool { return httpStatus(readyz) == http.StatusServiceUnavailable })
	e2e.Eventually(t, "gRPC health NOT_SERVING", func() bool { return serving() == healthpb.HealthCheckResponse_NOT_SERVING })
	e2e.Eventually(t, "the tail stream to end", func() bool { return len(tail.ended()) > 0 })
	e2e.Eventually(t, "the group stream to end", func() bool { return len(worker.ended()) > 0 })
	downAt := len(tail.delivered())

	rs.Restart(t)
	restarted := time.Now()
	e2e.Eventually(t, "/readyz 200", func() bool { return httpStatus(readyz) == http.StatusOK })
	e2e.Eventually(t, "gRPC health SERVING", func() bool { return serving() == healthpb.HealthCheckResponse_SERVING })
	e2e.Eventually(t, "50 events stored after the restart", func() bool { return ld.count(after(restarted, http.StatusOK)) >= 50 })
	res := ld.halt()

	var slowest time.Duration
	for _, r := range res {
		slowest = max(slowest, r.took)
		switch {
		case r.err != nil:
			t.Errorf("%s: no answer: %v", r.id, r.err)
		case r.status == http.StatusServiceUnavailable:
			if r.retryAfter != "1" { // an outage has no known end: retry in a second
				t.Errorf("%s: 503 with Retry-After %q, want 1", r.id, r.retryAfter)
			}
		case r.status != http.StatusOK:
			t.Errorf("%s: status %d", r.id, r.status)
		}
		if r.took > 5*time.Second { // the bound is 2s; generous for a loaded machine
			t.Errorf("%s: answered after %s (status %d)", r.id, r.took, r.status)
		}
	}
	t.Logf("slowest answer %s; %d answered 503 while Redis was down", slowest, ld.count(after(killed, http.StatusServiceUnavailable)))

	rdb := redisClient(t, rs.URL())
	ids := streamEventIDs(t, rdb, "orders")
	requireStored(t, res, ids)

	// The tail resumed from its cursor: it saw exactly the stream, in order.
	e2e.Eventually(t, "the tail to catch up", func() bool { return len(tail.delivered()) >= len(ids) })
	if got := tail.delivered(); !slices.Equal(got, ids) {
		t.Errorf("tail delivered %d events, stream holds %d: not the same sequence (gap or repeat)", len(got), len(ids))
	}
	if len(tail.delivered()) <= downAt {
		t.Error("the tail did not resume")
	}
	if errs := tail.ended(); !allUnavailable(errs) {
		t.Errorf("tail streams ended with %v, want UNAVAILABLE only", errs)
	}
	// At least once: a delivery whose ack was lost with Redis comes back.
	e2e.Eventually(t, "the group to process every stored event", func() bool { return worker.hasProcessed(ids) })
	if errs := worker.ended(); !allUnavailable(errs) {
		t.Errorf("group streams ended with %v, want UNAVAILABLE only", errs)
	}
}

// signalRelayd sends sig to a relayd process.
func signalRelayd(t testing.TB, p *scaleProc, sig syscall.Signal) {
	t.Helper()
	if err := p.Signal(sig); err != nil {
		t.Fatalf("signal %v: %v", sig, err)
	}
}

// waitExit waits for a relayd process to exit and returns its exit code.
func waitExit(t testing.TB, p *scaleProc) int {
	t.Helper()
	code, ok := p.Wait(waitFor)
	if !ok {
		t.Fatalf("relayd did not exit: %s", p.Logs())
	}
	return code
}

// TestRelaydProcess runs relayd as a separate process (internal/e2e) against a real Redis with
// appendfsync always, and kills or stops it.
func TestRelaydProcess(t *testing.T) {
	e2e.Slow(t)

	t.Run("SIGKILL mid-load and restart: every 2xx is stored", func(t *testing.T) {
		rs := durableRedis(t)
		config := writeConfig(t, rs.URL(), "", hmacSource("orders"))
		p := startScaleRelayd(t, config)
		ld := startLoad(t, p.HTTP, "orders", "evt", 8)
		e2e.Eventually(t, "50 events stored", func() bool { return ld.count(stored) >= 50 })
		signalRelayd(t, p, syscall.SIGKILL)
		waitExit(t, p)
		killed := time.Now()
		e2e.Eventually(t, "requests to fail while relayd is down", func() bool {
			return ld.count(func(r hookResult) bool { return r.start.After(killed) && r.err != nil }) > 0
		})

		p2 := startScaleRelayd(t, config)
		ld.setAddr(p2.HTTP)
		restarted := time.Now()
		e2e.Eventually(t, "50 events stored after the restart", func() bool {
			return ld.count(func(r hookResult) bool { return r.start.After(restarted) && stored(r) }) >= 50
		})
		res := ld.halt()
		requireStored(t, res, streamEventIDs(t, redisClient(t, rs.URL()), "orders"))
	})

	t.Run("SIGTERM: in-flight requests finish, streams end UNAVAILABLE, exit 0", func(t *testing.T) {
		rs := durableRedis(t)
		p := startScaleRelayd(t, writeConfig(t, rs.URL(), "", hmacSource("orders")))
		c := procClient(t, p)
		tail := subscribe(t, c, &eventrelayv1.SubscribeRequest{Sources: []string{"orders"}, HeartbeatInterval: durationpb.New(100 * time.Millisecond)})
		group := subscribe(t, c, groupReq("orders", "g", "c1", 0))
		tail.Ready(t)
		group.Ready(t)
		httpStream := openHTTPStream(t, p.HTTP)

		// Requests in flight at SIGTERM: headers and half the body sent.
		var slow []*slowPost
		for i := range 3 {
			slow = append(slow, startSlowPost(t, p.HTTP, "orders", fmt.Sprintf("evt_inflight%d", i)))
		}
		ld := startLoad(t, p.HTTP, "orders", "evt", 4)
		e2e.Eventually(t, "20 events stored", func() bool { return ld.count(stored) >= 20 })

		signalRelayd(t, p, syscall.SIGTERM)
		stopped := time.Now()
		e2e.Eventually(t, "the HTTP listener to close", func() bool {
			conn, err := net.DialTimeout("tcp", p.HTTP, time.Second)
			if err == nil {
				conn.Close()
			}
			return err != nil
		})
		for _, s := range slow {
			if a := s.finish(t); a.EventID != s.id || a.Duplicate {
				t.Errorf("in-flight request %s: %+v", s.id, a)
			}
		}
		for name, s := range map[string]*sub{"tail": tail, "group": group} {
			if err := s.End(t); status.Code(err) != codes.Unavailable {
				t.Errorf("%s stream ended with %v, want UNAVAILABLE", name, err)
			}
		}
		if last, err := httpStream.end(t); err != nil || !strings.Contains(last, `"code":14`) {
			t.Errorf("HTTP stream: last line %q, err %v; want a clean end with an UNAVAILABLE (14) error", last, err)
		}
		// run gives Close 10s and then exits 1: exit code 0 means it stopped within 10s.
		code := waitExit(t, p)
		t.Logf("exited %d, %s after SIGTERM", code, time.Since(stopped))
		if code != 0 {
			t.Errorf("exit code %d, want 0", code)
		}
		res := ld.halt()
		ids := streamEventIDs(t, redisClient(t, rs.URL()), "orders")
		requireStored(t, res, ids)
		for _, s := range slow {
			if !slices.Contains(ids, s.id) {
				t.Errorf("in-flight %s is not in the stream", s.id)
			}
		}
	})
}

// slowPost is a webhook request whose body is sent in two halves on a raw connection.
type slowPost struct {
	id   string
	conn net.Conn
	rest []byte
}

func startSlowPost(t testing.TB, addr, source, id string) *slowPost {
	t.Helper()
	body := hookBody(id, "inflight.event")
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	head := fmt.Sprintf("POST /v1/webhooks/%s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nX-Signature: %s\r\nContent-Length: %d\r\n\r\n",
		source, addr, e2e.Sign(testSecret, body), len(body))
	half := len(body) / 2
	if _, err := conn.Write(append([]byte(head), body[:half]...)); err != nil {
		t.Fatal(err)
	}
	return &slowPost{id: id, conn: conn, rest: body[half:]}
}

// finish sends the rest of the body and returns the 200 answer.
func (s *slowPost) finish(t testing.TB) hookAnswer {
	t.Helper()
	_ = s.conn.SetDeadline(time.Now().Add(waitFor))
	if _, err := s.conn.Write(s.rest); err != nil {
		t.Fatalf("%s: %v", s.id, err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(s.conn), nil)
	if err != nil {
		t.Fatalf("%s: no answer: %v", s.id, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %d %s", s.id, resp.StatusCode, b)
	}
	var a hookAnswer
	if err := json.Unmarshal(b, &a); err != nil {
		t.Fatalf("%s: answer %q: %v", s.id, b, err)
	}
	return a
}

// httpStream is a Subscribe stream over HTTP (newline-delimited JSON).
type httpStream struct {
	done chan struct{}
	last string
	err  error
}

func openHTTPStream(t testing.TB, addr string) *httpStream {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/v1/events:subscribe?sources=orders&heartbeat_interval=0.1s")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/events:subscribe: %d", resp.StatusCode)
	}
	br := bufio.NewReader(resp.Body)
	if line, err := br.ReadString('\n'); err != nil || !strings.Contains(line, "heartbeat") {
		t.Fatalf("first line %q: %v", line, err)
	}
	s := &httpStream{done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			line, err := br.ReadString('\n')
			if strings.TrimSpace(line) != "" {
				s.last = strings.TrimSpace(line)
			}
			if err != nil {
				if err != io.EOF {
					s.err = err
				}
				return
			}
		}
	}()
	return s
}

// end waits for the stream to end and returns its last line and a read error (nil for a
// clean end).
func (s *httpStream) end(t testing.TB) (string, error) {
	t.Helper()
	select {
	case <-s.done:
		return s.last, s.err
	case <-time.After(waitFor):
		t.Fatal("HTTP stream did not end")
	}
	return "", nil
}
