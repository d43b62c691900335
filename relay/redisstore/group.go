package redisstore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eventrelay/eventrelay/relay"
)

// EnsureGroup creates consumer group on p's stream unless it exists (XGROUP CREATE ...
// MKSTREAM; an existing group, BUSYGROUP, is not an error and keeps its position). The group
// starts after start: zero means from the beginning ("0"), relay.MaxID only entries added
// from now on ("$").
func (s *Store) EnsureGroup(ctx context.Context, p relay.Partition, group string, start relay.ID) error {
	if err := checkGroup(p, group); err != nil {
		return err
	}
	if s.closed.Load() {
		return errClosed()
	}
	id := start.String()
	switch {
	case start.IsZero():
		id = "0"
	case start == relay.MaxID:
		id = "$"
	}
	opCtx, cancel := s.opContext(ctx, 0)
	defer cancel()
	err := s.client.XGroupCreateMkStream(opCtx, StreamKey(p), group, id).Err()
	if err != nil && !redis.HasErrorPrefix(err, "BUSYGROUP") {
		return s.fail(ctx, "ensure group", err)
	}
	return nil
}

// ReadGroup reads entries of p for consumer in group.
//
// pending=true re-reads the consumer's own pending entries from the start of its pending
// list, as ReadPending does from the zero id (never blocks).
//
// pending=false reads new entries (XREADGROUP >), blocking up to block (0: do not block);
// their DeliveryCount is 1. count <= 0 means no limit. A missing group is CodeNotFound.
func (s *Store) ReadGroup(ctx context.Context, p relay.Partition, group, consumer string, pending bool, count int, block time.Duration) ([]relay.Entry, error) {
	if pending {
		return s.ReadPending(ctx, p, group, consumer, relay.ID{}, count)
	}
	return s.readNew(ctx, p, group, consumer, count, block)
}

// readPendingScript re-reads a consumer's pending entries, oldest first, as one atomic
// step: XPENDING lists them with their delivery counts, and XCLAIM to the same consumer
// (min idle 0) counts the re-read as a delivery and returns their data. Entries whose data
// retention trimmed can never be delivered: they are acknowledged and left out.
//
// XREADGROUP from an id would do the same in Redis, but not in every server that speaks
// its protocol: miniredis (the embedded server) ignores its COUNT and counts a delivery
// for every pending entry after the id, so paging through many pending entries pushed the
// later ones past the group's max delivery attempts, and they were dead-lettered.
//
// Entries held past now (HoldKey: a Nack delay, an extended deadline) are not claimed (a
// claim would count a delivery and so expire the ack id of the delivery that holds them):
// they are returned as {id, 0, ""}, for the caller to page past them.
//
//	KEYS[1] stream, KEYS[2] holds
//	ARGV[1] group, ARGV[2] consumer, ARGV[3] first id ("-" or an id), ARGV[4] count,
//	ARGV[5] now (Unix ms)
//
// Returns {id, delivery count, event, id, delivery count, event, ...}.
var readPendingScript = redis.NewScript(`
local pend = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], '+', ARGV[4], ARGV[2])
local now = tonumber(ARGV[5])
local out, gone = {}, {}
-- event returns the payload field of a stream entry's fields, or nil.
local function event(f)
  for k = 1, #f, 2 do
    if f[k] == 'e' then return f[k + 1] end
  end
  return nil
end
for i = 1, #pend, 500 do
  -- Only entries still in the stream are claimed (miniredis would count a claim of a trimmed
  -- entry against its consumer and then the acknowledgement again), and not held ones.
  local last = math.min(i + 499, #pend)
  local ids, held = {}, {}
  for j = i, last do
    local id = pend[j][1]
    local e = redis.call('XRANGE', KEYS[1], id, id)
    local until_ = tonumber(redis.call('ZSCORE', KEYS[2], id))
    if #e > 0 and until_ and until_ > now then
      held[id] = true
    elseif #e > 0 then
      ids[#ids + 1] = id
    end
  end
  local got = {}
  if #ids > 0 then
    for _, e in ipairs(redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, unpack(ids))) do
      if type(e) == 'table' and type(e[2]) == 'table' then
        got[e[1]] = event(e[2])
      end
    end
  end
  -- In the order of the pending entries (the caller pages after the last one).
  for j = i, last do
    local id, n = pend[j][1], pend[j][4]
    if held[id] then
      out[#out + 1] = id
      out[#out + 1] = 0
      out[#out + 1] = ''
    elseif got[id] then
      out[#out + 1] = id
      out[#out + 1] = n + 1
      out[#out + 1] = got[id]
    else
      gone[#gone + 1] = id
    end
  end
end
for i = 1, #gone, 500 do
  redis.call('XACK', KEYS[1], ARGV[1], unpack(gone, i, math.min(i + 499, #gone)))
end
return out
`)

