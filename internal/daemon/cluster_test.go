package daemon

// Scale-out tests (issue 8): Redis topologies (single node with credentials, Cluster,
// Sentinel), partitioned sources with per-key order, and several relayd replicas on one
// Redis Cluster, in process (Main) and as separate relayd processes, one of them killed
// mid-load.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	eventrelayv1 "github.com/eventrelay/eventrelay/gen/eventrelay/v1"
	"github.com/eventrelay/eventrelay/internal/config"
	"github.com/eventrelay/eventrelay/internal/e2e"
	"github.com/eventrelay/eventrelay/internal/redistest"
	"github.com/eventrelay/eventrelay/internal/syncbuf"
	"github.com/eventrelay/eventrelay/relay"
	"github.com/eventrelay/eventrelay/relay/redisstore"
)

// The scale-out source: "orders" split into scalePartitions partitions by customer.
const (
	scalePartitions = 4
	scaleKey        = "data.customer"
)

// scaleConfig is testConfig with the orders source partitioned by customer.
func scaleConfig(url string, partitions int) *config.Config {
	cfg := testConfig(url)
	cfg.Sources[0].Partitions = partitions
	cfg.Sources[0].PartitionKey = scaleKey
	return cfg
}

// scaleEvent is one posted event: the seq-th event of a customer.
type scaleEvent struct {
	ID       string
	Customer string
	Seq      int
}

func scaleBody(e scaleEvent) []byte {
	return fmt.Appendf(nil, `{"id":%q,"type":"order.updated","data":{"customer":%q,"seq":%d}}`, e.ID, e.Customer, e.Seq)
}

// scaleHTTP is the client of the load: short timeouts, so that a killed replica costs little.
var scaleHTTP = &http.Client{Timeout: 10 * time.Second,
	Transport: &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second}}

// scalePost posts one signed event to a relayd HTTP address and returns the status code.
func scalePost(ctx context.Context, addr string, e scaleEvent) (int, error) {
	body := scaleBody(e)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/v1/webhooks/orders", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Signature", e2e.Sign(testSecret, body))
	resp, err := scaleHTTP.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// scaleLoad posts perCustomer events for each of customers customers: the customers
// concurrently, each customer's events one after the other (the next only once the previous
// was acknowledged), alternating between the replicas' HTTP addresses. Like a load balancer
// with retries, an event whose post fails (transport error or 5xx) is posted again to the
// next replica, up to 100 times. onAck, when set, is called after each acknowledged event
// with the number acknowledged so far. It returns every event, all acknowledged, and how
// many posts failed and were retried.
func scaleLoad(t testing.TB, addrs func() []string, customers, perCustomer int, onAck func(int)) (map[string]scaleEvent, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var (
		mu    sync.Mutex
		all   = map[string]scaleEvent{}
		acked atomic.Int64
		retry atomic.Int64
		wg    sync.WaitGroup
	)
	for c := range customers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cust := fmt.Sprintf("cus_%02d", c)
			for seq := range perCustomer {
				e := scaleEvent{ID: fmt.Sprintf("evt_%s_%03d", cust, seq), Customer: cust, Seq: seq}
				var last string
				ok := false
				for try := 0; try < 100 && !ok; try++ {
					as := addrs()
					code, err := scalePost(ctx, as[(c+seq+try)%len(as)], e)
					switch {
					case err == nil && code == http.StatusOK:
						ok = true
					case ctx.Err() != nil:
						try = 100
					default:
						last = fmt.Sprintf("status %d, %v", code, err)
						retry.Add(1)
						time.Sleep(20 * time.Millisecond)
					}
				}
				if !ok {
					t.Errorf("event %s was never acknowledged: %s", e.ID, last)
					return
				}
				mu.Lock()
				all[e.ID] = e
				mu.Unlock()
				if n := acked.Add(1); onAck != nil {
					onAck(int(n))
				}
			}
		}()
	}
	wg.Wait()
	return all, int(retry.Load())
}

// scaleVerify checks that ds holds every event of want exactly once, nothing else, and each
// customer's events in the order they were posted; every event's partition key is its
// customer.
func scaleVerify(t testing.TB, who string, ds []*eventrelayv1.Delivery, want map[string]scaleEvent) {
	t.Helper()
	seen := map[string]bool{}
	next := map[string]int{}
	for _, d := range ds {
		ev := d.GetEvent()
		e, ok := want[ev.GetId()]
		switch {
		case !ok:
			t.Errorf("%s: unexpected event %q", who, ev.GetId())
			continue
		case seen[e.ID]:
			t.Errorf("%s: event %s delivered twice", who, e.ID)
			continue
		}
		seen[e.ID] = true
		if ev.PartitionKey != e.Customer {
			t.Errorf("%s: event %s has partition key %q, want %q", who, e.ID, ev.PartitionKey, e.Customer)
		}
		if !bytes.Equal(ev.Data, scaleBody(e)) {
			t.Errorf("%s: event %s data changed: %s", who, e.ID, ev.Data)
		}
		if e.Seq != next[e.Customer] {
			t.Errorf("%s: customer %s: got event %d after %d (per-key order broken)", who, e.Customer, e.Seq, next[e.Customer]-1)
		}
		next[e.Customer] = e.Seq + 1
	}
	if len(seen) != len(want) {
		t.Errorf("%s: %d of %d events delivered", who, len(seen), len(want))
	}
}

