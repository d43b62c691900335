package redisstore

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eventrelay/eventrelay/relay"
)

// Range returns up to count entries of p with start <= id <= end (XRANGE), or newest first
// (XREVRANGE) when reverse is set. A zero start is the beginning and MaxID the end of the
// stream; count <= 0 means no limit. A missing stream has no entries.
func (s *Store) Range(ctx context.Context, p relay.Partition, start, end relay.ID, count int, reverse bool) ([]relay.Entry, error) {
	if err := checkPartition(p); err != nil {
		return nil, err
	}
	return s.rangeKey(ctx, "range", StreamKey(p), start, end, count, reverse)
}

func (s *Store) rangeKey(ctx context.Context, op, key string, start, end relay.ID, count int, reverse bool) ([]relay.Entry, error) {
	msgs, err := s.xrange(ctx, op, key, start, end, count, reverse)
	if err != nil || msgs == nil {
		return nil, err
	}
	entries, _, err := toEntries(msgs)
	if err != nil {
		return nil, s.fail(ctx, op, err)
	}
	return entries, nil
}

// xrange runs XRANGE (or XREVRANGE when reverse) over key from start to end, up to count
// entries (count <= 0: no limit).
func (s *Store) xrange(ctx context.Context, op, key string, start, end relay.ID, count int, reverse bool) ([]redis.XMessage, error) {
	if s.closed.Load() {
		return nil, errClosed()
	}
	if end.Less(start) {
		return nil, nil
	}
	opCtx, cancel := s.opContext(ctx, 0)
	defer cancel()
	var c *redis.XMessageSliceCmd
	lo, hi := rangeStart(start), rangeEnd(end)
	switch {
	case reverse && count > 0:
		c = s.client.XRevRangeN(opCtx, key, hi, lo, int64(count))
	case reverse:
		c = s.client.XRevRange(opCtx, key, hi, lo)
	case count > 0:
		c = s.client.XRangeN(opCtx, key, lo, hi, int64(count))
	default:
		c = s.client.XRange(opCtx, key, lo, hi)
	}
	msgs, err := c.Result()
	if err != nil {
		return nil, s.fail(ctx, op, err)
	}
	return msgs, nil
}

// Read returns, for each partition of after that has entries with ids greater than the
// given one, up to count of them (count <= 0: no limit), ordered by source and index. An id
// of relay.MaxID means "entries added from now on" ($). With block > 0 it blocks up to
// block until at least one partition has entries (XREAD BLOCK), and returns nil when none
// arrived; block == 0 does not block.
//
// With a standalone or Sentinel client all partitions are read by one XREAD. With a cluster
// client partitions are grouped by hash slot (a command never spans slots): several groups
// are first read with one non-blocking pipelined pass, and when that finds nothing, by one
// blocking XREAD per group concurrently; Read returns with the first group that has entries,
// and the other reads finish in the background within block (what they read is read again
// by the next Read). Tailing many partitions of a cluster is cheapest with one Read per
// partition.
//
// ctx ending or Close returns at once (an error wrapping ctx.Err(), or CodeUnavailable).
func (s *Store) Read(ctx context.Context, after map[relay.Partition]relay.ID, count int, block time.Duration) ([]relay.ReadResult, error) {
	if s.closed.Load() {
		return nil, errClosed()
	}
	if block < 0 {
		return nil, relay.Errorf(relay.CodeInvalid, "block must not be negative")
	}
	parts := make([]relay.Partition, 0, len(after))
	for p := range after {
		if err := checkPartition(p); err != nil {
			return nil, err
		}
		parts = append(parts, p)
	}
	if len(parts) == 0 {
		return nil, nil
	}
	slices.SortFunc(parts, comparePartitions)
	groups := [][]relay.Partition{parts}
	if s.cluster != nil {
		groups = groupBySlot(parts)
	}
	if len(groups) == 1 {
		return s.xread(ctx, groups[0], after, count, block)
	}

	res, err := s.xreadPipelined(ctx, groups, after, count)
	if err != nil || len(res) > 0 || block == 0 {
		return res, err
	}
	type groupResult struct {
		res []relay.ReadResult
		err error
	}
	results := make(chan groupResult, len(groups))
	for _, g := range groups {
		ok := s.spawn(ctx, block+s.opts.OpTimeout, func(bctx context.Context) {
			r, err := s.xreadOnce(bctx, g, after, count, block)
			results <- groupResult{r, err}
		})
		if !ok {
			return nil, errClosed()
		}
	}
	for range groups {
		select {
		case r := <-results:
			if r.err != nil {
				return nil, s.fail(ctx, "read", r.err)
			}
			if len(r.res) > 0 {
				return r.res, nil
			}
		case <-ctx.Done():
			return nil, relay.WrapError(relay.CodeUnavailable, ctx.Err(), "request canceled")
		case <-s.base.Done():
			return nil, errClosed()
		}
	}
	return nil, nil
}

