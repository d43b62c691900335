package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/eventrelay/eventrelay/internal/redistest"
	"github.com/eventrelay/eventrelay/relay"
	"github.com/eventrelay/eventrelay/relay/embedded"
	"github.com/eventrelay/eventrelay/relay/redisstore"
)

// These tests and the benchmarks use relay/embedded and internal/redistest as servers; the
// package itself imports neither.

func TestMain(m *testing.M) {
	redis.SetLogger(quietLogger{})
	goleak.VerifyTestMain(m)
}

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

func startEmbedded(tb testing.TB) *embedded.Server {
	tb.Helper()
	srv, err := embedded.Start()
	if err != nil {
		tb.Fatalf("embedded.Start: %v", err)
	}
	tb.Cleanup(srv.Close)
	return srv
}

// pipelineCounter is a go-redis hook recording the appends of every pipeline (an append
// script call carries one per dedupe marker key: all keys but the stream and the count).
type pipelineCounter struct {
	mu    sync.Mutex
	sizes []int
	batch map[string]int // per key of an append script call: the appends of its round trip
}

func (h *pipelineCounter) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (h *pipelineCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h *pipelineCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		n := 0
		var keys []string
		for _, c := range cmds {
			if c.Name() == "evalsha" || c.Name() == "eval" {
				if k, ok := c.Args()[2].(int); ok {
					n += k - 2
					for _, a := range c.Args()[3 : 3+k] {
						if s, ok := a.(string); ok {
							keys = append(keys, s)
						}
					}
				}
			}
		}
		if n > 0 {
			h.mu.Lock()
			h.sizes = append(h.sizes, n)
			if h.batch == nil {
				h.batch = map[string]int{}
			}
			for _, k := range keys {
				h.batch[k] = n
			}
			h.mu.Unlock()
		}
		return next(ctx, cmds)
	}
}

func newStore(tb testing.TB, url string, opts redisstore.Options, hooks ...redis.Hook) *redisstore.Store {
	tb.Helper()
	o, err := redis.ParseURL(url)
	if err != nil {
		tb.Fatal(err)
	}
	client := redis.NewClient(o)
	for _, h := range hooks {
		client.AddHook(h)
	}
	s, err := redisstore.New(client, opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		_ = s.Close()
		_ = client.Close()
	})
	return s
}

func appendReq(p relay.Partition, key string) relay.AppendRequest {
	return relay.AppendRequest{Partition: p, DedupeKey: key, DedupeWindow: time.Hour, Event: []byte(key)}
}

// TestGroupCommit checks that concurrent appends share round trips, at most MaxBatch each.
func TestGroupCommit(t *testing.T) {
	srv := startEmbedded(t)
	hook := &pipelineCounter{}
	s := newStore(t, srv.URL(), redisstore.Options{MaxDelay: 500 * time.Millisecond, MaxBatch: 64, MaxInFlight: 1}, hook)
	p := relay.Partition{Source: "gc", Index: 0}

	// An append to an idle partition is sent at once rather than after MaxDelay: a latency,
	// measured by BenchmarkAppend, not asserted here (no timed assertions in unit tests).
	if _, err := s.Append(t.Context(), appendReq(p, "alone")); err != nil {
		t.Fatal(err)
	}

	const n = 300
	var wg sync.WaitGroup
	var failed atomic.Int32
	for i := range n {
		wg.Go(func() {
			if _, err := s.Append(t.Context(), appendReq(p, strconv.Itoa(i))); err != nil {
				t.Error(err)
				failed.Add(1)
			}
		})
	}
	wg.Wait()
	hook.mu.Lock()
	defer hook.mu.Unlock()
	total, largest := 0, 0
	for _, sz := range hook.sizes[1:] {
		total += sz
		largest = max(largest, sz)
	}
	if total < n {
		t.Errorf("pipelines carried %d appends, want at least %d", total, n)
	}
	if len(hook.sizes)-1 >= n/2 || largest < 2 {
		t.Errorf("%d appends took %d round trips (largest %d): not batched", n, len(hook.sizes)-1, largest)
	}
	if largest > 64 {
		t.Errorf("a round trip carried %d appends, more than MaxBatch 64", largest)
	}
	t.Logf("%d concurrent appends in %d round trips, largest %d", n, len(hook.sizes)-1, largest)
}

