package redisstore

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Connection pool. A Store's Redis connections are of two kinds:
//
//   - blocking reads, each holding a connection while it waits: relay.Service runs at most
//     one per partition it reads, whatever the number of subscriptions (the shared reader,
//     which feeds the tail subscriptions and wakes the group subscriptions, which read
//     without blocking);
//   - short commands (appends, ranges, group reads, claims, acks), each holding a connection
//     for one round trip.
//
// Open bounds the pool of each Redis server to Options.PoolSize connections (unless the URL
// sets pool_size): with relay.Service that is the partitions read + room for short
// commands (see DefaultPoolSize). Calls beyond it wait for a connection (go-redis
// PoolTimeout). Connections are opened on demand and closed after DefaultConnIdleTime
// unused (unless the URL sets conn_max_idle_time): go-redis closes an idle connection only
// when it takes it from the pool, so Open uses a FIFO pool (the connection taken is the one
// unused longest) and a reaper that every reapEvery takes idle connections while they are
// stale. After a burst of subscriptions the connection count is back to what the remaining
// traffic uses within about DefaultConnIdleTime + reapEvery + the block time of the reads
// that ended.

// DefaultPoolSize is the pool size Open uses when neither Options.PoolSize nor the URL's
// pool_size is set: room for the blocking reads of 960 partitions. relayd sizes its pool
// with PoolSizeFor instead (redis.pool_size).
const DefaultPoolSize = 1024

// DefaultConnIdleTime is how long Open lets a connection stay unused before closing it,
// unless the URL sets conn_max_idle_time.
const DefaultConnIdleTime = 1500 * time.Millisecond

// The reaper samples, every reapSample, the most commands that were in flight at once (see
// inflight) and, every reapEvery, closes the idle connections of each pool beyond the most
// that were needed over the last reapWindow (at least one is kept).
const (
	reapSample = 100 * time.Millisecond
	reapEvery  = time.Second
	reapWindow = 2 * time.Second
)

// PoolSizeFor returns the pool size for a relay.Service reading partitions partitions: one
// blocking read per partition plus ShortCommandConns.
func PoolSizeFor(partitions int) int { return partitions + ShortCommandConns }

// ShortCommandConns is the part of the default pool for short commands.
const ShortCommandConns = 64

// clientKnobs are the go-redis options Open tunes, as pointers into the options of whichever
// topology (single server, Sentinel, Cluster).
type clientKnobs struct {
	contextTimeout *bool
	dialerRetries  *int
	poolSize       *int
	maxActive      *int
	pipelinePool   *int
	fifo           *bool
	idle           *time.Duration
}

// tune sets what Open changes in go-redis's defaults, whatever the topology: OpTimeout
// enforced on the socket, one dial attempt per connection (go-redis's five attempts per
// command retry made a 503 take about 2 s with Redis down) unless the URL sets
// dialer_retries; the pool size (Options.PoolSize unless the URL sets pool_size) as a hard
// cap (max_active_conns) with pipelines in the same pool (no separate pipeline pool), so
// that it bounds the connections to each server; and idle connections closed after
// DefaultConnIdleTime (FIFO pool, see reap) unless the URL sets conn_max_idle_time.
func (k clientKnobs) tune(opts Options) {
	*k.contextTimeout = true
	if *k.dialerRetries == 0 {
		*k.dialerRetries = 1
	}
	if *k.poolSize == 0 {
		*k.poolSize = opts.PoolSize
	}
	if *k.maxActive == 0 {
		*k.maxActive = *k.poolSize
	}
	if *k.pipelinePool == 0 {
		*k.pipelinePool = -1
	}
	if *k.idle == 0 {
		*k.idle = DefaultConnIdleTime
	}
	*k.fifo = true
}

// reap runs the reaper of the owned client's pools until Close.
func (s *Store) reap() {
	t := time.NewTicker(reapSample)
	defer t.Stop()
	var mu sync.Mutex // ForEachShard visits the shards concurrently
	pools := map[string]*poolReaper{}
	for tick := 1; ; tick++ {
		select {
		case <-s.base.Done():
			return
		case <-t.C:
		}
		peak := s.inflight.take()
		trim := tick%int(reapEvery/reapSample) == 0
		visit := func(ctx context.Context, c *redis.Client) {
			mu.Lock()
			r := pools[c.Options().Addr]
			if r == nil {
				r = &poolReaper{}
				pools[c.Options().Addr] = r
			}
			mu.Unlock()
			r.sample(peak) // each pool's reaper is visited by one goroutine at a time
			if trim {
				r.trim(ctx, c)
			}
		}
		switch c := s.client.(type) {
		case *redis.Client:
			visit(s.base, c)
		case *redis.ClusterClient:
			_ = c.ForEachShard(s.base, func(ctx context.Context, n *redis.Client) error {
				visit(ctx, n)
				return nil
			})
		}
	}
}

// inflight counts the commands (a pipeline counts once) in flight on the client and the
// most in flight at once since the reaper last looked: the connections the pool needed,
// bursts between two samples included (a sample of the pool's connections in use would
// miss them, and the reaper would close connections a burst a moment later dials again).
// With Redis Cluster the count covers all shards: each shard keeps as many.
type inflight struct{ cur, peak atomic.Int64 }

func (f *inflight) begin() {
	n := f.cur.Add(1)
	for {
		p := f.peak.Load()
		if n <= p || f.peak.CompareAndSwap(p, n) {
			return
		}
	}
}

func (f *inflight) end() { f.cur.Add(-1) }

// take returns the most in flight since the last take, and starts over from the count now.
func (f *inflight) take() int64 { return f.peak.Swap(f.cur.Load()) }

// inflightHook is the go-redis hook that keeps an inflight count.
type inflightHook struct{ f *inflight }

func (h inflightHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h inflightHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.f.begin()
		defer h.f.end()
		return next(ctx, cmd)
	}
}

func (h inflightHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.f.begin()
		defer h.f.end()
		return next(ctx, cmds)
	}
}

// poolReaper is the reaper's view of one pool: the most connections needed at once in each
// of the last samples.
type poolReaper struct {
	inUse [int(reapWindow / reapSample)]uint32
	next  int
}

func (r *poolReaper) sample(peak int64) {
	r.inUse[r.next%len(r.inUse)] = uint32(max(peak, 0))
	r.next++
}

// trim closes the idle connections beyond the most in use over the window (at least one
// connection stays), oldest first: it takes each through a dedicated connection (go-redis
// closes the stale ones it meets on the way) and closes it with QUIT, the failing command
// after which makes go-redis drop it rather than pool it.
func (r *poolReaper) trim(ctx context.Context, c *redis.Client) {
	keep := uint32(1)
	for _, n := range r.inUse {
		keep = max(keep, n)
	}
	for range 10000 {
		st := c.PoolStats()
		if st.IdleConns == 0 || st.TotalConns <= keep {
			return
		}
		cn := c.Conn()
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		err := cn.Ping(pctx).Err()
		if err == nil {
			_ = cn.Do(pctx, "QUIT").Err()
			_ = cn.Ping(pctx).Err() // fails: the connection is dropped, not pooled
		}
		_ = cn.Close()
		cancel()
		if err != nil {
			return
		}
	}
}
