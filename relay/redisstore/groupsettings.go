package redisstore

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eventrelay/eventrelay/relay"
)

// Group settings (relay.GroupSettings): one hash per group and source,
// relay:{<source>}:group:<name>, with the fields types (a JSON array of globs), filter,
// ack_deadline_ms and max_attempts, and one set per source, relay:{<source>}:groups, of
// the groups that have settings (what max_groups counts). Both carry the source's hash tag,
// so the script that creates them touches one slot.

// GroupSettingsKey returns the key of group's settings hash on source.
func GroupSettingsKey(source, group string) string { return "relay:{" + source + "}:group:" + group }

// GroupsKey returns the key of the set of source's groups with settings.
func GroupsKey(source string) string { return "relay:{" + source + "}:groups" }

// ensureSettingsScript records a group's settings unless it has some:
//
//	KEYS[1] settings hash, KEYS[2] groups set; ARGV[1] max groups (0: no bound),
//	ARGV[2] group, ARGV[3..] field, value pairs
//
// Returns the recorded fields (HGETALL) of an existing group, an empty array when it
// recorded ARGV's, and the error TOOMANYGROUPS when the source has max groups already.
var ensureSettingsScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.call('HGETALL', KEYS[1])
end
local max = tonumber(ARGV[1])
if max > 0 and redis.call('SISMEMBER', KEYS[2], ARGV[2]) == 0 and redis.call('SCARD', KEYS[2]) >= max then
  return redis.error_reply('TOOMANYGROUPS')
end
for i = 3, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('SADD', KEYS[2], ARGV[2])
return {}
`)

// EnsureGroupSettings implements relay.Store.
func (s *Store) EnsureGroupSettings(ctx context.Context, source, group string, want relay.GroupSettings, maxGroups int) (relay.GroupSettings, error) {
	if s.closed.Load() {
		return relay.GroupSettings{}, errClosed()
	}
	if !relay.ValidSourceName(source) || !relay.ValidGroupName(group) {
		return relay.GroupSettings{}, relay.Errorf(relay.CodeInvalid, "invalid source or group name")
	}
	types, err := json.Marshal(want.Types)
	if err != nil {
		return relay.GroupSettings{}, relay.WrapError(relay.CodeInternal, err, "encoding group settings")
	}
	if want.Types == nil {
		types = []byte("[]")
	}
	opCtx, cancel := s.opContext(ctx, 0)
	defer cancel()
	v, err := ensureSettingsScript.Run(opCtx, s.client, []string{GroupSettingsKey(source, group), GroupsKey(source)},
		maxGroups, group, "types", string(types), "filter", want.Filter,
		"ack_deadline_ms", want.AckDeadline.Milliseconds(), "max_attempts", want.MaxAttempts).StringSlice()
	switch {
	case err != nil && strings.Contains(err.Error(), "TOOMANYGROUPS"):
		return relay.GroupSettings{}, relay.Errorf(relay.CodeFailedPrecondition,
			"source %s has %d consumer groups, its limit (sources[].max_groups): group %q is not created", source, maxGroups, group)
	case err != nil:
		return relay.GroupSettings{}, s.fail(ctx, "group settings", err)
	case len(v) == 0:
		return want, nil
	}
	return parseGroupSettings(v)
}

// GroupSettings returns the settings recorded for group on source (HGETALL of
// GroupSettingsKey), and false when there are none.
func (s *Store) GroupSettings(ctx context.Context, source, group string) (relay.GroupSettings, bool, error) {
	if s.closed.Load() {
		return relay.GroupSettings{}, false, errClosed()
	}
	if !relay.ValidSourceName(source) || !relay.ValidGroupName(group) {
		return relay.GroupSettings{}, false, relay.Errorf(relay.CodeInvalid, "invalid source or group name")
	}
	opCtx, cancel := s.opContext(ctx, 0)
	defer cancel()
	kv, err := s.client.HGetAll(opCtx, GroupSettingsKey(source, group)).Result()
	if err != nil {
		return relay.GroupSettings{}, false, s.fail(ctx, "group settings", err)
	}
	if len(kv) == 0 {
		return relay.GroupSettings{}, false, nil
	}
	flat := make([]string, 0, 2*len(kv))
	for k, v := range kv {
		flat = append(flat, k, v)
	}
	g, err := parseGroupSettings(flat)
	return g, err == nil, err
}

// parseGroupSettings reads HGETALL's field, value pairs.
func parseGroupSettings(kv []string) (relay.GroupSettings, error) {
	var g relay.GroupSettings
	bad := func(field string) (relay.GroupSettings, error) {
		return relay.GroupSettings{}, relay.Errorf(relay.CodeFailedPrecondition, "the group's recorded settings are corrupt (%s)", field)
	}
	for i := 0; i+1 < len(kv); i += 2 {
		val := kv[i+1]
		switch kv[i] {
		case "types":
			if err := json.Unmarshal([]byte(val), &g.Types); err != nil {
				return bad("types")
			}
			if len(g.Types) == 0 {
				g.Types = nil
			}
		case "filter":
			g.Filter = val
		case "ack_deadline_ms":
			ms, err := strconv.ParseInt(val, 10, 64)
			if err != nil || ms <= 0 {
				return bad("ack_deadline_ms")
			}
			g.AckDeadline = time.Duration(ms) * time.Millisecond
		case "max_attempts":
			n, err := strconv.Atoi(val)
			if err != nil || n <= 0 {
				return bad("max_attempts")
			}
			g.MaxAttempts = n
		}
	}
	if g.AckDeadline == 0 || g.MaxAttempts == 0 {
		return bad(fmt.Sprint(kv))
	}
	return g, nil
}