// scaleStream reads a subscription in the background until it has n deliveries; wait
// returns them and the stream's error, if it ended before.
type scaleStream struct {
	cancel context.CancelFunc
	done   chan struct{}
	ds     []*eventrelayv1.Delivery
	hb     []string // heartbeat cursors
	err    error
}

func scaleSubscribe(t testing.TB, c eventrelayv1.EventServiceClient, req *eventrelayv1.SubscribeRequest, n int) *scaleStream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	s := &scaleStream{cancel: cancel, done: make(chan struct{})}
	t.Cleanup(func() { cancel(); <-s.done })
	stream, err := c.Subscribe(ctx, req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	go func() {
		defer close(s.done)
		for len(s.ds) < n {
			msg, err := stream.Recv()
			if err != nil {
				s.err = err
				return
			}
			if d := msg.GetDelivery(); d != nil {
				s.ds = append(s.ds, d)
			} else if hb := msg.GetHeartbeat(); hb != nil {
				s.hb = append(s.hb, hb.Cursor)
			}
		}
	}()
	return s
}

func (s *scaleStream) wait(t testing.TB) []*eventrelayv1.Delivery {
	t.Helper()
	<-s.done
	s.cancel()
	if s.err != nil {
		t.Fatalf("subscription ended after %d deliveries: %v", len(s.ds), s.err)
	}
	return s.ds
}

// scaleShards maps each partition of the orders source to the address of the cluster master
// serving its slot, checking that the slot redisstore computes is the one Redis computes.
func scaleShards(t testing.TB, rdb *redis.ClusterClient, n int) map[int]string {
	t.Helper()
	ctx := context.Background()
	slots, err := rdb.ClusterSlots(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]string{}
	for i := range n {
		p := relay.Partition{Source: "orders", Index: i}
		for _, key := range []string{redisstore.StreamKey(p), redisstore.DedupeKey(p, "x"), redisstore.DeadLetterKey(p, "g")} {
			got, err := rdb.ClusterKeySlot(ctx, key).Result()
			if err != nil || int(got) != redisstore.Slot(p) {
				t.Fatalf("CLUSTER KEYSLOT %s = %d, %v; redisstore.Slot = %d", key, got, err, redisstore.Slot(p))
			}
		}
		for _, s := range slots {
			if s.Start <= redisstore.Slot(p) && redisstore.Slot(p) <= s.End {
				out[i] = s.Nodes[0].Addr
			}
		}
		if out[i] == "" {
			t.Fatalf("no node serves slot %d", redisstore.Slot(p))
		}
	}
	return out
}

