package redisstore

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/eventrelay/eventrelay/relay"
)

// Dead letters belong to the consumer group that failed to process an entry: each group has
// its own dead-letter stream per partition, relay:{<source>:<p>}:dlq:<group>. A dead letter
// is a copy of the event (field "e") with the group, its delivery count and the id of the
// original entry, which stays in the main stream (the other groups and tail readers keep
// their own view of it).
//
// Redrive hands a dead letter back to its group alone, without appending anything to the
// shared stream: the original entry is put back into the group's pending entries list
// (XCLAIM ... FORCE, owned by the reserved consumer RedriveConsumer, delivery count 0, idle
// for a day), so the claim path of any member of the group takes it at its next claim and
// delivers it as a first attempt with the original entry id (acks, Nack, ModifyAckDeadline
// and dead-lettering work on it as on any delivery). Nothing is added to the stream, so other
// groups and tail subscribers see nothing and XLEN does not change. A dead letter whose
// original entry retention has trimmed cannot be redriven this way and stays a dead letter.

// DeadLetterKey returns the key of group's dead-letter stream on p:
// relay:{<source>:<p>}:dlq:<group>.
func DeadLetterKey(p relay.Partition, group string) string {
	return "relay:" + hashTag(p) + ":dlq:" + group
}

// RedriveConsumer owns redriven entries until a member of the group claims them. Member
// names cannot start with "_", so it never collides with one.
const RedriveConsumer = "_redrive"

// deadLetterScript acknowledges an entry in its group and, only when it was pending, adds it
// to the group's dead-letter stream, atomically:
//
//	KEYS[1] stream, KEYS[2] the group's dead letters
//	ARGV[1] group, ARGV[2] entry id, ARGV[3] event (used when the entry was trimmed),
//	ARGV[4] delivery count
//
// The payload is taken from the stream entry when it is still there. Returns 1 when moved,
// 0 when the entry was not pending (already acknowledged or dead-lettered).
var deadLetterScript = redis.NewScript(`
local want = tonumber(ARGV[5])
if want ~= 0 then
  local pe = redis.pcall('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
  if type(pe) ~= 'table' or pe.err ~= nil or #pe ~= 1 or tonumber(pe[1][4]) ~= want then
    return 0
  end
end
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then
  return 0
end
local payload = ARGV[3]
local r = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])
if #r > 0 then
  local f = r[1][2]
  for i = 1, #f, 2 do
    if f[i] == 'e' then payload = f[i + 1] end
  end
end
redis.call('XADD', KEYS[2], '*', 'e', payload, 'group', ARGV[1], 'delivery_count', ARGV[4], 'original_id', ARGV[2])
return 1
`)

// DeadLetter moves entry e of group to the group's dead-letter stream on p (DeadLetterKey)
// and acknowledges it in group, atomically (one Lua script). The dead letter has the event
// field "e" plus "group", "delivery_count" and "original_id". An entry that is no longer
// pending in group (acknowledged, or dead-lettered already by another replica) is left
// alone: DeadLetter is idempotent and reports false. With deliveries (not 0) the entry is
// dead-lettered only while its delivery count is still that one (as Ack).
func (s *Store) DeadLetter(ctx context.Context, p relay.Partition, group string, e relay.Entry, deliveries int64) (bool, error) {
	if err := checkGroup(p, group); err != nil {
		return false, err
	}
	if e.ID.IsZero() {
		return false, relay.Errorf(relay.CodeInvalid, "entry id is zero")
	}
	if s.closed.Load() {
		return false, errClosed()
	}
	opCtx, cancel := s.opContext(ctx, 0)
	defer cancel()
	n, err := deadLetterScript.Run(opCtx, s.client, []string{StreamKey(p), DeadLetterKey(p, group)},
		group, e.ID.String(), e.Event, max(e.DeliveryCount, 1), deliveries).Int()
	if err != nil {
		return false, s.fail(ctx, "dead letter", err)
	}
	return n == 1, nil
}

// RangeDeadLetters ranges over group's dead letters on p like Range. Each entry's
// DeliveryCount is the count recorded when it was dead-lettered.
func (s *Store) RangeDeadLetters(ctx context.Context, p relay.Partition, group string, start, end relay.ID, count int, reverse bool) ([]relay.Entry, error) {
	if err := checkGroup(p, group); err != nil {
		return nil, err
	}
	msgs, err := s.xrange(ctx, "range dead letters", DeadLetterKey(p, group), start, end, count, reverse)
	if err != nil {
		return nil, err
	}
	entries := make([]relay.Entry, 0, len(msgs))
	for _, m := range msgs {
		id, err := parseID(m.ID)
		if err != nil {
			return nil, s.fail(ctx, "range dead letters", err)
		}
		entries = append(entries, relay.Entry{
			ID:            id,
			Event:         toBytes(m.Values[FieldEvent]),
			DeliveryCount: toInt(m.Values[FieldDeliveryCount]),
		})
	}
	return entries, nil
}

