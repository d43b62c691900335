package redisstore

import (
	"context"

	"github.com/redis/go-redis/v9"

	"github.com/eventrelay/eventrelay/relay"
)

// removeConsumerScript deletes a consumer of a group when it has no pending entry:
//
//	KEYS[1] stream; ARGV[1] group, ARGV[2] consumer
//
// Returns 1 when it was deleted, 0 when it holds pending entries or does not exist.
var removeConsumerScript = redis.NewScript(`
local pe = redis.pcall('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if type(pe) ~= 'table' or pe.err ~= nil or #pe > 0 then
  return 0
end
local n = redis.pcall('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
if type(n) == 'table' and n.err ~= nil then
  return 0
end
return 1
`)

// RemoveConsumer implements relay.Store.
func (s *Store) RemoveConsumer(ctx context.Context, p relay.Partition, group, consumer string) (bool, error) {
	if err := checkGroup(p, group); err != nil {
		return false, err
	}
	if s.closed.Load() {
		return false, errClosed()
	}
	opCtx, cancel := s.opContext(ctx, 0)
	defer cancel()
	n, err := removeConsumerScript.Run(opCtx, s.client, []string{StreamKey(p)}, group, consumer).Int()
	if err != nil {
		return false, s.fail(ctx, "remove consumer", err)
	}
	return n == 1, nil
}