// ReadPending re-reads consumer's own pending entries of group on p with ids after after,
// oldest first, up to count (<= 0: all), with their delivery counts: the read counts as a
// delivery, as a claim does (see readPendingScript), except for entries held past now,
// returned with DeliveryCount 0 and no Event (the caller pages past them). Pending entries
// whose data was trimmed by retention can never be delivered: they are acknowledged and left
// out.
func (s *Store) ReadPending(ctx context.Context, p relay.Partition, group, consumer string, after relay.ID, count int) ([]relay.Entry, error) {
	if err := checkMember(p, group, consumer); err != nil {
		return nil, err
	}
	if s.closed.Load() {
		return nil, errClosed()
	}
	first := "-"
	if !after.IsZero() {
		first = after.Next().String()
	}
	if count <= 0 {
		count = math.MaxInt32
	}
	opCtx, cancel := s.opContext(ctx, 0)
	defer cancel()
	res, err := readPendingScript.Run(opCtx, s.client, []string{StreamKey(p), HoldKey(p, group)}, group, consumer, first, count, time.Now().UnixMilli()).Slice()
	if isNoGroup(err) {
		return nil, errNoGroup(p, group)
	}
	if err != nil {
		return nil, s.fail(ctx, "read pending", err)
	}
	if len(res)%3 != 0 {
		return nil, s.fail(ctx, "read pending", fmt.Errorf("script returned %d values, not triples", len(res)))
	}
	entries := make([]relay.Entry, 0, len(res)/3)
	for i := 0; i < len(res); i += 3 {
		sid, _ := res[i].(string)
		id, err := parseID(sid)
		if err != nil {
			return nil, s.fail(ctx, "read pending", err)
		}
		n := toInt(res[i+1])
		if n == 0 { // held: neither read nor counted
			entries = append(entries, relay.Entry{ID: id})
			continue
		}
		entries = append(entries, relay.Entry{ID: id, Event: toBytes(res[i+2]), DeliveryCount: n})
	}
	return entries, nil
}

// readNew reads new entries (XREADGROUP >), blocking up to block (0: not at all).
func (s *Store) readNew(ctx context.Context, p relay.Partition, group, consumer string, count int, block time.Duration) ([]relay.Entry, error) {
	if err := checkMember(p, group, consumer); err != nil {
		return nil, err
	}
	if block < 0 {
		return nil, relay.Errorf(relay.CodeInvalid, "block must not be negative")
	}
	if s.closed.Load() {
		return nil, errClosed()
	}
	args := newReadArgs(group, consumer, StreamKey(p), count)
	if block > 0 {
		args.Block = max(block, time.Millisecond) // BLOCK 0 would block forever
	}

	var msgs []redis.XMessage
	read := func(rctx context.Context) error {
		streams, err := s.client.XReadGroup(rctx, args).Result()
		if errors.Is(err, redis.Nil) {
			return nil
		}
		if err != nil {
			return err
		}
		for _, st := range streams {
			msgs = append(msgs, st.Messages...)
		}
		return nil
	}
	var err error
	if block > 0 {
		err = s.await(ctx, s.background(ctx, block+s.opts.OpTimeout, read))
	} else {
		opCtx, cancel := s.opContext(ctx, 0)
		err = read(opCtx)
		cancel()
	}
	return s.newEntries(ctx, p, group, msgs, err)
}

