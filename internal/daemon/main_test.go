package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventrelayv1 "github.com/eventrelay/eventrelay/gen/eventrelay/v1"
	"github.com/eventrelay/eventrelay/internal/config"
	"github.com/eventrelay/eventrelay/internal/e2e"
	"github.com/eventrelay/eventrelay/internal/redistest"
	"github.com/eventrelay/eventrelay/relay"
	"github.com/eventrelay/eventrelay/relay/embedded"
	"github.com/eventrelay/eventrelay/relay/verify"
)

const testSecret = "s3cret-for-tests"

// testConfig is a loopback configuration with one hmac source "orders".
func testConfig(redisURL string) *config.Config {
	cfg := config.Default()
	cfg.HTTP.Addr = "127.0.0.1:0"
	cfg.GRPC.Addr = "127.0.0.1:0"
	cfg.Admin.Addr = "127.0.0.1:0"
	cfg.Redis.URL = redisURL
	// Tests wait on heartbeats: let them ask for 100 ms ones (relayd's default minimum is 1s).
	cfg.Subscribe.MinHeartbeat = 100 * time.Millisecond
	src := relay.SourceConfig{Name: "orders", Provider: "hmac", MaxBodyBytes: 4096, Verify: &verify.Options{Secrets: []relay.Secret{{Value: []byte(testSecret)}}}}
	src.SetDefaults()
	cfg.Sources = []relay.SourceConfig{src}
	return cfg
}

