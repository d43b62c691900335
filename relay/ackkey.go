package relay

import (
	"context"
	"sync"
)

// ackKeyCache holds the ack-id key once it has been read from the store (shared by every
// replica on the store).
type ackKeyCache struct {
	mu  sync.Mutex
	key []byte
}

// ackKey returns the ack-id key, reading it from the store on first use; a failed read is
// retried on the next call.
func (s *Service) ackKey(ctx context.Context) ([]byte, error) {
	c := &s.ackKeys
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.key != nil {
		return c.key, nil
	}
	k, err := s.store.AckKey(ctx)
	if err != nil {
		return nil, err
	}
	if len(k) < AckKeyLen {
		return nil, Errorf(CodeInternal, "the store's ack-id key is too short")
	}
	c.key = k
	return k, nil
}

// DecodeAckIDs authenticates and decodes ack ids with the relay's key. An ack id that is
// malformed or was not issued under the key (forged or altered) is a CodeInvalid error naming
// its index.
func (s *Service) DecodeAckIDs(ctx context.Context, ackIDs []string) ([]AckID, error) {
	if len(ackIDs) > MaxAckIDs {
		return nil, Errorf(CodeInvalid, "ack_ids: at most %d per call", MaxAckIDs)
	}
	key, err := s.ackKey(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]AckID, len(ackIDs))
	for i, raw := range ackIDs {
		a, ok := DecodeAckID(raw, key)
		if !ok {
			return nil, Errorf(CodeInvalid, "ack_ids[%d]: not an ack id issued by this relay (malformed, altered or forged); nothing was settled", i)
		}
		out[i] = a
	}
	return out, nil
}
