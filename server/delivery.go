package server

import (
	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // registers the default codec wireCodec wraps
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/eventrelay/eventrelay/relay"
)

// Encode-once deliveries.
//
// A stored entry is a serialized eventrelay.v1.Event. A Delivery is sent as a
// SubscribeResponse written by hand around those bytes (they are never decoded and
// re-encoded), and for tail subscribers the result is shared through relay.SharedEncoding:
// every subscriber that sends the same entry with the same cursor sends the same bytes.
//
// grpc-go marshals whatever SendMsg is given with the codec of the stream's content-subtype,
// "proto" for every gRPC client. wireCodec is registered under that name: it passes a
// *wireMsg through as it is (a mem.SliceBuffer, whose Free is a no-op, so the bytes can be
// handed to any number of streams) and hands every other message to grpc-go's proto codec,
// which it wraps. The bytes are valid protobuf, so any client, and the gateway's
// in-process client for GET /v1/events:subscribe, decodes them as a SubscribeResponse.

func init() {
	encoding.RegisterCodecV2(wireCodec{base: encoding.GetCodecV2("proto")})
}

// wireMsg is a message already in its wire form.
type wireMsg struct{ data mem.BufferSlice }

func newWireMsg(b []byte) *wireMsg { return &wireMsg{data: mem.BufferSlice{mem.SliceBuffer(b)}} }

type wireCodec struct{ base encoding.CodecV2 }

func (c wireCodec) Marshal(v any) (mem.BufferSlice, error) {
	if w, ok := v.(*wireMsg); ok {
		return w.data, nil
	}
	return c.base.Marshal(v)
}

func (c wireCodec) Unmarshal(data mem.BufferSlice, v any) error { return c.base.Unmarshal(data, v) }

func (c wireCodec) Name() string { return c.base.Name() }

// encodeDelivery returns SubscribeResponse{delivery: Delivery{event, cursor, ack_id,
// delivery_attempt}} with event the stored Event bytes as they are. A stored event that is
// not a well-formed protobuf message is CodeInternal, as decoding it would be.
func encodeDelivery(event []byte, cursor, ackID string, attempt int) ([]byte, error) {
	if !wellFormed(event) {
		return nil, relay.Errorf(relay.CodeInternal, "stored event is corrupt")
	}
	// Delivery fields: 1 event (message), 2 cursor, 3 ack_id, 4 delivery_attempt.
	n := 1 + protowire.SizeBytes(len(event))
	if cursor != "" {
		n += 1 + protowire.SizeBytes(len(cursor))
	}
	if ackID != "" {
		n += 1 + protowire.SizeBytes(len(ackID))
	}
	if attempt != 0 {
		n += 1 + protowire.SizeVarint(uint64(int64(attempt)))
	}
	b := make([]byte, 0, 1+protowire.SizeBytes(n))
	b = protowire.AppendTag(b, 1, protowire.BytesType) // SubscribeResponse.delivery
	b = protowire.AppendVarint(b, uint64(n))
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendBytes(b, event)
	if cursor != "" {
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendString(b, cursor)
	}
	if ackID != "" {
		b = protowire.AppendTag(b, 3, protowire.BytesType)
		b = protowire.AppendString(b, ackID)
	}
	if attempt != 0 {
		b = protowire.AppendTag(b, 4, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(int64(attempt))) // int32 is sign-extended on the wire
	}
	return b, nil
}

// wellFormed reports whether b parses as a sequence of protobuf fields.
func wellFormed(b []byte) bool {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return false
		}
		b = b[n:]
	}
	return true
}

// deliveryMsg returns the message to send for delivery m: the shared encoding when another
// subscriber made it already, else a new one (shared when m allows).
func deliveryMsg(m *relay.Message) (*wireMsg, error) {
	if m.Shared != nil {
		if w, ok := m.Shared.Load().(*wireMsg); ok {
			return w, nil
		}
	}
	b, err := encodeDelivery(m.Entry.Event, m.Cursor, m.AckID, m.Attempt)
	if err != nil {
		return nil, err
	}
	w := newWireMsg(b)
	if m.Shared != nil {
		m.Shared.Store(w)
	}
	return w, nil
}
