package redisstore

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eventrelay/eventrelay/relay"
)

// HoldKey returns the key of group's held deliveries on p: relay:{<source>:<p>}:hold:<group>,
// a sorted set of entry ids scored by the Unix time in milliseconds before which the entry is
// not redelivered (Nack delay, ModifyAckDeadline). It shares the partition's hash tag, so the
// claim script touches one slot.
func HoldKey(p relay.Partition, group string) string {
	return "relay:" + hashTag(p) + ":hold:" + group
}

// holdScript holds pending entries:
//
//	KEYS[1] stream, KEYS[2] holds; ARGV[1] group, ARGV[2] until (Unix ms), ARGV[3..] pairs of
//	entry id and delivery count (0: any)
//
// Each id pending in the group (with that delivery count, when not 0) is added to the holds
// with score until (replacing an earlier score); returns 1/0 per id (held or not), all 0 for
// a missing group.
var holdScript = redis.NewScript(`
local out = {}
for i = 3, #ARGV, 2 do
  local want = tonumber(ARGV[i + 1])
  local pe = redis.pcall('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if type(pe) == 'table' and pe.err == nil and #pe == 1 and (want == 0 or tonumber(pe[1][4]) == want) then
    redis.call('ZADD', KEYS[2], ARGV[2], ARGV[i])
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
`)

// Hold records that pending ids of group are redelivered at until and not before (ZADD to
// HoldKey, only for ids pending in the group, and with deliveries, only while their delivery
// count is that one; one atomic script). It reports, for each id, whether it was held.
func (s *Store) Hold(ctx context.Context, p relay.Partition, group string, ids []relay.ID, deliveries []int64, until time.Time) ([]bool, error) {
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
		return nil, relay.Errorf(relay.CodeInternal, "hold: %d delivery counts for %d ids", len(deliveries), len(ids))
	}
	args := make([]any, 0, 2*len(ids)+2)
	args = append(args, group, until.UnixMilli())
	for i, id := range ids {
		n := int64(0)
		if len(deliveries) != 0 {
			n = deliveries[i]
		}
		args = append(args, id.String(), n)
	}
	opCtx, cancel := s.opContext(ctx, 0)
	defer cancel()
	v, err := holdScript.Run(opCtx, s.client, []string{StreamKey(p), HoldKey(p, group)}, args...).Slice()
	return s.scriptFlags(ctx, "hold", v, err, len(ids))
}