// newReadArgs is XREADGROUP of new entries (>) of key, up to count (<= 0: no limit), without
// blocking.
func newReadArgs(group, consumer, key string, count int) *redis.XReadGroupArgs {
	args := &redis.XReadGroupArgs{Group: group, Consumer: consumer, Streams: []string{key, ">"}, Block: -1}
	if count > 0 {
		args.Count = int64(count)
	}
	return args
}

// newEntries turns the answer of an XREADGROUP of new entries into first deliveries.
func (s *Store) newEntries(ctx context.Context, p relay.Partition, group string, msgs []redis.XMessage, err error) ([]relay.Entry, error) {
	if isNoGroup(err) {
		return nil, errNoGroup(p, group)
	}
	if err != nil {
		return nil, s.fail(ctx, "read group", err)
	}
	entries, _, err := toEntries(msgs)
	if err != nil {
		return nil, s.fail(ctx, "read group", err)
	}
	for i := range entries {
		entries[i].DeliveryCount = 1
	}
	return entries, nil
}

// AckReadGroup acknowledges ack (one XACK per id) and reads new entries for consumer
// (XREADGROUP >, not blocking) in one pipeline. A missing group is CodeNotFound.
func (s *Store) AckReadGroup(ctx context.Context, p relay.Partition, group, consumer string, ack []relay.ID, deliveries []int64, count int) ([]bool, []relay.Entry, error) {
	if err := checkMember(p, group, consumer); err != nil {
		return nil, nil, err
	}
	if s.closed.Load() {
		return nil, nil, errClosed()
	}
	if len(deliveries) != 0 && len(deliveries) != len(ack) {
		return nil, nil, relay.Errorf(relay.CodeInternal, "ack: %d delivery counts for %d ids", len(deliveries), len(ack))
	}
	opCtx, cancel := s.opContext(ctx, 0)
	defer cancel()
	key := StreamKey(p)
	pipe := s.client.Pipeline()
	var readAcks func() ([]bool, error)
	if checked(deliveries) {
		// The script's text goes with the pipeline (EVAL): EVALSHA's fallback on NOSCRIPT
		// cannot run inside one.
		cmd := ackScript.Eval(opCtx, pipe, []string{key}, ackArgs(group, ack, deliveries)...)
		readAcks = func() ([]bool, error) {
			v, err := cmd.Slice()
			return s.scriptFlags(ctx, "ack", v, err, len(ack))
		}
	} else {
		cmds := pipeAcks(opCtx, pipe, key, group, ack)
		readAcks = func() ([]bool, error) { return s.ackResults(ctx, cmds) }
	}
	read := pipe.XReadGroup(opCtx, newReadArgs(group, consumer, key, count))
	_, _ = pipe.Exec(opCtx)
	acked, err := readAcks()
	if err != nil {
		return nil, nil, err
	}
	var msgs []redis.XMessage
	streams, err := read.Result()
	if errors.Is(err, redis.Nil) {
		err = nil
	}
	for _, st := range streams {
		msgs = append(msgs, st.Messages...)
	}
	entries, err := s.newEntries(ctx, p, group, msgs, err)
	if err != nil {
		return nil, nil, err
	}
	return acked, entries, nil
}

