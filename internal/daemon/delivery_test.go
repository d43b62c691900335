package daemon

// End-to-end tests of the delivery guarantees (issue 4) through the same Main that relayd
// runs, against real redis-server processes: concurrent duplicates stored once, consumer
// groups over gRPC (work sharing, redelivery, dead letters and redrive, hand-off after a
// disconnect, acknowledgements, nack), retention, min_replicas and goroutine leaks.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	eventrelayv1 "github.com/eventrelay/eventrelay/gen/eventrelay/v1"
	"github.com/eventrelay/eventrelay/internal/config"
	"github.com/eventrelay/eventrelay/internal/e2e"
	"github.com/eventrelay/eventrelay/internal/redistest"
	"github.com/eventrelay/eventrelay/relay"
	"github.com/eventrelay/eventrelay/relay/verify"
)

// waitFor bounds every wait of these tests for something that must happen.
const waitFor = 20 * time.Second

// hookBody is a webhook payload with an id and a type (the hmac provider's default fields).
func hookBody(id, typ string) []byte {
	return []byte(fmt.Sprintf(`{"id":%q,"type":%q,"data":{"n":1}}`, id, typ))
}

// hookAnswer is the body of a 200 webhook answer.
type hookAnswer struct {
	EventID   string `json:"event_id"`
	Duplicate bool   `json:"duplicate"`
}

// hookResult is the outcome of one webhook POST made by postHook.
type hookResult struct {
	id         string
	status     int
	answer     hookAnswer
	retryAfter string
	start      time.Time
	took       time.Duration
	err        error // transport error (no answer)
}