// scaleCheckPlacement checks, on each master directly, that every partition's stream is on
// the master of its slot, that each holds exactly the events whose customer hashes to it,
// and that together they hold want.
func scaleCheckPlacement(t testing.TB, cluster *redistest.Cluster, shards map[int]string, want map[string]scaleEvent) {
	t.Helper()
	ctx := context.Background()
	total := 0
	for _, addr := range cluster.Addrs() {
		node := redis.NewClient(&redis.Options{Addr: addr})
		defer node.Close()
		for p, owner := range shards {
			part := relay.Partition{Source: "orders", Index: p}
			msgs, err := node.XRange(ctx, redisstore.StreamKey(part), "-", "+").Result()
			if addr != owner {
				if err == nil || !strings.HasPrefix(err.Error(), "MOVED") {
					t.Errorf("partition %d answered by %s, which does not own its slot: %v", p, addr, err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("XRANGE partition %d on %s: %v", p, addr, err)
			}
			for _, m := range msgs {
				ev, err := relay.DecodeEvent([]byte(m.Values[redisstore.FieldEvent].(string)))
				if err != nil {
					t.Fatal(err)
				}
				if got := relay.PartitionOf(ev.PartitionKey, len(shards)); got != p {
					t.Errorf("event %s (customer %s) is in partition %d, hashes to %d", ev.Id, ev.PartitionKey, p, got)
				}
				if _, ok := want[ev.Id]; !ok {
					t.Errorf("unexpected stored event %s", ev.Id)
				}
			}
			total += len(msgs)
		}
	}
	if total != len(want) {
		t.Errorf("the partitions hold %d events, want %d (each once)", total, len(want))
	}
}

// TestScaleClusterTwoReplicas is the done-when scenario: two relayd replicas (Main) on a
// three-master Redis Cluster serve a source split into 4 partitions by customer; the
// partitions land on more than one shard; events posted alternately to both come out of
// either replica once each, each customer's in order; a cursor from one replica resumes on
// the other; group consumers on different replicas share the work and acknowledge through
// the other replica; a different partition count is refused.
func TestScaleClusterTwoReplicas(t *testing.T) {
	e2e.Slow(t)
	cluster := redistest.StartCluster(t, 3)
	cfg := func() *config.Config {
		c := scaleConfig(cluster.URL(), scalePartitions)
		c.Redis.Cluster = true
		return c
	}
	m1, m2 := startMain(t, cfg()), startMain(t, cfg())
	c1, c2 := client(t, m1), client(t, m2)
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cluster.Addrs()})
	t.Cleanup(func() { _ = rdb.Close() })

	shards := scaleShards(t, rdb, scalePartitions)
	nodes := map[string]bool{}
	for _, addr := range shards {
		nodes[addr] = true
	}
	t.Logf("partition → shard: %v", shards)
	if len(nodes) < 2 {
		t.Fatalf("the %d partitions of orders all land on %v: want more than one shard", scalePartitions, shards)
	}
	if got, err := rdb.HGet(context.Background(), redisstore.MetaKey("orders"), redisstore.MetaFieldPartitions).Result(); err != nil || got != "4" {
		t.Fatalf("recorded partition count %q, %v", got, err)
	}

	const customers, perCustomer = 8, 25
	n := customers * perCustomer
	// Subscribers on both replicas, from the beginning, live while the load runs.
	earliest := &eventrelayv1.SubscribeRequest{Sources: []string{"orders"}, Start: eventrelayv1.StartPosition_START_POSITION_EARLIEST,
		HeartbeatInterval: durationpb.New(100 * time.Millisecond)}
	s1, s2 := scaleSubscribe(t, c1, earliest, n), scaleSubscribe(t, c2, earliest, n)
	want, _ := scaleLoad(t, func() []string { return []string{m1.HTTPAddr, m2.HTTPAddr} }, customers, perCustomer, nil)
	if len(want) != n {
		t.Fatalf("%d of %d events acknowledged", len(want), n)
	}
	ds1, ds2 := s1.wait(t), s2.wait(t)
	scaleVerify(t, "subscriber on replica 1", ds1, want)
	scaleVerify(t, "subscriber on replica 2", ds2, want)
	scaleCheckPlacement(t, cluster, shards, want)

	t.Run("vector cursor covers every partition and resumes on the other replica", func(t *testing.T) {
		for _, cur := range append([]string{ds1[0].Cursor, ds2[n-1].Cursor}, s1.hb...) {
			c, err := relay.DecodeCursor(cur)
			if err != nil || len(c.Positions) != scalePartitions {
				t.Fatalf("cursor %q: %v positions, %v", cur, c.Positions, err)
			}
		}
		for _, k := range []int{0, n / 3, n - 2} {
			rest := collect(t, c2, &eventrelayv1.SubscribeRequest{AfterCursor: ds1[k].Cursor}, n-k-1)
			// Up to and including k on replica 1, then the rest on replica 2: everything once,
			// each customer in order.
			scaleVerify(t, fmt.Sprintf("resumed after delivery %d", k), append(append([]*eventrelayv1.Delivery{}, ds1[:k+1]...), rest...), want)
		}
	})

	t.Run("history and lookups through either replica", func(t *testing.T) {
		if got := countEvents(t, c2, "orders"); got != n {
			t.Fatalf("ListEvents: %d events, want %d", got, n)
		}
		for _, c := range []eventrelayv1.EventServiceClient{c1, c2} {
			for _, id := range []string{"evt_cus_00_000", "evt_cus_07_024"} {
				if _, err := c.GetEvent(context.Background(), &eventrelayv1.GetEventRequest{Source: "orders", Id: id}); err != nil {
					t.Fatalf("GetEvent %s: %v", id, err)
				}
			}
		}
		// A redelivery through the other replica is a duplicate: dedupe markers live with their
		// partition, whichever replica appended.
		e := want["evt_cus_03_007"]
		if r := post(t, m2, "orders", scaleBody(e), e2e.Sign(testSecret, scaleBody(e))); r.status != 200 || !bytes.Contains(r.body, []byte(`"duplicate":true`)) {
			t.Fatalf("redelivery: %d %s", r.status, r.body)
		}
	})

	t.Run("group consumers on different replicas share the work and ack through the other", func(t *testing.T) {
		scaleGroupAcrossReplicas(t, rdb, m1, m2, c1, c2)
	})

	t.Run("flow control sees acks made through the other replica", func(t *testing.T) {
		// max_outstanding 2 on replica 1, every ack through replica 2: the budget comes back
		// from the pending counts in Redis, so the stream does not stall.
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		got := make(chan groupDelivery, 64)
		var wg sync.WaitGroup
		scaleConsumer(t, ctx, &wg, c1, c2, &eventrelayv1.SubscribeRequest{Sources: []string{"orders"}, Group: "flow",
			Consumer: "slow", MaxOutstanding: 2}, got, consumerOpts{strict: true})
		const n = 12
		for i := range n {
			e := scaleEvent{ID: fmt.Sprintf("evt_flow_%02d", i), Customer: "cus_flow", Seq: i}
			if r := post(t, m2, "orders", scaleBody(e), e2e.Sign(testSecret, scaleBody(e))); r.status != 200 {
				t.Fatalf("POST: %d %s", r.status, r.body)
			}
		}
		for i := range n {
			select {
			case d := <-got:
				// One customer, one partition, one consumer: in order.
				if want := fmt.Sprintf("evt_flow_%02d", i); d.id != want {
					t.Errorf("delivery %d is %s, want %s", i, d.id, want)
				}
			case <-ctx.Done():
				t.Fatalf("stalled after %d of %d deliveries", i, n)
			}
		}
		cancel()
		wg.Wait()
	})

	t.Run("a different partition count is refused", func(t *testing.T) {
		c := cfg()
		c.Sources[0].Partitions = 8
		m := NewMain(c, m1.Logger)
		err := m.Run(context.Background())
		_ = m.Close()
		if err == nil {
			t.Fatal("relayd started with 8 partitions on a source recorded with 4")
		}
		for _, w := range []string{`source "orders"`, "partitions: 8", "stored in 4 partitions", "new source", `"orders-v2"`} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error lacks %q: %v", w, err)
			}
		}
		t.Logf("refused: %v", err)
	})
}

