package redisstore

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eventrelay/eventrelay/relay"
)

// LeaseKey returns the key of the lease name: relay:lease:<name>, a string holding the
// owner's name with a time to live.
func LeaseKey(name string) string { return "relay:lease:" + name }

// leaseScript takes, renews or releases a lease atomically:
//
//	KEYS[1] the lease, ARGV[1] owner, ARGV[2] time to live in ms (0: release)
//
// Returns 1 when owner holds the lease afterwards.
var leaseScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if ARGV[2] == '0' then
  if cur == ARGV[1] then redis.call('DEL', KEYS[1]) end
  return 0
end
if cur == false or cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
`)

// Lease takes the lease name for owner, or renews it when owner holds it, until ttl from
// now, and reports whether owner holds it; ttl 0 releases it if owner holds it.
func (s *Store) Lease(ctx context.Context, name, owner string, ttl time.Duration) (bool, error) {
	if !relay.ValidGroupName(name) || !relay.ValidGroupName(owner) {
		return false, relay.Errorf(relay.CodeInvalid, "lease name and owner must match [A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
	}
	if ttl < 0 {
		return false, relay.Errorf(relay.CodeInvalid, "lease ttl must not be negative")
	}
	if s.closed.Load() {
		return false, errClosed()
	}
	opCtx, cancel := s.opContext(ctx, 0)
	defer cancel()
	ms := ttl.Milliseconds()
	if ttl > 0 && ms == 0 {
		ms = 1
	}
	n, err := leaseScript.Run(opCtx, s.client, []string{LeaseKey(name)}, owner, ms).Int()
	if err != nil {
		return false, s.fail(ctx, "lease", err)
	}
	return n == 1, nil
}