func comparePartitions(a, b relay.Partition) int {
	if c := strings.Compare(a.Source, b.Source); c != 0 {
		return c
	}
	return cmp.Compare(a.Index, b.Index)
}

// xread reads one slot group: directly when not blocking, else in the background so that
// ctx and Close end the wait at once.
func (s *Store) xread(ctx context.Context, parts []relay.Partition, after map[relay.Partition]relay.ID, count int, block time.Duration) ([]relay.ReadResult, error) {
	if block == 0 {
		opCtx, cancel := s.opContext(ctx, 0)
		defer cancel()
		res, err := s.xreadOnce(opCtx, parts, after, count, 0)
		if err != nil {
			return nil, s.fail(ctx, "read", err)
		}
		return res, nil
	}
	var res []relay.ReadResult
	done := s.background(ctx, block+s.opts.OpTimeout, func(bctx context.Context) error {
		var err error
		if len(parts) == 1 {
			if b := s.pipelinedBlock(block); b > 0 {
				res, err = s.xreadRetained(bctx, parts[0], after, count, b)
				return err
			}
		}
		res, err = s.xreadOnce(bctx, parts, after, count, block)
		return err
	})
	if err := s.await(ctx, done); err != nil {
		return nil, s.fail(ctx, "read", err)
	}
	return res, nil
}

func xreadArgs(parts []relay.Partition, after map[relay.Partition]relay.ID, count int, block time.Duration) *redis.XReadArgs {
	streams := make([]string, 0, 2*len(parts))
	for _, p := range parts {
		streams = append(streams, StreamKey(p))
	}
	for _, p := range parts {
		id := after[p]
		if id == relay.MaxID {
			streams = append(streams, "$")
		} else {
			streams = append(streams, id.String())
		}
	}
	a := &redis.XReadArgs{Streams: streams, Block: -1}
	if count > 0 {
		a.Count = int64(count)
	}
	if block > 0 {
		a.Block = max(block, time.Millisecond) // BLOCK 0 would block forever
	}
	return a
}

func (s *Store) xreadOnce(ctx context.Context, parts []relay.Partition, after map[relay.Partition]relay.ID, count int, block time.Duration) ([]relay.ReadResult, error) {
	streams, err := s.client.XRead(ctx, xreadArgs(parts, after, count, block)).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return toReadResults(parts, streams)
}

// xreadRetained is a blocking read of one partition pipelined with a read of the entry at
// its after id. Redis runs the second command of a connection only once the blocking read
// was served, so the entry's presence is ReadResult.AfterRetained: one round trip where a
// separate check would take two, on the path of every tail delivery. (XRANGE of one id
// rather than a script that answers only whether it exists: the embedded server runs each
// script in a fresh interpreter, which costs more than sending one entry back.)
func (s *Store) xreadRetained(ctx context.Context, p relay.Partition, afterIDs map[relay.Partition]relay.ID, count int, block time.Duration) ([]relay.ReadResult, error) {
	parts := []relay.Partition{p}
	pipe := s.client.Pipeline()
	rd := pipe.XRead(ctx, xreadArgs(parts, afterIDs, count, block))
	after := afterIDs[p]
	var held *redis.XMessageSliceCmd
	var id string
	if !after.IsZero() && after != relay.MaxID {
		id = after.String()
		held = pipe.XRange(ctx, StreamKey(p), id, id)
	}
	_, _ = pipe.Exec(ctx)
	streams, err := rd.Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	res, err := toReadResults(parts, streams)
	if err != nil || len(res) == 0 || held == nil {
		return res, err
	}
	if msgs, err := held.Result(); err == nil && len(msgs) == 1 && msgs[0].ID == id {
		res[0].AfterRetained = true
	}
	return res, nil
}

