package redisstore

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// Connection pool. A Store's Redis connections are of two kinds:
//
//   - blocking reads, each holding a connection while it waits: relay.Service runs at most
//     two per partition it reads, whatever the number of subscriptions (the shared tail
//     reader and the watcher that wakes group subscriptions, which read without blocking);
//   - short commands (appends, ranges, group reads, claims, acks), each holding a connection
//     for one round trip.
//
// Open bounds the pool of each Redis server to Options.PoolSize connections (unless the URL
// sets pool_size): with relay.Service that is 2 × the partitions read + room for short
// commands (see DefaultPoolSize). Calls beyond it wait for a connection (go-redis
// PoolTimeout). Connections are opened on demand and closed after DefaultConnIdleTime
// unused (unless the URL sets conn_max_idle_time): go-redis closes an idle connection only
// when it takes it from the pool, so Open uses a FIFO pool (the connection taken is the one
// unused longest) and a reaper that every reapEvery takes idle connections while they are
// stale. After a burst of subscriptions the connection count is back to what the remaining
// traffic uses within about DefaultConnIdleTime + reapEvery + the block time of the reads
// that ended.

// DefaultPoolSize is the pool size Open uses when neither Options.PoolSize nor the URL's
// pool_size is set: room for the blocking reads of 480 partitions. relayd sizes its pool
// with PoolSizeFor instead (redis.pool_size).
const DefaultPoolSize = 1024

// DefaultConnIdleTime is how long Open lets a connection stay unused before closing it,
// unless the URL sets conn_max_idle_time.
const DefaultConnIdleTime = 1500 * time.Millisecond

// The reaper samples each pool's connections in use every reapSample and, every reapEvery,
// closes the idle connections beyond the most that were in use over the last reapWindow
// (at least one is kept).
const (
	reapSample = 100 * time.Millisecond
	reapEvery  = time.Second
	reapWindow = 2 * time.Second
)

// PoolSizeFor returns the pool size for a relay.Service reading partitions partitions: two
// blocking reads per partition plus ShortCommandConns.
func PoolSizeFor(partitions int) int { return 2*partitions + ShortCommandConns }

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
	pools := map[string]*poolReaper{}
	for tick := 1; ; tick++ {
		select {
		case <-s.base.Done():
			return
		case <-t.C:
		}
		trim := tick%int(reapEvery/reapSample) == 0
		visit := func(ctx context.Context, c *redis.Client) {
			r := pools[c.Options().Addr]
			if r == nil {
				r = &poolReaper{}
				pools[c.Options().Addr] = r
			}
			r.sample(c)
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

// poolReaper is the reaper's view of one pool: the connections in use at the last samples.
type poolReaper struct {
	inUse [int(reapWindow / reapSample)]uint32
	next  int
}

func (r *poolReaper) sample(c *redis.Client) {
	st := c.PoolStats()
	r.inUse[r.next%len(r.inUse)] = st.TotalConns - min(st.IdleConns, st.TotalConns)
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
