package relay

import (
	"context"
	"time"
)

// GroupHolds is implemented by group stores that can hold a pending delivery until a given
// time, across relay replicas: Nack with a delay and ModifyAckDeadline use it, so that a
// delay longer than the ack deadline is honoured and long work is not redelivered early.
type GroupHolds interface {
	// Hold records, for each id pending in group, that it is redelivered at until and not
	// before: the claim path neither takes it earlier (however long it has been idle) nor
	// later than its next claim after until. A later Hold replaces an earlier one. It reports
	// which ids were pending.
	Hold(ctx context.Context, p Partition, group string, ids []ID, until time.Time) ([]bool, error)
	// Held reports, for each id, whether it is held past now.
	Held(ctx context.Context, p Partition, group string, ids []ID, now time.Time) ([]bool, error)
	// ClaimDue transfers to consumer up to count entries of group that are due: held entries
	// whose time has come, and entries idle at least minIdle that are not held past now. It
	// returns them with their delivery counts (the claim counts as a delivery), and the time
	// the next hold of the group on p falls due (zero when none).
	ClaimDue(ctx context.Context, p Partition, group, consumer string, minIdle time.Duration, count int, now time.Time) ([]Entry, time.Time, error)
}

// maxClaimInterval bounds how long a group feeder goes without claiming due entries: a hold
// (Nack delay, ModifyAckDeadline) placed through any replica is seen within it.
const maxClaimInterval = 200 * time.Millisecond

// StoreWrapper is implemented by stores that wrap another (tracing, start-up checks): the
// optional capabilities GroupHolds and AckKeyStore are looked up through them, so a wrapper
// need not forward every optional interface.
type StoreWrapper interface {
	// Unwrap returns the wrapped store.
	Unwrap() Store
}

// storeAs returns s, or the first store it wraps, as a T.
func storeAs[T any](s Store) (T, bool) {
	for s != nil {
		if v, ok := s.(T); ok {
			return v, true
		}
		w, ok := s.(StoreWrapper)
		if !ok {
			break
		}
		s = w.Unwrap()
	}
	var zero T
	return zero, false
}
