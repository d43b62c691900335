package redisstore

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/eventrelay/eventrelay/relay"
)

// AckKeyKey is the key of the ack-id key: relay:ackkey, a string of relay.AckKeyLen random
// bytes that every replica authenticates ack ids with. It is created once (SET NX) by the
// first relay that needs it and never changes; deleting it invalidates every outstanding ack
// id (their deliveries are redelivered after the ack deadline).
const AckKeyKey = "relay:ackkey"

// AckKey returns the shared ack-id key, creating it with SET NX when absent, so that
// concurrent first starts of several replicas agree on the one that was written first.
func (s *Store) AckKey(ctx context.Context) ([]byte, error) {
	if s.closed.Load() {
		return nil, errClosed()
	}
	fresh := make([]byte, relay.AckKeyLen)
	if _, err := rand.Read(fresh); err != nil {
		return nil, relay.WrapError(relay.CodeInternal, err, "no randomness for the ack-id key")
	}
	opCtx, cancel := s.opContext(ctx, 0)
	defer cancel()
	if err := s.client.SetNX(opCtx, AckKeyKey, fresh, 0).Err(); err != nil {
		return nil, s.fail(ctx, "ack key", err)
	}
	key, err := s.client.Get(opCtx, AckKeyKey).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, s.fail(ctx, "ack key", errors.New(AckKeyKey+" vanished after SET NX"))
	}
	if err != nil {
		return nil, s.fail(ctx, "ack key", err)
	}
	if len(key) < relay.AckKeyLen {
		return nil, relay.WrapError(relay.CodeFailedPrecondition,
			fmt.Errorf("%s holds %d bytes", AckKeyKey, len(key)),
			"the ack-id key in Redis is too short; delete "+AckKeyKey+" to have a new one created")
	}
	return key, nil
}
