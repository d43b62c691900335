package storetest_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/eventrelay/eventrelay/internal/redistest"
	"github.com/eventrelay/eventrelay/relay"
	"github.com/eventrelay/eventrelay/relay/embedded"
	"github.com/eventrelay/eventrelay/relay/redisstore"
	"github.com/eventrelay/eventrelay/relay/storetest"
)

func TestMain(m *testing.M) {
	// The unreachable checks make go-redis log every failed dial; keep the output readable.
	redis.SetLogger(quietLogger{})
	goleak.VerifyTestMain(m)
}

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

// suiteOpts are the store options of the conformance runs: a generous OpTimeout, as the
// race detector slows the embedded server's Lua down a lot while every subtest runs at once.
var suiteOpts = redisstore.Options{OpTimeout: 10 * time.Second}

// unreachableOpts are those of the unreachable checks: every call must fail within
// OpTimeout (plus scheduling slack).
var unreachableOpts = redisstore.Options{OpTimeout: time.Second}

func startEmbedded(t *testing.T) *embedded.Server {
	t.Helper()
	srv, err := embedded.Start(embedded.WithClockInterval(100 * time.Millisecond))
	if err != nil {
		t.Fatalf("embedded.Start: %v", err)
	}
	t.Cleanup(srv.Close)
	return srv
}

func open(t *testing.T, url string, opts redisstore.Options) *redisstore.Store {
	t.Helper()
	s, err := redisstore.Open(url, false, "", opts)
	if err != nil {
		t.Fatalf("redisstore.Open(%s): %v", url, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestEmbedded runs the suite on redisstore against the embedded server, one server per
// subtest.
func TestEmbedded(t *testing.T) {
	storetest.Run(t, func(t *testing.T) relay.Store {
		return open(t, startEmbedded(t).URL(), suiteOpts)
	})
}

// TestRedis runs the suite on redisstore against one real redis-server shared by all
// subtests (skipped without redis-server unless RELAY_REQUIRE_REDIS=1).
func TestRedis(t *testing.T) {
	url := redistest.Start(t)
	storetest.Run(t, func(t *testing.T) relay.Store { return open(t, url, suiteOpts) })
}

func TestEmbeddedUnreachable(t *testing.T) {
	srv := startEmbedded(t)
	s := open(t, srv.URL(), unreachableOpts)
	if err := s.Ping(t.Context()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	srv.Close()
	storetest.Unreachable(t, s, unreachableOpts.OpTimeout+5*time.Second) // generous: without OpTimeout a call hangs far longer
}

func TestRedisUnreachableAndBack(t *testing.T) {
	srv := redistest.StartWith(t)
	s := open(t, srv.URL(), unreachableOpts)
	if err := s.Ping(t.Context()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	srv.Stop()
	storetest.Unreachable(t, s, unreachableOpts.OpTimeout+5*time.Second) // generous: without OpTimeout a call hangs far longer
	srv.Restart(t)
	// The client redials in the background after failed dials: allow it a few seconds.
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := s.Ping(t.Context())
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Ping after restart: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	p := relay.Partition{Source: "back", Index: 0}
	if _, err := s.Append(t.Context(), relay.AppendRequest{Partition: p, DedupeKey: "k", Event: []byte("v")}); err != nil {
		t.Fatalf("Append after restart: %v", err)
	}
}

// TestRedisCluster runs the suite on a three-node Redis Cluster: partitions spread over
// slots and nodes, so multi-partition reads take the per-slot path.
func TestRedisCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster start-up is slow; skipped with -short")
	}
	url := redistest.StartCluster(t, 3).URL()
	storetest.Run(t, func(t *testing.T) relay.Store {
		s, err := redisstore.Open(url, true, "", suiteOpts)
		if err != nil {
			t.Fatalf("redisstore.Open(%s, cluster): %v", url, err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}
