package redisstore

import (
	"context"
	"sort"

	"github.com/eventrelay/eventrelay/relay"
	"github.com/redis/go-redis/v9"
)

// LagScanLimit bounds the entries Stats counts for a group whose lag Redis does not report
// itself (the embedded store, which does not count entries-read, or a stream with deleted
// entries); beyond it the lag is -1 (unknown). One read per partition serves all its groups.
const LagScanLimit = 1000

// Stats describes each of ps in at most three pipelined round trips whatever their number:
// lengths and newest entries; the consumer groups of the streams that exist (XINFO GROUPS);
// dead-letter lengths, the oldest pending and first undelivered entry of each group and, for groups whose lag Redis does not know, the newest entries after
// the oldest such group's position (at most LagScanLimit).
func (s *Store) Stats(ctx context.Context, ps []relay.Partition) ([]relay.PartitionStats, error) {
	for _, p := range ps {
		if err := checkPartition(p); err != nil {
			return nil, err
		}
	}
	if s.closed.Load() {
		return nil, errClosed()
	}
	opCtx, cancel := s.opContext(ctx, 0)
	defer cancel()
	type part struct {
		xlen, exists *redis.IntCmd
		lastEntry    *redis.XMessageSliceCmd
		groups       *redis.XInfoGroupsCmd
		dlq          []*redis.IntCmd           // per group
		pending      []*redis.XPendingCmd      // per group
		next         []*redis.XMessageSliceCmd // per group: the first undelivered entry
		tail         *redis.XMessageSliceCmd
		last         string
	}
	parts := make([]part, len(ps))
	pipe := s.client.Pipeline()
	for i, p := range ps {
		key := StreamKey(p)
		parts[i].xlen = pipe.XLen(opCtx, key)
		parts[i].exists = pipe.Exists(opCtx, key)
		parts[i].lastEntry = pipe.XRevRangeN(opCtx, key, "+", "-", 1)
	}
	if _, err := pipe.Exec(opCtx); err != nil {
		return nil, s.fail(ctx, "stats", err)
	}
	pipe = s.client.Pipeline()
	n := 0
	for i, p := range ps {
		if parts[i].exists.Val() > 0 {
			parts[i].groups = pipe.XInfoGroups(opCtx, StreamKey(p))
			n++
		}
		if es := parts[i].lastEntry.Val(); len(es) > 0 {
			parts[i].last = es[0].ID
		}
	}
	if n > 0 {
		if _, err := pipe.Exec(opCtx); err != nil {
			return nil, s.fail(ctx, "stats", err)
		}
	}
	pipe = s.client.Pipeline()
	n = 0
	for i, p := range ps {
		pt := &parts[i]
		if pt.groups == nil {
			continue
		}
		oldest := ""
		for _, g := range pt.groups.Val() {
			pt.dlq = append(pt.dlq, pipe.XLen(opCtx, DeadLetterKey(p, g.Name)))
			pt.pending = append(pt.pending, pipe.XPending(opCtx, StreamKey(p), g.Name))
			pt.next = append(pt.next, pipe.XRangeN(opCtx, StreamKey(p), "("+g.LastDeliveredID, "+", 1))
			n++
			if lagKnown(g) || pt.last == "" || !idLess(g.LastDeliveredID, pt.last) {
				continue
			}
			if oldest == "" || idLess(g.LastDeliveredID, oldest) {
				oldest = g.LastDeliveredID
			}
		}
		if oldest != "" {
			pt.tail = pipe.XRevRangeN(opCtx, StreamKey(p), "+", "("+oldest, LagScanLimit)
			n++
		}
	}
	if n > 0 {
		if _, err := pipe.Exec(opCtx); err != nil {
			return nil, s.fail(ctx, "stats", err)
		}
	}
	out := make([]relay.PartitionStats, len(ps))
	for i, p := range ps {
		pt := &parts[i]
		out[i] = relay.PartitionStats{Partition: p, Length: pt.xlen.Val()}
		if id, err := relay.ParseID(pt.last); err == nil {
			out[i].Last = id
		}
		if pt.groups == nil {
			continue
		}
		for j, g := range pt.groups.Val() {
			gs := relay.GroupStats{Name: g.Name, Pending: g.Pending, Consumers: g.Consumers, DeadLetters: pt.dlq[j].Val()}
			if g.Pending > 0 {
				if id, err := relay.ParseID(pt.pending[j].Val().Lower); err == nil {
					gs.Oldest = id
				}
			}
			if es := pt.next[j].Val(); len(es) > 0 {
				if id, err := relay.ParseID(es[0].ID); err == nil && (gs.Oldest.IsZero() || id.Less(gs.Oldest)) {
					gs.Oldest = id
				}
			}
			switch {
			case lagKnown(g):
				gs.Lag = g.Lag
			case pt.last == "" || !idLess(g.LastDeliveredID, pt.last):
				gs.Lag = 0
			default:
				gs.Lag = tailLag(pt.tail.Val(), g.LastDeliveredID)
			}
			out[i].Groups = append(out[i].Groups, gs)
		}
		sort.Slice(out[i].Groups, func(a, b int) bool { return out[i].Groups[a].Name < out[i].Groups[b].Name })
	}
	return out, nil
}

// tailLag counts the entries of tail (the newest entries of a stream, newest first, at most
// LagScanLimit) after the id last: the lag of a group that last read last. -1 when tail was
// cut at LagScanLimit before reaching last (the lag is larger than the scan).
func tailLag(tail []redis.XMessage, last string) int64 {
	n := sort.Search(len(tail), func(i int) bool { return !idLess(last, tail[i].ID) })
	if n == len(tail) && len(tail) >= LagScanLimit {
		return -1
	}
	return int64(n)
}

// lagKnown reports whether Redis tracked the group's lag (Redis 7: entries-read is counted;
// a group that has read nothing has a trivially right lag).
func lagKnown(g redis.XInfoGroup) bool {
	return g.Lag >= 0 && (g.EntriesRead > 0 || g.LastDeliveredID == "0-0")
}

// idLess compares two stream ids; an unparseable id is never less.
func idLess(a, b string) bool {
	x, err1 := relay.ParseID(a)
	y, err2 := relay.ParseID(b)
	return err1 == nil && err2 == nil && x.Less(y)
}