// Held reports, for each id, whether group holds it past now (ZMSCORE of HoldKey).
func (s *Store) Held(ctx context.Context, p relay.Partition, group string, ids []relay.ID, now time.Time) ([]bool, error) {
	if err := checkGroup(p, group); err != nil {
		return nil, err
	}
	if s.closed.Load() {
		return nil, errClosed()
	}
	out := make([]bool, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	members := make([]string, len(ids))
	for i, id := range ids {
		members[i] = id.String()
	}
	opCtx, cancel := s.opContext(ctx, 0)
	defer cancel()
	scores, err := s.client.ZMScore(opCtx, HoldKey(p, group), members...).Result()
	if err != nil {
		return nil, s.fail(ctx, "held", err)
	}
	for i, sc := range scores {
		// ZMSCORE answers 0 for a missing member; no real hold is at the epoch.
		out[i] = sc > float64(now.UnixMilli())
	}
	return out, nil
}

// claimDueScript claims due entries for a consumer:
//
//	KEYS[1] stream, KEYS[2] holds
//	ARGV[1] group, ARGV[2] consumer, ARGV[3] min idle ms, ARGV[4] count, ARGV[5] now (Unix ms),
//	ARGV[6] scan rounds
//
// First the holds scored at or before now (each removed from the holds; claimed when still
// pending), then entries idle at least min idle (XPENDING IDLE, up to scan rounds of count)
// that are not in the holds (nor just claimed as due). A claim is XCLAIM ... RETRYCOUNT <count+1> JUSTID: a delivery,
// idle reset. An entry whose data was trimmed is acknowledged and left out. A missing group
// is a NOGROUP error reply (on Redis and the embedded server alike). Returns
// {{id, payload, delivery count}...}, next hold score or false}.
var claimDueScript = redis.NewScript(`
local group, consumer = ARGV[1], ARGV[2]
local count, now = tonumber(ARGV[4]), tonumber(ARGV[5])
local chk = redis.pcall('XPENDING', KEYS[1], group)
if type(chk) == 'table' and chk.err then
  if string.find(chk.err, 'NOGROUP') then return redis.error_reply('NOGROUP ' .. group) end
  return chk
end
local out, taken = {}, {}
local function take(id, delivered)
  taken[id] = true
  local r = redis.call('XRANGE', KEYS[1], id, id)
  local payload
  if #r > 0 then
    local f = r[1][2]
    for i = 1, #f, 2 do
      if f[i] == 'e' then payload = f[i + 1] end
    end
  end
  if not payload then
    redis.call('XACK', KEYS[1], group, id)
    return
  end
  local n = tonumber(delivered) + 1
  redis.call('XCLAIM', KEYS[1], group, consumer, 0, id, 'RETRYCOUNT', n, 'JUSTID')
  out[#out + 1] = {id, payload, n}
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, count)) do
  redis.call('ZREM', KEYS[2], id)
  local pe = redis.call('XPENDING', KEYS[1], group, id, id, 1)
  if #pe == 1 then take(id, pe[1][4]) end
end
local start, skip = '-', nil
for round = 1, tonumber(ARGV[6]) do
  local want = count - #out
  if want <= 0 then break end
  local pe = redis.call('XPENDING', KEYS[1], group, 'IDLE', ARGV[3], start, '+', want + 1)
  local seen = 0
  for _, e in ipairs(pe) do
    if e[1] ~= skip then
      seen = seen + 1
      if #out < count and not taken[e[1]] and not redis.call('ZSCORE', KEYS[2], e[1]) then take(e[1], e[4]) end
    end
    start, skip = e[1], e[1]
  end
  if seen < want then break end
end
local nxt = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if #nxt == 2 then return {out, nxt[2]} end
return {out, false}
`)

// ClaimDue transfers to consumer up to count (<= 0: 100) due entries of group (one atomic
// script): held entries whose hold time is at or before now, then entries delivered at least
// minIdle ago that are not held past now, scanning up to Options.ClaimScan rounds of the
// pending list. It returns them with their delivery counts (the claim counts as a delivery)
// and when the group's next hold on p falls due (zero: none). A missing group is
// CodeNotFound.
func (s *Store) ClaimDue(ctx context.Context, p relay.Partition, group, consumer string, minIdle time.Duration, count int, now time.Time) ([]relay.Entry, time.Time, error) {
	if err := checkMember(p, group, consumer); err != nil {
		return nil, time.Time{}, err
	}
	if minIdle < 0 {
		return nil, time.Time{}, relay.Errorf(relay.CodeInvalid, "min idle must not be negative")
	}
	if s.closed.Load() {
		return nil, time.Time{}, errClosed()
	}
	if count <= 0 {
		count = 100
	}
	opCtx, cancel := s.opContext(ctx, 0)
	defer cancel()
	v, err := claimDueScript.Run(opCtx, s.client, []string{StreamKey(p), HoldKey(p, group)},
		group, consumer, minIdle.Milliseconds(), count, now.UnixMilli(), s.opts.ClaimScan).Slice()
	if isNoGroup(err) {
		return nil, time.Time{}, errNoGroup(p, group)
	}
	if err != nil {
		return nil, time.Time{}, s.fail(ctx, "claim", err)
	}
	bad := func() ([]relay.Entry, time.Time, error) {
		return nil, time.Time{}, s.fail(ctx, "claim", fmt.Errorf("unexpected script reply %v", v))
	}
	if len(v) != 2 {
		return bad()
	}
	rows, _ := v[0].([]any)
	entries := make([]relay.Entry, 0, len(rows))
	for _, r := range rows {
		f, ok := r.([]any)
		if !ok || len(f) != 3 {
			return bad()
		}
		idStr, _ := f[0].(string)
		id, err := parseID(idStr)
		if err != nil {
			return bad()
		}
		entries = append(entries, relay.Entry{ID: id, Event: toBytes(f[1]), DeliveryCount: toInt(f[2])})
	}
	var next time.Time
	if sc, ok := v[1].(string); ok {
		ms, err := strconv.ParseFloat(sc, 64)
		if err != nil {
			return bad()
		}
		next = time.UnixMilli(int64(ms))
	}
	return entries, next, nil
}
