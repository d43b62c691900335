package filter

import (
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	eventrelayv1 "github.com/eventrelay/eventrelay/gen/eventrelay/v1"
	"github.com/eventrelay/eventrelay/relay"
)

// compileBoth compiles expr and returns its fast form (nil when it has none) and the same
// expression evaluated by CEL alone, the oracle the fast path is held to.
func compileBoth(t testing.TB, expr string) (*fastProgram, *program) {
	t.Helper()
	f, err := Compile(expr)
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	p := f.(*program)
	viaCEL := *p
	viaCEL.fast = nil
	return p.fast, &viaCEL
}

// TestFastPathTaken: which expressions run without CEL (written out by hand).
func TestFastPathTaken(t *testing.T) {
	for _, tc := range []struct {
		expr string
		fast bool
	}{
		{`event.type == "invoice.paid"`, true},
		{`"invoice.paid" == event.type`, true},
		{`event.type != "x" && event.source == "stripe"`, true},
		{`event.type.startsWith("invoice.") || event.subject.endsWith("_9") || event.id.contains("NG")`, true},
		{`!(event.type in ["a", "b", "c"])`, true},
		{`event.partition_key.matches("^cus_[0-9]+$")`, true},
		{`event.data_content_type == "application/json" && event.trace_parent == ""`, true},
		{`true`, true},
		{`event.type == "a" || false`, true},
		{`event.verification.provider == "stripe"`, false}, // a nested field
		{`has(event.subject)`, false},
		{`event.headers["x-a"] == "1"`, false},
		{`event.type == event.source`, false}, // no constant
		{`event.type.size() > 3`, false},
		{`data.type == "invoice.paid"`, false},
		{`event.type in [event.source]`, false},
		{`["a"].exists(event, event == "a")`, false},
		{`event.time > timestamp("2026-01-01T00:00:00Z")`, false},
	} {
		t.Run(tc.expr, func(t *testing.T) {
			if fast, _ := compileBoth(t, tc.expr); (fast != nil) != tc.fast {
				t.Fatalf("fast path %v, want %v", fast != nil, tc.fast)
			}
		})
	}
}

