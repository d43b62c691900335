package filter

import (
	"slices"
	"testing"
	"time"

	eventrelayv1 "github.com/eventrelay/eventrelay/gen/eventrelay/v1"
	"github.com/eventrelay/eventrelay/relay"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// The fields of Event a filter decodes: only those it reads as event.<field>, the whole
// event when it uses event otherwise or reads data. Field numbers from event.proto: id 1,
// source 2, type 3, subject 4, headers 9, verification 10, partition_key 12.
func TestEventFields(t *testing.T) {
	tests := []struct {
		expr string
		want []protowire.Number // nil: the whole event
	}{
		{`event.type == "invoice.paid"`, []protowire.Number{3}},
		{`event.type.startsWith("invoice.") && event.source == "stripe"`, []protowire.Number{3, 2}},
		{`event.verification.provider == "hmac"`, []protowire.Number{10}},
		{`has(event.subject) || event.partition_key == "k"`, []protowire.Number{4, 12}},
		{`event.headers["x-team"] == "ops"`, []protowire.Number{9}},
		{`["a", "b"].exists(x, x == event.id)`, []protowire.Number{1}},
		{`true`, []protowire.Number{}},
		{`event == event`, nil},
		{`data.type == "invoice.paid" && event.type == "invoice.paid"`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			f, err := Compile(tt.expr)
			if err != nil {
				t.Fatal(err)
			}
			got := f.(*program).fields
			if (got == nil) != (tt.want == nil) || !slices.Equal(got, tt.want) {
				t.Errorf("fields = %v, want %v", got, tt.want)
			}
		})
	}
}

// A filter gives the same answer on an event decoded in part (a replay's input, its own) as
// on the whole event (the tail reader's shared input).
func TestPartialDecodeMatches(t *testing.T) {
	ev := &eventrelayv1.Event{Id: "evt_1", Source: "stripe", Type: "invoice.paid", Subject: "in_1",
		Time: timestamppb.New(time.Unix(1700000000, 0)), ReceivedTime: timestamppb.New(time.Unix(1700000001, 0)),
		DataContentType: "application/json", Data: []byte(`{"amount": 5}`), Headers: map[string]string{"x-team": "ops"},
		Verification: &eventrelayv1.Verification{Provider: "stripe", Scheme: "stripe-v1", KeyIndex: 1}, PartitionKey: "cus_1"}
	raw, err := proto.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		expr string
		want bool
	}{
		{`event.type == "invoice.paid"`, true},
		{`event.type == "invoice.paid" && event.source == "github"`, false},
		{`event.verification.provider == "stripe" && event.verification.key_index == 1`, true},
		{`has(event.subject) && event.partition_key == "cus_1"`, true},
		{`event.headers["x-team"] == "ops"`, true},
		{`event.time < event.received_time`, true},
		{`size(event.data) == 13`, true},
		{`has(event.trace_parent)`, false},
		{`data.amount == 5 && event.type == "invoice.paid"`, true},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			f, err := Compile(tt.expr)
			if err != nil {
				t.Fatal(err)
			}
			for _, in := range []*relay.FilterInput{relay.NewFilterInput(raw), sharedInput(raw)} {
				got, err := f.Match(in)
				if err != nil || got != tt.want {
					t.Errorf("Match = %v, %v; want %v", got, err, tt.want)
				}
			}
		})
	}
	// A corrupt stored event is an error, as a whole decode's.
	f, _ := Compile(`event.type == "x"`)
	if _, err := f.Match(relay.NewFilterInput([]byte{0x1a, 0x05, 'a'})); relay.ErrorCode(err) != relay.CodeInternal {
		t.Errorf("corrupt event: %v, want internal", err)
	}
}

// sharedInput is an input decoded whole already, as the tail reader's shared one is after
// its first subscriber.
func sharedInput(raw []byte) *relay.FilterInput {
	in := relay.NewFilterInput(raw)
	_, _ = in.Event()
	return in
}

// BenchmarkMatchOwnInput is one filter evaluation on an input of its own (a replay's, a group
// member's: nothing shared), reading one field of the event: "fast" without CEL (fast.go),
// "fields" in CEL decoding that field only, "whole", the baseline of the same run, in CEL
// decoding the whole event.
func BenchmarkMatchOwnInput(b *testing.B) {
	ev := &eventrelayv1.Event{Id: "evt_1NG8Du2eZvKYlo2CUI79vXWy", Source: "stripe", Type: "invoice.payment_failed",
		Time: timestamppb.New(time.Unix(1686089970, 0)), ReceivedTime: timestamppb.New(time.Unix(1686089971, 0)),
		DataContentType: "application/json", Data: make([]byte, 1024), Headers: map[string]string{"stripe-signature": "t=1,v1=ab"},
		Verification: &eventrelayv1.Verification{Provider: "stripe", Scheme: "stripe-v1"}}
	raw, err := proto.Marshal(ev)
	if err != nil {
		b.Fatal(err)
	}
	f, err := Compile(`event.type.startsWith("invoice.")`)
	if err != nil {
		b.Fatal(err)
	}
	p := f.(*program)
	fields := *p
	fields.fast = nil
	whole := &program{prg: p.prg}
	for _, c := range []struct {
		name string
		p    *program
	}{{"fast", p}, {"fields", &fields}, {"whole", whole}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if ok, err := c.p.Match(relay.NewFilterInput(raw)); !ok || err != nil {
					b.Fatal(ok, err)
				}
			}
		})
	}
}
