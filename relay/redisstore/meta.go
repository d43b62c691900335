package redisstore

import (
	"context"
	"errors"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/eventrelay/eventrelay/relay"
)

// Source metadata: one hash per source, relay:{<source>}:meta, with the field "partitions"
// holding the partition count the source's events were stored with. Its hash tag is the
// source alone, so in a cluster it lives in a slot of its own, apart from the partitions'
// keys; it is only read and written at start-up.
const (
	// MetaFieldPartitions is the field of the meta hash recording the partition count.
	MetaFieldPartitions = "partitions"
)

// MetaKey returns the key of source's metadata hash: relay:{<source>}:meta.
func MetaKey(source string) string { return "relay:{" + source + "}:meta" }

// ReasonPartitionCount is the relay.Error Reason of a partition count mismatch.
const ReasonPartitionCount = "partition_count_mismatch"

// EnsurePartitions records n as source's partition count the first time a relay starts with
// the source (HSETNX relay:{<source>}:meta partitions n) and, on every later start, checks
// that the configured count is still the recorded one. Every replica calls it at start-up;
// concurrent first starts agree on whichever count was written first.
//
// A different count is refused with a relay.CodeFailedPrecondition error (Reason
// ReasonPartitionCount) naming the source, both counts and how to migrate: the partition of
// an event is hash(partition key) mod the count, so changing the count would send a key's
// new events to another partition than its stored ones (breaking per-key order) and would
// look up dedupe markers in the wrong partition (storing redeliveries twice).
//
// An unreachable Redis is CodeUnavailable; a recorded value that is not a count is
// CodeFailedPrecondition.
func (s *Store) EnsurePartitions(ctx context.Context, source string, n int) error {
	if s.closed.Load() {
		return errClosed()
	}
	if !relay.ValidSourceName(source) {
		return relay.Errorf(relay.CodeInvalid, "invalid source name %q", source)
	}
	if n < 1 || n > relay.MaxPartitions {
		return relay.Errorf(relay.CodeInvalid, "partitions: must be 1..%d, got %d", relay.MaxPartitions, n)
	}
	key := MetaKey(source)
	opCtx, cancel := s.opContext(ctx, 0)
	defer cancel()
	set, err := s.client.HSetNX(opCtx, key, MetaFieldPartitions, n).Result()
	if err != nil {
		return s.fail(ctx, "record partition count", err)
	}
	if set {
		return nil
	}
	raw, err := s.client.HGet(opCtx, key, MetaFieldPartitions).Result()
	if errors.Is(err, redis.Nil) {
		// Deleted between HSETNX and HGET (someone is resetting the source): try once more.
		if set, err = s.client.HSetNX(opCtx, key, MetaFieldPartitions, n).Result(); err == nil && set {
			return nil
		}
		if err == nil {
			raw, err = s.client.HGet(opCtx, key, MetaFieldPartitions).Result()
		}
	}
	if err != nil {
		return s.fail(ctx, "read partition count", err)
	}
	recorded, perr := strconv.Atoi(strings.TrimSpace(raw))
	if perr != nil || recorded < 1 {
		e := relay.Errorf(relay.CodeFailedPrecondition,
			"source %q: Redis records partitions %q in %s, which is not a partition count; fix or delete that field (HSET %s %s <count>) after checking how many partitions the source's streams have",
			source, raw, key, key, MetaFieldPartitions)
		e.Reason = ReasonPartitionCount
		return e
	}
	if recorded != n {
		return PartitionCountMismatch(source, recorded, n)
	}
	return nil
}

// PartitionCountMismatch returns the error EnsurePartitions reports when source is configured
// with configured partitions but its events were stored with recorded.
func PartitionCountMismatch(source string, recorded, configured int) *relay.Error {
	e := relay.Errorf(relay.CodeFailedPrecondition,
		"source %q: configured with partitions: %d, but its events are stored in %d partitions (recorded in %s); "+
			"the partition count of a source cannot change, because events would move to other partitions and lose "+
			"their per-key order and deduplication. Set partitions: %d again, or, to migrate, configure a new source "+
			"(for example %q) with partitions: %d, point the provider at /v1/webhooks/%s, and retire %q once its "+
			"consumers have drained it",
		source, configured, recorded, MetaKey(source), recorded, migrationName(source), configured,
		migrationName(source), source)
	e.Reason = ReasonPartitionCount
	return e
}

// migrationName suggests a new source name for a migration: <source>-v2 (or -vN+1), within
// the 63-character limit of source names.
func migrationName(source string) string {
	base, next := source, 2
	if i := strings.LastIndex(source, "-v"); i > 0 {
		if v, err := strconv.Atoi(source[i+2:]); err == nil && v >= 1 {
			base, next = source[:i], v+1
		}
	}
	suffix := "-v" + strconv.Itoa(next)
	if len(base)+len(suffix) > 63 {
		base = base[:63-len(suffix)]
	}
	return base + suffix
}