// redriveScript hands dead letters back to their group, atomically per call:
//
//	KEYS[1] the group's dead letters, KEYS[2] stream, KEYS[3] the group's holds
//	ARGV[1] group, ARGV[2] consumer owning redriven entries, ARGV[3] idle ms,
//	ARGV[4] "all" or "ids"; for "all": ARGV[5] exclusive start id ("-" for the beginning),
//	ARGV[6] batch size; for "ids": ARGV[5..] the dead letter ids
//
// For each dead letter whose original entry is still in the stream, the entry is put back
// into the group's pending entries (XCLAIM ... IDLE RETRYCOUNT 0 FORCE JUSTID), any hold on
// it is dropped and the dead letter deleted. Nothing is added to the stream. Returns
// {redriven, last scanned id or ""}; a missing group is a NOGROUP error reply.
var redriveScript = redis.NewScript(`
local entries
if ARGV[4] == 'all' then
  local start = ARGV[5]
  if start ~= '-' then start = '(' .. start end
  entries = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', ARGV[6])
else
  entries = {}
  for i = 5, #ARGV do
    local r = redis.call('XRANGE', KEYS[1], ARGV[i], ARGV[i])
    if #r > 0 then entries[#entries + 1] = r[1] end
  end
end
local moved = 0
local last = ''
for _, ent in ipairs(entries) do
  last = ent[1]
  local f = ent[2]
  local orig
  for i = 1, #f, 2 do
    if f[i] == 'original_id' then orig = f[i + 1] end
  end
  if orig and #redis.call('XRANGE', KEYS[2], orig, orig) > 0 then
    local ok = redis.pcall('XCLAIM', KEYS[2], ARGV[1], ARGV[2], 0, orig, 'IDLE', ARGV[3], 'RETRYCOUNT', 0, 'FORCE', 'JUSTID')
    if type(ok) == 'table' and ok.err then
      if string.find(ok.err, 'NOGROUP') then return redis.error_reply('NOGROUP ' .. ARGV[1]) end
      return ok
    end
    redis.call('ZREM', KEYS[3], orig)
    redis.call('XDEL', KEYS[1], ent[1])
    moved = moved + 1
  end
end
return {moved, last}
`)

// redriveBatch is how many dead letters one redrive script call handles.
const redriveBatch = 256

// redriveIdleMs is the idle time given to a redriven entry: more than any ack deadline
// (relay.MaxAckDeadline), so the group's next claim takes it.
const redriveIdleMs = 24 * 60 * 60 * 1000

// Redrive hands the given dead letters of group on p (all when ids is nil; none for an
// empty, non-nil slice) back to group alone and deletes them from its dead-letter stream;
// it returns how many were redriven. Each original entry goes back into the group's
// pending entries with a delivery count of 0, owned by RedriveConsumer and idle, so the
// group's claim path redelivers it as a first attempt; the stream does not grow and no
// other group or tail reader sees it again. Each batch of up to 256 dead letters moves
// atomically (one Lua script); ids that are not dead letters, and dead letters whose
// original entry was trimmed, are left alone. A missing group is CodeNotFound.
func (s *Store) Redrive(ctx context.Context, p relay.Partition, group string, ids []relay.ID) (int, error) {
	if err := checkGroup(p, group); err != nil {
		return 0, err
	}
	if s.closed.Load() {
		return 0, errClosed()
	}
	keys := []string{DeadLetterKey(p, group), StreamKey(p), HoldKey(p, group)}
	moved := 0
	run := func(args ...any) (int, string, error) {
		opCtx, cancel := s.opContext(ctx, 0)
		defer cancel()
		args = append([]any{group, RedriveConsumer, redriveIdleMs}, args...)
		v, err := redriveScript.Run(opCtx, s.client, keys, args...).Slice()
		if isNoGroup(err) {
			return 0, "", errNoGroup(p, group)
		}
		if err != nil {
			return 0, "", s.fail(ctx, "redrive", err)
		}
		if len(v) != 2 {
			return 0, "", s.fail(ctx, "redrive", fmt.Errorf("unexpected script reply %v", v))
		}
		last, _ := v[1].(string)
		return int(toInt(v[0])), last, nil
	}
	if ids == nil {
		start := "-"
		for {
			n, last, err := run("all", start, redriveBatch)
			moved += n
			if err != nil {
				return moved, err
			}
			if last == "" {
				return moved, nil
			}
			start = last
		}
	}
	for len(ids) > 0 {
		batch := ids[:min(len(ids), redriveBatch)]
		ids = ids[len(batch):]
		args := make([]any, 0, len(batch)+1)
		args = append(args, "ids")
		for _, id := range batch {
			args = append(args, id.String())
		}
		n, _, err := run(args...)
		moved += n
		if err != nil {
			return moved, err
		}
	}
	return moved, nil
}