// fastEvents are the events the fast path is compared with CEL on.
func fastEvents(t testing.TB) [][]byte {
	t.Helper()
	var out [][]byte
	for _, ev := range []*eventrelayv1.Event{
		{},
		{Id: "evt_1NG8Du2eZvKYlo2CUI79vXWy", Source: "stripe", Type: "invoice.paid", Subject: "cus_9", PartitionKey: "cus_123",
			DataContentType: "application/json", Data: []byte(`{"type":"x"}`), Headers: map[string]string{"x-a": "1"},
			Verification: &eventrelayv1.Verification{Provider: "stripe"}},
		{Source: "github", Type: "issues.opened", Subject: "Grüße, 東京 🚀"},
		{Type: "a", Source: "b", Id: "c"},
		{Type: "invoice.", Source: "stripe", Subject: "_9", PartitionKey: "cus_x"},
	} {
		b, err := proto.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	// A field that occurs twice: the last occurrence is the value.
	twice := protowire.AppendTag(nil, 3, protowire.BytesType)
	twice = protowire.AppendString(twice, "first")
	twice = protowire.AppendTag(twice, 3, protowire.BytesType)
	twice = protowire.AppendString(twice, "invoice.paid")
	return append(out, twice)
}

var fastExprs = []string{
	`event.type == "invoice.paid"`,
	`"invoice.paid" == event.type`,
	`event.type != "invoice.paid"`,
	`event.type == ""`,
	`event.type.startsWith("invoice.")`,
	`event.type.startsWith("")`,
	`event.subject.endsWith("_9")`,
	`event.subject.contains("東京")`,
	`event.id.contains("NG8")`,
	`event.type in ["a", "invoice.paid", "issues.opened"]`,
	`event.type in []`,
	`!(event.source in ["stripe"])`,
	`event.partition_key.matches("^cus_[0-9]+$")`,
	`event.subject.matches("ü")`,
	`event.type.startsWith("invoice.") && event.source == "stripe" || event.type == "a"`,
	`event.type.startsWith("invoice.") && (event.source == "stripe" || event.type == "a")`,
	`!(event.type == "a" && event.source == "b") || event.id == "c"`,
	`event.data_content_type == "application/json" && event.trace_parent == ""`,
	`true && event.type == "a"`,
	`false || !true`,
}

// TestFastAgreesWithCEL: on every expression and event, the fast path answers what CEL does.
func TestFastAgreesWithCEL(t *testing.T) {
	events := fastEvents(t)
	for _, expr := range fastExprs {
		fast, viaCEL := compileBoth(t, expr)
		if fast == nil {
			t.Fatalf("%s: no fast path", expr)
		}
		for i, raw := range events {
			got, err := fast.match(raw)
			want, werr := viaCEL.Match(relay.NewFilterInput(raw))
			if err != nil || werr != nil || got != want {
				t.Errorf("%s on event %d: fast %v (%v), CEL %v (%v)", expr, i, got, err, want, werr)
			}
		}
	}
}

// TestFastRefusesWhatDecodingRefuses: a stored event that does not decode matches nothing,
// with an error, as in CEL.
func TestFastRefusesWhatDecodingRefuses(t *testing.T) {
	fast, viaCEL := compileBoth(t, `event.type != "x"`)
	badUTF8 := protowire.AppendString(protowire.AppendTag(nil, 3, protowire.BytesType), "\xff")
	for _, raw := range [][]byte{{0xff}, {0x1a, 0x05, 'a'}, badUTF8} {
		if ok, err := fast.match(raw); ok || err == nil {
			t.Errorf("%x: fast %v %v, want an error", raw, ok, err)
		}
		if ok, err := viaCEL.Match(relay.NewFilterInput(raw)); ok || err == nil {
			t.Errorf("%x: CEL %v %v, want an error (the oracle changed)", raw, ok, err)
		}
	}
}

// FuzzFastAgreesWithCEL builds expressions of the fast path's shape from the fuzzer's bytes
// and checks them against CEL on events with the fuzzer's strings.
func FuzzFastAgreesWithCEL(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7}, "invoice.paid", "stripe", "cus_1", "invoice.")
	f.Add([]byte{9, 3, 1, 0, 4, 2}, "", "a", "Grüße", "ü")
	f.Fuzz(func(t *testing.T, shape []byte, typ, source, subject, lit string) {
		raw, err := proto.Marshal(&eventrelayv1.Event{Type: typ, Source: source, Subject: subject})
		if err != nil {
			return // not valid UTF-8: not an event relayd stores
		}
		expr := fuzzExpr(&shape, lit, 0)
		f, err := Compile(expr)
		if err != nil {
			return
		}
		p := f.(*program)
		if p.fast == nil {
			t.Fatalf("%s: no fast path", expr)
		}
		got, err := p.fast.match(raw)
		viaCEL := *p
		viaCEL.fast = nil
		want, werr := viaCEL.Match(relay.NewFilterInput(raw))
		if err != nil || werr != nil || got != want {
			t.Fatalf("%s on %q/%q/%q: fast %v (%v), CEL %v (%v)", expr, typ, source, subject, got, err, want, werr)
		}
	})
}

// fuzzExpr reads an expression of the fast path's shape off the front of shape.
func fuzzExpr(shape *[]byte, lit string, depth int) string {
	next := func() byte {
		if len(*shape) == 0 {
			return 0
		}
		b := (*shape)[0]
		*shape = (*shape)[1:]
		return b
	}
	q := fmt.Sprintf("%q", lit)
	if strings.ContainsAny(lit, "\\`") || !strings.HasPrefix(q, `"`) {
		q = `"x"`
	}
	field := []string{"event.type", "event.source", "event.subject"}[next()%3]
	switch k := next() % 10; {
	case depth < 4 && k == 0:
		return "(" + fuzzExpr(shape, lit, depth+1) + " && " + fuzzExpr(shape, lit, depth+1) + ")"
	case depth < 4 && k == 1:
		return "(" + fuzzExpr(shape, lit, depth+1) + " || " + fuzzExpr(shape, lit, depth+1) + ")"
	case depth < 4 && k == 2:
		return "!" + fuzzExpr(shape, lit, depth+1)
	case k == 3:
		return field + " != " + q
	case k == 4:
		return field + ".startsWith(" + q + ")"
	case k == 5:
		return field + ".endsWith(" + q + ")"
	case k == 6:
		return field + ".contains(" + q + ")"
	case k == 7:
		return field + " in [" + q + `, "a"]`
	case k == 8:
		return q + " == " + field
	default:
		return field + " == " + q
	}
}
