package server

import (
	"bytes"
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
