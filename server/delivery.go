package server

import (
	"slices"
	"sync"

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
// *wireMsg through as it is (a delivery's is a mem.SliceBuffer, whose Free is a no-op, so the
// bytes can be handed to any number of streams; a batch's is pooled, sent once, and freed by
// grpc-go once written) and hands every other message to grpc-go's proto codec,
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
	return appendDelivery(nil, event, cursor, ackID, attempt)
}

// appendDelivery appends encodeDelivery's bytes to b.
func appendDelivery(b []byte, event []byte, cursor, ackID string, attempt int) ([]byte, error) {
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
	b = slices.Grow(b, 1+protowire.SizeBytes(n))
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

// Batched deliveries (SubscribeRequest.max_batch).
//
// A DeliveryBatch's field 1 (repeated Delivery) has the same tag as SubscribeResponse's
// field 1 (delivery), so a batch is the deliveries' own SubscribeResponse encodings one after
// another, behind the tag and length of SubscribeResponse.batch (field 3): no delivery is
// encoded twice, and a shared encoding is copied as it is.
//
// A batch is built in a buffer of batchBuffers and handed to grpc-go as a reference-counted
// mem.Buffer: grpc-go frees it once the connection's writer wrote it, and the buffer goes
// back to the pool, so a stream that sends batches allocates nothing per batch once warm.
//
// Where a batch ends is the relay's decision (relay.Message.More: at most max_batch
// deliveries, at most relay.MaxBatchBytes), so that a stream cut for falling behind is told
// to resume after the last delivery actually sent.
const (
	// MaxBatch is the largest SubscribeRequest.max_batch.
	MaxBatch = 1000
	// batchHeadroom is room for the batch field's tag and length in front of the deliveries.
	batchHeadroom = 8
	// deliverySlack bounds what encodeDelivery adds to its fields' bytes (tags and lengths),
	// less than relay.MaxBatchBytes counts per delivery.
	deliverySlack = 40
)

// batchClasses are the capacities of the pooled batch buffers, smallest first.
var batchClasses = [...]int{16 << 10, 64 << 10, 256 << 10, batchHeadroom + relay.MaxBatchBytes}

// batchPool is a mem.BufferPool of batch buffers by size class. It does not clear them: a
// batch sends only bytes it wrote.
type batchPool struct{ classes [len(batchClasses)]sync.Pool }

var batchBuffers batchPool

// Get returns a buffer of length n, pooled when a class holds n.
func (p *batchPool) Get(n int) *[]byte {
	for i, c := range batchClasses {
		if n <= c {
			if b, ok := p.classes[i].Get().(*[]byte); ok {
				*b = (*b)[:n]
				return b
			}
			b := make([]byte, n, c)
			return &b
		}
	}
	b := make([]byte, n)
	return &b
}

// Put keeps b for reuse when it is of a class.
func (p *batchPool) Put(b *[]byte) {
	for i, c := range batchClasses {
		if cap(*b) == c {
			*b = (*b)[:0]
			p.classes[i].Put(b)
			return
		}
	}
}

// batcher gathers a stream's deliveries into the batches the relay marks out.
type batcher struct {
	ptr  *[]byte       // the buffer from batchBuffers (nil: none yet)
	buf  []byte        // *ptr's array: batchHeadroom bytes, then the held deliveries' encodings
	n    int           // deliveries held
	ends []func(error) // their tracing spans, ended when they are sent
}

// add holds the delivery m, and sends what it holds when m ends its batch (no Message.More).
// end, when set, ends m's tracing span once m is sent.
func (b *batcher) add(m *relay.Message, end func(error), send func(any) error) error {
	var shared []byte
	if m.Shared != nil {
		if w, ok := m.Shared.Load().(*wireMsg); ok {
			shared = w.data[0].ReadOnlyData()
		}
	}
	need := len(shared)
	if shared == nil {
		need = len(m.Entry.Event) + len(m.Cursor) + len(m.AckID) + deliverySlack
	}
	b.reserve(need, min(8*need, relay.MaxBatchBytes))
	if shared != nil {
		b.buf = append(b.buf, shared...)
	} else {
		out, err := appendDelivery(b.buf, m.Entry.Event, m.Cursor, m.AckID, m.Attempt)
		if err != nil {
			if end != nil {
				end(err)
			}
			return err
		}
		b.buf = out
	}
	b.n++
	if end != nil {
		b.ends = append(b.ends, end)
	}
	if !m.More {
		return b.flush(send)
	}
	return nil
}

// reserve makes room for need more bytes, starting a buffer for about expect bytes of
// deliveries when there is none, or moving to a larger one.
func (b *batcher) reserve(need, expect int) {
	if b.ptr == nil {
		b.ptr = batchBuffers.Get(batchHeadroom + max(need, expect))
		b.buf = (*b.ptr)[:batchHeadroom]
		return
	}
	if len(b.buf)+need <= cap(b.buf) {
		return
	}
	ptr := batchBuffers.Get(max(len(b.buf)+need, 2*cap(b.buf)))
	b.buf = append((*ptr)[:0], b.buf...)
	batchBuffers.Put(b.ptr)
	b.ptr = ptr
}

// flush sends what b holds (at least one delivery): one delivery as it is, more as a
// SubscribeResponse.batch.
func (b *batcher) flush(send func(any) error) error {
	start := batchHeadroom
	if b.n > 1 {
		// The batch field's tag and length go into the headroom, just in front of the body.
		n := len(b.buf) - batchHeadroom
		start -= 1 + protowire.SizeVarint(uint64(n))
		protowire.AppendVarint(protowire.AppendTag(b.buf[start:start], 3, protowire.BytesType), uint64(n))
	}
	*b.ptr = b.buf
	root := mem.NewBuffer(b.ptr, &batchBuffers)
	view := root.Slice(start, len(b.buf)) // holds root, which goes back to the pool when both are freed
	root.Free()
	err := send(&wireMsg{data: mem.BufferSlice{view}})
	for _, end := range b.ends {
		end(err)
	}
	b.ptr, b.buf, b.n, b.ends = nil, nil, 0, b.ends[:0]
	return err
}
