package server

import (
	"bytes"
	"fmt"
	"slices"
	"testing"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventrelayv1 "github.com/eventrelay/eventrelay/gen/eventrelay/v1"
	"github.com/eventrelay/eventrelay/relay"
)

func testEvent(tb testing.TB) (*eventrelayv1.Event, []byte) {
	tb.Helper()
	ev := &eventrelayv1.Event{
		Id: "evt_1", Source: "orders", Type: "order.created", Time: timestamppb.Now(), ReceivedTime: timestamppb.Now(),
		DataContentType: "application/json", Data: []byte(`{"id":"evt_1","type":"order.created","amount":1999}`),
		Headers:      map[string]string{"X-Request-Id": "r1"},
		Verification: &eventrelayv1.Verification{Provider: "hmac", Scheme: "hmac-sha256", KeyIndex: 1},
		PartitionKey: "evt_1",
	}
	b, err := proto.Marshal(ev)
	if err != nil {
		tb.Fatal(err)
	}
	return ev, b
}

func TestEncodeDeliveryIsASubscribeResponse(t *testing.T) {
	ev, stored := testEvent(t)
	for _, tc := range []struct {
		cursor, ack string
		attempt     int
	}{{"CAESEwoG", "", 0}, {"", "", 0}, {"CAESEwoG", "YWNr", 3}, {"c", "a", -1}, {"c", "", 1 << 30}} {
		b, err := encodeDelivery(stored, tc.cursor, tc.ack, tc.attempt)
		if err != nil {
			t.Fatal(err)
		}
		var got eventrelayv1.SubscribeResponse
		if err := proto.Unmarshal(b, &got); err != nil {
			t.Fatalf("%+v: not a SubscribeResponse: %v", tc, err)
		}
		want := &eventrelayv1.SubscribeResponse{Kind: &eventrelayv1.SubscribeResponse_Delivery{Delivery: &eventrelayv1.Delivery{
			Event: ev, Cursor: tc.cursor, AckId: tc.ack, DeliveryAttempt: int32(tc.attempt)}}}
		if !proto.Equal(&got, want) {
			t.Fatalf("%+v: got %v want %v", tc, &got, want)
		}
		// Byte for byte what proto.Marshal writes for the same message (fields in order).
		if wb, _ := (proto.MarshalOptions{Deterministic: true}).Marshal(want); !bytes.Equal(wb, b) {
			t.Fatalf("%+v: encodeDelivery\n%x\nproto.Marshal\n%x", tc, b, wb)
		}
	}
}

func TestEncodeDeliveryRejectsCorruptEvents(t *testing.T) {
	_, stored := testEvent(t)
	for _, bad := range [][]byte{stored[:len(stored)-3], {0xff}, {0x0a, 0x05, 'a'}} {
		if _, err := encodeDelivery(bad, "c", "", 0); relay.ErrorCode(err) != relay.CodeInternal {
			t.Fatalf("%x: got %v, want CodeInternal", bad, err)
		}
	}
}

func TestWireCodec(t *testing.T) {
	c := encoding.GetCodecV2("proto")
	if _, ok := c.(wireCodec); !ok {
		t.Fatalf("the registered proto codec is %T, not wireCodec", c)
	}
	raw := []byte{0x0a, 0x00}
	data, err := c.Marshal(newWireMsg(raw))
	if err != nil || string(data.Materialize()) != string(raw) {
		t.Fatalf("wire message: %x %v", data.Materialize(), err)
	}
	data.Free() // a no-op: the bytes may be sent on other streams
	if string(raw) != "\x0a\x00" {
		t.Fatal("Free changed shared bytes")
	}
	// Other messages go through the proto codec both ways.
	in := &eventrelayv1.Heartbeat{Cursor: "abc"}
	data, err = c.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out eventrelayv1.Heartbeat
	if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(data.Materialize())}, &out); err != nil || out.GetCursor() != "abc" {
		t.Fatalf("round trip: %v %v", &out, err)
	}
}

