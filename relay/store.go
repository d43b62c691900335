package relay

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Partition names one partition of a source's stream. In Redis its keys are
// relay:{<source>:<index>}:s (stream), relay:{<source>:<index>}:d:<id> (dedupe markers)
// and relay:{<source>:<index>}:dlq:<group> (each consumer group's dead letters).
type Partition struct {
	Source string
	Index  int
}

func (p Partition) String() string { return p.Source + ":" + strconv.Itoa(p.Index) }

// ID is a stream entry id: milliseconds and a sequence number, ordered.
type ID struct {
	Ms  uint64
	Seq uint64
}

// MaxID is the greatest possible id.
var MaxID = ID{Ms: ^uint64(0), Seq: ^uint64(0)}

// ParseID parses "ms-seq" (or "ms", seq 0).
func ParseID(s string) (ID, error) {
	ms, seq, found := strings.Cut(s, "-")
	var id ID
	var err error
	if id.Ms, err = strconv.ParseUint(ms, 10, 64); err != nil {
		return ID{}, fmt.Errorf("bad stream id %q", s)
	}
	if found {
		if id.Seq, err = strconv.ParseUint(seq, 10, 64); err != nil {
			return ID{}, fmt.Errorf("bad stream id %q", s)
		}
	}
	return id, nil
}

// String formats the id as "ms-seq".
func (id ID) String() string {
	return strconv.FormatUint(id.Ms, 10) + "-" + strconv.FormatUint(id.Seq, 10)
}

// IsZero reports whether id is 0-0 (before every entry).
func (id ID) IsZero() bool { return id.Ms == 0 && id.Seq == 0 }

// Less reports whether id sorts before o.
func (id ID) Less(o ID) bool { return id.Ms < o.Ms || (id.Ms == o.Ms && id.Seq < o.Seq) }

// Next returns the smallest id greater than id.
func (id ID) Next() ID {
	if id.Seq == ^uint64(0) {
		return ID{Ms: id.Ms + 1}
	}
	return ID{Ms: id.Ms, Seq: id.Seq + 1}
}

// Prev returns the greatest id smaller than id (0-0 stays 0-0).
func (id ID) Prev() ID {
	switch {
	case id.Seq > 0:
		return ID{Ms: id.Ms, Seq: id.Seq - 1}
	case id.Ms > 0:
		return ID{Ms: id.Ms - 1, Seq: ^uint64(0)}
	}
	return id
}

// IDFromTime returns the first id at or after t.
func IDFromTime(t time.Time) ID {
	if t.UnixMilli() <= 0 {
		return ID{}
	}
	return ID{Ms: uint64(t.UnixMilli())}
}

// Time returns the time encoded in the id's milliseconds.
func (id ID) Time() time.Time { return time.UnixMilli(int64(id.Ms)) }

// Entry is one stream entry: its id and the serialized eventrelay.v1.Event (field "e").
type Entry struct {
	ID    ID
	Event []byte
	// DeliveryCount is, for group reads, how many times the entry has been delivered to the
	// group including this delivery (1 for a first delivery).
	DeliveryCount int64
}

// AppendRequest appends one serialized event to a partition, deduplicated on DedupeKey.
type AppendRequest struct {
	Partition Partition
	// DedupeKey is the event id; a marker relay:{p}:d:<key> lives for DedupeWindow.
	DedupeKey    string
	DedupeWindow time.Duration
	// Event is the serialized eventrelay.v1.Event.
	Event []byte
	// Retention trims entries older than now-Retention (XADD MINID ~); MaxLen trims to about
	// MaxLen entries (XADD MAXLEN ~). Zero disables each.
	Retention time.Duration
	MaxLen    int64
}

// AppendResult reports where an append landed.
type AppendResult struct {
	// ID of the new entry, or of the original entry for a duplicate.
	ID ID
	// Duplicate is true when the dedupe marker existed: nothing was appended.
	Duplicate bool
}

// StreamInfo describes one partition's stream.
type StreamInfo struct {
	Length int64
	// First and Last are the oldest and newest retained entry ids (zero when empty).
	First, Last ID
	// LastGenerated is the last id ever generated in the stream (survives trimming).
	LastGenerated ID
	// MaxDeleted bounds what was trimmed or deleted: entries with ids up to it may be gone
	// (Redis 7 max-deleted-entry-id, or the id before the first retained entry once any entry
	// was trimmed); zero when nothing was removed or the backend cannot tell.
	MaxDeleted ID
	// Added counts every entry ever appended (Redis 7 entries-added), so that Added-Length
	// entries were trimmed or deleted; zero when the backend cannot tell. Length, Last and
	// Added describe the same instant.
	Added int64
}

