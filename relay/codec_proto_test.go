package relay

import (
	"encoding/base64"
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
)

// cursorDescriptor is the Cursor message codec.go documents, built at run time so that the
// hand-rolled encoder can be compared with protobuf's own (deterministic) marshalling.
func cursorDescriptor(tb testing.TB) protoreflect.MessageDescriptor {
	tb.Helper()
	str, u32, u64, bl, msg := descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum(), descriptorpb.FieldDescriptorProto_TYPE_UINT32.Enum(),
		descriptorpb.FieldDescriptorProto_TYPE_UINT64.Enum(), descriptorpb.FieldDescriptorProto_TYPE_BOOL.Enum(), descriptorpb.FieldDescriptorProto_TYPE_MESSAGE.Enum()
	opt, rep := descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(), descriptorpb.FieldDescriptorProto_LABEL_REPEATED.Enum()
	field := func(name string, n int32, t *descriptorpb.FieldDescriptorProto_Type, l *descriptorpb.FieldDescriptorProto_Label, typeName string) *descriptorpb.FieldDescriptorProto {
		f := &descriptorpb.FieldDescriptorProto{Name: proto.String(name), Number: proto.Int32(n), Type: t, Label: l}
		if typeName != "" {
			f.TypeName = proto.String(typeName)
		}
		return f
	}
	fd, err := protodesc.NewFile(&descriptorpb.FileDescriptorProto{
		Name: proto.String("cursor_bench.proto"), Package: proto.String("bench"), Syntax: proto.String("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{
			{Name: proto.String("Cursor"), Field: []*descriptorpb.FieldDescriptorProto{
				field("version", 1, u32, opt, ""), field("positions", 2, msg, rep, ".bench.Position"),
				field("dead_letters", 3, bl, opt, ""), field("group", 4, str, opt, "")}},
			{Name: proto.String("Position"), Field: []*descriptorpb.FieldDescriptorProto{
				field("source", 1, str, opt, ""), field("partition", 2, u32, opt, ""), field("ms", 3, u64, opt, ""), field("seq", 4, u64, opt, "")}},
		},
	}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return fd.Messages().ByName("Cursor")
}

// protoCursor builds c as a dynamic message of md, positions in EncodeCursor's order.
func protoCursor(md protoreflect.MessageDescriptor, parts []Partition, ids []ID) *dynamicpb.Message {
	m := dynamicpb.NewMessage(md)
	f := md.Fields()
	m.Set(f.ByName("version"), protoreflect.ValueOfUint32(codecVersion))
	list := m.Mutable(f.ByName("positions")).List()
	pd := f.ByName("positions").Message()
	for i, p := range parts {
		pm := dynamicpb.NewMessage(pd)
		pm.Set(pd.Fields().ByName("source"), protoreflect.ValueOfString(p.Source))
		pm.Set(pd.Fields().ByName("partition"), protoreflect.ValueOfUint32(uint32(p.Index)))
		pm.Set(pd.Fields().ByName("ms"), protoreflect.ValueOfUint64(ids[i].Ms))
		pm.Set(pd.Fields().ByName("seq"), protoreflect.ValueOfUint64(ids[i].Seq))
		list.Append(protoreflect.ValueOfMessage(pm))
	}
	return m
}

// TestCursorMatchesProtobuf: the hand-rolled encoding is the documented protobuf message:
// protobuf decodes it to the same message it encodes from the positions (the hand-rolled form
// also writes zero-valued fields, which proto3 leaves out), and DecodeCursor reads
// protobuf's own encoding back to the same positions.
func TestCursorMatchesProtobuf(t *testing.T) {
	md := cursorDescriptor(t)
	parts := []Partition{{Source: "github", Index: 0}, {Source: "stripe", Index: 0}, {Source: "stripe", Index: 3}}
	ids := []ID{{Ms: 1, Seq: 0}, {Ms: 1700000000000, Seq: 7}, {Ms: 1700000000123, Seq: 1 << 40}}
	pos := map[Partition]ID{}
	for i, p := range parts {
		pos[p] = ids[i]
	}
	want := protoCursor(md, parts, ids)
	raw, err := base64.RawURLEncoding.DecodeString(EncodeCursor(Cursor{Positions: pos}))
	if err != nil {
		t.Fatal(err)
	}
	got := dynamicpb.NewMessage(md)
	if err := proto.Unmarshal(raw, got); err != nil || !proto.Equal(got, want) {
		t.Fatalf("protobuf reads EncodeCursor's %x as %v (%v), want %v", raw, got, err, want)
	}
	pb, err := proto.MarshalOptions{Deterministic: true}.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	c, err := DecodeCursor(base64.RawURLEncoding.EncodeToString(pb))
	if err != nil || len(c.Positions) != len(pos) {
		t.Fatalf("DecodeCursor of protobuf's encoding: %v, %v", c, err)
	}
	for p, id := range pos {
		if c.Positions[p] != id {
			t.Errorf("position of %v: %v, want %v", p, c.Positions[p], id)
		}
	}
}

// BenchmarkCursorProtobuf is BenchmarkCursorPerMessage's incremental case done with
// protobuf's deterministic marshalling of a message kept across deliveries (only the one
// position changes): the cost a generated internal message would add per delivery.
func BenchmarkCursorProtobuf(b *testing.B) {
	md := cursorDescriptor(b)
	for _, n := range []int{1, 4, 32} {
		parts := make([]Partition, n)
		ids := make([]ID, n)
		for i := range parts {
			parts[i], ids[i] = Partition{Source: "stripe", Index: i}, ID{Ms: 1700000000000 + uint64(i), Seq: 1}
		}
		b.Run(fmt.Sprintf("partitions=%d", n), func(b *testing.B) {
			m := protoCursor(md, parts, ids)
			pd := md.Fields().ByName("positions")
			pos := m.Get(pd).List().Get(n / 2).Message()
			seq := pos.Descriptor().Fields().ByName("seq")
			opts := proto.MarshalOptions{Deterministic: true}
			var raw, out []byte
			b.ReportAllocs()
			id := uint64(1)
			for b.Loop() {
				id++
				pos.Set(seq, protoreflect.ValueOfUint64(id))
				raw, _ = opts.MarshalAppend(raw[:0], m)
				out = base64.RawURLEncoding.AppendEncode(out[:0], raw)
			}
		})
	}
}
