package relay

import (
	"regexp"
	"testing"
	"time"

	eventrelayv1 "github.com/eventrelay/eventrelay/gen/eventrelay/v1"
	"google.golang.org/protobuf/proto"
)

func TestGlob(t *testing.T) {
	for _, tc := range []struct {
		pattern, s string
		want       bool
	}{
		{"invoice.*", "invoice.paid", true},
		{"invoice.*", "invoice.", true},
		{"invoice.*", "invoices.paid", false},
		{"*", "", true},
		{"*", "a.b/c", true},
		{"*.succeeded", "payment_intent.succeeded", true},
		{"*.succeeded", "payment_intent.failed", false},
		{"push", "push", true},
		{"push", "pushed", false},
		{"p?sh", "push", true},
		{"p?sh", "psh", false},
		{"a*b*c", "axxbyyc", true},
		{"a*b*c", "axxbyy", false},
		{"", "", true},
		{"", "x", false},
	} {
		if got := Glob(tc.pattern, tc.s); got != tc.want {
			t.Errorf("Glob(%q, %q) = %v, want %v", tc.pattern, tc.s, got, tc.want)
		}
	}
}

func TestJSONLookup(t *testing.T) {
	body := []byte(`{"id":"evt_1","type":"x","created":1700000000,"data":{"object":{"customer":"cus_9","n":null,"obj":{"a":1}}},"s":"é\"q"}`)
	for _, tc := range []struct {
		path, want string
		ok         bool
	}{
		{"id", "evt_1", true},
		{"created", "1700000000", true},
		{"data.object.customer", "cus_9", true},
		{"data.object.n", "", false},
		{"data.object.obj", `{"a":1}`, true},
		{"data.missing", "", false},
		{"id.deeper", "", false},
		{"s", "é\"q", true},
	} {
		got, ok := JSONLookup(body, tc.path)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s: got %q %v", tc.path, got, ok)
		}
	}
	if _, ok := JSONLookup([]byte("not json"), "id"); ok {
		t.Error("non-JSON matched")
	}
}

func TestJSONTime(t *testing.T) {
	for _, tc := range []struct {
		v    string
		want time.Time
		ok   bool
	}{
		{"1700000000", time.Unix(1700000000, 0).UTC(), true},
		{"1700000000123", time.UnixMilli(1700000000123).UTC(), true},
		{"2024-01-02T03:04:05Z", time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC), true},
		{"yesterday", time.Time{}, false},
		{"-5", time.Time{}, false},
	} {
		got, ok := JSONTime(tc.v)
		if ok != tc.ok || !got.Equal(tc.want) {
			t.Errorf("%s: got %v %v", tc.v, got, ok)
		}
	}
}

func TestUUIDv7(t *testing.T) {
	re := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	a := NewUUIDv7(time.UnixMilli(1700000000000))
	b := NewUUIDv7(time.UnixMilli(1700000000001))
	if !re.MatchString(a) || !re.MatchString(b) || !(a < b) {
		t.Fatalf("%s %s", a, b)
	}
}

func TestValidateEventID(t *testing.T) {
	for _, tc := range []struct {
		id            string
		lookup, store bool // ValidateEventID, validateNewEventID
	}{
		{"evt_1", true, true},
		{"msg_p5jXN8AQM9LWM0D4loKWxJek", true, true},
		{"évt-ß", true, true},
		{"", false, false},
		{"a b", false, false},
		{"a\nb", false, false},
		{string(make([]byte, 300)), false, false},
		// Not UTF-8, and what undecodable bytes and lone surrogate escapes decode to: such ids
		// would collapse into one, so none is stored; ids stored before stay readable.
		{"dup-\xfe\xfe", true, false},
		{"dup-\uFFFD", true, false},
	} {
		if err := ValidateEventID(tc.id); (err == nil) != tc.lookup {
			t.Errorf("ValidateEventID(%q): %v", tc.id, err)
		}
		if err := validateNewEventID(tc.id); (err == nil) != tc.store {
			t.Errorf("validateNewEventID(%q): %v", tc.id, err)
		}
	}
}

func TestPartitionOf(t *testing.T) {
	seen := map[int]bool{}
	for _, k := range []string{"cus_1", "cus_2", "cus_3", "cus_4", "cus_5", "cus_6", "cus_7", "cus_8"} {
		p := PartitionOf(k, 4)
		if p < 0 || p >= 4 || PartitionOf(k, 4) != p {
			t.Fatalf("%s → %d", k, p)
		}
		seen[p] = true
	}
	if len(seen) < 2 {
		t.Fatal("keys do not spread")
	}
	if PartitionOf("x", 1) != 0 {
		t.Fatal("one partition")
	}
}

func TestEventType(t *testing.T) {
	b, _ := proto.Marshal(&eventrelayv1.Event{Id: "1", Source: "s", Type: "invoice.paid", Data: []byte("xx")})
	if got := EventType(b); got != "invoice.paid" {
		t.Fatalf("got %q", got)
	}
	if EventType([]byte{0xff}) != "" {
		t.Fatal("garbage")
	}
}

func TestIDOrder(t *testing.T) {
	a, _ := ParseID("5-1")
	if a.Next() != (ID{5, 2}) || a.Prev() != (ID{5, 0}) || (ID{5, 0}).Prev() != (ID{4, ^uint64(0)}) || (ID{}).Prev() != (ID{}) {
		t.Fatal("next/prev")
	}
	if _, err := ParseID("x-1"); err == nil {
		t.Fatal("bad id parsed")
	}
	if id, _ := ParseID("7"); id != (ID{7, 0}) || id.String() != "7-0" {
		t.Fatal(id)
	}
}

func TestPublishRejectsInvalidUTF8(t *testing.T) {
	ev := &eventrelayv1.Event{Id: "x", Type: "bad\xff"}
	if err := checkUTF8(ev); ErrorCode(err) != CodeInvalid {
		t.Fatalf("got %v", err)
	}
	ev = &eventrelayv1.Event{Id: "x", Headers: map[string]string{"k": "\xc3"}}
	if err := checkUTF8(ev); ErrorCode(err) != CodeInvalid {
		t.Fatalf("got %v", err)
	}
	if err := checkUTF8(&eventrelayv1.Event{Id: "évt", Type: "ok"}); err != nil {
		t.Fatal(err)
	}
}

// TestPartitionOfGolden pins the partition hash: FNV-1a 32 of the key, modulo the partition
// count. The hashes are the published FNV-1a test vectors (FNV reference test suite:
// "a" → 0xe40c292c, "foobar" → 0xbf9cf968) and the partitions are those values modulo n,
// worked out by hand. A different hash (FNV-1, a seed, another modulus) moves keys between
// partitions after an upgrade, which breaks dedupe and per-key order.
func TestPartitionOfGolden(t *testing.T) {
	for _, tc := range []struct {
		key  string
		n    int
		want int
	}{
		{"a", 2, 0xe40c292c % 2}, {"a", 3, 1}, {"a", 7, 5}, {"a", 16, 12}, {"a", 100, 20}, {"a", 1000, 220},
		{"foobar", 2, 0}, {"foobar", 3, 1}, {"foobar", 7, 0}, {"foobar", 16, 8}, {"foobar", 100, 20}, {"foobar", 1000, 720},
		{"", 16, 0x811c9dc5 % 16}, // the offset basis: 5
		{"a", 1, 0}, {"a", 0, 0},
	} {
		if got := PartitionOf(tc.key, tc.n); got != tc.want {
			t.Errorf("PartitionOf(%q, %d) = %d, want %d", tc.key, tc.n, got, tc.want)
		}
	}
}