// groupDelivery is one delivery to a group consumer, acknowledged.
type groupDelivery struct {
	consumer, id string
	attempt      int32
}

// consumerOpts: mayDie, a stream that ends before ctx is no error (its replica gets killed);
// strict, an ack naming unknown ids is an error; ackLimit > 0, the consumer acknowledges (and
// reports) only that many deliveries and then holds every further one unacknowledged, like a
// client that hung.
type consumerOpts struct {
	mayDie, strict bool
	ackLimit       int
}

// scaleConsumer subscribes consumer req.Consumer through read and, in the background until
// ctx ends, acknowledges every delivery through ack and reports it on got. It returns once
// the first message (a heartbeat or a delivery) arrived: the group exists and the consumer
// reads.
func scaleConsumer(t *testing.T, ctx context.Context, wg *sync.WaitGroup, read, ack eventrelayv1.EventServiceClient,
	req *eventrelayv1.SubscribeRequest, got chan<- groupDelivery, o consumerOpts) {
	t.Helper()
	req.HeartbeatInterval = durationpb.New(100 * time.Millisecond)
	stream, err := read.Subscribe(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil {
		t.Fatalf("consumer %s: %v", req.Consumer, err)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		acked := 0
		for msg := first; ; {
			if d := msg.GetDelivery(); d != nil && (o.ackLimit == 0 || acked < o.ackLimit) {
				acked++
				resp, err := ack.Acknowledge(ctx, &eventrelayv1.AcknowledgeRequest{AckIds: []string{d.AckId}})
				switch {
				case ctx.Err() != nil:
					return
				case err != nil:
					t.Errorf("consumer %s: acknowledge: %v", req.Consumer, err)
					return
				case o.strict && len(resp.UnknownAckIds) > 0:
					t.Errorf("consumer %s: acknowledge through the other replica: unknown %v", req.Consumer, resp.UnknownAckIds)
				}
				got <- groupDelivery{req.Consumer, d.Event.Id, d.DeliveryAttempt}
			}
			if msg, err = stream.Recv(); err != nil {
				if ctx.Err() == nil && !o.mayDie {
					t.Errorf("consumer %s: %v", req.Consumer, err)
				}
				return
			}
		}
	}()
}

// scaleGroupAcrossReplicas runs consumer "a" of group billing on replica 1 and consumer "b"
// on replica 2; each acknowledges every delivery through the other replica.
func scaleGroupAcrossReplicas(t *testing.T, rdb *redis.ClusterClient, m1, m2 *Main, c1, c2 eventrelayv1.EventServiceClient) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	deliveries := make(chan groupDelivery, 1024)
	var wg sync.WaitGroup
	req := func(consumer string) *eventrelayv1.SubscribeRequest {
		return &eventrelayv1.SubscribeRequest{Sources: []string{"orders"}, Group: "billing", Consumer: consumer}
	}
	scaleConsumer(t, ctx, &wg, c1, c2, req("a"), deliveries, consumerOpts{strict: true})
	scaleConsumer(t, ctx, &wg, c2, c1, req("b"), deliveries, consumerOpts{strict: true})
	// Latest start: the group sees only the events posted from now on.
	want := map[string]bool{}
	for i := range 60 {
		e := scaleEvent{ID: fmt.Sprintf("evt_grp_%03d", i), Customer: fmt.Sprintf("cus_g%d", i%6), Seq: i / 6}
		m := []*Main{m1, m2}[i%2]
		if r := post(t, m, "orders", scaleBody(e), e2e.Sign(testSecret, scaleBody(e))); r.status != 200 {
			t.Fatalf("POST: %d %s", r.status, r.body)
		}
		want[e.ID] = true
	}
	per := map[string]int{}
	seen := map[string]string{}
	for len(seen) < len(want) {
		select {
		case g := <-deliveries:
			if prev, dup := seen[g.id]; dup {
				t.Errorf("%s delivered to %s and again to %s", g.id, prev, g.consumer)
			}
			if !want[g.id] {
				t.Errorf("unexpected group delivery %s", g.id)
			}
			seen[g.id] = g.consumer
			per[g.consumer]++
		case <-ctx.Done():
			t.Fatalf("group got %d of %d events", len(seen), len(want))
		}
	}
	cancel()
	wg.Wait()
	t.Logf("deliveries per consumer: %v", per)
	if per["a"] == 0 || per["b"] == 0 {
		t.Errorf("the consumers did not share the work: %v", per)
	}
	for i := range scalePartitions {
		p := relay.Partition{Source: "orders", Index: i}
		pend, err := rdb.XPending(context.Background(), redisstore.StreamKey(p), "billing").Result()
		if err != nil || pend.Count != 0 {
			t.Errorf("partition %d: %v pending after every ack, %v", i, pend, err)
		}
	}
}

// Separate relayd processes (internal/e2e runs the relayd binary).

// scaleProc is a relayd process.
type scaleProc = e2e.Relayd

// startScaleRelayd runs relayd with the configuration file config and waits until it
// listens; env adds environment variables (NAME=value). It is stopped when t ends.
func startScaleRelayd(t testing.TB, config string, env ...string) *scaleProc {
	t.Helper()
	// Tests wait on 100 ms heartbeats (relayd's default minimum is 1s).
	return e2e.StartFile(t, config, append([]string{"RELAY_SUBSCRIBE_MIN_HEARTBEAT=100ms"}, env...)...)
}