// pipelinedBlock is the block time of a pipelined blocking read asked to block for block,
// or 0 when it cannot be pipelined. A pipeline's replies are read under the client's
// ReadTimeout, not the longer deadline go-redis gives a blocking command alone, so the
// read blocks for at most half of it (returning empty sooner is within Read's contract).
func (s *Store) pipelinedBlock(block time.Duration) time.Duration {
	var rt time.Duration
	switch c := s.client.(type) {
	case *redis.Client:
		rt = c.Options().ReadTimeout
	case *redis.ClusterClient:
		rt = c.Options().ReadTimeout
	default:
		return 0
	}
	if rt > 0 {
		block = min(block, rt/2)
	}
	if block < 10*time.Millisecond {
		return 0
	}
	return block
}

// xreadPipelined reads several slot groups without blocking in one pipeline (split by node
// by the cluster client).
func (s *Store) xreadPipelined(ctx context.Context, groups [][]relay.Partition, after map[relay.Partition]relay.ID, count int) ([]relay.ReadResult, error) {
	opCtx, cancel := s.opContext(ctx, 0)
	defer cancel()
	pipe := s.client.Pipeline()
	cmds := make([]*redis.XStreamSliceCmd, len(groups))
	for i, g := range groups {
		cmds[i] = pipe.XRead(opCtx, xreadArgs(g, after, count, 0))
	}
	_, _ = pipe.Exec(opCtx)
	var res []relay.ReadResult
	for i, c := range cmds {
		streams, err := c.Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			return nil, s.fail(ctx, "read", err)
		}
		r, err := toReadResults(groups[i], streams)
		if err != nil {
			return nil, s.fail(ctx, "read", err)
		}
		res = append(res, r...)
	}
	slices.SortFunc(res, func(a, b relay.ReadResult) int { return comparePartitions(a.Partition, b.Partition) })
	return res, nil
}

func toReadResults(parts []relay.Partition, streams []redis.XStream) ([]relay.ReadResult, error) {
	byKey := make(map[string]relay.Partition, len(parts))
	for _, p := range parts {
		byKey[StreamKey(p)] = p
	}
	var res []relay.ReadResult
	for _, st := range streams {
		p, ok := byKey[st.Stream]
		if !ok {
			continue
		}
		entries, _, err := toEntries(st.Messages)
		if err != nil {
			return nil, err
		}
		if len(entries) > 0 {
			res = append(res, relay.ReadResult{Partition: p, Entries: entries})
		}
	}
	slices.SortFunc(res, func(a, b relay.ReadResult) int { return comparePartitions(a.Partition, b.Partition) })
	return res, nil
}

