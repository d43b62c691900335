package redisstore_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/eventrelay/eventrelay/internal/redistest"
	"github.com/eventrelay/eventrelay/relay"
	"github.com/eventrelay/eventrelay/relay/redisstore"
)

func TestMetaKey(t *testing.T) {
	if got := redisstore.MetaKey("orders"); got != "relay:{orders}:meta" {
		t.Fatalf("MetaKey = %q", got)
	}
}

func TestEnsurePartitionsEmbedded(t *testing.T) {
	testEnsurePartitions(t, startEmbedded(t).URL())
}

func TestEnsurePartitionsRedis(t *testing.T) {
	testEnsurePartitions(t, redistest.Start(t))
}

func testEnsurePartitions(t *testing.T, url string) {
	s := newStore(t, url, redisstore.Options{})
	ctx := t.Context()

	t.Run("first start records, same count passes", func(t *testing.T) {
		for range 2 {
			if err := s.EnsurePartitions(ctx, "orders", 4); err != nil {
				t.Fatal(err)
			}
		}
		got, err := s.Client().HGet(ctx, "relay:{orders}:meta", "partitions").Result()
		if err != nil || got != "4" {
			t.Fatalf("recorded %q, %v", got, err)
		}
	})

	t.Run("different count refused with a clear message", func(t *testing.T) {
		err := s.EnsurePartitions(ctx, "orders", 8)
		if relay.ErrorCode(err) != relay.CodeFailedPrecondition {
			t.Fatalf("got %v", err)
		}
		var re *relay.Error
		if !errors.As(err, &re) || re.Reason != redisstore.ReasonPartitionCount {
			t.Fatalf("reason: %v", err)
		}
		for _, want := range []string{`"orders"`, "partitions: 8", "stored in 4 partitions", "relay:{orders}:meta", "partitions: 4 again", `"orders-v2"`, "/v1/webhooks/orders-v2"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("message lacks %q: %v", want, err)
			}
		}
		// Nothing changed.
		if got, _ := s.Client().HGet(ctx, "relay:{orders}:meta", "partitions").Result(); got != "4" {
			t.Fatalf("recorded count changed to %q", got)
		}
	})

	t.Run("sources are independent", func(t *testing.T) {
		if err := s.EnsurePartitions(ctx, "payments", 1); err != nil {
			t.Fatal(err)
		}
		if err := s.EnsurePartitions(ctx, "payments", 2); relay.ErrorCode(err) != relay.CodeFailedPrecondition {
			t.Fatalf("got %v", err)
		}
	})

	t.Run("concurrent first starts agree", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make([]error, 8)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = s.EnsurePartitions(ctx, "race", 1+i%2)
			}()
		}
		wg.Wait()
		got, err := s.Client().HGet(ctx, "relay:{race}:meta", "partitions").Result()
		if err != nil {
			t.Fatal(err)
		}
		for i, err := range errs {
			want := err == nil
			if ok := got == string(rune('0'+1+i%2)); ok != want {
				t.Errorf("start %d with %d partitions: %v (recorded %s)", i, 1+i%2, err, got)
			}
		}
	})

	t.Run("a damaged record is reported", func(t *testing.T) {
		if err := s.Client().HSet(ctx, "relay:{broken}:meta", "partitions", "many").Err(); err != nil {
			t.Fatal(err)
		}
		err := s.EnsurePartitions(ctx, "broken", 1)
		if relay.ErrorCode(err) != relay.CodeFailedPrecondition || !strings.Contains(err.Error(), "not a partition count") {
			t.Fatalf("got %v", err)
		}
	})

	t.Run("invalid arguments", func(t *testing.T) {
		for _, tc := range []struct {
			source string
			n      int
		}{{"Bad Name", 1}, {"ok", 0}, {"ok", relay.MaxPartitions + 1}} {
			if err := s.EnsurePartitions(ctx, tc.source, tc.n); relay.ErrorCode(err) != relay.CodeInvalid {
				t.Errorf("EnsurePartitions(%q, %d) = %v", tc.source, tc.n, err)
			}
		}
		if n, _ := s.Client().Exists(ctx, "relay:{ok}:meta").Result(); n != 0 {
			t.Error("invalid call wrote a record")
		}
	})
}

func TestEnsurePartitionsUnavailable(t *testing.T) {
	srv := startEmbedded(t)
	s := newStore(t, srv.URL(), redisstore.Options{})
	srv.Close()
	if err := s.EnsurePartitions(context.Background(), "orders", 1); relay.ErrorCode(err) != relay.CodeUnavailable {
		t.Fatalf("got %v", err)
	}
	_ = s.Close()
	if err := s.EnsurePartitions(context.Background(), "orders", 1); relay.ErrorCode(err) != relay.CodeUnavailable {
		t.Fatalf("after Close: %v", err)
	}
}

func TestMigrationName(t *testing.T) {
	// The suggested name is a valid source name, also for the longest names.
	long := strings.Repeat("a", 63)
	for _, src := range []string{"orders", "orders-v2", "orders-v9", long, long[:60] + "-v9"} {
		err := redisstore.PartitionCountMismatch(src, 1, 2)
		msg := err.Error()
		i := strings.Index(msg, "for example \"")
		if i < 0 {
			t.Fatalf("no suggestion in %q", msg)
		}
		name := msg[i+len("for example \""):]
		name = name[:strings.IndexByte(name, '"')]
		if !relay.ValidSourceName(name) || name == src {
			t.Errorf("suggestion for %q is %q", src, name)
		}
	}
	if got := redisstore.PartitionCountMismatch("orders-v2", 1, 2).Error(); !strings.Contains(got, `"orders-v3"`) {
		t.Errorf("orders-v2 → %s", got)
	}
}
