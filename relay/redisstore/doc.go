// Package redisstore is the relay.Store on Redis Streams, on a
// go-redis UniversalClient: a standalone server, Redis Sentinel or Redis Cluster, or the
// embedded in-process server of relay/embedded.
//
// # Keys
//
// The key names are a public contract (docs/design.md, storage layout). For partition p of source s:
//
//	relay:{s:p}:s        the stream; each entry has one field "e", the serialized eventrelay.v1.Event
//	relay:{s:p}:d:<id>   dedupe marker of event id <id>: value = the entry id, expires after the dedupe window
//	relay:{s:p}:n        count of the entries ever appended (for servers whose XINFO STREAM lacks entries-added)
//	relay:{s:p}:dlq:<g>  group g's dead letters: fields "e", "group", "delivery_count", "original_id"
//	relay:{s:p}:hold:<g> group g's held deliveries: sorted set of entry ids scored by the Unix ms before which they are not redelivered
//
// per source s (hash tag {s}): relay:{s}:meta (the recorded partition count),
// relay:{s}:group:<g> (group g's settings) and relay:{s}:groups (the groups with settings);
// and, once for all sources, relay:ackkey: the key ack ids are authenticated with (AckKey).
//
// The hash tag {s:p} puts all keys of a partition in one cluster slot, so every script and
// transaction below touches one slot. Event ids are key suffixes, never interpreted: any
// 1..256 bytes without control characters are accepted.
//
// # Appends (group commit)
//
// A batch of appends is one Lua script, atomic in Redis; per entry: if the marker exists,
// return its entry id (a duplicate, nothing written); else XADD (trimming with MINID ~
// now-retention, computed on the client's clock, or MAXLEN ~ n), SET the marker NX PX window
// to the new id, and return it; then INCRBY of the count by the entries appended.
// Concurrent appends are batched per partition: an append that finds its partition idle
// is sent at once; while a round trip is in flight, further appends queue and are sent as
// one pipeline (one EVALSHA per 256 entries, then WAIT when MinReplicas > 0) when MaxBatch are queued,
// after MaxDelay, or when the round trip completes, with at most MaxInFlight round trips
// per partition. Each caller is answered only with its own entry's result, after Redis
// acknowledged it. Scripts run by EVALSHA and fall back to EVAL when the server does not
// have them cached (NOSCRIPT), which also caches them.
//
// # Reads
//
// Range is XRANGE/XREVRANGE with COUNT; Read is XREAD [BLOCK] [COUNT] over several streams
// (grouped by hash slot with a cluster client: never a cross-slot command); Info is XLEN,
// the first and last entry, XINFO STREAM's last-generated-id, max-deleted-entry-id and
// entries-added, and GET of the count (used where entries-added is missing) in one MULTI;
// Lookup is GET marker then XRANGE id id.
//
// # Consumer groups and dead letters
//
// EnsureGroup is XGROUP CREATE MKSTREAM (BUSYGROUP ignored). ReadGroup of new entries is
// XREADGROUP ">". ReadPending (and ReadGroup of pending entries) is one script: XPENDING for
// the consumer's own pending entries after an id and their delivery counts, then XCLAIM of
// those to the same consumer, which counts the re-read as a delivery and returns their data
// (see readPendingScript for why not XREADGROUP from an id). Claim is XAUTOCLAIM then XPENDING for the counts. Ack is one XACK per id.
// DeadLetter is one script: XACK, and when the entry was pending, XADD to the group's dead
// letters. Redrive is one script per batch: each dead letter's original entry goes back into
// the group's pending entries (XCLAIM ... FORCE RETRYCOUNT 0, idle) for its next claim, and
// the dead letter is XDELed; nothing is added to the stream (see deadletter.go). PendingCount is the XPENDING summary; Release
// (negative acknowledgement) re-claims entries for their owner with XCLAIM IDLE RETRYCOUNT
// JUSTID, changing only their idle time.
//
// Holds (Store.Hold): Hold adds pending entries to the group's hold set with their
// not-before time (one script, checking each is pending); Held is ZMSCORE. ClaimDue, the claim
// path of group subscriptions, is one script: it claims (XCLAIM ... RETRYCOUNT n+1 JUSTID) the
// held entries that are due and removes them from the set, then entries idle past the min idle
// found with XPENDING IDLE that are not held, and answers the next hold time so the subscriber
// claims then. AckKey is SET NX of 32 random bytes, then GET.
//
// # Errors and timeouts
//
// Every Redis call is bounded by Options.OpTimeout (blocking reads by their block time plus
// OpTimeout). A failing, unreachable or timed-out Redis is a *relay.Error with
// relay.CodeUnavailable whose message ("store unavailable") is safe for clients and whose
// cause (the go-redis error) is for logs. Missing entries or groups are relay.CodeNotFound;
// invalid arguments relay.CodeInvalid, checked before anything is sent. When the caller's
// context ends, calls return at once with a CodeUnavailable error wrapping ctx.Err(), so
// errors.Is(err, context.Canceled) holds.
//
// # Durability: Redis settings for production
//
// An append is acknowledged when Redis has applied it in memory; what survives a crash
// depends on Redis' configuration:
//
//   - appendonly yes: without an append-only file a restart loses everything since the last
//     RDB snapshot.
//   - appendfsync everysec (the default with AOF) loses at most about a second of appends on
//     a power loss or kernel crash; appendfsync always loses none but costs an fsync per
//     write (the group commit amortizes it over a batch).
//   - maxmemory-policy noeviction: any evicting policy can silently drop streams or dedupe
//     markers. Size memory for the retention and dedupe windows.
//   - With replicas, set redis.min_replicas (Options.MinReplicas) so an append is answered
//     only after WAIT confirms that many replicas have it: a failover then cannot lose an
//     acknowledged event. (min-replicas-to-write on the primary additionally refuses writes
//     when too few replicas are connected.)
//
// WAIT replaces nothing of the above: it confirms replication, not persistence to disk.
package redisstore
