// Package embedded runs an in-process Redis-compatible server (miniredis) so that relayd, and
// the very same relay/redisstore code, work with no Redis installed: the default when
// redis.url is empty.
//
// The server listens on a loopback TCP port and speaks RESP like Redis; redisstore connects
// to URL() as it would to any Redis. It requires a password generated at Start (never
// logged), so other local processes cannot read the events or append forged ones. Data lives in memory only and is lost when the process
// stops. It is meant for development, tests and small single-node setups; production runs
// real Redis (see docs/operations.md).
//
// Differences from Redis that matter to eventrelay, and how they are handled:
//
//   - Key expiry: miniredis does not expire keys by itself. The Server advances miniredis'
//     TTL clock by the real elapsed time every clock interval (WithClockInterval, default 1s), so dedupe markers
//     expire within one interval of their window. Each tick visits every key, so with very
//     many live markers (hundreds of thousands) it costs noticeable CPU: another reason to
//     use real Redis at scale.
//   - Stream ids use the wall clock (miniredis' time is never frozen here), so MINID
//     retention computed from the client's clock works as on Redis.
//   - Approximate trimming (MAXLEN ~ / MINID ~) trims exactly.
//   - XINFO STREAM reports only length and last-generated-id; redisstore reads first and
//     last entries with XRANGE/XREVRANGE anyway.
//   - XREADGROUP re-reading pending entries (from an id) ignores COUNT and counts a
//     delivery of every pending entry after the id: redisstore re-reads pending entries
//     with XPENDING and XCLAIM instead. Pending entries whose data was trimmed by
//     retention stay pending (Redis drops them from the pending list when they are
//     claimed); redisstore acknowledges them when it finds them.
//   - XINFO STREAM has neither max-deleted-entry-id nor entries-added: redisstore counts its
//     appends itself (AddedKey) and infers trimming from the count, as on Redis 7.0, so
//     trimmed history is detected (OUT_OF_RANGE) here too.
//   - Lua scripts (every append is one) run in a fresh interpreter per call: appends cost
//     about 0.2 ms of CPU each, a few thousand per second.
//   - WAIT answers 0 replicas: redisstore's min_replicas must stay 0 with it.
//   - There is no persistence, replication or cluster.
//
// Embedded imports only miniredis and the standard library.
package embedded

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
)

// DefaultAddr is where Start listens unless WithAddr says otherwise: a free loopback port.
const DefaultAddr = "127.0.0.1:0"

// DefaultClockInterval is how often the Server advances miniredis' TTL clock.
const DefaultClockInterval = time.Second

// Server is a running embedded Redis-compatible server.
type Server struct {
	m        *miniredis.Miniredis
	addr     string // cached: miniredis cannot tell it after Close
	password string

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

type config struct {
	addr          string
	password      string
	clockInterval time.Duration
}

// Option configures Start.
type Option func(*config)

// WithAddr sets the listen address (default "127.0.0.1:0": a free loopback port). Binding
// to a non-loopback address exposes the server, with no TLS, to the network.
func WithAddr(addr string) Option { return func(c *config) { c.addr = addr } }

// WithPassword sets the password the server requires (AUTH); URL carries it. By default
// Start generates a random one, so that no other local process can read or forge events
// through the loopback port: the only way in is URL, which the caller must not log.
func WithPassword(password string) Option { return func(c *config) { c.password = password } }

// WithClockInterval sets how often key expiry catches up with real time (default 1s; a
// marker expires up to one interval after its TTL).
func WithClockInterval(d time.Duration) Option { return func(c *config) { c.clockInterval = d } }

// Start starts a server and returns once it accepts connections.
func Start(opts ...Option) (*Server, error) {
	cfg := config{addr: DefaultAddr, clockInterval: DefaultClockInterval}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.clockInterval <= 0 {
		return nil, errors.New("embedded: clock interval must be positive")
	}
	if cfg.password == "" {
		var b [24]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("embedded: no randomness for the password: %w", err)
		}
		cfg.password = hex.EncodeToString(b[:])
	}
	m := miniredis.NewMiniRedis()
	m.RequireAuth(cfg.password)
	if err := m.StartAddr(cfg.addr); err != nil {
		return nil, fmt.Errorf("embedded: listen on %s: %w", cfg.addr, err)
	}
	s := &Server{
		m:        m,
		addr:     m.Addr(),
		password: cfg.password,
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	go s.clock(cfg.clockInterval)
	return s, nil
}

// clock advances miniredis' TTLs by the real time elapsed, until Close.
func (s *Server) clock(interval time.Duration) {
	defer close(s.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			s.m.FastForward(now.Sub(last))
			last = now
		}
	}
}

// Addr returns the host:port the server listens (or listened, after Close) on.
func (s *Server) Addr() string { return s.addr }

// URL returns a redis:// URL for Addr with the server's password: a secret.
func (s *Server) URL() string {
	u := url.URL{Scheme: "redis", Host: s.addr}
	if s.password != "" {
		u.User = url.UserPassword("", s.password)
	}
	return u.String()
}

// Close stops the server: connections are closed and the data is gone. It is idempotent.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.stop)
		<-s.done
		s.m.Close()
	})
}