// startMain runs a Main for the test and stops it at cleanup.
func startMain(t testing.TB, cfg *config.Config) *Main {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	m := NewMain(cfg, log)
	if err := m.Run(context.Background()); err != nil {
		_ = m.Close()
		t.Fatalf("Run: %v", err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// embeddedURL starts an embedded server for the test, as relayd does when redis.url is
// empty, and returns its URL: the test can then look at the store with a Redis client.
func embeddedURL(t testing.TB) string {
	t.Helper()
	srv, err := embedded.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return srv.URL()
}

// onBothStores runs run against the embedded store and a real redis-server.
func onBothStores(t *testing.T, run func(t *testing.T, url string)) {
	t.Run("embedded", func(t *testing.T) { run(t, embeddedURL(t)) })
	t.Run("redis", func(t *testing.T) { run(t, redistest.Start(t)) })
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

type postResult struct {
	status int
	body   []byte
	header http.Header
}

func post(t testing.TB, m *Main, source string, body []byte, sig string, hdr ...string) postResult {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+m.HTTPAddr+"/v1/webhooks/"+source, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if sig != "" {
		req.Header.Set("X-Signature", sig)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return postResult{resp.StatusCode, b, resp.Header}
}

func client(t testing.TB, m *Main) eventrelayv1.EventServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(m.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return eventrelayv1.NewEventServiceClient(conn)
}

// collect reads n deliveries from a subscription.
func collect(t testing.TB, c eventrelayv1.EventServiceClient, req *eventrelayv1.SubscribeRequest, n int) []*eventrelayv1.Delivery {
	t.Helper()
	ds, _ := recvMessages(t, c, req, n)
	return ds
}

// recvMessages reads n deliveries from a subscription (within 20 s) and returns them with the
// number of deliveries each message carried: 1 for a plain delivery, more for a batch
// (SubscribeRequest.max_batch), which never holds fewer than two.
func recvMessages(t testing.TB, c eventrelayv1.EventServiceClient, req *eventrelayv1.SubscribeRequest, n int) (ds []*eventrelayv1.Delivery, sizes []int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stream, err := c.Subscribe(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	for len(ds) < n {
		msg, err := stream.Recv()
		if err != nil {
			t.Fatalf("after %d deliveries: %v", len(ds), err)
		}
		switch k := msg.GetKind().(type) {
		case *eventrelayv1.SubscribeResponse_Delivery:
			ds, sizes = append(ds, k.Delivery), append(sizes, 1)
		case *eventrelayv1.SubscribeResponse_Batch:
			if len(k.Batch.GetDeliveries()) < 2 {
				t.Fatalf("a batch of %d deliveries", len(k.Batch.GetDeliveries()))
			}
			ds, sizes = append(ds, k.Batch.GetDeliveries()...), append(sizes, len(k.Batch.GetDeliveries()))
		}
	}
	return ds, sizes
}

// countEvents lists every stored event of source.
func countEvents(t testing.TB, c eventrelayv1.EventServiceClient, source string) int {
	t.Helper()
	n, token := 0, ""
	for {
		resp, err := c.ListEvents(context.Background(), &eventrelayv1.ListEventsRequest{Source: source, PageSize: 1000, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		n += len(resp.Deliveries)
		if token = resp.NextPageToken; token == "" {
			return n
		}
	}
}

// prettyBody is pretty-printed JSON with non-ASCII text: it must come out byte for byte.
func prettyBody(id string) []byte {
	return []byte(fmt.Sprintf("{\n  \"id\": %q,\n  \"type\": \"order.created\",\n  \"note\": \"Grüße, 東京 🚀\",\n  \"amount\":   12.50\n}\n", id))
}

func runEndToEnd(t *testing.T, redisURL string) {
	m := startMain(t, testConfig(redisURL))
	c := client(t, m)

	body := prettyBody("evt_1")
	r := post(t, m, "orders", body, e2e.Sign(testSecret, body))
	if r.status != http.StatusOK {
		t.Fatalf("POST: %d %s", r.status, r.body)
	}
	var ack struct {
		EventID   string `json:"event_id"`
		Duplicate bool   `json:"duplicate"`
	}
	if err := json.Unmarshal(r.body, &ack); err != nil || ack.EventID != "evt_1" || ack.Duplicate {
		t.Fatalf("POST answer %s (%v)", r.body, err)
	}
	if !bytes.Contains(r.body, []byte(`"duplicate":false`)) && !bytes.Contains(r.body, []byte(`"duplicate": false`)) {
		t.Errorf("answer lacks duplicate=false: %s", r.body)
	}

	t.Run("byte-identical out of Subscribe", func(t *testing.T) {
		ds := collect(t, c, &eventrelayv1.SubscribeRequest{Sources: []string{"orders"}, Start: eventrelayv1.StartPosition_START_POSITION_EARLIEST}, 1)
		ev := ds[0].Event
		if !bytes.Equal(ev.Data, body) {
			t.Fatalf("data changed:\n got %q\nwant %q", ev.Data, body)
		}
		if ev.Id != "evt_1" || ev.Type != "order.created" || ev.Source != "orders" || ev.DataContentType != "application/json" {
			t.Errorf("attributes: %+v", ev)
		}
		if ev.Verification.GetProvider() != "hmac" || ds[0].Cursor == "" {
			t.Errorf("verification %v cursor %q", ev.Verification, ds[0].Cursor)
		}
	})

	t.Run("duplicate is stored once", func(t *testing.T) {
		r := post(t, m, "orders", body, e2e.Sign(testSecret, body))
		if r.status != 200 || !strings.Contains(string(r.body), `"duplicate":true`) {
			t.Fatalf("%d %s", r.status, r.body)
		}
		if n := countEvents(t, c, "orders"); n != 1 {
			t.Fatalf("%d events stored", n)
		}
	})

	t.Run("bad requests store nothing", func(t *testing.T) {
		other := prettyBody("evt_bad")
		big := bytes.Repeat([]byte("x"), 5000)
		for _, tc := range []struct {
			name   string
			source string
			body   []byte
			sig    string
			want   int
		}{
			{"tampered", "orders", other, e2e.Sign(testSecret, body), 401},
			{"wrong secret", "orders", other, e2e.Sign("nope", other), 401},
			{"unsigned", "orders", other, "", 401},
			{"malformed signature", "orders", other, "sha256=zz", 401},
			{"unknown source", "nope", other, e2e.Sign(testSecret, other), 404},
			{"oversized", "orders", big, e2e.Sign(testSecret, big), 413},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := post(t, m, tc.source, tc.body, tc.sig)
				if r.status != tc.want {
					t.Fatalf("status %d, want %d: %s", r.status, tc.want, r.body)
				}
				if tc.want == 401 && !strings.Contains(string(r.body), "signature verification failed") {
					t.Errorf("401 body should be generic: %s", r.body)
				}
			})
		}
		if n := countEvents(t, c, "orders"); n != 1 {
			t.Fatalf("%d events stored after bad requests", n)
		}
	})

	t.Run("405 for other methods", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPut, "http://"+m.HTTPAddr+"/v1/webhooks/orders", strings.NewReader("{}"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})

	// More events for replay.
	var ids []string
	for i := 2; i <= 6; i++ {
		id := fmt.Sprintf("evt_%d", i)
		b := prettyBody(id)
		if r := post(t, m, "orders", b, e2e.Sign(testSecret, b)); r.status != 200 {
			t.Fatalf("POST %s: %d %s", id, r.status, r.body)
		}
		ids = append(ids, id)
		time.Sleep(3 * time.Millisecond) // distinct milliseconds, for the replay-from-a-time check
	}

	t.Run("replay after a cursor: no gap, no repeat", func(t *testing.T) {
		all := collect(t, c, &eventrelayv1.SubscribeRequest{Sources: []string{"orders"}, Start: eventrelayv1.StartPosition_START_POSITION_EARLIEST}, 6)
		for k := 0; k < 5; k++ {
			rest := collect(t, c, &eventrelayv1.SubscribeRequest{AfterCursor: all[k].Cursor}, 5-k)
			for j, d := range rest {
				if d.Event.Id != all[k+1+j].Event.Id {
					t.Fatalf("after cursor %d: got %s at %d, want %s", k, d.Event.Id, j, all[k+1+j].Event.Id)
				}
			}
		}
	})

	t.Run("replay from a time", func(t *testing.T) {
		all := collect(t, c, &eventrelayv1.SubscribeRequest{Start: eventrelayv1.StartPosition_START_POSITION_EARLIEST}, 6)
		since := all[3].Event.ReceivedTime
		got := collect(t, c, &eventrelayv1.SubscribeRequest{Since: since}, 3)
		for i, d := range got {
			if d.Event.Id != all[3+i].Event.Id {
				t.Fatalf("since %v: delivery %d is %s, want %s", since.AsTime(), i, d.Event.Id, all[3+i].Event.Id)
			}
		}
	})

	t.Run("tail from latest sees new events and heartbeats carry the cursor", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		stream, err := c.Subscribe(ctx, &eventrelayv1.SubscribeRequest{Sources: []string{"orders"}, HeartbeatInterval: durationpb.New(200 * time.Millisecond)})
		if err != nil {
			t.Fatal(err)
		}
		msg, err := stream.Recv()
		if err != nil || msg.GetHeartbeat().GetCursor() == "" {
			t.Fatalf("first message %v %v", msg, err)
		}
		b := prettyBody("evt_live")
		if r := post(t, m, "orders", b, e2e.Sign(testSecret, b)); r.status != 200 {
			t.Fatalf("POST: %d", r.status)
		}
		for {
			msg, err := stream.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if d := msg.GetDelivery(); d != nil {
				if d.Event.Id != "evt_live" {
					t.Fatalf("got %s", d.Event.Id)
				}
				break
			}
		}
	})

	t.Run("invalid subscribe arguments", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			req  *eventrelayv1.SubscribeRequest
			want codes.Code
		}{
			{"bad cursor", &eventrelayv1.SubscribeRequest{AfterCursor: "!!!"}, codes.InvalidArgument},
			{"unknown source", &eventrelayv1.SubscribeRequest{Sources: []string{"nope"}}, codes.NotFound},
			{"tiny heartbeat", &eventrelayv1.SubscribeRequest{HeartbeatInterval: durationpb.New(time.Millisecond)}, codes.InvalidArgument},
			{"bad since", &eventrelayv1.SubscribeRequest{Since: &timestamppb.Timestamp{Seconds: -1 << 62}}, codes.InvalidArgument},
		} {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			stream, err := c.Subscribe(ctx, tc.req)
			if err == nil {
				_, err = stream.Recv()
			}
			cancel()
			if st := status.Convert(err); st.Code() != tc.want {
				t.Errorf("%s: %v, want %s", tc.name, err, tc.want)
			}
		}
	})

	t.Run("GetEvent", func(t *testing.T) {
		resp, err := c.GetEvent(context.Background(), &eventrelayv1.GetEventRequest{Source: "orders", Id: "evt_3"})
		if err != nil || !bytes.Equal(resp.Event.Data, prettyBody("evt_3")) {
			t.Fatalf("%v %v", resp, err)
		}
		_, err = c.GetEvent(context.Background(), &eventrelayv1.GetEventRequest{Source: "orders", Id: "missing"})
		if status.Code(err) != codes.NotFound {
			t.Fatalf("missing: %v", err)
		}
	})

	t.Run("Publish", func(t *testing.T) {
		resp, err := c.Publish(context.Background(), &eventrelayv1.PublishRequest{Source: "orders", Type: "internal.thing", Data: []byte(`{"a":1}`)})
		if err != nil || resp.EventId == "" {
			t.Fatalf("%v %v", resp, err)
		}
		got, err := c.GetEvent(context.Background(), &eventrelayv1.GetEventRequest{Source: "orders", Id: resp.EventId})
		if err != nil || got.Event.Type != "internal.thing" {
			t.Fatalf("%v %v", got, err)
		}
	})
}

func TestEndToEndEmbedded(t *testing.T) { runEndToEnd(t, "") }

func TestEndToEndRedis(t *testing.T) { runEndToEnd(t, redistest.Start(t)) }

// TestRestartKeepsHistory restarts relayd on the same real Redis: the history is still there.
func TestRestartKeepsHistory(t *testing.T) {
	url := redistest.Start(t)
	m := startMain(t, testConfig(url))
	for i := range 3 {
		b := prettyBody(fmt.Sprintf("evt_r%d", i))
		if r := post(t, m, "orders", b, e2e.Sign(testSecret, b)); r.status != 200 {
			t.Fatalf("POST: %d %s", r.status, r.body)
		}
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	m2 := startMain(t, testConfig(url))
	ds := collect(t, client(t, m2), &eventrelayv1.SubscribeRequest{Start: eventrelayv1.StartPosition_START_POSITION_EARLIEST}, 3)
	for i, d := range ds {
		if want := fmt.Sprintf("evt_r%d", i); d.Event.Id != want || !bytes.Equal(d.Event.Data, prettyBody(want)) {
			t.Fatalf("event %d: %s", i, d.Event.Id)
		}
	}
}

// TestCursorOutOfRange trims the history past a cursor: resuming from it is OUT_OF_RANGE.
func TestCursorOutOfRange(t *testing.T) {
	url := redistest.Start(t)
	m := startMain(t, testConfig(url))
	c := client(t, m)
	for i := range 3 {
		b := prettyBody(fmt.Sprintf("evt_o%d", i))
		if r := post(t, m, "orders", b, e2e.Sign(testSecret, b)); r.status != 200 {
			t.Fatalf("POST: %d", r.status)
		}
	}
	ds := collect(t, c, &eventrelayv1.SubscribeRequest{Start: eventrelayv1.StartPosition_START_POSITION_EARLIEST}, 3)
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	if err := rdb.XTrimMaxLen(context.Background(), "relay:{orders:0}:s", 1).Err(); err != nil {
		t.Fatal(err)
	}
	stream, err := c.Subscribe(context.Background(), &eventrelayv1.SubscribeRequest{AfterCursor: ds[0].Cursor})
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.OutOfRange || !strings.Contains(status.Convert(err).Message(), "oldest available") {
		t.Fatalf("got %v", err)
	}
	// A cursor on the oldest retained entry is still fine.
	b := prettyBody("evt_o3")
	if r := post(t, m, "orders", b, e2e.Sign(testSecret, b)); r.status != 200 {
		t.Fatalf("POST: %d", r.status)
	}
	if got := collect(t, c, &eventrelayv1.SubscribeRequest{AfterCursor: ds[2].Cursor}, 1); got[0].Event.Id != "evt_o3" {
		t.Fatalf("got %s", got[0].Event.Id)
	}
}

// slow skips a slow suite (Redis Cluster, Sentinel, process kills, load) under -short.
