package relay

import (
	"context"
	"maps"
)

// Gaps in a live stream.
//
// Retention (a source's max_len and retention) trims the oldest entries of a stream while
// subscriptions read it. Whenever a subscription reads entries from the store after its
// position (the history a replay catches up on, the shared tail reader's next read), the
// entries trimmed in between must not be jumped over silently: the stream then ends with
// CodeOutOfRange naming the cursor of the oldest retained entry, the same answer a resume
// with the subscription's cursor gets (see outOfRange).
//
// Detection. When the first entry of a read is the immediate successor of the position,
// nothing lies in between. Nor does anything when the entry at the position is still
// retained after the read: trimming removes the oldest entries first, so it cannot have
// removed entries after one it kept. (Relay never deletes single entries of a partition with
// XDEL; an operator who does is not warned of the hole.) Usually the read itself tells, at no
// extra round trip: the shared tail reader's blocking read reports it
// (ReadResult.AfterRetained; redisstore pipelines the check behind the read), and a replay's
// history read starts at the position, inclusive, so that its entry comes back first when
// retained. Otherwise one Store.Range of that entry tells. This matters at a trickle, where
// every event is in a new millisecond and so never the id after the previous one. When the
// entry is gone, the stream is described (Store.Info) after the read, and:
//
//   - when the count of entries appended up to the position is known (trail.n), entries
//     after the position are gone exactly when more entries than that were removed
//     (Added-Length > n). When the read reached the newest entry, the count is exact whatever
//     happened after the read: the last entry read is then the Added-th ever appended. The
//     count is known for positions taken at the stream's end (a tail from now, the shared
//     reader) and learned on the way (a read that starts at the oldest retained entry or
//     ends at the newest);
//   - otherwise (a resume cursor, before its first such read) the resume check's rule
//     applies: a position before StreamInfo.MaxDeleted may have lost its successors. On
//     Redis 7.0 and the embedded server this is conservative (trimming is recorded only as
//     "everything before the first retained entry").
//
// A store that reports neither Added nor MaxDeleted never detects a gap (nor refuses a
// resume cursor); redisstore counts its own appends where the server does not report them.

// trail is a subscription's read position in one partition.
type trail struct {
	pos ID
	// n counts the entries ever appended up to and including pos; -1 when unknown.
	n int64
	// fresh is set for a replay from the oldest retained entry or from a time: what was
	// trimmed before its first read is not a gap.
	fresh bool
}

// gapError reports that entries of p after a subscription's position were trimmed; info
// describes the stream as the gap was found.
type gapError struct {
	p    Partition
	info StreamInfo
}

func (e *gapError) Error() string {
	return string(CodeOutOfRange) + ": entries of " + e.p.String() + " were trimmed under the subscription"
}

// advance checks that es, the entries a read of p returned after t.pos (oldest first), follow
// t.pos with nothing trimmed in between, and moves t to the last of them. retained is the
// read's ReadResult.AfterRetained (false for a Range). A gap is a *gapError; a failing store
// its error.
func advance(ctx context.Context, store Store, p Partition, t *trail, es []Entry, retained bool) error {
	if len(es) == 0 {
		return nil
	}
	last := es[len(es)-1].ID
	read := int64(len(es))
	if retained || es[0].ID == t.pos.Next() {
		if t.n >= 0 {
			t.n += read
		}
		t.pos, t.fresh = last, false
		return nil
	}
	if !t.pos.IsZero() {
		// The common case, checked with one small read: the entry at t.pos is still there.
		// Retention trims the oldest entries first, so then nothing after it was trimmed
		// before the read (which happened first), and es follows it with no gap.
		held, err := store.Range(ctx, p, t.pos, t.pos, 1, false)
		if err != nil {
			return err
		}
		if len(held) == 1 {
			if t.n >= 0 {
				t.n += read
			}
			t.pos, t.fresh = last, false
			return nil
		}
	}
	info, err := store.Info(ctx, p)
	if err != nil {
		return err
	}
	if !t.fresh {
		var gone bool
		switch {
		case t.n >= 0 && info.Added > 0 && last == info.Last:
			gone = info.Added-read > t.n // es[0] is entry Added-read+1
		case t.n >= 0 && info.Added > 0:
			gone = info.Added-info.Length > t.n
		default:
			gone = t.pos.Less(info.MaxDeleted)
		}
		if gone {
			return &gapError{p: p, info: info}
		}
	}
	switch {
	case info.Added == 0:
		t.n = -1
	case last == info.Last:
		t.n = info.Added
	case es[0].ID == info.First:
		t.n = info.Added - info.Length + read
	case t.n >= 0 && !t.fresh:
		t.n += read
	default:
		t.n = -1
	}
	t.pos, t.fresh = last, false
	return nil
}

// resumePoint is the position just before the oldest entry info retains: a cursor there
// resumes with that entry (and passes the resume check).
func resumePoint(info StreamInfo) ID {
	if info.First.IsZero() {
		return info.LastGenerated // nothing retained: from the next entry on
	}
	return info.First.Prev()
}

// outOfRange is the CodeOutOfRange error for a position pos of p older than the history
// info retains. cursor is the subscription's cursor with p moved to resumePoint(info). A
// live stream that hits a gap and a resume with that stream's cursor get the same message.
func outOfRange(p Partition, pos ID, info StreamInfo, cursor string) error {
	oldest := "none (every entry was trimmed)"
	if !info.First.IsZero() {
		oldest = info.First.String()
	}
	err := Errorf(CodeOutOfRange,
		"the position in %s (%s) is older than the retained history: entries after it were trimmed; the oldest available entry is %s; resume from it with after_cursor=%s, or resubscribe with start=START_POSITION_EARLIEST or since",
		p, pos, oldest, cursor)
	err.ResumeCursor = cursor
	return err
}

// movedCursor returns c's opaque form with p moved to id.
func movedCursor(c Cursor, p Partition, id ID) string {
	c.Positions = maps.Clone(c.Positions)
	c.Positions[p] = id
	return EncodeCursor(c)
}

// fellBehind is the error a cut tail subscriber gets: its buffer and the cursor of the last
// message it was sent, from which it resumes with no gap and no repeat.
func fellBehind(buffer int, cursor string) error {
	err := Errorf(CodeResourceExhausted,
		"the subscriber fell behind the stream by more than its buffer (%d entries, or %d reads of the stream: at a trickle each event is a read); resume with after_cursor=%s (the cursor of the last message it was sent)",
		buffer, min(buffer, maxQueuedBatches), cursor)
	err.ResumeCursor = cursor
	return err
}