// TestScriptFlushed checks the EVALSHA → EVAL fallback after the server lost its scripts.
func TestScriptFlushed(t *testing.T) {
	for name, url := range map[string]func(t *testing.T) string{
		"embedded": func(t *testing.T) string { return startEmbedded(t).URL() },
		"redis":    func(t *testing.T) string { return redistest.Start(t) },
	} {
		t.Run(name, func(t *testing.T) {
			s := newStore(t, url(t), redisstore.Options{})
			p := relay.Partition{Source: "flush", Index: 0}
			for i := range 3 {
				if err := s.Client().ScriptFlush(t.Context()).Err(); err != nil {
					t.Fatal(err)
				}
				res, err := s.Append(t.Context(), appendReq(p, strconv.Itoa(i)))
				if err != nil || res.Duplicate {
					t.Fatalf("Append after SCRIPT FLUSH = %+v, %v", res, err)
				}
				if err := s.Client().ScriptFlush(t.Context()).Err(); err != nil {
					t.Fatal(err)
				}
				if _, err := s.DeadLetter(t.Context(), p, "g", relay.Entry{ID: res.ID}, 0); err != nil {
					t.Fatalf("DeadLetter after SCRIPT FLUSH: %v", err)
				}
			}
		})
	}
}

// TestMinReplicas checks WAIT: without replicas the append fails with CodeUnavailable (and
// a retry is a duplicate of the entry written on the primary); with a replica it succeeds.
func TestMinReplicas(t *testing.T) {
	primary := redistest.StartWith(t, "--repl-diskless-sync-delay", "0")
	s := newStore(t, primary.URL(), redisstore.Options{MinReplicas: 1, ReplicaTimeout: 50 * time.Millisecond})
	p := relay.Partition{Source: "wait", Index: 0}
	_, err := s.Append(t.Context(), appendReq(p, "k1"))
	if relay.ErrorCode(err) != relay.CodeUnavailable || !strings.Contains(err.Error(), "replicas") {
		t.Fatalf("Append without replicas: %v, want CodeUnavailable naming the replicas", err)
	}
	_, err = s.Append(t.Context(), appendReq(p, "k1"))
	if relay.ErrorCode(err) != relay.CodeUnavailable {
		t.Fatalf("retried Append without replicas: %v, want CodeUnavailable", err)
	}

	redistest.StartWith(t, "--replicaof", "127.0.0.1", strconv.Itoa(primary.Port()))
	s = newStore(t, primary.URL(), redisstore.Options{MinReplicas: 1, ReplicaTimeout: 2 * time.Second})
	deadline := time.Now().Add(15 * time.Second)
	for {
		res, err := s.Append(t.Context(), appendReq(p, "k1"))
		if err == nil {
			if !res.Duplicate {
				t.Errorf("Append once replicated = %+v, want the duplicate of the first attempt", res)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Append with a replica: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if res, err := s.Append(t.Context(), appendReq(p, "k2")); err != nil || res.Duplicate {
		t.Errorf("Append with a replica = %+v, %v", res, err)
	}
}

// TestMinReplicasCluster checks that WAIT runs on the partition's node in a cluster.
func TestMinReplicasCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster start-up is slow; skipped with -short")
	}
	c := redistest.StartCluster(t, 2)
	s, err := redisstore.Open(c.URL(), true, "", redisstore.Options{MinReplicas: 1, ReplicaTimeout: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 4 {
		_, err := s.Append(t.Context(), appendReq(relay.Partition{Source: "cw", Index: i}, "k"))
		if relay.ErrorCode(err) != relay.CodeUnavailable || !strings.Contains(err.Error(), "0 of 1 replicas") {
			t.Errorf("partition %d: %v, want CodeUnavailable: 0 of 1 replicas", i, err)
		}
	}
}

// TestReplicaCounts: the replicas connected to the one master, or to each master of a
// cluster (by address).
func TestReplicaCounts(t *testing.T) {
	primary := redistest.StartWith(t, "--repl-diskless-sync-delay", "0")
	s := newStore(t, primary.URL(), redisstore.Options{})
	if got, err := s.ReplicaCounts(t.Context()); err != nil || !maps.Equal(got, map[string]int{"": 0}) {
		t.Fatalf("no replica: %v %v", got, err)
	}
	redistest.StartWith(t, "--replicaof", "127.0.0.1", strconv.Itoa(primary.Port()))
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		got, err := s.ReplicaCounts(t.Context())
		if err == nil && maps.Equal(got, map[string]int{"": 1}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("one replica: %v %v", got, err)
		}
	}
	if testing.Short() {
		return
	}
	c := redistest.StartCluster(t, 2)
	cs, err := redisstore.Open(c.URL(), true, "", redisstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	want := map[string]int{}
	for _, n := range c.Nodes {
		want[n.Addr()] = 0
	}
	if got, err := cs.ReplicaCounts(t.Context()); err != nil || !maps.Equal(got, want) {
		t.Fatalf("cluster: %v %v, want %v", got, err, want)
	}
}

// TestCloseDuringBlockingRead checks that Close ends blocking reads at once and waits for
// its goroutines.
func TestCloseDuringBlockingRead(t *testing.T) {
	srv := startEmbedded(t)
	s, err := redisstore.Open(srv.URL(), false, "", redisstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	p := relay.Partition{Source: "close", Index: 0}
	done := make(chan error, 2)
	go func() {
		_, err := s.Read(t.Context(), map[relay.Partition]relay.ID{p: relay.MaxID}, 10, 30*time.Second)
		done <- err
	}()
	go func() {
		if err := s.EnsureGroup(t.Context(), p, "g", relay.MaxID); err != nil {
			done <- err
			return
		}
		_, err := s.ReadGroup(t.Context(), p, "g", "c", false, 10, 30*time.Second)
		done <- err
	}()
	// Either way the reads end unavailable (a read issued after Close fails at once); the
	// pause only makes "blocking when closed" the likely case.
	time.Sleep(200 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for range 2 {
		var err error
		select {
		case err = <-done:
		case <-time.After(20 * time.Second): // the reads block 30s
			t.Fatal("a blocking read did not end within 20s of Close")
		}
		if relay.ErrorCode(err) != relay.CodeUnavailable {
			t.Errorf("blocking read ended by Close: %v, want CodeUnavailable", err)
		}
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestAppendCancelled checks that an append whose context ends while queued is not written.
func TestAppendCancelled(t *testing.T) {
	srv := startEmbedded(t)
	s := newStore(t, srv.URL(), redisstore.Options{})
	p := relay.Partition{Source: "cancel", Index: 0}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := s.Append(ctx, appendReq(p, "k"))
	if !errors.Is(err, context.Canceled) || relay.ErrorCode(err) != relay.CodeUnavailable {
		t.Fatalf("Append with a cancelled context: %v", err)
	}
	if info, err := s.Info(t.Context(), p); err != nil || info.Length != 0 {
		t.Errorf("cancelled append stored something: %+v, %v", info, err)
	}
}

func TestOpen(t *testing.T) {
	for _, tc := range []struct {
		url     string
		cluster bool
		master  string
		want    string
	}{
		{"http://localhost:6379", false, "", "scheme"},
		{"redis://u:s3cret@local host:1", false, "", "url"},
		{"redis://localhost:6379", true, "mymaster", "mutually exclusive"},
		{"redis://u:s3cret@localhost:6379/not-a-db", false, "", "database"},
		{"redis://localhost:6379?bogus=1", true, "", "bogus"},
	} {
		s, err := redisstore.Open(tc.url, tc.cluster, tc.master, redisstore.Options{})
		if err == nil {
			_ = s.Close()
			t.Errorf("Open(%q) succeeded", tc.url)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open(%q) = %v, want it to mention %q", tc.url, err, tc.want)
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("Open(%q) error leaks the password: %v", tc.url, err)
		}
	}
	if _, err := redisstore.Open("redis://localhost:1", false, "", redisstore.Options{MaxBatch: -1}); err == nil {
		t.Error("Open with invalid options succeeded")
	}
	// Sentinel: the URL names sentinels; nothing listens, so calls fail as unavailable.
	s, err := redisstore.Open("redis://127.0.0.1:1?addr=127.0.0.1:2", false, "mymaster", redisstore.Options{OpTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatalf("Open sentinel: %v", err)
	}
	defer s.Close()
	if _, ok := s.Client().(*redis.Client); !ok {
		t.Errorf("sentinel client is %T", s.Client())
	}
	pinged := make(chan error, 1)
	go func() { pinged <- s.Ping(t.Context()) }()
	select {
	case err := <-pinged:
		if relay.ErrorCode(err) != relay.CodeUnavailable {
			t.Errorf("Ping through absent sentinels: %v", err)
		}
	case <-time.After(20 * time.Second): // OpTimeout is 200ms: generous for a busy machine
		t.Fatal("Ping through absent sentinels has not returned after 20s, OpTimeout is 200ms")
	}
}

func ExampleOpen() {
	srv, err := embedded.Start()
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	s, err := redisstore.Open(srv.URL(), false, "", redisstore.Options{})
	if err != nil {
		panic(err)
	}
	defer s.Close()
	ctx := context.Background()
	p := relay.Partition{Source: "orders", Index: 0}
	req := relay.AppendRequest{Partition: p, DedupeKey: "evt_1", Event: []byte("...")}
	first, _ := s.Append(ctx, req)
	again, _ := s.Append(ctx, req)
	fmt.Println(first.Duplicate, again.Duplicate, again.ID == first.ID)
	// Output: false true true
}

// TestInfoCountsAppends: the embedded server's XINFO STREAM has neither entries-added nor a
// record of trimming; Info then tells both from the appends' own count (AddedKey), so that
// a cursor into trimmed history is detected there as on Redis 7.
func TestInfoCountsAppends(t *testing.T) {
	srv := startEmbedded(t)
	s := newStore(t, srv.URL(), redisstore.Options{})
	p := relay.Partition{Source: "counted", Index: 0}
	var all []relay.ID
	for i := range 30 {
		r := appendReq(p, strconv.Itoa(i))
		r.MaxLen = 10 // the embedded server trims exactly
		res, err := s.Append(t.Context(), r)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, res.ID)
	}
	// A duplicate appends nothing and counts nothing.
	if res, err := s.Append(t.Context(), appendReq(p, "29")); err != nil || !res.Duplicate {
		t.Fatalf("duplicate append: %+v, %v", res, err)
	}
	info, err := s.Info(t.Context(), p)
	if err != nil {
		t.Fatal(err)
	}
	if info.Added != 30 || info.Length != 10 || info.First != all[20] {
		t.Fatalf("Info = %+v, want 30 added, length 10, first %s", info, all[20])
	}
	// Everything before the first retained entry may be gone: MaxDeleted is at or after the
	// last trimmed entry and before the first retained one.
	if info.MaxDeleted.Less(all[19]) || !info.MaxDeleted.Less(all[20]) {
		t.Errorf("MaxDeleted %s, want from %s to before %s", info.MaxDeleted, all[19], all[20])
	}
	// Nothing trimmed: MaxDeleted stays zero.
	q := relay.Partition{Source: "counted", Index: 1}
	for i := range 3 {
		if _, err := s.Append(t.Context(), appendReq(q, strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	if info, err := s.Info(t.Context(), q); err != nil || info.Added != 3 || !info.MaxDeleted.IsZero() {
		t.Errorf("Info of an untrimmed stream = %+v, %v; want 3 added, MaxDeleted zero", info, err)
	}
}
