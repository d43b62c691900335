package relay

import (
	"cmp"
	"encoding/base64"
	"slices"
	"sync/atomic"

	"google.golang.org/protobuf/encoding/protowire"
)

// Encode-once fan-out. The shared tail reader of a partition hands the same batch of entries
// to every tail subscriber. Each entry of such a batch carries a small memo of encodings
// keyed by the cursor the delivery carries: subscribers that send the entry with the same
// cursor (the common case: subscribers of the same partitions, caught up) share one
// SharedEncoding, so the transport encodes the delivery once and sends the same bytes to
// all of them.

// SharedEncoding is the slot for one transport encoding of a delivery, shared by every
// subscriber that sends the same entry with the same cursor. It is safe for concurrent use.
type SharedEncoding struct {
	key    string // the cursor's protobuf form, before base64
	cursor string
	v      atomic.Pointer[any]
}

// Load returns the stored encoding, or nil when none was stored yet.
func (s *SharedEncoding) Load() any {
	if p := s.v.Load(); p != nil {
		return *p
	}
	return nil
}

// Store keeps v unless an encoding was stored already. v is handed to other subscribers'
// goroutines as it is: it must not be modified afterwards.
func (s *SharedEncoding) Store(v any) { s.v.CompareAndSwap(nil, &v) }

// memoSlots bounds the distinct cursors an entry keeps encodings for; subscribers beyond
// that encode their own.
const memoSlots = 4

type entryMemo struct {
	slots [memoSlots]atomic.Pointer[SharedEncoding]
	input atomic.Pointer[FilterInput] // what filters read, shared by every subscriber
}

// filterInput returns the entry's shared FilterInput (raw: the stored event), creating it on
// first use: the event is decoded and its payload parsed once however many filtered
// subscribers read the entry.
func (m *entryMemo) filterInput(raw []byte) *FilterInput {
	if in := m.input.Load(); in != nil {
		return in
	}
	in := NewFilterInput(raw)
	in.shared = true
	if m.input.CompareAndSwap(nil, in) {
		return in
	}
	return m.input.Load()
}

// get returns the shared slot for the cursor whose protobuf form is raw, creating it (with
// the cursor enc(raw)) when there is room; nil when every slot holds another cursor. A hit
// costs no base64 encoding.
func (m *entryMemo) get(raw []byte, enc func() string) *SharedEncoding {
	for i := range m.slots {
		s := m.slots[i].Load()
		if s == nil {
			n := &SharedEncoding{key: string(raw), cursor: enc()}
			if m.slots[i].CompareAndSwap(nil, n) {
				return n
			}
			s = m.slots[i].Load()
		}
		if s.key == string(raw) {
			return s
		}
	}
	return nil
}

// cursorEncoder keeps a subscription's cursor and encodes it without sorting or allocating
// per message: each partition's Position is re-encoded only when its id changes, and the
// whole is base64-encoded into a reused buffer. EncodeCursor uses it too.
type cursorEncoder struct {
	slots map[Partition]int // index into segs, in EncodeCursor's (sorted) order
	segs  [][]byte          // per partition: the encoded Cursor.positions field (tag, length, Position)
	parts []Partition       // per slot: the partition
	ids   []ID              // per slot: its position
	dead  bool
	group string // the dead letters' group
	raw   []byte
	out   []byte
	dirty bool
}

// newCursorEncoder starts at pos; deadLetters and group are the cursor's kind (Cursor).
func newCursorEncoder(pos map[Partition]ID, deadLetters bool, group string) *cursorEncoder {
	parts := make([]Partition, 0, len(pos))
	for p := range pos {
		parts = append(parts, p)
	}
	slices.SortFunc(parts, func(a, b Partition) int {
		if c := cmp.Compare(a.Source, b.Source); c != 0 {
			return c
		}
		return cmp.Compare(a.Index, b.Index)
	})
	c := &cursorEncoder{slots: make(map[Partition]int, len(parts)), segs: make([][]byte, len(parts)),
		parts: parts, ids: make([]ID, len(parts)), dead: deadLetters, group: group, dirty: true}
	for i, p := range parts {
		c.slots[p] = i
		c.ids[i] = pos[p]
		c.segs[i] = appendPosition(nil, p, pos[p])
	}
	return c
}

// cursor returns the positions as a Cursor.
func (c *cursorEncoder) cursor() Cursor {
	cur := Cursor{Positions: make(map[Partition]ID, len(c.parts)), DeadLetters: c.dead, Group: c.group}
	for i, p := range c.parts {
		cur.Positions[p] = c.ids[i]
	}
	return cur
}

// slot returns p's index for set, or -1 when the cursor does not hold p.
func (c *cursorEncoder) slot(p Partition) int {
	if i, ok := c.slots[p]; ok {
		return i
	}
	return -1
}

// set records id as the position of the partition at slot i.
func (c *cursorEncoder) set(i int, p Partition, id ID) {
	c.ids[i] = id
	c.segs[i] = appendPosition(c.segs[i][:0], p, id)
	c.dirty = true
}

// proto returns the cursor's protobuf form (what bytes base64-encodes); valid until the
// next set.
func (c *cursorEncoder) proto() []byte {
	if c.dirty {
		b := protowire.AppendTag(c.raw[:0], 1, protowire.VarintType)
		b = protowire.AppendVarint(b, codecVersion)
		for _, s := range c.segs {
			b = append(b, s...)
		}
		b = appendCursorKind(b, c.dead, c.group)
		c.raw = b
		c.out = c.out[:0]
		c.dirty = false
	}
	return c.raw
}

// bytes returns the opaque cursor; valid until the next set or bytes.
func (c *cursorEncoder) bytes() []byte {
	raw := c.proto()
	if len(c.out) == 0 {
		c.out = base64.RawURLEncoding.AppendEncode(c.out[:0], raw)
	}
	return c.out
}

// String returns the opaque cursor as a new string.
func (c *cursorEncoder) String() string { return string(c.bytes()) }

// appendPosition appends Cursor field 2 (a Position) as EncodeCursor writes it.
func appendPosition(b []byte, p Partition, id ID) []byte {
	n := 1 + protowire.SizeBytes(len(p.Source)) + 1 + protowire.SizeVarint(uint64(p.Index)) +
		1 + protowire.SizeVarint(id.Ms) + 1 + protowire.SizeVarint(id.Seq)
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(n))
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, p.Source)
	b = protowire.AppendTag(b, 2, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(p.Index))
	b = protowire.AppendTag(b, 3, protowire.VarintType)
	b = protowire.AppendVarint(b, id.Ms)
	b = protowire.AppendTag(b, 4, protowire.VarintType)
	b = protowire.AppendVarint(b, id.Seq)
	return b
}