// postHook POSTs a webhook signed with testSecret. It is safe for concurrent use (no t).
func postHook(ctx context.Context, hc *http.Client, addr, source string, body []byte) hookResult {
	r := hookResult{start: time.Now()}
	defer func() { r.took = time.Since(r.start) }()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/v1/webhooks/"+source, bytes.NewReader(body))
	if err != nil {
		r.err = err
		return r
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Signature", e2e.Sign(testSecret, body))
	resp, err := hc.Do(req)
	if err != nil {
		r.err = err
		r.took = time.Since(r.start)
		return r
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	r.status, r.retryAfter = resp.StatusCode, resp.Header.Get("Retry-After")
	if err != nil {
		r.err = fmt.Errorf("reading the answer: %w", err)
	} else if r.status == http.StatusOK {
		if err := json.Unmarshal(b, &r.answer); err != nil {
			r.err = fmt.Errorf("answer %q: %w", b, err)
		}
	}
	r.took = time.Since(r.start)
	return r
}

// mustPost POSTs one webhook and requires a 200.
func mustPost(t testing.TB, addr, source, id string) hookAnswer {
	t.Helper()
	r := postHook(context.Background(), http.DefaultClient, addr, source, hookBody(id, "test.event"))
	if r.err != nil || r.status != http.StatusOK {
		t.Fatalf("POST %s to %s: status %d err %v", id, source, r.status, r.err)
	}
	return r.answer
}

// postJSON sends a JSON request to an HTTP route of EventService and returns the status and body.
func postJSON(t testing.TB, m *Main, path string, v any) (int, []byte) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post("http://"+m.HTTPAddr+path, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

// addSource adds an hmac source signed with testSecret to cfg.
func addSource(cfg *config.Config, name string) {
	src := relay.SourceConfig{Name: name, Provider: "hmac", Verify: &verify.Options{Secrets: []relay.Secret{{Value: []byte(testSecret)}}}}
	src.SetDefaults()
	cfg.Sources = append(cfg.Sources, src)
}

// redisClient is a direct client of the test's Redis, closed at cleanup.
func redisClient(t testing.TB, url string) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// streamEventIDs reads partition 0 of source straight from Redis and returns the event ids in
// stream order.
func streamEventIDs(t testing.TB, rdb *redis.Client, source string) []string {
	t.Helper()
	msgs, err := rdb.XRange(context.Background(), "relay:{"+source+":0}:s", "-", "+").Result()
	if err != nil {
		t.Fatalf("XRANGE %s: %v", source, err)
	}
	ids := make([]string, 0, len(msgs))
	for _, m := range msgs {
		s, _ := m.Values["e"].(string)
		ev, err := relay.DecodeEvent([]byte(s))
		if err != nil {
			t.Fatalf("entry %s: %v", m.ID, err)
		}
		ids = append(ids, ev.Id)
	}
	return ids
}

// sub is an open Subscribe stream (internal/e2e).
type sub = e2e.Stream

// subscribe opens a Subscribe stream; it is closed at cleanup.
func subscribe(t testing.TB, c eventrelayv1.EventServiceClient, req *eventrelayv1.SubscribeRequest) *sub {
	t.Helper()
	return e2e.Subscribe(t, c, req)
}

func ack(t testing.TB, c eventrelayv1.EventServiceClient, ackIDs ...string) []string {
	t.Helper()
	resp, err := c.Acknowledge(context.Background(), &eventrelayv1.AcknowledgeRequest{AckIds: ackIDs})
	if err != nil {
		t.Fatalf("Acknowledge: %v", err)
	}
	return resp.UnknownAckIds
}

func groupReq(source, group, consumer string, deadline time.Duration) *eventrelayv1.SubscribeRequest {
	r := &eventrelayv1.SubscribeRequest{Sources: []string{source}, Group: group, Consumer: consumer,
		HeartbeatInterval: durationpb.New(100 * time.Millisecond)}
	if deadline > 0 {
		r.AckDeadline = durationpb.New(deadline)
	}
	return r
}

// TestDuplicatesStoredOnceUnderConcurrency posts the same signed delivery from 50 goroutines
// at once: every request gets 200, exactly one stores it, one entry is in the stream.
func TestDuplicatesStoredOnceUnderConcurrency(t *testing.T) {
	t.Run("embedded", func(t *testing.T) { runDuplicatesUnderConcurrency(t, embeddedURL(t)) })
	t.Run("redis", func(t *testing.T) { runDuplicatesUnderConcurrency(t, redistest.Start(t)) })
}

func runDuplicatesUnderConcurrency(t *testing.T, url string) {
	m := startMain(t, testConfig(url))
	rdb := redisClient(t, url)

	const n = 50
	body := hookBody("evt_dup", "order.created")
	hc := &http.Client{Transport: &http.Transport{MaxConnsPerHost: n, MaxIdleConnsPerHost: n}, Timeout: waitFor}
	t.Cleanup(hc.CloseIdleConnections)
	results := make([]hookResult, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			results[i] = postHook(context.Background(), hc, m.HTTPAddr, "orders", body)
		}()
	}
	close(start)
	wg.Wait()

	fresh := 0
	for i, r := range results {
		if r.err != nil || r.status != http.StatusOK {
			t.Fatalf("request %d: status %d err %v", i, r.status, r.err)
		}
		if r.answer.EventID != "evt_dup" {
			t.Errorf("request %d: event_id %q", i, r.answer.EventID)
		}
		if !r.answer.Duplicate {
			fresh++
		}
	}
	if fresh != 1 {
		t.Errorf("%d answers with duplicate=false, want exactly 1", fresh)
	}
	if ids := streamEventIDs(t, rdb, "orders"); !slices.Equal(ids, []string{"evt_dup"}) {
		t.Errorf("stream holds %v, want one evt_dup", ids)
	}
}

// TestConsumerGroups drives consumer groups over gRPC (and the HTTP routes of acknowledge and
// redrive) the way a client generated from the proto files does.
func TestConsumerGroups(t *testing.T) {
	url := redistest.Start(t)
	cfg := testConfig(url)
	for _, name := range []string{"share", "retry", "dlq", "handoff", "pending", "acks", "nack"} {
		addSource(cfg, name)
	}
	m := startMain(t, cfg)
	c := client(t, m)

	t.Run("two consumers share the work, each event once, max_outstanding kept", func(t *testing.T) {
		const n = 20
		cons := map[string]*sub{}
		for _, name := range []string{"c1", "c2"} {
			r := groupReq("share", "workers", name, 0)
			r.MaxOutstanding = 1
			cons[name] = subscribe(t, c, r)
			cons[name].Ready(t)
		}
		for i := range n {
			mustPost(t, m.HTTPAddr, "share", fmt.Sprintf("evt_s%02d", i))
		}
		// One consumer always holds an unacknowledged delivery while the other's is acked: with
		// max_outstanding 1 the next event must go to the one that acked, and an ack must never
		// free the budget of the consumer still holding one.
		held := map[string]*eventrelayv1.Delivery{}
		by := map[string]string{} // event id -> consumer
		count := map[string]int{}
		for len(by) < n {
			var name string
			var d *eventrelayv1.Delivery
			select {
			case d = <-cons["c1"].Deliveries:
				name = "c1"
			case d = <-cons["c2"].Deliveries:
				name = "c2"
			case <-time.After(waitFor):
				t.Fatalf("stalled after %d of %d events", len(by), n)
			}
			if prev, ok := by[d.Event.Id]; ok {
				t.Fatalf("%s delivered again to %s (first to %s), attempt %d", d.Event.Id, name, prev, d.DeliveryAttempt)
			}
			if held[name] != nil {
				t.Fatalf("%s got %s while holding %s unacked with max_outstanding 1", name, d.Event.Id, held[name].Event.Id)
			}
			if d.DeliveryAttempt != 1 || d.AckId == "" {
				t.Errorf("%s: attempt %d ack id %q", d.Event.Id, d.DeliveryAttempt, d.AckId)
			}
			by[d.Event.Id] = name
			count[name]++
			held[name] = d
			other := map[string]string{"c1": "c2", "c2": "c1"}[name]
			if h := held[other]; h != nil {
				if u := ack(t, c, h.AckId); len(u) != 0 {
					t.Fatalf("ack of %s reported unknown", h.Event.Id)
				}
				held[other] = nil
			}
		}
		for _, h := range held {
			if h != nil {
				ack(t, c, h.AckId)
			}
		}
		if count["c1"] == 0 || count["c2"] == 0 {
			t.Errorf("work not shared: %v", count)
		}
		for _, s := range cons {
			s.Quiet(t, 300*time.Millisecond, "after every event was acked")
		}
	})

	t.Run("an unacked delivery comes back with attempt 2", func(t *testing.T) {
		s := subscribe(t, c, groupReq("retry", "g", "c1", 300*time.Millisecond))
		s.Ready(t)
		mustPost(t, m.HTTPAddr, "retry", "evt_r1")
		d1 := s.Next(t)
		d2 := s.Next(t)
		if d1.Event.Id != "evt_r1" || d1.DeliveryAttempt != 1 || d2.Event.Id != "evt_r1" || d2.DeliveryAttempt != 2 {
			t.Fatalf("got %s attempt %d, then %s attempt %d", d1.Event.Id, d1.DeliveryAttempt, d2.Event.Id, d2.DeliveryAttempt)
		}
		if u := ack(t, c, d2.AckId); len(u) != 0 {
			t.Fatalf("ack: unknown %v", u)
		}
		// The first delivery's ack id names the same entry: it is acknowledged already.
		if u := ack(t, c, d1.AckId); !slices.Equal(u, []string{d1.AckId}) {
			t.Fatalf("second ack: unknown %v", u)
		}
		s.Quiet(t, 600*time.Millisecond, "after the ack")
	})

	t.Run("never acked: dead letter of the group after max_delivery_attempts, readable, redriven to it over gRPC and HTTP", func(t *testing.T) {
		r := groupReq("dlq", "g", "c1", 200*time.Millisecond)
		r.MaxDeliveryAttempts = 2
		s := subscribe(t, c, r)
		s.Ready(t)
		dl := subscribe(t, c, &eventrelayv1.SubscribeRequest{Sources: []string{"dlq"}, DeadLetters: true, Group: "g",
			HeartbeatInterval: durationpb.New(100 * time.Millisecond)})
		mustPost(t, m.HTTPAddr, "dlq", "evt_dl")

		deadLetter := func() {
			t.Helper()
			for want := int32(1); want <= 2; want++ {
				if d := s.Next(t); d.Event.Id != "evt_dl" || d.DeliveryAttempt != want {
					t.Fatalf("got %s attempt %d, want attempt %d", d.Event.Id, d.DeliveryAttempt, want)
				}
			}
			if d := dl.Next(t); d.Event.Id != "evt_dl" || d.AckId != "" {
				t.Fatalf("dead letter stream: %s ack id %q", d.Event.Id, d.AckId)
			}
			resp, err := c.ListEvents(context.Background(), &eventrelayv1.ListEventsRequest{Source: "dlq", DeadLetters: true, Group: "g"})
			if err != nil || len(resp.Deliveries) != 1 || resp.Deliveries[0].Event.Id != "evt_dl" {
				t.Fatalf("ListEvents(dead_letters): %v %v", resp, err)
			}
			if got := resp.Deliveries[0].DeliveryAttempt; got != 2 {
				t.Errorf("dead letter's delivery_attempt = %d, want the 2 deliveries made", got)
			}
		}
		deadLetter()
		s.Quiet(t, 500*time.Millisecond, "after dead-lettering")

		resp, err := c.RedriveDeadLetters(context.Background(), &eventrelayv1.RedriveDeadLettersRequest{Source: "dlq", Group: "g"})
		if err != nil || resp.Redriven != 1 {
			t.Fatalf("RedriveDeadLetters: %v %v", resp, err)
		}
		deadLetter() // redriven to the group: attempts start again

		code, body := postJSON(t, m, "/v1/sources/dlq:redrive", map[string]any{"group": "g", "ids": []string{"nope", "evt_dl"}})
		if code != http.StatusOK || !strings.Contains(string(body), `"redriven":1`) {
			t.Fatalf("POST :redrive: %d %s", code, body)
		}
		d := s.Next(t)
		if d.Event.Id != "evt_dl" || d.DeliveryAttempt != 1 {
			t.Fatalf("after HTTP redrive: %s attempt %d", d.Event.Id, d.DeliveryAttempt)
		}
		if u := ack(t, c, d.AckId); len(u) != 0 {
			t.Fatalf("ack: unknown %v", u)
		}
		left, err := c.ListEvents(context.Background(), &eventrelayv1.ListEventsRequest{Source: "dlq", DeadLetters: true, Group: "g"})
		if err != nil || len(left.Deliveries) != 0 {
			t.Fatalf("dead letters left: %v %v", left, err)
		}
		if n := countEvents(t, c, "dlq"); n != 1 {
			t.Errorf("main stream holds %d entries, want the original alone (redrive adds nothing)", n)
		}
	})

	t.Run("a consumer that disconnects leaves its entries to another after the ack deadline", func(t *testing.T) {
		const deadline = 300 * time.Millisecond
		s1 := subscribe(t, c, groupReq("handoff", "g", "c1", deadline))
		s1.Ready(t)
		want := []string{"evt_h1", "evt_h2", "evt_h3"}
		for _, id := range want {
			mustPost(t, m.HTTPAddr, "handoff", id)
		}
		for range want {
			s1.Next(t)
		}
		s1.Close() // crashes without acking
		s2 := subscribe(t, c, groupReq("handoff", "g", "c2", deadline))
		var got []string
		for range want {
			d := s2.Next(t)
			if d.DeliveryAttempt != 2 {
				t.Errorf("%s: attempt %d, want 2", d.Event.Id, d.DeliveryAttempt)
			}
			if u := ack(t, c, d.AckId); len(u) != 0 {
				t.Errorf("ack %s: unknown", d.Event.Id)
			}
			got = append(got, d.Event.Id)
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Fatalf("c2 got %v, want %v", got, want)
		}
		s2.Quiet(t, 2*deadline, "after the acks")
	})

	t.Run("a consumer that reconnects gets its own pending entries first", func(t *testing.T) {
		s1 := subscribe(t, c, groupReq("pending", "g", "c1", time.Minute))
		s1.Ready(t)
		mustPost(t, m.HTTPAddr, "pending", "evt_p1")
		mustPost(t, m.HTTPAddr, "pending", "evt_p2")
		s1.Next(t)
		s1.Next(t)
		s1.Close()
		s1 = subscribe(t, c, groupReq("pending", "g", "c1", time.Minute))
		for _, id := range []string{"evt_p1", "evt_p2"} {
			d := s1.Next(t)
			if d.Event.Id != id || d.DeliveryAttempt != 2 {
				t.Fatalf("got %s attempt %d, want %s attempt 2", d.Event.Id, d.DeliveryAttempt, id)
			}
			ack(t, c, d.AckId)
		}
	})

	t.Run("Acknowledge reports unknown ids; HTTP acknowledge takes gRPC ack ids", func(t *testing.T) {
		s := subscribe(t, c, groupReq("acks", "g", "c1", time.Minute))
		s.Ready(t)
		mustPost(t, m.HTTPAddr, "acks", "evt_a1")
		mustPost(t, m.HTTPAddr, "acks", "evt_a2")
		d1, d2 := s.Next(t), s.Next(t)

		key := relayAckKey(t, redisClient(t, url))
		a, ok := relay.DecodeAckID(d1.AckId, key)
		if !ok {
			t.Fatalf("ack id %q does not decode under relay:ackkey", d1.AckId)
		}
		a.ID = relay.ID{Ms: 1, Seq: 1} // authentic, never delivered
		never := relay.EncodeAckID(a, key)
		a.Group = "other-group"
		otherGroup := relay.EncodeAckID(a, key)
		// An ack id the relay did not issue refuses the whole call: d1 stays pending.
		if _, err := c.Acknowledge(context.Background(), &eventrelayv1.AcknowledgeRequest{AckIds: []string{d1.AckId, "garbage"}}); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("ack with garbage: %v", err)
		}
		unknown := ack(t, c, never, d1.AckId, otherGroup)
		slices.Sort(unknown)
		want := []string{never, otherGroup}
		slices.Sort(want)
		if !slices.Equal(unknown, want) {
			t.Errorf("unknown %v, want %v", unknown, want)
		}
		if u := ack(t, c, d1.AckId); !slices.Equal(u, []string{d1.AckId}) {
			t.Errorf("already acked: unknown %v", u)
		}

		code, body := postJSON(t, m, "/v1/events:acknowledge", map[string]any{"ack_ids": []string{d2.AckId}})
		var resp struct {
			Unknown []string `json:"unknown_ack_ids"`
		}
		if code != http.StatusOK || json.Unmarshal(body, &resp) != nil || len(resp.Unknown) != 0 {
			t.Fatalf("POST /v1/events:acknowledge: %d %s", code, body)
		}
		if u := ack(t, c, d2.AckId); !slices.Equal(u, []string{d2.AckId}) {
			t.Errorf("acked over HTTP, then over gRPC: unknown %v", u)
		}
		code, body = postJSON(t, m, "/v1/events:acknowledge", map[string]any{"ack_ids": []string{d2.AckId}})
		if code != http.StatusOK || json.Unmarshal(body, &resp) != nil || len(resp.Unknown) != 1 {
			t.Fatalf("POST /v1/events:acknowledge again: %d %s", code, body)
		}
		if code, body = postJSON(t, m, "/v1/events:acknowledge", map[string]any{"ack_ids": []string{d2.AckId, "garbage"}}); code != http.StatusBadRequest {
			t.Fatalf("POST /v1/events:acknowledge with garbage: %d %s", code, body)
		}
	})

	t.Run("Nack redelivers after the delay, before the ack deadline", func(t *testing.T) {
		s := subscribe(t, c, groupReq("nack", "g", "c1", time.Minute))
		s.Ready(t)
		mustPost(t, m.HTTPAddr, "nack", "evt_n1")
		d := s.Next(t)
		for attempt := int32(2); attempt <= 3; attempt++ {
			resp, err := c.Nack(context.Background(), &eventrelayv1.NackRequest{AckIds: []string{d.AckId}, Delay: durationpb.New(200 * time.Millisecond)})
			if err != nil || len(resp.UnknownAckIds) != 0 {
				t.Fatalf("Nack: %v %v", resp, err)
			}
			d = s.Next(t) // the ack deadline is a minute: only the nack can bring it back now
			if d.Event.Id != "evt_n1" || d.DeliveryAttempt != attempt {
				t.Fatalf("after nack: %s attempt %d, want attempt %d", d.Event.Id, d.DeliveryAttempt, attempt)
			}
		}
		code, body := postJSON(t, m, "/v1/events:nack", map[string]any{"ack_ids": []string{d.AckId}})
		if code != http.StatusOK || strings.Contains(string(body), d.AckId) {
			t.Fatalf("POST /v1/events:nack: %d %s", code, body)
		}
		d = s.Next(t)
		if d.DeliveryAttempt != 4 {
			t.Fatalf("after HTTP nack: attempt %d", d.DeliveryAttempt)
		}
		ack(t, c, d.AckId)
		resp, err := c.Nack(context.Background(), &eventrelayv1.NackRequest{AckIds: []string{d.AckId}})
		if err != nil || !slices.Equal(resp.UnknownAckIds, []string{d.AckId}) {
			t.Fatalf("Nack of an acked delivery: %v %v", resp, err)
		}
	})
}

// writeConfig writes a relayd YAML configuration on loopback ports and returns its path.
// sources is the YAML of the sources list (indented by two spaces), redisExtra more keys of
// the redis section.
func writeConfig(t testing.TB, redisURL, redisExtra, sources string) string {
	t.Helper()
	yaml := fmt.Sprintf(`http: {addr: "127.0.0.1:0"}
grpc: {addr: "127.0.0.1:0"}
admin: {addr: "127.0.0.1:0"}
redis:
  url: %q
%s
log: {level: info, format: json}
sources:
%s`, redisURL, redisExtra, sources)
	return writeYAML(t, yaml)
}

// writeYAML writes a configuration file for t and returns its path.
func writeYAML(t testing.TB, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "relay.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// hmacSource is the YAML of one hmac source signed with testSecret, with extra keys.
func hmacSource(name string, extra ...string) string {
	s := fmt.Sprintf("  - name: %s\n    provider: hmac\n    secrets: [%q]\n", name, testSecret)
	for _, e := range extra {
		s += "    " + e + "\n"
	}
	return s
}

// TestRetention applies max_len and retention from the configuration file on append, and a
// cursor into trimmed history is OUT_OF_RANGE.
func TestRetention(t *testing.T) {
	t.Run("embedded", func(t *testing.T) { runRetention(t, embeddedURL(t)) })
	// Small stream nodes make the approximate (~) trimming close to exact.
	t.Run("redis", func(t *testing.T) { runRetention(t, gapRedisURL(t)) })
}

func runRetention(t *testing.T, url string) {
	path := writeConfig(t, url, "", hmacSource("capped", "max_len: 20")+hmacSource("aged", "retention: 1s"))
	cfg, err := config.Load(path, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := startMain(t, cfg)
	c := client(t, m)
	rdb := redisClient(t, url)

	outOfRange := func(t *testing.T, cursor string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		stream, err := c.Subscribe(ctx, &eventrelayv1.SubscribeRequest{AfterCursor: cursor})
		if err == nil {
			_, err = stream.Recv()
		}
		if status.Code(err) != codes.OutOfRange || !strings.Contains(status.Convert(err).Message(), "oldest available") {
			t.Fatalf("resuming from a trimmed cursor: %v", err)
		}
	}
	firstCursor := func(t *testing.T, source string) string {
		t.Helper()
		return collect(t, c, &eventrelayv1.SubscribeRequest{Sources: []string{source}, Start: eventrelayv1.StartPosition_START_POSITION_EARLIEST}, 1)[0].Cursor
	}

	t.Run("max_len", func(t *testing.T) {
		const maxLen, n = 20, 300
		mustPost(t, m.HTTPAddr, "capped", "evt_c000")
		cursor := firstCursor(t, "capped")
		for i := 1; i < n; i++ {
			mustPost(t, m.HTTPAddr, "capped", fmt.Sprintf("evt_c%03d", i))
		}
		ids := streamEventIDs(t, rdb, "capped")
		// MAXLEN ~ removes whole stream nodes only: roughly maxLen entries stay.
		if len(ids) < maxLen || len(ids) > 3*maxLen {
			t.Fatalf("%d entries after %d appends with max_len %d", len(ids), n, maxLen)
		}
		if ids[len(ids)-1] != fmt.Sprintf("evt_c%03d", n-1) {
			t.Fatalf("newest entry %s", ids[len(ids)-1])
		}
		outOfRange(t, cursor)
	})

	t.Run("retention", func(t *testing.T) {
		const n = 30
		for i := range n {
			mustPost(t, m.HTTPAddr, "aged", fmt.Sprintf("evt_a%02d", i))
		}
		cursor := firstCursor(t, "aged")
		time.Sleep(1100 * time.Millisecond) // let every entry age past the 1s retention
		mustPost(t, m.HTTPAddr, "aged", "evt_new")
		ids := streamEventIDs(t, rdb, "aged")
		// MINID ~ removes the stream nodes whose entries are all older than the retention.
		if len(ids) == 0 || len(ids) > n/2 || ids[len(ids)-1] != "evt_new" {
			t.Fatalf("after the retention passed: %d entries %v", len(ids), ids)
		}
		outOfRange(t, cursor)
	})
}

// TestMinReplicas: with redis.min_replicas 1 and no replica an append is answered 503 (never
// 2xx); once a replica is attached, the same delivery is answered as a duplicate of the entry
// the primary kept, and new ones are stored.
func TestMinReplicas(t *testing.T) {
	// No 5 s wait before the full sync that attaches the replica.
	primary := redistest.StartWith(t, "--repl-diskless-sync-delay", "0")
	cfg := testConfig(primary.URL())
	cfg.Redis.MinReplicas = 1
	m := startMain(t, cfg)

	body := hookBody("evt_rep1", "order.created")
	r := postHook(context.Background(), http.DefaultClient, m.HTTPAddr, "orders", body)
	if r.err != nil || r.status != http.StatusServiceUnavailable || r.retryAfter == "" {
		t.Fatalf("without a replica: status %d Retry-After %q err %v", r.status, r.retryAfter, r.err)
	}

	replica := redistest.StartWith(t, "--replicaof", "127.0.0.1", fmt.Sprint(primary.Port()))
	rrdb := redisClient(t, replica.URL())
	deadline := time.Now().Add(waitFor)
	for {
		info, err := rrdb.Info(context.Background(), "replication").Result()
		if err == nil && strings.Contains(info, "master_link_status:up") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica never synced: %s %v", info, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	r = postHook(context.Background(), http.DefaultClient, m.HTTPAddr, "orders", body)
	if r.err != nil || r.status != http.StatusOK || !r.answer.Duplicate || r.answer.EventID != "evt_rep1" {
		t.Fatalf("retry with a replica: status %d %+v err %v", r.status, r.answer, r.err)
	}
	if a := mustPost(t, m.HTTPAddr, "orders", "evt_rep2"); a.Duplicate {
		t.Fatalf("new event answered as duplicate")
	}
	if ids := streamEventIDs(t, rrdb, "orders"); !slices.Equal(ids, []string{"evt_rep1", "evt_rep2"}) {
		t.Fatalf("replica holds %v", ids)
	}
}

// TestNoGoroutineLeaks opens and closes many Subscribe streams (tail, replay, group, dead
// letters) through gRPC, leaves some open across Main.Close, and checks that nothing started
// by relayd is left running afterwards.
func TestNoGoroutineLeaks(t *testing.T) {
	url := redistest.Start(t) // before the snapshot: its process watcher lives until cleanup
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) }) // runs after every later cleanup

	cfg := testConfig(url)
	addSource(cfg, "other")
	m := startMain(t, cfg)
	conn, err := grpc.NewClient(m.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := eventrelayv1.NewEventServiceClient(conn)
	for i := range 5 {
		mustPost(t, m.HTTPAddr, "orders", fmt.Sprintf("evt_l%d", i))
	}
	http.DefaultClient.CloseIdleConnections()

	hb := durationpb.New(100 * time.Millisecond)
	reqs := []*eventrelayv1.SubscribeRequest{
		{HeartbeatInterval: hb},
		{Start: eventrelayv1.StartPosition_START_POSITION_EARLIEST, HeartbeatInterval: hb},
		{Sources: []string{"orders"}, Group: "leak", Start: eventrelayv1.StartPosition_START_POSITION_EARLIEST, AckDeadline: durationpb.New(time.Second), HeartbeatInterval: hb},
		{Sources: []string{"orders", "other"}, Group: "leak2", AckDeadline: durationpb.New(200 * time.Millisecond), HeartbeatInterval: hb},
		{Sources: []string{"orders"}, DeadLetters: true, Group: "leak", HeartbeatInterval: hb},
	}
	var open []*sub
	const rounds = 6
	for round := range rounds {
		var subs []*sub
		for _, r := range reqs {
			subs = append(subs, subscribe(t, c, r))
		}
		for _, s := range subs {
			s.Ready(t)
		}
		mustPost(t, m.HTTPAddr, "orders", fmt.Sprintf("evt_round%d", round))
		http.DefaultClient.CloseIdleConnections()
		for i, s := range subs {
			if round == rounds-1 {
				open = append(open, s) // left open across Close
				continue
			}
			if i%2 == 0 && !reqs[i].DeadLetters {
				s.Next(t) // close some after a delivery, some right away
			}
			s.Close()
		}
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	for _, s := range open {
		if err := s.End(t); status.Code(err) != codes.Unavailable {
			t.Errorf("open stream at Close ended with %v, want UNAVAILABLE", err)
		}
	}
	_ = conn.Close()
}

// TestMinReplicasWarnings: relayd compares redis.min_replicas with the master's replicas at
// start-up and warns when there are fewer (appends refused) or more (a failover can lose
// acknowledged events); equal, it says nothing.
func TestMinReplicasWarnings(t *testing.T) {
	primary := redistest.StartWith(t, "--repl-diskless-sync-delay", "0")
	start := func(min int) string {
		t.Helper()
		var logs lockedBuffer
		cfg := testConfig(primary.URL())
		cfg.Redis.MinReplicas = min
		m := NewMain(cfg, slog.New(slog.NewTextHandler(&logs, nil)))
		if err := m.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		_ = m.Close()
		return logs.String()
	}
	const fewer, more = "but the Redis master has 0 replicas connected", "of the 2 replicas of the Redis master"
	if got := start(1); !strings.Contains(got, "redis.min_replicas is 1 "+fewer) {
		t.Errorf("min_replicas 1, no replica: no warning in\n%s", got)
	}
	for range 2 {
		r := redistest.StartWith(t, "--replicaof", "127.0.0.1", fmt.Sprint(primary.Port()))
		rrdb := redisClient(t, r.URL())
		for deadline := time.Now().Add(waitFor); ; time.Sleep(50 * time.Millisecond) {
			if info, err := rrdb.Info(context.Background(), "replication").Result(); err == nil && strings.Contains(info, "master_link_status:up") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("replica never synced")
			}
		}
	}
	if got := start(1); !strings.Contains(got, "redis.min_replicas is 1 "+more) || !strings.Contains(got, "set it to 2") {
		t.Errorf("min_replicas 1 of 2 replicas: no warning in\n%s", got)
	}
	if got := start(2); strings.Contains(got, "redis.min_replicas") {
		t.Errorf("min_replicas 2 of 2 replicas: warned\n%s", got)
	}
}