// procClient is an EventService client of a relayd process.
func procClient(t testing.TB, p *scaleProc) eventrelayv1.EventServiceClient {
	t.Helper()
	return client(t, &Main{GRPCAddr: p.GRPC})
}

// scaleConfigFile writes a relayd configuration file for redis (extra: more redis keys) with
// the orders source in partitions partitions by customer.
func scaleConfigFile(t testing.TB, url, redisExtra string, partitions int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "relay.yaml")
	text := fmt.Sprintf(`http: {addr: "127.0.0.1:0"}
grpc: {addr: "127.0.0.1:0"}
admin: {addr: "127.0.0.1:0"}
redis: {url: %q%s}
log: {level: info, format: json}
sources:
  - name: orders
    provider: hmac
    secrets: [%q]
    partitions: %d
    partition_key: %s
`, url, redisExtra, testSecret, partitions, scaleKey)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestScaleReplicaKilled runs two relayd processes on a three-master cluster, with a tail
// subscriber and a group consumer on each, and SIGKILLs one of them halfway through a load
// that retries a failed post on the other replica: every acknowledged event is stored once
// and delivered to the surviving tail subscriber in per-customer order, and the group
// delivers every event, the dead consumer's unacknowledged ones reclaimed by the survivor.
// A relayd started with another partition count exits with the refusal.
func TestScaleReplicaKilled(t *testing.T) {
	e2e.Slow(t)
	cluster := redistest.StartCluster(t, 3)
	config := scaleConfigFile(t, cluster.URL(), ", cluster: true", scalePartitions)
	r1, r2 := startScaleRelayd(t, config), startScaleRelayd(t, config)
	c1, c2 := procClient(t, r1), procClient(t, r2)

	const customers, perCustomer = 8, 40
	n := customers * perCustomer
	tail := scaleSubscribe(t, c1, &eventrelayv1.SubscribeRequest{Sources: []string{"orders"},
		Start: eventrelayv1.StartPosition_START_POSITION_EARLIEST}, n)

	// Group consumers: "a" on replica 1, "b" on the replica that will be killed; both ack
	// through replica 1. A 1s ack deadline lets "a" reclaim what "b" left pending.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	deliveries := make(chan groupDelivery, 4*n)
	var gwg sync.WaitGroup
	greq := func(consumer string) *eventrelayv1.SubscribeRequest {
		return &eventrelayv1.SubscribeRequest{Sources: []string{"orders"}, Group: "kill", Consumer: consumer,
			Start: eventrelayv1.StartPosition_START_POSITION_EARLIEST, AckDeadline: durationpb.New(time.Second)}
	}
	scaleConsumer(t, ctx, &gwg, c1, c1, greq("a"), deliveries, consumerOpts{})
	// "b" hangs after 20 acks: what its replica delivers to it afterwards stays pending for
	// it when the replica dies, and must come back to "a".
	scaleConsumer(t, ctx, &gwg, c2, c1, greq("b"), deliveries, consumerOpts{mayDie: true, ackLimit: 20})

	var killed atomic.Bool
	var killOnce sync.Once
	want, retried := scaleLoad(t, func() []string {
		if killed.Load() {
			return []string{r1.HTTP}
		}
		return []string{r1.HTTP, r2.HTTP}
	}, customers, perCustomer, func(acked int) {
		if acked >= n/2 {
			killOnce.Do(func() {
				r2.Kill() // mid-load: posts in flight to it fail and are retried on replica 1
				killed.Store(true)
			})
		}
	})
	if !killed.Load() || len(want) != n {
		t.Fatalf("killed %v, %d of %d events acknowledged", killed.Load(), len(want), n)
	}
	t.Logf("load: %d events acknowledged, %d posts failed on the killed replica and were retried", n, retried)
	scaleVerify(t, "tail subscriber on the surviving replica", tail.wait(t), want)
	if got := countEvents(t, c1, "orders"); got != n {
		t.Errorf("%d events stored, want %d (each acknowledged event once)", got, n)
	}

	groupSeen, per, reclaimed := map[string]int{}, map[string]int{}, 0
	for len(groupSeen) < n {
		select {
		case d := <-deliveries:
			if _, ok := want[d.id]; !ok {
				t.Errorf("unexpected group delivery %s", d.id)
			}
			groupSeen[d.id]++
			per[d.consumer]++
			if d.attempt > 1 {
				reclaimed++
			}
		case <-ctx.Done():
			t.Fatalf("the group delivered %d of %d events", len(groupSeen), n)
		}
	}
	cancel()
	gwg.Wait()
	redelivered := 0
	for _, k := range groupSeen {
		redelivered += k - 1
	}
	t.Logf("group: %d events, %d processed twice, %d reclaimed from the hung consumer; deliveries per consumer %v", len(groupSeen), redelivered, reclaimed, per)
	if reclaimed == 0 || per["b"] != 20 {
		t.Errorf("expected the survivor to reclaim what the hung consumer on the killed replica held: reclaimed %d, per consumer %v", reclaimed, per)
	}

	t.Run("another partition count exits with the refusal", func(t *testing.T) {
		code, out := e2e.Exits(t, scaleConfigFile(t, cluster.URL(), ", cluster: true", 2))
		if code != 1 || !strings.Contains(out, "relayd failed to start") || !strings.Contains(out, `configured with partitions: 2, but its events are stored in 4 partitions`) {
			t.Fatalf("exit %d: %s", code, out)
		}
	})
}

