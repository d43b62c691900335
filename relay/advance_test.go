package relay

import (
	"context"
	"testing"
)

// infoStore answers Info with a fixed description and counts the calls; Range of one id
// finds the entry when the description retains it (one entry per millisecond, as below).
type infoStore struct {
	Store
	info   StreamInfo
	calls  int
	ranges int
}

func (s *infoStore) Range(_ context.Context, _ Partition, start, end ID, _ int, _ bool) ([]Entry, error) {
	s.ranges++
	if start != end || start.Seq != 0 || s.info.Length == 0 || start.Less(s.info.First) || s.info.Last.Less(start) {
		return nil, nil
	}
	return []Entry{{ID: start}}, nil
}

func (s *infoStore) Info(context.Context, Partition) (StreamInfo, error) {
	s.calls++
	return s.info, nil
}

// TestAdvance is the gap rule of gap.go on hand-built stream descriptions: entries 1-0 to
// 10-0 were appended (one per millisecond), some trimmed, and a read after the trail's
// position returned es.
func TestAdvance(t *testing.T) {
	id := func(ms uint64) ID { return ID{Ms: ms} }
	entries := func(from, to uint64) []Entry {
		var es []Entry
		for ms := from; ms <= to; ms++ {
			es = append(es, Entry{ID: id(ms)})
		}
		return es
	}
	// Entries 1..10 appended, 1..t trimmed: Redis 7.0 reports MaxDeleted just before the first.
	trimmed := func(t uint64) StreamInfo {
		return StreamInfo{Length: int64(10 - t), First: id(t + 1), Last: id(10), LastGenerated: id(10), Added: 10, MaxDeleted: id(t + 1).Prev()}
	}
	for _, tc := range []struct {
		name    string
		from    trail
		es      []Entry
		info    StreamInfo
		gap     bool
		infos   int   // Info calls
		wantPos ID    // after a success
		wantN   int64 // after a success
	}{
		{"successor: nothing in between, no question asked", trail{pos: ID{Ms: 3, Seq: 0}, n: 3}, []Entry{{ID: ID{Ms: 3, Seq: 1}}}, StreamInfo{}, false, 0, ID{Ms: 3, Seq: 1}, 4},
		{"position retained: nothing after it trimmed, no description needed", trail{pos: id(4), n: 4}, entries(5, 10), trimmed(3), false, 0, id(10), 10},
		{"position retained, unknown count: no gap, count still unknown", trail{pos: id(4), n: -1}, entries(5, 10), trimmed(3), false, 0, id(10), -1},
		{"position retained, read short of the end", trail{pos: id(2), n: 2}, entries(3, 5), trimmed(1), false, 0, id(5), 5},
		{"known count, position is the last trimmed entry", trail{pos: id(4), n: 4}, entries(5, 10), trimmed(4), false, 1, id(10), 10},
		{"known count, one past the last trimmed entry", trail{pos: id(4), n: 4}, entries(6, 10), trimmed(5), true, 1, ID{}, 0},
		{"known count, everything before the new entry trimmed", trail{pos: id(9), n: 9}, entries(10, 10), trimmed(9), false, 1, id(10), 10},
		{"known count, read short of the end, trimmed past it", trail{pos: id(4), n: 4}, entries(7, 8), trimmed(6), true, 1, ID{}, 0},
		{"known count, read short of the end, not trimmed past it", trail{pos: id(4), n: 4}, entries(5, 8), trimmed(4), false, 1, id(8), 8},
		{"unknown count: conservative, before MaxDeleted", trail{pos: id(4), n: -1}, entries(5, 10), trimmed(4), true, 1, ID{}, 0},
		{"unknown count: at MaxDeleted, the first entry's id predecessor", trail{pos: id(5).Prev(), n: -1}, entries(5, 10), trimmed(4), false, 0, id(10), -1},
		{"unknown count: at MaxDeleted, ids apart", trail{pos: id(4), n: -1}, entries(6, 10), StreamInfo{Length: 5, First: id(6), Last: id(10), LastGenerated: id(10), Added: 10, MaxDeleted: id(4)}, false, 1, id(10), 10},
		{"fresh start: what was trimmed before is no gap; the count is learned", trail{n: -1, fresh: true}, entries(5, 7), trimmed(4), false, 1, id(7), 7},
		{"store that cannot tell: never a gap, count unknown", trail{pos: id(4), n: 4}, entries(8, 10), StreamInfo{Length: 3, First: id(8), Last: id(10), LastGenerated: id(10)}, false, 1, id(10), -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &infoStore{info: tc.info}
			tr := tc.from
			err := advance(context.Background(), s, Partition{Source: "s"}, &tr, tc.es, false)
			if s.calls != tc.infos {
				t.Errorf("%d Info calls, want %d", s.calls, tc.infos)
			}
			if _, isGap := err.(*gapError); isGap != tc.gap || (err != nil && !isGap) {
				t.Fatalf("advance = %v, want gap %v", err, tc.gap)
			}
			if tc.gap {
				if tr != tc.from {
					t.Errorf("trail moved to %+v on a gap", tr)
				}
				return
			}
			if tr.pos != tc.wantPos || tr.n != tc.wantN || tr.fresh {
				t.Errorf("trail %+v, want pos %s n %d", tr, tc.wantPos, tc.wantN)
			}
		})
	}
}

// A read that reports its position retained (ReadResult.AfterRetained) is taken at its word:
// the store is asked nothing, and the count moves by the entries read.
func TestAdvanceRetainedByTheRead(t *testing.T) {
	s := &infoStore{}
	tr := trail{pos: ID{Ms: 4}, n: 4}
	es := []Entry{{ID: ID{Ms: 7}}, {ID: ID{Ms: 9}}}
	if err := advance(context.Background(), s, Partition{Source: "s"}, &tr, es, true); err != nil {
		t.Fatal(err)
	}
	if s.calls != 0 || s.ranges != 0 {
		t.Errorf("%d Info and %d Range calls, want none", s.calls, s.ranges)
	}
	if want := (trail{pos: ID{Ms: 9}, n: 6}); tr != want {
		t.Errorf("trail %+v, want %+v", tr, want)
	}
}
