package redisstore

import (
	"fmt"
	"time"
)

// Defaults applied by Options.SetDefaults to zero fields.
const (
	DefaultOpTimeout      = 2 * time.Second
	DefaultReplicaTimeout = time.Second
	DefaultMaxBatch       = 128
	DefaultMaxDelay       = 200 * time.Microsecond
	DefaultMaxInFlight    = 1
	DefaultClaimScan      = 10
)

// MaxInFlightLimit is the largest Options.MaxInFlight.
const MaxInFlightLimit = 64

// Limits checked by Options.Validate.
const (
	maxMaxBatch    = 10000
	maxMaxInFlight = MaxInFlightLimit
	maxPoolSize    = 100000
)

// Options tune a Store. The zero value is valid: every zero field takes its default.
type Options struct {
	// OpTimeout bounds every Redis call (default 2s). A blocking read is bounded by its block
	// time plus OpTimeout; an append with MinReplicas > 0 by OpTimeout plus ReplicaTimeout.
	//
	// The bound is always enforced on the caller's side. go-redis also enforces it on the
	// socket only when the client was built with ContextTimeoutEnabled (Open does this);
	// with a client passed to New without it, a stuck call is abandoned after OpTimeout and
	// the connection is released by the client's own ReadTimeout/WriteTimeout.
	OpTimeout time.Duration

	// MinReplicas, when > 0, makes every append batch wait (WAIT MinReplicas ReplicaTimeout)
	// until that many replicas acknowledged the writes. When WAIT reports fewer replicas,
	// each append of the batch fails with CodeUnavailable: the entry is on the primary but
	// not known to be replicated, and a retry by the client is answered as a duplicate of it.
	MinReplicas int
	// ReplicaTimeout is the WAIT timeout (default 1s); used only when MinReplicas > 0. With a
	// client passed to New without ContextTimeoutEnabled, keep it below the client's
	// ReadTimeout (go-redis default 3s), which otherwise cuts WAIT short.
	ReplicaTimeout time.Duration

	// MaxBatch is the largest number of appends sent in one pipelined round trip
	// (default 128).
	MaxBatch int
	// MaxDelay bounds how long an append may wait to be batched while another round trip
	// of its partition is in flight (default 200µs). An append that finds its partition's
	// writer idle is sent at once and never waits for MaxDelay.
	MaxDelay time.Duration
	// MaxInFlight is the number of append round trips one partition may have in flight at
	// once (default 1). Appends beyond that queue and form the next batch. One is the
	// cheapest under load (larger batches: about 10% less relayd CPU and 15% less Redis CPU
	// per append on loopback, BENCHMARKS.md); more lower the wait of a queued append when
	// a round trip is long (Redis across a network, MinReplicas).
	MaxInFlight int

	// ClaimScan bounds how many XAUTOCLAIM calls one Claim makes to fill its count when the
	// pending list holds many entries that are not idle yet (default 10).
	ClaimScan int

	// PoolSize bounds the connections Open's client keeps to each Redis server unless the
	// URL sets pool_size (default DefaultPoolSize; PoolSizeFor gives the size for a number
	// of partitions). See pool.go.
	PoolSize int
}

// SetDefaults fills zero fields with the documented defaults.
func (o *Options) SetDefaults() {
	if o.OpTimeout == 0 {
		o.OpTimeout = DefaultOpTimeout
	}
	if o.ReplicaTimeout == 0 {
		o.ReplicaTimeout = DefaultReplicaTimeout
	}
	if o.MaxBatch == 0 {
		o.MaxBatch = DefaultMaxBatch
	}
	if o.MaxDelay == 0 {
		o.MaxDelay = DefaultMaxDelay
	}
	if o.MaxInFlight == 0 {
		o.MaxInFlight = DefaultMaxInFlight
	}
	if o.ClaimScan == 0 {
		o.ClaimScan = DefaultClaimScan
	}
	if o.PoolSize == 0 {
		o.PoolSize = DefaultPoolSize
	}
}

// Validate reports the first invalid field. Call it after SetDefaults: a zero field is
// invalid here.
func (o Options) Validate() error {
	switch {
	case o.OpTimeout < time.Millisecond:
		return fmt.Errorf("redisstore: op_timeout: must be at least 1ms, got %s", o.OpTimeout)
	case o.MinReplicas < 0:
		return fmt.Errorf("redisstore: min_replicas: must not be negative, got %d", o.MinReplicas)
	case o.ReplicaTimeout < time.Millisecond:
		return fmt.Errorf("redisstore: replica_timeout: must be at least 1ms, got %s", o.ReplicaTimeout)
	case o.MaxBatch < 1 || o.MaxBatch > maxMaxBatch:
		return fmt.Errorf("redisstore: max_batch: must be 1..%d, got %d", maxMaxBatch, o.MaxBatch)
	case o.MaxDelay <= 0 || o.MaxDelay > time.Second:
		return fmt.Errorf("redisstore: max_delay: must be in (0, 1s], got %s", o.MaxDelay)
	case o.MaxInFlight < 1 || o.MaxInFlight > maxMaxInFlight:
		return fmt.Errorf("redisstore: max_in_flight: must be 1..%d, got %d", maxMaxInFlight, o.MaxInFlight)
	case o.ClaimScan < 1:
		return fmt.Errorf("redisstore: claim_scan: must be at least 1, got %d", o.ClaimScan)
	case o.PoolSize < 1 || o.PoolSize > maxPoolSize:
		return fmt.Errorf("redisstore: pool_size: must be 1..%d, got %d", maxPoolSize, o.PoolSize)
	}
	return nil
}