// TestScaleSentinel runs relayd on a Sentinel-managed master with two replicas and two
// sentinels (redis.master_name, min_replicas: 2): events posted before and after a SENTINEL FAILOVER
// all come out once, in per-customer order, through a subscriber that resumes from its cursor
// when the switch ends its stream; history reads are served from the new master.
func TestScaleSentinel(t *testing.T) {
	e2e.Slow(t)
	st := redistest.StartSentinel(t, 2, 2)
	cfg := scaleConfig(st.URL(), 2)
	cfg.Redis.MasterName = st.MasterName
	// Every replica (docs/scaling.md): with 1 of the 2, Sentinel may promote the replica that
	// had not yet received the last appends (seen on a loaded machine: the 20 events posted
	// before the failover, acknowledged by the other replica, were lost).
	cfg.Redis.MinReplicas = 2
	m := startMain(t, cfg)
	c := client(t, m)

	const customers, perCustomer = 4, 5
	retried := map[string]bool{} // events whose first post failed
	postRound := func(round int) map[string]scaleEvent {
		want := map[string]scaleEvent{}
		for seq := range perCustomer {
			for cu := range customers {
				e := scaleEvent{ID: fmt.Sprintf("evt_s%d_%d_%d", round, cu, seq), Customer: fmt.Sprintf("cus_%d", cu), Seq: round*perCustomer + seq}
				var code int
				var err error
				// Bounded: appends fail WAIT for up to about 10s after the switch, until Sentinel
				// has made the old master a replica of the new one (its INFO period).
				for try := 0; try < 100; try++ {
					if code, err = scalePost(context.Background(), m.HTTPAddr, e); err == nil && code == 200 {
						break
					}
					retried[e.ID] = true
					time.Sleep(50 * time.Millisecond)
				}
				if code != 200 {
					t.Fatalf("POST %s: %d %v", e.ID, code, err)
				}
				want[e.ID] = e
			}
		}
		return want
	}
	// A subscriber from the beginning, live across the failover; when a stream ends it
	// resumes from its last cursor (at most 20 times).
	total := 2 * customers * perCustomer
	var ds []*eventrelayv1.Delivery
	resumes := 0
	subCtx, subCancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer subCancel()
	subDone := make(chan struct{})
	go func() {
		defer close(subDone)
		distinct := map[string]bool{}
		req := &eventrelayv1.SubscribeRequest{Sources: []string{"orders"}, Start: eventrelayv1.StartPosition_START_POSITION_EARLIEST}
		for len(distinct) < total && resumes <= 20 && subCtx.Err() == nil {
			if len(ds) > 0 {
				req = &eventrelayv1.SubscribeRequest{AfterCursor: ds[len(ds)-1].Cursor}
			}
			stream, err := c.Subscribe(subCtx, req)
			for err == nil && len(distinct) < total {
				var msg *eventrelayv1.SubscribeResponse
				if msg, err = stream.Recv(); err == nil && msg.GetDelivery() != nil {
					ds = append(ds, msg.GetDelivery())
					distinct[msg.GetDelivery().Event.Id] = true
				}
			}
			if err != nil {
				resumes++
				t.Logf("stream ended after %d deliveries (resuming from the cursor): %v", len(ds), err)
				time.Sleep(100 * time.Millisecond)
			}
		}
	}()

	want := postRound(0)
	old := st.Master(t)
	st.Failover(t)
	for id, e := range postRound(1) {
		want[id] = e
	}
	newMaster := st.Master(t)
	if newMaster == old {
		t.Fatal("no failover happened")
	}
	<-subDone
	// Until go-redis learns of the switch, relayd still writes to the old master; an append
	// there fails WAIT (a replica left it) or its connection is closed, and is retried (by
	// the sender after a 503, or by go-redis) on the new master, where it is stored once. A
	// live subscriber still reading the old master may have read that orphaned copy too: the
	// same event id twice, only for events posted after the failover began. Keep the first.
	var unique []*eventrelayv1.Delivery
	seen := map[string]bool{}
	for _, d := range ds {
		id := d.Event.Id
		if seen[id] {
			if !strings.HasPrefix(id, "evt_s1_") {
				t.Errorf("event %s, posted before the failover, delivered twice", id)
			}
			t.Logf("event %s delivered again (retried: %v): an orphaned copy on the old master", id, retried[id])
			continue
		}
		seen[id] = true
		unique = append(unique, d)
	}
	ds = unique
	scaleVerify(t, "subscriber across the failover", ds, want)
	if got := countEvents(t, c, "orders"); got != len(want) {
		t.Errorf("ListEvents after the failover: %d events, want %d (each once)", got, len(want))
	}
	// The new master holds them all.
	node := redis.NewClient(&redis.Options{Addr: newMaster.Addr()})
	defer node.Close()
	held := int64(0)
	for i := range 2 {
		held += node.XLen(context.Background(), redisstore.StreamKey(relay.Partition{Source: "orders", Index: i})).Val()
	}
	if held != int64(total) {
		t.Errorf("the new master %s holds %d events, want %d", newMaster.Addr(), held, total)
	}
	t.Logf("%d events across the failover; the subscriber resumed %d times", total, resumes)
}