// Info describes p's stream in one round trip, atomically (MULTI): XLEN, the first and last
// entry (XRANGE and XREVRANGE COUNT 1), XINFO STREAM's last-generated-id,
// max-deleted-entry-id and entries-added, and the appends' own count (AddedKey). A missing
// stream is empty, not an error.
//
// When the server's XINFO STREAM lacks entries-added (Redis before 7.0, the embedded
// server), Added is the appends' own count, when it covers the stream (at least its length;
// a stream appended to before the count existed may have less). Where the server records
// no trimming in max-deleted-entry-id (Redis 7.0, the embedded server), entries were
// trimmed when Added exceeds the length, and then MaxDeleted is just before the first
// retained entry: everything before it may be gone. When neither tells, MaxDeleted stays
// zero ("cannot tell"). LastGenerated falls back to the last retained id where XINFO lacks
// it (it differs only after the newest entries were deleted).
func (s *Store) Info(ctx context.Context, p relay.Partition) (relay.StreamInfo, error) {
	if err := checkPartition(p); err != nil {
		return relay.StreamInfo{}, err
	}
	if s.closed.Load() {
		return relay.StreamInfo{}, errClosed()
	}
	opCtx, cancel := s.opContext(ctx, 0)
	defer cancel()
	key := StreamKey(p)
	pipe := s.client.TxPipeline() // one instant: the subscriptions' gap check compares counts
	xlen := pipe.XLen(opCtx, key)
	first := pipe.XRangeN(opCtx, key, "-", "+", 1)
	last := pipe.XRevRangeN(opCtx, key, "+", "-", 1)
	xinfo := pipe.Do(opCtx, "xinfo", "stream", key)
	counted := pipe.Get(opCtx, AddedKey(p))
	_, _ = pipe.Exec(opCtx)

	var info relay.StreamInfo
	var err error
	if info.Length, err = xlen.Result(); err != nil {
		return relay.StreamInfo{}, s.fail(ctx, "info", err)
	}
	for _, c := range []struct {
		cmd *redis.XMessageSliceCmd
		dst *relay.ID
	}{{first, &info.First}, {last, &info.Last}} {
		msgs, err := c.cmd.Result()
		if err != nil {
			return relay.StreamInfo{}, s.fail(ctx, "info", err)
		}
		if len(msgs) > 0 {
			if *c.dst, err = parseID(msgs[0].ID); err != nil {
				return relay.StreamInfo{}, s.fail(ctx, "info", err)
			}
		}
	}
	info.LastGenerated = info.Last
	added, addedOK := int64(0), false
	if v, err := xinfo.Result(); err == nil {
		if id, ok := xinfoID(v, "last-generated-id"); ok {
			info.LastGenerated = id
		}
		if id, ok := xinfoID(v, "max-deleted-entry-id"); ok {
			info.MaxDeleted = id
		}
		added, addedOK = xinfoValue(v, "entries-added").(int64)
	} else if isNetErr(err) || errors.Is(err, context.DeadlineExceeded) {
		return relay.StreamInfo{}, s.fail(ctx, "info", err)
	}
	if !addedOK { // the appends' own count; missing or not a number: cannot tell
		n, err := counted.Int64()
		added, addedOK = n, err == nil
	}
	if addedOK && added >= info.Length {
		info.Added = added
	}
	// Redis 7.0 and the embedded server do not record trimming in max-deleted-entry-id (7.0
	// records only XDEL). Trimming only removes the head, so when entries were removed (added
	// > length) every id before the first retained entry may be gone.
	if addedOK && added > info.Length {
		gone := info.LastGenerated
		if !info.First.IsZero() {
			gone = info.First.Prev()
		}
		if info.MaxDeleted.Less(gone) {
			info.MaxDeleted = gone
		}
	}
	return info, nil
}

// xinfoValue finds field name in an XINFO STREAM reply (a RESP3 map or a RESP2 flat list of
// field/value pairs).
func xinfoValue(v any, name string) any {
	switch v := v.(type) {
	case map[any]any:
		return v[name]
	case map[string]any:
		return v[name]
	case []any:
		for i := 0; i+1 < len(v); i += 2 {
			if k, _ := v[i].(string); k == name {
				return v[i+1]
			}
		}
	}
	return nil
}

// xinfoID finds the id field name in an XINFO STREAM reply.
func xinfoID(v any, name string) (relay.ID, bool) {
	str, ok := xinfoValue(v, name).(string)
	if !ok {
		return relay.ID{}, false
	}
	id, err := relay.ParseID(str)
	return id, err == nil
}

// Lookup returns the entry of event eventID in p: the dedupe marker gives its entry id (GET),
// XRANGE id id the entry. CodeNotFound when the marker expired (past the dedupe window) or the
// entry was trimmed; CodeInvalid for an id no append would accept.
func (s *Store) Lookup(ctx context.Context, p relay.Partition, eventID string) (relay.Entry, error) {
	if err := checkPartition(p); err != nil {
		return relay.Entry{}, err
	}
	if err := checkDedupeKey(eventID); err != nil {
		return relay.Entry{}, err
	}
	if s.closed.Load() {
		return relay.Entry{}, errClosed()
	}
	opCtx, cancel := s.opContext(ctx, 0)
	defer cancel()
	idStr, err := s.client.Get(opCtx, DedupeKey(p, eventID)).Result()
	if errors.Is(err, redis.Nil) {
		return relay.Entry{}, relay.Errorf(relay.CodeNotFound, "event %q not found", eventID)
	}
	if err != nil {
		return relay.Entry{}, s.fail(ctx, "lookup", err)
	}
	msgs, err := s.client.XRange(opCtx, StreamKey(p), idStr, idStr).Result()
	if err != nil {
		return relay.Entry{}, s.fail(ctx, "lookup", err)
	}
	entries, _, err := toEntries(msgs)
	if err != nil {
		return relay.Entry{}, s.fail(ctx, "lookup", err)
	}
	if len(entries) == 0 {
		return relay.Entry{}, relay.Errorf(relay.CodeNotFound, "event %q not found", eventID)
	}
	return entries[0], nil
}
