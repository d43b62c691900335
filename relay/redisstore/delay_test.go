package redisstore_test

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eventrelay/eventrelay/internal/redistest"
	"github.com/eventrelay/eventrelay/relay"
	"github.com/eventrelay/eventrelay/relay/redisstore"
)

// bothServers runs fn against the embedded server and a real Redis.
func bothServers(t *testing.T, fn func(t *testing.T, url string)) {
	for name, start := range map[string]func(t *testing.T) string{
		"embedded": func(t *testing.T) string { return startEmbedded(t).URL() },
		"redis":    func(t *testing.T) string { return redistest.Start(t) },
	} {
		t.Run(name, func(t *testing.T) { fn(t, start(t)) })
	}
}

func rawClient(t *testing.T, url string) *redis.Client {
	o, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(o)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestKeyNames(t *testing.T) {
	p := relay.Partition{Source: "orders", Index: 3}
	for _, tc := range []struct{ got, want string }{
		{redisstore.HoldKey(p, "billing"), "relay:{orders:3}:hold:billing"},
		{redisstore.AckKeyKey, "relay:ackkey"},
	} {
		if tc.got != tc.want {
			t.Errorf("key %q, want %q", tc.got, tc.want)
		}
	}
}

// TestAckKey: replicas on one Redis agree on one key, created once and kept in relay:ackkey.
func TestAckKey(t *testing.T) {
	bothServers(t, func(t *testing.T, url string) {
		a, b := newStore(t, url, redisstore.Options{}), newStore(t, url, redisstore.Options{})
		ka, err := a.AckKey(t.Context())
		if err != nil || len(ka) != relay.AckKeyLen {
			t.Fatalf("AckKey = %x, %v", ka, err)
		}
		kb, err := b.AckKey(t.Context())
		if err != nil || !bytes.Equal(ka, kb) {
			t.Fatalf("second replica's key %x, %v; want %x", kb, err, ka)
		}
		stored, err := rawClient(t, url).Get(t.Context(), "relay:ackkey").Bytes()
		if err != nil || !bytes.Equal(stored, ka) {
			t.Fatalf("relay:ackkey = %x, %v", stored, err)
		}
		if err := rawClient(t, url).Set(t.Context(), "relay:ackkey", "short", 0).Err(); err != nil {
			t.Fatal(err)
		}
		if _, err := a.AckKey(t.Context()); relay.ErrorCode(err) != relay.CodeFailedPrecondition {
			t.Fatalf("a short key: %v", err)
		}
	})
}

// TestHoldClaimDue: a held entry is not claimed however long it is idle, is claimed when its
// hold falls due whatever the min idle, and ClaimDue reports the next hold.
func TestHoldClaimDue(t *testing.T) {
	bothServers(t, func(t *testing.T, url string) {
		ctx := t.Context()
		s := newStore(t, url, redisstore.Options{})
		rdb := rawClient(t, url)
		p := relay.Partition{Source: "holds", Index: 0}
		now := time.Now()
		if got, err := s.Hold(ctx, p, "g", []relay.ID{{Ms: 1}}, nil, now); err != nil || fmt.Sprint(got) != "[false]" {
			t.Fatalf("Hold in a missing group = %v, %v", got, err)
		}
		if _, _, err := s.ClaimDue(ctx, p, "g", "c", 0, 10, now); relay.ErrorCode(err) != relay.CodeNotFound {
			t.Fatalf("ClaimDue in a missing group: %v", err)
		}
		if err := s.EnsureGroup(ctx, p, "g", relay.ID{}); err != nil {
			t.Fatal(err)
		}
		var ids []relay.ID
		for i := range 4 {
			r, err := s.Append(ctx, appendReq(p, fmt.Sprintf("h%d", i)))
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, r.ID)
		}
		if es, err := s.ReadGroup(ctx, p, "g", "c1", false, 3, 0); err != nil || len(es) != 3 {
			t.Fatalf("ReadGroup = %v, %v", es, err)
		}
		until := time.UnixMilli(now.Add(time.Hour).UnixMilli())
		got, err := s.Hold(ctx, p, "g", []relay.ID{ids[0], ids[3]}, nil, until)
		if err != nil || fmt.Sprint(got) != "[true false]" { // ids[3] was never delivered
			t.Fatalf("Hold = %v, %v; want [true false]", got, err)
		}
		if score, err := rdb.ZScore(ctx, "relay:{holds:0}:hold:g", ids[0].String()).Result(); err != nil || int64(score) != until.UnixMilli() {
			t.Fatalf("hold score %v, %v; want %d", score, err, until.UnixMilli())
		}
		if held, err := s.Held(ctx, p, "g", ids[:2], now); err != nil || fmt.Sprint(held) != "[true false]" {
			t.Fatalf("Held = %v, %v", held, err)
		}
		// Min idle 0: everything delivered is idle enough, but the held entry stays.
		es, next, err := s.ClaimDue(ctx, p, "g", "c2", 0, 10, now)
		if err != nil || len(es) != 2 || es[0].ID != ids[1] || es[1].ID != ids[2] || !next.Equal(until) {
			t.Fatalf("ClaimDue = %+v, next %v, %v; want %v and %v, next %v", es, next, err, ids[1], ids[2], until)
		}
		if es[0].DeliveryCount != 2 || string(es[0].Event) != "h1" {
			t.Fatalf("claimed %+v, want count 2 and payload h1", es[0])
		}
		// A hold that is due is claimed whatever the min idle, and removed.
		if _, err := s.Hold(ctx, p, "g", []relay.ID{ids[1]}, nil, now.Add(-time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		es, _, err = s.ClaimDue(ctx, p, "g", "c3", time.Hour, 10, now)
		if err != nil || len(es) != 1 || es[0].ID != ids[1] || es[0].DeliveryCount != 3 {
			t.Fatalf("ClaimDue of a due hold = %+v, %v; want %v with count 3", es, err, ids[1])
		}
		if n, _ := rdb.ZCard(ctx, "relay:{holds:0}:hold:g").Result(); n != 1 {
			t.Fatalf("holds left %d, want 1", n)
		}
		// At the hold's time, the held entry is claimed.
		es, next, err = s.ClaimDue(ctx, p, "g", "c4", time.Hour, 10, until)
		if err != nil || len(es) != 1 || es[0].ID != ids[0] || !next.IsZero() {
			t.Fatalf("ClaimDue at the hold's time = %+v, next %v, %v", es, next, err)
		}
		// A held entry whose data was deleted is acknowledged, not delivered.
		if _, err := s.Hold(ctx, p, "g", []relay.ID{ids[2]}, nil, now); err != nil {
			t.Fatal(err)
		}
		if err := rdb.XDel(ctx, "relay:{holds:0}:s", ids[2].String()).Err(); err != nil {
			t.Fatal(err)
		}
		if es, _, err = s.ClaimDue(ctx, p, "g", "c5", time.Hour, 10, now); err != nil || len(es) != 0 {
			t.Fatalf("ClaimDue of a deleted entry = %+v, %v", es, err)
		}
		pe, err := rdb.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: "relay:{holds:0}:s", Group: "g", Start: "-", End: "+", Count: 10}).Result()
		if err != nil || len(pe) != 2 {
			t.Fatalf("pending %v, %v; want the 2 claimed entries", pe, err)
		}
	})
}

