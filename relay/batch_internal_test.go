package relay

import (
	"context"
	"errors"
	"slices"
	"testing"
)

// TestLastCursorIsSent: the cursor a cut subscriber is told to resume from (sendState.last)
// is that of the last delivery the transport sent: a batching transport holds deliveries
// with More and sends them with the first one without, so a delivery counts as sent only
// once such a send returned.
func TestLastCursorIsSent(t *testing.T) {
	p := Partition{Source: "s"}
	enc := newCursorEncoder(map[Partition]ID{p: {}}, false, "")
	var delivered, held []string // what the fake transport sent, and holds
	blocked := false             // its client stopped reading: a send fails (the stream is cut)
	send := func(m *Message) error {
		held = append(held, m.Cursor)
		if m.More {
			return nil
		}
		if blocked {
			return errors.New("cut while sending")
		}
		delivered, held = append(delivered, held...), nil
		return nil
	}
	st := &sendState{s: &Service{}, ctx: context.Background(), req: &SubscribeRequest{MaxBatch: 3}, enc: enc, send: send, last: enc.String()}
	entries := func(from, to uint64) []Entry {
		var es []Entry
		for ms := from; ms <= to; ms++ {
			es = append(es, Entry{ID: ID{Ms: ms}, Event: []byte{}})
		}
		return es
	}
	if _, err := st.sendBatch(batch{p: p, slot: enc.slot(p), entries: entries(1, 5)}); err != nil {
		t.Fatal(err)
	}
	if len(delivered) != 5 || st.last != delivered[4] {
		t.Fatalf("after a run of 5 in batches of 3: %d delivered, last %q, want %q", len(delivered), st.last, delivered[len(delivered)-1])
	}
	blocked = true
	if _, err := st.sendBatch(batch{p: p, slot: enc.slot(p), entries: entries(6, 10)}); err == nil {
		t.Fatal("the send that was cut did not fail the batch")
	}
	if len(held) != 3 || slices.Contains(delivered, held[0]) {
		t.Fatalf("held %d, want the 3 of the batch that failed", len(held))
	}
	if st.last != delivered[4] {
		t.Fatalf("last is %q, a cursor never sent; want the 5th's %q", st.last, delivered[4])
	}
}