// TestScaleCredentials runs the end-to-end suite against Redis servers that require
// credentials given in redis.url: a password (requirepass) and an ACL user limited to the
// relay:* keys. A wrong password leaves relayd unready and webhooks answered 503.
func TestScaleCredentials(t *testing.T) {
	e2e.Slow(t)
	t.Run("password", func(t *testing.T) {
		srv := redistest.StartWith(t, "--requirepass", "pa55:word")
		runEndToEnd(t, "redis://:pa55%3Aword@"+srv.Addr())
	})
	t.Run("ACL user limited to relay keys", func(t *testing.T) {
		srv := redistest.StartWith(t, "--user", "default", "off", "--user", "relay", "on", ">relaypw", "~relay:*", "&*", "+@all")
		runEndToEnd(t, "redis://relay:relaypw@"+srv.Addr())
		rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), Username: "relay", Password: "relaypw"})
		defer rdb.Close()
		if err := rdb.Set(context.Background(), "other", "x", 0).Err(); err == nil {
			t.Error("the ACL should confine the relay user to relay:* keys")
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		srv := redistest.StartWith(t, "--requirepass", "right")
		m := startMain(t, testConfig("redis://:wrong@"+srv.Addr()))
		if code := scaleReadyz(t, m); code != http.StatusServiceUnavailable {
			t.Errorf("/readyz: %d", code)
		}
		body := prettyBody("evt_auth")
		if r := post(t, m, "orders", body, e2e.Sign(testSecret, body)); r.status != http.StatusServiceUnavailable {
			t.Errorf("POST with a wrong Redis password: %d %s", r.status, r.body)
		}
		_, err := client(t, m).GetEvent(context.Background(), &eventrelayv1.GetEventRequest{Source: "orders", Id: "evt_auth"})
		if status.Code(err) != codes.Unavailable || strings.Contains(err.Error(), "wrong") {
			t.Errorf("GetEvent: %v", err)
		}
	})
}

// TestScaleTLS runs relayd processes against a Redis that accepts only TLS (rediss://, with
// a password in the URL) and presents a certificate from a private CA: trusted through
// SSL_CERT_FILE, events go in and come out; without it, relayd refuses the certificate and
// answers webhooks 503.
func TestScaleTLS(t *testing.T) {
	e2e.Slow(t)
	srv := redistest.StartTLS(t, "--requirepass", "tls-pw")
	url := strings.Replace(srv.URL(), "rediss://", "rediss://:tls-pw@", 1)
	config := scaleConfigFile(t, url, "", 2)

	p := startScaleRelayd(t, config, "SSL_CERT_FILE="+srv.CAFile())
	want, _ := scaleLoad(t, func() []string { return []string{p.HTTP} }, 2, 5, nil)
	ds := collect(t, procClient(t, p), &eventrelayv1.SubscribeRequest{Start: eventrelayv1.StartPosition_START_POSITION_EARLIEST}, len(want))
	scaleVerify(t, "subscriber over rediss://", ds, want)

	untrusted := startScaleRelayd(t, config, "SSL_CERT_FILE="+filepath.Join(t.TempDir(), "none.pem"), "SSL_CERT_DIR="+t.TempDir())
	if code, err := scalePost(context.Background(), untrusted.HTTP, scaleEvent{ID: "evt_untrusted", Customer: "c"}); code != http.StatusServiceUnavailable {
		t.Errorf("POST through relayd that does not trust the Redis certificate: %d %v", code, err)
	}
	if out := untrusted.Logs(); !strings.Contains(out, "certificate") || strings.Contains(out, "tls-pw") {
		t.Errorf("log should name the certificate problem, never the password:\n%s", out)
	}
}

// syncLog collects a Main's log for assertions.
type syncLog = syncbuf.Buffer

