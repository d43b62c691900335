package relay

import (
	"context"
	"crypto/rand"
	"sync"
)

// AckKeyStore is implemented by stores that keep the key ack ids are authenticated with, so
// that every relay replica on the same store issues and accepts the same ack ids.
type AckKeyStore interface {
	// AckKey returns the shared ack-id key (AckKeyLen random bytes), creating it on first use
	// in a way that concurrent first callers agree on one key.
	AckKey(ctx context.Context) ([]byte, error)
}

// ackKeyCache holds the ack-id key once it has been read from the store. A store that keeps
// no key gets a random key per process (ack ids then work only through the replica that
// issued them).
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
	if ks, ok := storeAs[AckKeyStore](s.store); ok {
		k, err := ks.AckKey(ctx)
		if err != nil {
			return nil, err
		}
		if len(k) < AckKeyLen {
			return nil, Errorf(CodeInternal, "the store's ack-id key is too short")
		}
		c.key = k
		return k, nil
	}
	k := make([]byte, AckKeyLen)
	if _, err := rand.Read(k); err != nil {
		return nil, WrapError(CodeInternal, err, "no randomness for the ack-id key")
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