// TestHoldsCluster: the hold and claim scripts touch one slot per partition, and the ack-id
// key is one key, so both work on Redis Cluster, partitions spread over the nodes.
func TestHoldsCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster start-up is slow; skipped with -short")
	}
	c := redistest.StartCluster(t, 2)
	s, err := redisstore.Open(c.URL(), true, "", redisstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := t.Context()
	if k, err := s.AckKey(ctx); err != nil || len(k) != relay.AckKeyLen {
		t.Fatalf("AckKey = %x, %v", k, err)
	}
	now := time.Now()
	for i := range 4 {
		p := relay.Partition{Source: "ch", Index: i}
		if err := s.EnsureGroup(ctx, p, "g", relay.ID{}); err != nil {
			t.Fatal(err)
		}
		r, err := s.Append(ctx, appendReq(p, "k"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.ReadGroup(ctx, p, "g", "c1", false, 1, 0); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Hold(ctx, p, "g", []relay.ID{r.ID}, nil, now.Add(time.Hour)); err != nil || !got[0] {
			t.Fatalf("partition %d: Hold = %v, %v", i, got, err)
		}
		es, next, err := s.ClaimDue(ctx, p, "g", "c2", 0, 10, now)
		if err != nil || len(es) != 0 || next.IsZero() {
			t.Fatalf("partition %d: ClaimDue before the hold = %v, %v, %v", i, es, next, err)
		}
		es, _, err = s.ClaimDue(ctx, p, "g", "c2", 0, 10, now.Add(time.Hour))
		if err != nil || len(es) != 1 || es[0].ID != r.ID {
			t.Fatalf("partition %d: ClaimDue at the hold = %v, %v", i, es, err)
		}
	}
}
