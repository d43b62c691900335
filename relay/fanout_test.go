package relay

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
)

func TestCursorEncoderMatchesEncodeCursor(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		sources, parts int
		dead           bool
	}{{0, 0, false}, {1, 1, false}, {1, 1, true}, {2, 3, false}, {3, 16, true}} {
		t.Run(fmt.Sprint(tc), func(t *testing.T) {
			pos := map[Partition]ID{}
			var all []Partition
			for s := range tc.sources {
				for i := range tc.parts {
					p := Partition{Source: fmt.Sprintf("src%c", 'c'-s), Index: i}
					all = append(all, p)
					pos[p] = ID{Ms: r.Uint64N(1 << 45), Seq: r.Uint64N(3)}
				}
			}
			group := map[bool]string{true: "g1"}[tc.dead]
			enc := newCursorEncoder(pos, tc.dead, group)
			if got, want := string(enc.bytes()), EncodeCursor(Cursor{Positions: pos, DeadLetters: tc.dead, Group: group}); got != want {
				t.Fatalf("initial: got %s want %s", got, want)
			}
			for range 200 {
				if len(all) == 0 {
					break
				}
				p := all[r.IntN(len(all))]
				// Ids growing across varint length boundaries.
				id := ID{Ms: pos[p].Ms + r.Uint64N(1<<(7*r.IntN(6))), Seq: r.Uint64N(1 << (7 * r.IntN(3)))}
				pos[p] = id
				enc.set(enc.slot(p), p, id)
				if got, want := string(enc.bytes()), EncodeCursor(Cursor{Positions: pos, DeadLetters: tc.dead, Group: group}); got != want {
					t.Fatalf("after %v=%v: got %s want %s", p, id, got, want)
				}
			}
			if enc.slot(Partition{Source: "other"}) != -1 {
				t.Fatal("slot of a partition not in the cursor")
			}
		})
	}
}

func TestEntryMemoSharesPerCursor(t *testing.T) {
	var m entryMemo
	get := func(m *entryMemo, c string) *SharedEncoding {
		return m.get([]byte("raw-"+c), func() string { return c })
	}
	a := get(&m, "cursor-a")
	if a == nil || a.cursor != "cursor-a" || a.Load() != nil {
		t.Fatalf("first get: %+v", a)
	}
	a.Store("enc-a")
	a.Store("ignored: the first store wins")
	if again := get(&m, "cursor-a"); again != a || again.Load() != "enc-a" {
		t.Fatalf("same cursor did not share: %+v", again)
	}
	if b := get(&m, "cursor-b"); b == a || b.cursor != "cursor-b" || b.Load() != nil {
		t.Fatal("another cursor shared a slot")
	}
	for i := range memoSlots - 2 {
		if get(&m, fmt.Sprintf("c%d", i)) == nil {
			t.Fatal("slot refused below the bound")
		}
	}
	if get(&m, "one too many") != nil {
		t.Fatal("memo grew beyond its bound")
	}
	// Concurrent subscribers with the same cursor all get the same slot.
	var n entryMemo
	var wg sync.WaitGroup
	got := make([]*SharedEncoding, 16)
	for i := range got {
		wg.Add(1)
		go func() { defer wg.Done(); got[i] = get(&n, "same") }()
	}
	wg.Wait()
	for _, g := range got {
		if g != got[0] {
			t.Fatal("concurrent gets of one cursor returned different slots")
		}
	}
}

// BenchmarkCursorPerMessage compares encoding the cursor of every delivery with EncodeCursor
// (sort, map, allocations) and with the send loop's incremental encoder.
func BenchmarkCursorPerMessage(b *testing.B) {
	for _, parts := range []int{1, 4, 32} {
		pos := map[Partition]ID{}
		for i := range parts {
			pos[Partition{Source: "stripe", Index: i}] = ID{Ms: 1700000000000 + uint64(i), Seq: 1}
		}
		p := Partition{Source: "stripe", Index: parts / 2}
		b.Run(fmt.Sprintf("EncodeCursor/partitions=%d", parts), func(b *testing.B) {
			b.ReportAllocs()
			id := ID{Ms: 1700000000000}
			for b.Loop() {
				id.Seq++
				pos[p] = id
				_ = EncodeCursor(Cursor{Positions: pos})
			}
		})
		b.Run(fmt.Sprintf("incremental/partitions=%d", parts), func(b *testing.B) {
			enc := newCursorEncoder(pos, false, "")
			i := enc.slot(p)
			b.ReportAllocs()
			id := ID{Ms: 1700000000000}
			for b.Loop() {
				id.Seq++
				enc.set(i, p, id)
				_ = enc.bytes()
			}
		})
	}
}