// fillDeliveryCounts sets each entry's DeliveryCount from XPENDING (one pipelined XPENDING
// per id). An entry no longer pending (acked meanwhile) keeps a count of 1.
func (s *Store) fillDeliveryCounts(ctx context.Context, key, group string, entries []relay.Entry) error {
	if len(entries) == 0 {
		return nil
	}
	pipe := s.client.Pipeline()
	cmds := make([]*redis.XPendingExtCmd, len(entries))
	for i, e := range entries {
		id := e.ID.String()
		cmds[i] = pipe.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: key, Group: group, Start: id, End: id, Count: 1})
	}
	_, _ = pipe.Exec(ctx)
	for i, c := range cmds {
		res, err := c.Result()
		if err != nil {
			return err
		}
		entries[i].DeliveryCount = 1
		if len(res) == 1 && res[0].RetryCount > 0 {
			entries[i].DeliveryCount = res[0].RetryCount
		}
	}
	return nil
}

// Claim transfers to consumer up to count entries of group that were delivered at least
// minIdle ago and not acknowledged (XAUTOCLAIM from the start of the pending list, repeated
// up to Options.ClaimScan times while entries remain to scan), and returns them with their
// delivery counts (XPENDING after the claim: claiming counts as a delivery). count <= 0
// means 100. A missing group is CodeNotFound.
func (s *Store) Claim(ctx context.Context, p relay.Partition, group, consumer string, minIdle time.Duration, count int) ([]relay.Entry, error) {
	if err := checkMember(p, group, consumer); err != nil {
		return nil, err
	}
	if minIdle < 0 {
		return nil, relay.Errorf(relay.CodeInvalid, "min idle must not be negative")
	}
	if s.closed.Load() {
		return nil, errClosed()
	}
	if count <= 0 {
		count = 100
	}
	opCtx, cancel := s.opContext(ctx, 0)
	defer cancel()
	key := StreamKey(p)
	var entries []relay.Entry
	start := "0-0"
	for range s.opts.ClaimScan {
		msgs, next, err := s.client.XAutoClaim(opCtx, &redis.XAutoClaimArgs{
			Stream: key, Group: group, Consumer: consumer,
			MinIdle: minIdle, Start: start, Count: int64(count - len(entries)),
		}).Result()
		if isNoGroup(err) {
			return nil, errNoGroup(p, group)
		}
		if err != nil {
			return nil, s.fail(ctx, "claim", err)
		}
		got, _, err := toEntries(msgs)
		if err != nil {
			return nil, s.fail(ctx, "claim", err)
		}
		entries = append(entries, got...)
		if len(entries) >= count || next == "0-0" || next == "" {
			break
		}
		start = next
	}
	if err := s.fillDeliveryCounts(opCtx, key, group, entries); err != nil {
		if isNoGroup(err) {
			return nil, errNoGroup(p, group)
		}
		return nil, s.fail(ctx, "claim", err)
	}
	return entries, nil
}

// ackScript acknowledges entries of a given delivery:
//
//	KEYS[1] stream; ARGV[1] group, then pairs of entry id and delivery count (0: any)
//
// An id whose count is not 0 is acknowledged only while XPENDING shows it with that delivery
// count (it was not redelivered since). Returns 1/0 per id (acknowledged or not), all 0 for a
// missing group.
var ackScript = redis.NewScript(`
local out = {}
for i = 2, #ARGV, 2 do
  local ok, want = 0, tonumber(ARGV[i + 1])
  local pe = nil
  if want ~= 0 then
    pe = redis.pcall('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  end
  if want == 0 or (type(pe) == 'table' and pe.err == nil and #pe == 1 and tonumber(pe[1][4]) == want) then
    local n = redis.pcall('XACK', KEYS[1], ARGV[1], ARGV[i])
    if type(n) == 'number' then
      ok = n
    end
  end
  out[#out + 1] = ok
end
return out
`)