func TestDeliveryMsgSharesEncodings(t *testing.T) {
	_, stored := testEvent(t)
	shared := &relay.SharedEncoding{}
	m := &relay.Message{Entry: &relay.Entry{Event: stored}, Cursor: "c", Shared: shared}
	a, err := deliveryMsg(m)
	if err != nil {
		t.Fatal(err)
	}
	b, err := deliveryMsg(m)
	if err != nil || a != b {
		t.Fatalf("second subscriber did not reuse the encoding: %p %p %v", a, b, err)
	}
	m.Shared = nil
	if c, _ := deliveryMsg(m); c == a {
		t.Fatal("unshared delivery reused a shared encoding")
	}
}

// BenchmarkDeliveryPerSubscriber is the send path's cost per subscriber of one delivery, 100
// subscribers with one cursor: decoding the stored event and marshaling a SubscribeResponse
// for each (before), against encoding once and sharing (after).
func BenchmarkDeliveryPerSubscriber(b *testing.B) {
	_, stored := testEvent(b)
	const subs = 100
	b.Run("decode+marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for range subs {
				ev, err := relay.DecodeEvent(stored)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := proto.Marshal(&eventrelayv1.SubscribeResponse{Kind: &eventrelayv1.SubscribeResponse_Delivery{
					Delivery: &eventrelayv1.Delivery{Event: ev, Cursor: "CAESEwoGb3JkZXJzEAAY_bvl3aE0IAA"}}}); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("encode-once", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			shared := &relay.SharedEncoding{}
			m := &relay.Message{Entry: &relay.Entry{Event: stored}, Cursor: "CAESEwoGb3JkZXJzEAAY_bvl3aE0IAA", Shared: shared}
			for range subs {
				if _, err := deliveryMsg(m); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("encode-unshared", func(b *testing.B) {
		b.ReportAllocs()
		m := &relay.Message{Entry: &relay.Entry{Event: stored}, Cursor: "CAESEwoGb3JkZXJzEAAY_bvl3aE0IAA"}
		for b.Loop() {
			for range subs {
				if _, err := deliveryMsg(m); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}

// TestBatcher: deliveries are held while Message.More says the next joins their batch, then
// sent as one SubscribeResponse.batch (a lone one as a plain delivery), also when they are
// large.
func TestBatcher(t *testing.T) {
	eventOf := func(id string, dataLen int) (*eventrelayv1.Event, []byte) {
		ev := &eventrelayv1.Event{Id: id, Source: "orders", Type: "t", Data: bytes.Repeat([]byte("x"), dataLen)}
		b, err := proto.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		return ev, b
	}
	const k = 1 << 10
	for _, tc := range []struct {
		name string
		data []int  // each delivery's event data length
		more []bool // each delivery's Message.More
		want []int  // deliveries per message sent (1: a plain delivery)
	}{
		{"a run", []int{10, 10, 10, 10, 10}, []bool{true, true, true, true, false}, []int{5}},
		{"two runs", []int{10, 10, 10, 10, 10}, []bool{true, false, true, true, false}, []int{2, 3}},
		{"alone", []int{10, 10}, []bool{false, false}, []int{1, 1}},
		{"large", []int{10, 400 * k, 400 * k, 400 * k, 10}, []bool{true, true, false, true, false}, []int{3, 2}},
		{"larger than a buffer class", []int{2048 * k, 10}, []bool{false, false}, []int{1, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var sent []any
			send := func(v any) error { sent = append(sent, v); return nil }
			b := &batcher{}
			var want []*eventrelayv1.Delivery
			ended := 0
			for i, n := range tc.data {
				ev, stored := eventOf(fmt.Sprintf("e%d", i), n)
				cursor := fmt.Sprintf("c%d", i)
				want = append(want, &eventrelayv1.Delivery{Event: ev, Cursor: cursor, AckId: "a", DeliveryAttempt: 2})
				m := &relay.Message{Entry: &relay.Entry{Event: stored}, Cursor: cursor, AckID: "a", Attempt: 2, More: tc.more[i]}
				if err := b.add(m, func(error) { ended++ }, send); err != nil {
					t.Fatal(err)
				}
			}
			if ended != len(tc.data) {
				t.Fatalf("%d tracing spans ended, want %d", ended, len(tc.data))
			}
			// Read only now: bytes sent are never written again (grpc-go may still hold them).
			var sizes []int
			var got []*eventrelayv1.Delivery
			for _, v := range sent {
				var resp eventrelayv1.SubscribeResponse
				if err := proto.Unmarshal(v.(*wireMsg).data.Materialize(), &resp); err != nil {
					t.Fatalf("message %d is not a SubscribeResponse: %v", len(sizes), err)
				}
				switch k := resp.GetKind().(type) {
				case *eventrelayv1.SubscribeResponse_Delivery:
					sizes, got = append(sizes, 1), append(got, k.Delivery)
				case *eventrelayv1.SubscribeResponse_Batch:
					if len(k.Batch.GetDeliveries()) < 2 {
						t.Fatalf("a batch of %d", len(k.Batch.GetDeliveries()))
					}
					sizes, got = append(sizes, len(k.Batch.GetDeliveries())), append(got, k.Batch.GetDeliveries()...)
				default:
					t.Fatalf("message %d: %T", len(sizes), k)
				}
			}
			if !slices.Equal(sizes, tc.want) {
				t.Fatalf("messages of %v deliveries, want %v", sizes, tc.want)
			}
			for i := range want {
				if !proto.Equal(got[i], want[i]) {
					t.Fatalf("delivery %d: got %v", i, got[i])
				}
			}
		})
	}
}

// TestBatcherCopiesSharedEncodings: a tail delivery whose encoding another subscriber made
// goes into the batch as those bytes.
func TestBatcherCopiesSharedEncodings(t *testing.T) {
	_, stored := testEvent(t)
	shared := &relay.SharedEncoding{}
	if _, err := deliveryMsg(&relay.Message{Entry: &relay.Entry{Event: stored}, Cursor: "c1", Shared: shared}); err != nil {
		t.Fatal(err)
	}
	var sent []byte
	b := &batcher{}
	send := func(v any) error { sent = v.(*wireMsg).data.Materialize(); return nil }
	// The shared encoding is what a subscriber with cursor c1 sends: the entry, not a
	// well-formed event here, must not be read (encoding it is an error).
	if err := b.add(&relay.Message{Entry: &relay.Entry{Event: []byte{0xff}}, Cursor: "c1", Shared: shared, More: true}, nil, send); err != nil {
		t.Fatalf("the shared encoding was not used: %v", err)
	}
	if err := b.add(&relay.Message{Entry: &relay.Entry{Event: stored}, Cursor: "c2"}, nil, send); err != nil {
		t.Fatal(err)
	}
	var resp eventrelayv1.SubscribeResponse
	if err := proto.Unmarshal(sent, &resp); err != nil {
		t.Fatal(err)
	}
	ds := resp.GetBatch().GetDeliveries()
	if len(ds) != 2 || ds[0].GetCursor() != "c1" || ds[0].GetEvent().GetId() != "evt_1" || ds[1].GetCursor() != "c2" {
		t.Fatalf("got %v", &resp)
	}
}

// A corrupt stored event in a batch is CodeInternal, and its tracing span ends with that
// error rather than never.
func TestBatcherCorruptEventEndsItsSpan(t *testing.T) {
	b := &batcher{}
	var ended []error
	end := func(err error) { ended = append(ended, err) }
	send := func(any) error { t.Fatal("nothing may be sent"); return nil }
	err := b.add(&relay.Message{Entry: &relay.Entry{Event: []byte{0xff}}, Cursor: "c1", More: true}, end, send)
	if relay.ErrorCode(err) != relay.CodeInternal {
		t.Fatalf("add of a corrupt event: %v, want internal", err)
	}
	if len(ended) != 1 || ended[0] != err {
		t.Fatalf("span ended with %v, want once with %v", ended, err)
	}
}
