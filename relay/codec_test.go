package relay

import (
	"reflect"
	"testing"
	"time"
)

func TestCursorRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    Cursor
	}{
		{"empty", Cursor{Positions: map[Partition]ID{}}},
		{"one", Cursor{Positions: map[Partition]ID{{"stripe", 0}: {1700000000000, 3}}}},
		{"vector", Cursor{Positions: map[Partition]ID{{"stripe", 0}: {1, 2}, {"stripe", 3}: {4, 5}, {"github", 0}: {}}}},
		{"dead letters", Cursor{Positions: map[Partition]ID{{"a", 1}: MaxID}, DeadLetters: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := EncodeCursor(tc.c)
			got, err := DecodeCursor(s)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.c) {
				t.Fatalf("got %+v, want %+v", got, tc.c)
			}
			if s2 := EncodeCursor(got); s2 != s {
				t.Fatalf("encoding not canonical: %s vs %s", s, s2)
			}
		})
	}
}

func TestDecodeCursorRejects(t *testing.T) {
	for _, s := range []string{"!!!", "AAAA", "CAI", EncodeCursor(Cursor{})[:1], "CAESBgoCQUEQAA"} {
		if _, err := DecodeCursor(s); ErrorCode(err) != CodeInvalid {
			t.Errorf("%q: %v", s, err)
		}
	}
}

func TestAckIDRoundTrip(t *testing.T) {
	a := AckID{Partition: Partition{"orders", 2}, ID: ID{1700000000000, 7}, Group: "billing", AckDeadline: 30 * time.Second}
	got, ok := DecodeAckID(EncodeAckID(a))
	if !ok || got != a {
		t.Fatalf("got %+v %v", got, ok)
	}
	for _, bad := range []string{"", "x", EncodeAckID(AckID{Partition: Partition{"orders", 0}, Group: ""}), EncodeAckID(AckID{Partition: Partition{"BAD", 0}, Group: "g"})} {
		if _, ok := DecodeAckID(bad); ok {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzDecodeCursor(f *testing.F) {
	f.Add(EncodeCursor(Cursor{Positions: map[Partition]ID{{"stripe", 0}: {1, 2}}}))
	f.Add("")
	f.Add("CAE")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := DecodeCursor(s)
		if err != nil {
			return
		}
		again, err := DecodeCursor(EncodeCursor(c))
		if err != nil || !reflect.DeepEqual(again, c) {
			t.Fatalf("re-encoding a decoded cursor changed it: %+v %+v %v", c, again, err)
		}
	})
}

func FuzzDecodeAckID(f *testing.F) {
	f.Add(EncodeAckID(AckID{Partition: Partition{"orders", 2}, ID: ID{1, 7}, Group: "g", AckDeadline: time.Second}))
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		a, ok := DecodeAckID(s)
		if !ok {
			return
		}
		if again, ok := DecodeAckID(EncodeAckID(a)); !ok || again != a {
			t.Fatalf("round trip changed %+v to %+v", a, again)
		}
	})
}

func BenchmarkEncodeCursor(b *testing.B) {
	c := Cursor{Positions: map[Partition]ID{{"stripe", 0}: {1700000000000, 1}, {"stripe", 1}: {1700000000001, 2}, {"github", 0}: {1700000000002, 0}}}
	b.ReportAllocs()
	for b.Loop() {
		_ = EncodeCursor(c)
	}
}

func BenchmarkDecodeCursor(b *testing.B) {
	s := EncodeCursor(Cursor{Positions: map[Partition]ID{{"stripe", 0}: {1700000000000, 1}, {"stripe", 1}: {1700000000001, 2}}})
	b.ReportAllocs()
	for b.Loop() {
		_, _ = DecodeCursor(s)
	}
}