// ReadResult is a batch of entries of one partition from a blocking read.
type ReadResult struct {
	Partition Partition
	Entries   []Entry
	// AfterRetained reports that the entry at the read's after id of Partition was still in
	// the stream once the read was served, so retention (which trims the oldest entries
	// first) had removed nothing after it: Entries follow that id with no gap. It is set by
	// blocking reads of one partition (the conformance suite checks both answers); false
	// otherwise, and the reader then checks by itself (see gap.go). It must never be true
	// for an entry that was gone.
	AfterRetained bool
}

// Store is durable, partitioned, append-only event storage with consumer groups and dead
// letters: the one interface the domain needs from a backend. The Redis Streams
// implementation is relay/redisstore; every implementation passes the suite in
// relay/storetest.
//
// Errors: an unreachable or failing backend returns an *Error with CodeUnavailable (wrapping the
// cause, which never reaches a client); a missing entry CodeNotFound.
type Store interface {
	// Append atomically checks the dedupe marker and appends. A duplicate appends nothing and
	// returns the original entry's id with Duplicate set.
	Append(ctx context.Context, req AppendRequest) (AppendResult, error)
	// Range returns up to count entries of p with start <= id <= end, oldest first, or newest
	// first when reverse is set.
	Range(ctx context.Context, p Partition, start, end ID, count int, reverse bool) ([]Entry, error)
	// Read blocks up to block (0: do not block) for entries after the given ids, up to count
	// per partition, and returns the partitions that had any.
	Read(ctx context.Context, after map[Partition]ID, count int, block time.Duration) ([]ReadResult, error)
	// Info describes p's stream; an absent stream is empty, not an error.
	Info(ctx context.Context, p Partition) (StreamInfo, error)
	// Stats describes each of ps (in order): its length and, per consumer group, pending
	// entries, consumers, lag and dead letters. Metrics and the admin endpoint read it.
	Stats(ctx context.Context, ps []Partition) ([]PartitionStats, error)
	// Lookup finds the entry of event id through its dedupe marker (CodeNotFound when the
	// marker expired or the entry was trimmed).
	Lookup(ctx context.Context, p Partition, eventID string) (Entry, error)
	// EnsurePartitions records n as source's partition count the first time it is called
	// for the source and afterwards checks that n is still the recorded count: a different
	// count is CodeFailedPrecondition (events would move to other partitions and lose their
	// per-key order and deduplication).
	EnsurePartitions(ctx context.Context, source string, n int) error
	// AckKey returns the shared ack-id key (AckKeyLen random bytes), creating it on first use
	// in a way that concurrent first callers agree on one key, so that every relay replica on
	// the same store issues and accepts the same ack ids.
	AckKey(ctx context.Context) ([]byte, error)
	// Lease takes the named lease for owner, or renews it when owner holds it, until ttl from
	// now, and reports whether owner holds it (another owner's unexpired lease: false); ttl 0
	// releases it if owner holds it. Names and owners are group-name shaped. Ordered push
	// destinations use it so that one replica at a time delivers them.
	Lease(ctx context.Context, name, owner string, ttl time.Duration) (bool, error)
	// Ping checks that the backend answers.
	Ping(ctx context.Context) error
	// Close releases the store. It is idempotent.
	Close() error

	// EnsureGroup creates group on p starting after start (zero: from the beginning; MaxID:
	// only new entries) unless it exists.
	EnsureGroup(ctx context.Context, p Partition, group string, start ID) error
	// EnsureGroupSettings records want as the settings of group on source unless the group
	// has settings already, atomically, and returns the group's settings (want when it
	// recorded them). maxGroups > 0 bounds the groups with settings on source: recording
	// one more is CodeFailedPrecondition.
	EnsureGroupSettings(ctx context.Context, source, group string, want GroupSettings, maxGroups int) (GroupSettings, error)
	// GroupSettings returns the settings recorded for group on source, and false when none
	// are (the group was never created there); it records nothing.
	GroupSettings(ctx context.Context, source, group string) (GroupSettings, bool, error)
	// ReadGroup reads entries for consumer: pending=true returns the consumer's own pending
	// entries (from id 0), else new entries (>), blocking up to block (0: not at all).
	ReadGroup(ctx context.Context, p Partition, group, consumer string, pending bool, count int, block time.Duration) ([]Entry, error)
	// AckReadGroup acknowledges ack, reporting which were pending (as Ack), and then reads up
	// to count new entries for consumer without blocking (as ReadGroup), in one round trip
	// where the backend allows: a group subscription writes the acknowledgements made since
	// its last read with its next one.
	// deliveries are as for Ack.
	AckReadGroup(ctx context.Context, p Partition, group, consumer string, ack []ID, deliveries []int64, count int) ([]bool, []Entry, error)
	// ReadPending re-reads consumer's own pending entries with ids after after (zero: from the
	// first), oldest first, up to count, with their delivery counts; the read counts as a
	// delivery. An entry held past now (Hold) is neither read nor counted: it is returned with
	// DeliveryCount 0 and no Event, for the caller to page past and not deliver. A consumer
	// that comes back pages through what it held with it.
	ReadPending(ctx context.Context, p Partition, group, consumer string, after ID, count int) ([]Entry, error)
	// Claim reclaims entries idle at least minIdle for consumer (XAUTOCLAIM) with their
	// delivery counts.
	Claim(ctx context.Context, p Partition, group, consumer string, minIdle time.Duration, count int) ([]Entry, error)
	// ClaimDue transfers to consumer up to count entries of group that are due: held entries
	// whose time has come, and entries idle at least minIdle that are not held past now. It
	// returns them with their delivery counts (the claim counts as a delivery), and the time
	// the next hold of the group on p falls due (zero when none).
	ClaimDue(ctx context.Context, p Partition, group, consumer string, minIdle time.Duration, count int, now time.Time) ([]Entry, time.Time, error)
	// Ack acknowledges ids and returns which of them were pending. With deliveries (nil, or
	// one per id, 0 for none), an id is acknowledged only while its delivery count is still
	// that one: a delivery redelivered since (to this or another member) is not pending for
	// an ack id of the earlier attempt, and is left as it is.
	Ack(ctx context.Context, p Partition, group string, ids []ID, deliveries []int64) ([]bool, error)
	// PendingCount returns how many entries of p are pending (delivered, unacknowledged) for
	// consumer in group.
	PendingCount(ctx context.Context, p Partition, group, consumer string) (int64, error)
	// Release makes pending entries look idle for idle, so that a consumer reclaiming entries
	// idle longer than its ack deadline takes them: idle = ack deadline - delay redelivers
	// after delay. It reports which ids were pending. The delivery count is not incremented.
	Release(ctx context.Context, p Partition, group string, ids []ID, idle time.Duration) ([]bool, error)
	// Unread hands back pending entries that were read for a subscription that ended before
	// delivering them: they are claimable at once, and the read does not count as a delivery
	// attempt. It reports which ids were pending.
	Unread(ctx context.Context, p Partition, group string, ids []ID) ([]bool, error)
	// Hold records, for each id pending in group, that it is redelivered at until and not
	// before: the claim path neither takes it earlier (however long it has been idle) nor
	// later than its next claim after until. A later Hold replaces an earlier one. It reports
	// which ids were pending. Nack with a delay and ModifyAckDeadline use it, across replicas.
	// deliveries are as for Ack: an id redelivered since that attempt is not held.
	Hold(ctx context.Context, p Partition, group string, ids []ID, deliveries []int64, until time.Time) ([]bool, error)
	// Held reports, for each id, whether it is held past now.
	Held(ctx context.Context, p Partition, group string, ids []ID, now time.Time) ([]bool, error)
	// RemoveConsumer deletes consumer from group on p when it has no pending entry, and
	// reports whether it did.
	RemoveConsumer(ctx context.Context, p Partition, group, consumer string) (bool, error)
	// DeadLetter moves an entry to group's dead-letter stream on p and acks it in group,
	// atomically. Dead letters belong to the group that failed to process the entry.
	// It reports whether it did: with deliveries (not 0) only while the entry's delivery
	// count is still that one, as Ack.
	DeadLetter(ctx context.Context, p Partition, group string, e Entry, deliveries int64) (bool, error)
	// RangeDeadLetters ranges over group's dead letters on p like Range.
	RangeDeadLetters(ctx context.Context, p Partition, group string, start, end ID, count int, reverse bool) ([]Entry, error)
	// Redrive delivers the given dead letters of group on p (all when ids is nil) again to
	// that group only, as fresh deliveries of their original entries, and removes them from
	// the dead letters; returns how many were redriven. Other groups and tail readers see
	// nothing new and the stream does not grow. A dead letter whose original entry retention
	// has removed from the stream stays a dead letter.
	Redrive(ctx context.Context, p Partition, group string, ids []ID) (int, error)
}

// PartitionStats describes one partition's stream (Store.Stats).
type PartitionStats struct {
	Partition Partition
	// Length is the number of entries retained.
	Length int64
	// Last is the id of the newest entry retained (zero: none); its time is when it was
	// appended.
	Last ID
	// Groups are the stream's consumer groups, by name.
	Groups []GroupStats
}

// GroupStats describes a consumer group on one partition.
type GroupStats struct {
	Name string
	// Pending counts the entries delivered and not yet acknowledged.
	Pending int64
	// Consumers counts the group's consumers.
	Consumers int64
	// Lag counts the entries not yet delivered to the group; -1 when the store cannot tell
	// (more than it is willing to count).
	Lag int64
	// DeadLetters counts the group's dead letters.
	DeadLetters int64
	// Oldest is the id of the oldest entry the group has not acknowledged: the oldest of its
	// pending entries and the first entry not yet delivered to it (zero: none). Its time
	// (ID.Time) is when that entry was appended, so now minus it is how long the group's
	// oldest unfinished work has waited.
	Oldest ID
}