// Ack acknowledges ids in group and reports, for each, whether it was pending: false for an
// id already acknowledged, never delivered, or of a missing group, and, with deliveries, for
// an id redelivered since (its delivery count moved on). Without deliveries it is one XACK
// per id, pipelined; with them, one atomic script.
func (s *Store) Ack(ctx context.Context, p relay.Partition, group string, ids []relay.ID, deliveries []int64) ([]bool, error) {
	if err := checkGroup(p, group); err != nil {
		return nil, err
	}
	if s.closed.Load() {
		return nil, errClosed()
	}
	if len(ids) == 0 {
		return []bool{}, nil
	}
	if len(deliveries) != 0 && len(deliveries) != len(ids) {
		return nil, relay.Errorf(relay.CodeInternal, "ack: %d delivery counts for %d ids", len(deliveries), len(ids))
	}
	opCtx, cancel := s.opContext(ctx, 0)
	defer cancel()
	if checked(deliveries) {
		v, err := ackScript.Run(opCtx, s.client, []string{StreamKey(p)}, ackArgs(group, ids, deliveries)...).Slice()
		return s.scriptFlags(ctx, "ack", v, err, len(ids))
	}
	pipe := s.client.Pipeline()
	cmds := pipeAcks(opCtx, pipe, StreamKey(p), group, ids)
	_, _ = pipe.Exec(opCtx)
	return s.ackResults(ctx, cmds)
}

// checked reports whether deliveries ask for a check of any delivery count (ackScript).
func checked(deliveries []int64) bool {
	return slices.ContainsFunc(deliveries, func(n int64) bool { return n != 0 })
}

// ackArgs are ackScript's arguments: group, then each id with its delivery count.
func ackArgs(group string, ids []relay.ID, deliveries []int64) []any {
	args := make([]any, 0, 1+2*len(ids))
	args = append(args, group)
	for i, id := range ids {
		args = append(args, id.String(), deliveries[i])
	}
	return args
}

// pipeAcks queues one XACK per id on pipe.
func pipeAcks(ctx context.Context, pipe redis.Pipeliner, key, group string, ids []relay.ID) []*redis.IntCmd {
	cmds := make([]*redis.IntCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.XAck(ctx, key, group, id.String())
	}
	return cmds
}

// ackResults reports, for each executed XACK of pipeAcks, whether its id was pending.
func (s *Store) ackResults(ctx context.Context, cmds []*redis.IntCmd) ([]bool, error) {
	acked := make([]bool, len(cmds))
	for i, c := range cmds {
		n, err := c.Result()
		if err != nil {
			return nil, s.fail(ctx, "ack", err)
		}
		acked[i] = n == 1
	}
	return acked, nil
}

// PendingCount returns how many entries of p are pending (delivered, not acknowledged) for
// consumer in group: the consumer's line of the XPENDING summary. A missing group is
// CodeNotFound.
func (s *Store) PendingCount(ctx context.Context, p relay.Partition, group, consumer string) (int64, error) {
	if err := checkPartition(p); err != nil {
		return 0, err
	}
	if err := checkName("group", group); err != nil {
		return 0, err
	}
	if err := checkName("consumer", consumer); err != nil {
		return 0, err
	}
	if s.closed.Load() {
		return 0, errClosed()
	}
	opCtx, cancel := s.opContext(ctx, 0)
	defer cancel()
	res, err := s.client.XPending(opCtx, StreamKey(p), group).Result()
	if isNoGroup(err) {
		return 0, errNoGroup(p, group)
	}
	if err != nil {
		return 0, s.fail(ctx, "pending count", err)
	}
	return res.Consumers[consumer], nil
}

// releaseScript sets the idle time of pending entries without changing their owner or
// delivery count:
//
//	KEYS[1] stream; ARGV[1] group, ARGV[2] idle ms, ARGV[3..] entry ids
//
// For each id pending in the group it re-claims the entry for its current owner with
// XCLAIM ... IDLE <idle> RETRYCOUNT <current count> JUSTID. Returns 1/0 per id (pending or
// not); all 0 for a missing group.
var releaseScript = redis.NewScript(`
local out = {}
for i = 3, #ARGV do
  local pe = redis.pcall('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if type(pe) == 'table' and pe.err == nil and #pe == 1 then
    redis.call('XCLAIM', KEYS[1], ARGV[1], pe[1][2], 0, ARGV[i], 'IDLE', ARGV[2], 'RETRYCOUNT', pe[1][4], 'JUSTID')
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
`)