// scaleReadyz returns the status of m's /readyz.
func scaleReadyz(t testing.TB, m *Main) int {
	t.Helper()
	resp, err := http.Get("http://" + m.AdminAddr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestScalePartitionCheckDeferred starts relayd while Redis is down: the partition counts
// are checked once Redis answers; a matching count makes relayd ready, another keeps it
// unready, refusing webhooks with 503, with an error in the log.
func TestScalePartitionCheckDeferred(t *testing.T) {
	e2e.Slow(t)
	srv := redistest.StartWith(t, "--appendonly", "yes") // the record survives a restart
	startMain(t, scaleConfig(srv.URL(), 4)).Close()      // records 4 partitions
	srv.Stop()

	var logs syncLog
	start := func(partitions int) *Main {
		m := NewMain(scaleConfig(srv.URL(), partitions), slog.New(slog.NewTextHandler(&logs, nil)))
		if err := m.Run(context.Background()); err != nil {
			_ = m.Close()
			t.Fatalf("Run while Redis is down: %v", err)
		}
		t.Cleanup(func() { _ = m.Close() })
		return m
	}
	good, bad := start(4), start(2)
	if scaleReadyz(t, good) != http.StatusServiceUnavailable || scaleReadyz(t, bad) != http.StatusServiceUnavailable {
		t.Fatal("ready while Redis is down")
	}
	srv.Restart(t)
	for i := 0; scaleReadyz(t, good) != http.StatusOK; i++ {
		if i == 200 {
			t.Fatal("relayd with the recorded count did not become ready within 10s of Redis answering")
		}
		time.Sleep(50 * time.Millisecond)
	}
	for i := 0; !strings.Contains(logs.String(), "refusing to serve"); i++ {
		if i == 200 {
			t.Fatalf("no refusal logged within 10s of Redis answering:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "configured with partitions: 2, but its events are stored in 4 partitions") {
		t.Errorf("refusal does not say why:\n%s", logs.String())
	}
	if scaleReadyz(t, bad) != http.StatusServiceUnavailable {
		t.Error("relayd with another partition count is ready")
	}
	// It stores nothing; the relayd with the recorded count does.
	e := scaleEvent{ID: "evt_deferred", Customer: "cus_1"}
	if code, err := scalePost(context.Background(), bad.HTTPAddr, e); code != http.StatusServiceUnavailable {
		t.Errorf("POST to the refusing relayd: %d %v", code, err)
	}
	if code, err := scalePost(context.Background(), good.HTTPAddr, e); code != http.StatusOK {
		t.Errorf("POST to the ready relayd: %d %v", code, err)
	}
	if n := countEvents(t, client(t, good), "orders"); n != 1 {
		t.Errorf("%d events stored, want 1", n)
	}
}

// BenchmarkScaleAppends measures signed webhooks per second through relayd processes: HTTP
// POST, verification, append (acknowledged by Redis) and answer, from 32 concurrent senders
// in this process over loopback keep-alive connections, on one machine shared by the
// senders, relayd and Redis. Besides events/s it reports the CPU time spent per event by the
// relayd processes, the Redis servers and the senders, which depends far less on what else
// runs on the machine.
//
//	go test -run '^$' -bench BenchmarkScaleAppends -benchtime 5000x ./cmd/relayd
func BenchmarkScaleAppends(b *testing.B) {
	for _, bc := range []struct {
		name     string
		cluster  bool
		replicas int
	}{
		{"node-1-replica", false, 1},
		{"cluster3-1-replica", true, 1},
		{"cluster3-2-replicas", true, 2},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var config string
			var nodes []string
			if bc.cluster {
				c := redistest.StartCluster(b, 3)
				config = scaleConfigFile(b, c.URL(), ", cluster: true", scalePartitions)
				nodes = c.Addrs()
			} else {
				srv := redistest.StartWith(b)
				config = scaleConfigFile(b, srv.URL(), "", scalePartitions)
				nodes = []string{srv.Addr()}
			}
			var addrs []string
			var procs []*scaleProc
			for range bc.replicas {
				p := startScaleRelayd(b, config)
				addrs, procs = append(addrs, p.HTTP), append(procs, p)
			}
			var seq atomic.Int64
			b.SetParallelism(16) // 32 senders on 2 CPUs
			redis0, relayd0, proc0 := redisCPU(b, nodes), relaydCPU(b, procs), procCPU(b)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := seq.Add(1)
					e := scaleEvent{ID: fmt.Sprintf("evt_b%d", i), Customer: fmt.Sprintf("cus_%d", i%64), Seq: int(i)}
					if code, err := scalePost(context.Background(), addrs[int(i)%len(addrs)], e); code != http.StatusOK {
						b.Errorf("POST: %d %v", code, err)
						return
					}
				}
			})
			b.StopTimer()
			n := float64(b.N)
			b.ReportMetric(n/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric((relaydCPU(b, procs)-relayd0).Seconds()*1e6/n, "relayd-cpu-µs/event")
			b.ReportMetric((redisCPU(b, nodes)-redis0).Seconds()*1e6/n, "redis-cpu-µs/event")
			b.ReportMetric((procCPU(b)-proc0).Seconds()*1e6/n, "sender-cpu-µs/event")
		})
	}
}

// redisCPU returns the CPU time (user and system) the Redis servers at addrs have used.
func redisCPU(tb testing.TB, addrs []string) time.Duration {
	tb.Helper()
	var total time.Duration
	for _, addr := range addrs {
		rdb := redis.NewClient(&redis.Options{Addr: addr})
		info, err := rdb.Info(context.Background(), "cpu").Result()
		_ = rdb.Close()
		if err != nil {
			tb.Fatal(err)
		}
		for _, line := range strings.Split(info, "\n") {
			k, v, _ := strings.Cut(strings.TrimSpace(line), ":")
			if k == "used_cpu_user" || k == "used_cpu_sys" {
				var sec float64
				if _, err := fmt.Sscan(v, &sec); err != nil {
					tb.Fatalf("INFO cpu %s: %q", k, v)
				}
				total += time.Duration(sec * float64(time.Second))
			}
		}
	}
	return total
}

// relaydCPU returns the CPU time (user and system) the relayd processes have used, from
// /proc/<pid>/stat (Linux; clock ticks of 10ms).
func relaydCPU(tb testing.TB, procs []*scaleProc) time.Duration {
	tb.Helper()
	var total time.Duration
	for _, p := range procs {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.Pid()))
		if err != nil {
			tb.Skipf("no /proc: %v", err)
		}
		// Fields after the command name in parentheses: state is field 3, utime 14, stime 15.
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
		var utime, stime int64
		if _, err := fmt.Sscan(f[11]+" "+f[12], &utime, &stime); err != nil {
			tb.Fatalf("/proc/%d/stat: %v", p.Pid(), err)
		}
		total += time.Duration(utime+stime) * 10 * time.Millisecond
	}
	return total
}

// procCPU returns the CPU time (user and system) this process has used.
func procCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
