package redisstore

import (
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eventrelay/eventrelay/relay"
)

func TestKeys(t *testing.T) {
	p := relay.Partition{Source: "stripe", Index: 3}
	for got, want := range map[string]string{
		StreamKey(p):           "relay:{stripe:3}:s",
		DedupeKey(p, "evt_1"):  "relay:{stripe:3}:d:evt_1",
		DedupeKey(p, "a}{b:c"): "relay:{stripe:3}:d:a}{b:c",
		DeadLetterKey(p, "g"):  "relay:{stripe:3}:dlq:g",
	} {
		if got != want {
			t.Errorf("key %q, want %q", got, want)
		}
	}
}

func TestSlot(t *testing.T) {
	// The Redis Cluster specification's reference value.
	if got := crc16("123456789"); got != 0x31C3 {
		t.Fatalf("crc16 = %#x, want 0x31c3", got)
	}
	// CLUSTER KEYSLOT examples of the Redis documentation.
	if got := crc16("somekey") % clusterSlots; got != 11058 {
		t.Errorf("slot of somekey = %d, want 11058", got)
	}
	if got := crc16("hash_tag") % clusterSlots; got != 2515 {
		t.Errorf("slot of foo{hash_tag} = %d, want 2515", got)
	}
	p := relay.Partition{Source: "stripe", Index: 7}
	if got, want := Slot(p), int(crc16("stripe:7")%clusterSlots); got != want {
		t.Errorf("Slot(%v) = %d, want %d", p, got, want)
	}
	parts := []relay.Partition{{Source: "a", Index: 0}, {Source: "a", Index: 1}, {Source: "a", Index: 0}}
	groups := groupBySlot(parts)
	if len(groups) != 2 || len(groups[0]) != 2 || len(groups[1]) != 1 {
		t.Errorf("groupBySlot = %v", groups)
	}
}

func TestOptions(t *testing.T) {
	var o Options
	o.SetDefaults()
	if err := o.Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	want := Options{OpTimeout: 2 * time.Second, ReplicaTimeout: time.Second, MaxBatch: 128,
		MaxDelay: 200 * time.Microsecond, MaxInFlight: 1, ClaimScan: 10, PoolSize: 1024}
	if o != want {
		t.Errorf("defaults = %+v, want %+v", o, want)
	}
	for name, mut := range map[string]func(*Options){
		"op_timeout":      func(o *Options) { o.OpTimeout = -1 },
		"min_replicas":    func(o *Options) { o.MinReplicas = -1 },
		"replica_timeout": func(o *Options) { o.ReplicaTimeout = time.Microsecond },
		"max_batch":       func(o *Options) { o.MaxBatch = 100000 },
		"max_delay":       func(o *Options) { o.MaxDelay = time.Hour },
		"max_in_flight":   func(o *Options) { o.MaxInFlight = -2 },
		"claim_scan":      func(o *Options) { o.ClaimScan = -1 },
		"pool_size":       func(o *Options) { o.PoolSize = -1 },
	} {
		o := want
		mut(&o)
		err := o.Validate()
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: Validate = %v, want an error naming it", name, err)
		}
	}
	if _, err := New(nil, Options{}); err == nil {
		t.Error("New(nil) succeeded")
	}
}

func TestCheckDedupeKey(t *testing.T) {
	for key, ok := range map[string]bool{
		"evt_1": true, "a:b{c}*?[x]": true, "ünï ✓": true, strings.Repeat("x", 256): true,
		"": false, strings.Repeat("x", 257): false, "a\nb": false, "\x00": false, "a\x7f": false, "tab\t": false,
	} {
		if err := checkDedupeKey(key); (err == nil) != ok {
			t.Errorf("checkDedupeKey(%q) = %v, want ok=%v", key, err, ok)
		} else if err != nil && relay.ErrorCode(err) != relay.CodeInvalid {
			t.Errorf("checkDedupeKey(%q): code %q", key, relay.ErrorCode(err))
		}
	}
}

func TestAppendArgs(t *testing.T) {
	now := int64(1_000_000)
	args := appendArgs(nil, relay.AppendRequest{Event: []byte("e"), DedupeWindow: 90 * time.Second, Retention: 10 * time.Second}, now)
	if args[1] != int64(90000) || args[2] != "990000" || args[3] != "" {
		t.Errorf("retention args = %v", args)
	}
	args = appendArgs(nil, relay.AppendRequest{DedupeWindow: time.Microsecond, MaxLen: 5}, now)
	if args[1] != int64(1) || args[2] != "" || args[3] != "5" {
		t.Errorf("max len args = %v", args)
	}
	args = appendArgs(nil, relay.AppendRequest{DedupeWindow: time.Hour, Retention: time.Hour}, now)
	if args[2] != "" {
		t.Errorf("retention before the epoch: MINID %v, want none", args[2])
	}
}

func TestXinfoID(t *testing.T) {
	for _, v := range []any{
		map[any]any{"length": int64(1), "last-generated-id": "5-1"},
		map[string]any{"last-generated-id": "5-1"},
		[]any{"length", int64(1), "last-generated-id", "5-1"},
	} {
		if id, ok := xinfoID(v, "last-generated-id"); !ok || id != (relay.ID{Ms: 5, Seq: 1}) {
			t.Errorf("xinfoID(%v) = %v, %v", v, id, ok)
		}
	}
	if _, ok := xinfoID([]any{"length", int64(1)}, "max-deleted-entry-id"); ok {
		t.Error("xinfoID found a missing field")
	}
}

// TestWorkers: a task never waits behind a busy worker (a blocking read must not hold up
// the next one), idle workers take the next tasks rather than new goroutines, and Close
// leaves no worker running.
func TestWorkers(t *testing.T) {
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}) // never dialled
	s, err := New(client, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	release := make(chan struct{})
	blocked := make(chan struct{})
	s.run(func() { close(blocked); <-release })
	<-blocked
	ran := make(chan struct{})
	s.run(func() { close(ran) })
	select {
	case <-ran:
	case <-time.After(10 * time.Second):
		t.Fatal("a task waited behind a busy worker")
	}
	if n := s.workers.Load(); n != 2 {
		t.Fatalf("%d workers with one busy and one task run, want 2", n)
	}
	close(release)
	// Sequential tasks find a worker idle (the one that ran the task before, or another that
	// waits meanwhile): a few workers at most, not one per task.
	for range 200 {
		done := make(chan struct{})
		s.run(func() { close(done) })
		<-done
	}
	if n := s.workers.Load(); n > 10 {
		t.Fatalf("%d workers after 200 tasks one after the other, want a few", n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if n := s.workers.Load(); n != 0 {
		t.Fatalf("%d workers after Close, want 0", n)
	}
}