// unreadScript hands pending entries back: idle for ARGV[2] ms, and the delivery count one
// less, so that the next claim counts the next real delivery as the attempt it is.
var unreadScript = redis.NewScript(`
local out = {}
for i = 3, #ARGV do
  local pe = redis.pcall('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if type(pe) == 'table' and pe.err == nil and #pe == 1 then
    local count = tonumber(pe[1][4]) - 1
    if count < 0 then count = 0 end
    redis.call('XCLAIM', KEYS[1], ARGV[1], pe[1][2], 0, ARGV[i], 'IDLE', ARGV[2], 'RETRYCOUNT', count, 'JUSTID')
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
`)

// Unread hands back entries of group that were read (XREADGROUP) for a subscription that
// ended before delivering them: they look idle for a day, so any consumer's next claim takes
// them, and their delivery count is decremented so that the read does not count as an
// attempt. It reports, for each id, whether it was pending.
func (s *Store) Unread(ctx context.Context, p relay.Partition, group string, ids []relay.ID) ([]bool, error) {
	return s.reclaimable(ctx, unreadScript, "unread", p, group, ids, 24*time.Hour)
}

// Release makes pending entries of group look idle for idle (negative acknowledgement): a
// consumer reclaiming entries idle longer than its ack deadline takes them, so idle = ack
// deadline - delay redelivers after delay. The owner and delivery count are unchanged (the
// next claim counts the redelivery). It reports, for each id, whether it was pending; ids
// of a missing group are all not pending. All ids are handled in one atomic script.
func (s *Store) Release(ctx context.Context, p relay.Partition, group string, ids []relay.ID, idle time.Duration) ([]bool, error) {
	return s.reclaimable(ctx, releaseScript, "release", p, group, ids, idle)
}

// reclaimable runs a release-style script over ids: args group, idle ms, ids.
func (s *Store) reclaimable(ctx context.Context, script *redis.Script, op string, p relay.Partition, group string, ids []relay.ID, idle time.Duration) ([]bool, error) {
	if err := checkGroup(p, group); err != nil {
		return nil, err
	}
	if idle < 0 {
		return nil, relay.Errorf(relay.CodeInvalid, "idle must not be negative")
	}
	if s.closed.Load() {
		return nil, errClosed()
	}
	if len(ids) == 0 {
		return []bool{}, nil
	}
	args := make([]any, 0, len(ids)+2)
	args = append(args, group, idle.Milliseconds())
	for _, id := range ids {
		args = append(args, id.String())
	}
	opCtx, cancel := s.opContext(ctx, 0)
	defer cancel()
	v, err := script.Run(opCtx, s.client, []string{StreamKey(p)}, args...).Slice()
	return s.scriptFlags(ctx, op, v, err, len(ids))
}

// scriptFlags reads the reply of a script that answers 1 or 0 for each of n ids.
func (s *Store) scriptFlags(ctx context.Context, op string, v []any, err error, n int) ([]bool, error) {
	if err != nil {
		return nil, s.fail(ctx, op, err)
	}
	if len(v) != n {
		return nil, s.fail(ctx, op, fmt.Errorf("unexpected script reply %v", v))
	}
	out := make([]bool, n)
	for i := range v {
		out[i] = toInt(v[i]) == 1
	}
	return out, nil
}

// checkMember validates the partition, group and consumer of a group operation.
func checkMember(p relay.Partition, group, consumer string) error {
	if err := checkGroup(p, group); err != nil {
		return err
	}
	return checkName("consumer", consumer)
}

// checkGroup validates the partition and group of a group operation.
func checkGroup(p relay.Partition, group string) error {
	if err := checkPartition(p); err != nil {
		return err
	}
	return checkName("group", group)
}
