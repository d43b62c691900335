package relay

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"reflect"
	"strings"
	"testing"
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
		{"a group's dead letters", Cursor{Positions: map[Partition]ID{{"a", 1}: MaxID}, DeadLetters: true, Group: "billing"}},
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

// testAckKey is the ack-id key of the codec tests: bytes 0x00..0x1f.
func testAckKey() []byte {
	k := make([]byte, AckKeyLen)
	for i := range k {
		k[i] = byte(i)
	}
	return k
}

// TestAckIDGolden pins the wire format of an ack id: the body bytes are written out by hand
// from the documented message, and the HMAC was computed independently (Python's hmac module:
// hmac.new(bytes(range(32)), body, sha256).digest()[:16]).
func TestAckIDGolden(t *testing.T) {
	const golden = "CAISBm9yZGVycxgCIIDQlf-8MSgHMgdiaWxsaW5nQhB2vDvzJDJfZvGnZf_yoTYj"
	body, _ := hex.DecodeString("080212066f726465727318022080d095ffbc312807320762696c6c696e67")
	mac, _ := hex.DecodeString("76bc3bf324325f66f1a765fff2a13623")
	a := AckID{Partition: Partition{"orders", 2}, ID: ID{1700000000000, 7}, Group: "billing"}
	got := EncodeAckID(a, testAckKey())
	if got != golden {
		t.Fatalf("EncodeAckID = %s, want %s", got, golden)
	}
	raw, _ := base64.RawURLEncoding.DecodeString(got)
	want := append(append(append([]byte{}, body...), 0x42, 0x10), mac...)
	if !bytes.Equal(raw, want) {
		t.Fatalf("bytes %x, want %x", raw, want)
	}
	back, ok := DecodeAckID(golden, testAckKey())
	if !ok || back != a {
		t.Fatalf("DecodeAckID(golden) = %+v %v", back, ok)
	}
}

// TestAckIDDeliveriesGolden: the delivery count is field 7, before the mac; the golden bytes
// and their HMAC were computed with openssl (HMAC-SHA256 under testAckKey, truncated to 16).
func TestAckIDDeliveriesGolden(t *testing.T) {
	const golden = "CAISBm9yZGVycxgCIIDQlf-8MSgHMgdiaWxsaW5nOANCEOz3CcE3a4OuenfbwFM67zI"
	a := AckID{Partition: Partition{"orders", 2}, ID: ID{1700000000000, 7}, Group: "billing", Deliveries: 3}
	if got := EncodeAckID(a, testAckKey()); got != golden {
		t.Fatalf("EncodeAckID = %s, want %s", got, golden)
	}
	back, ok := DecodeAckID(golden, testAckKey())
	if !ok || back != a {
		t.Fatalf("DecodeAckID(golden) = %+v %v, want %+v", back, ok, a)
	}
}

func TestAckIDRejects(t *testing.T) {
	key := testAckKey()
	otherKey := bytes.Repeat([]byte{7}, AckKeyLen)
	good := EncodeAckID(AckID{Partition: Partition{"orders", 2}, ID: ID{1700000000000, 7}, Group: "billing"}, key)
	raw, _ := base64.RawURLEncoding.DecodeString(good)
	flip := func(i int) string {
		b := append([]byte{}, raw...)
		b[i] ^= 1
		return base64.RawURLEncoding.EncodeToString(b)
	}
	// The version 1 ack id of relayd before ack ids were authenticated (no mac).
	v1 := "CAESBm9yZGVycxgCIIDQlf-8MSgHMgdiaWxsaW5nOLDqAQ"
	for _, tc := range []struct {
		name, id string
	}{
		{"empty", ""},
		{"not base64", "!!!"},
		{"version 1 without mac", v1},
		{"other key", EncodeAckID(AckID{Partition: Partition{"orders", 2}, ID: ID{1700000000000, 7}, Group: "billing"}, otherKey)},
		{"altered source", flip(5)},
		{"altered seq", flip(20)},
		{"altered group", flip(23)},
		{"altered mac", flip(len(raw) - 1)},
		{"truncated mac", base64.RawURLEncoding.EncodeToString(raw[:len(raw)-1])},
		{"mac removed", base64.RawURLEncoding.EncodeToString(raw[:len(raw)-18])},
		{"empty group", EncodeAckID(AckID{Partition: Partition{"orders", 0}}, key)},
		{"bad source", EncodeAckID(AckID{Partition: Partition{"BAD", 0}, Group: "g"}, key)},
		{"too long", strings.Repeat("A", 2000)},
		{"line break inside", good[:20] + "\n" + good[20:]},
		{"padded", good + "=="},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if a, ok := DecodeAckID(tc.id, key); ok {
				t.Errorf("%q accepted as %+v", tc.id, a)
			}
		})
	}
	if _, ok := DecodeAckID(good, nil); ok {
		t.Error("accepted without a key")
	}
}

func FuzzDecodeCursor(f *testing.F) {
	f.Add(EncodeCursor(Cursor{Positions: map[Partition]ID{{"stripe", 0}: {1, 2}}}))
	f.Add(EncodeCursor(Cursor{Positions: map[Partition]ID{{"stripe", 0}: {1, 2}}, DeadLetters: true, Group: "billing"}))
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

// FuzzDecodeAckID feeds arbitrary ack ids to the decoder: nothing but an ack id encoded
// under the key is accepted, and an accepted one re-encodes to itself.
func FuzzDecodeAckID(f *testing.F) {
	key := testAckKey()
	f.Add(EncodeAckID(AckID{Partition: Partition{"orders", 2}, ID: ID{1, 7}, Group: "g"}, key))
	f.Add("CAISBm9yZGVycxgCIIDQlf-8MSgHMgdiaWxsaW5nQhB2vDvzJDJfZvGnZf_yoTYj")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		a, ok := DecodeAckID(s, key)
		if !ok {
			return
		}
		if again := EncodeAckID(a, key); again != s {
			t.Fatalf("accepted %q, which is not the encoding of %+v (%q)", s, a, again)
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

// goldenOpaque is base64url without padding of hand-assembled protobuf bytes (hex).
func goldenOpaque(t *testing.T, hexBytes string) string {
	t.Helper()
	b, err := hex.DecodeString(hexBytes)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// TestCursorWireFormat pins the cursor's bytes. Each want is the protobuf of the Cursor
// message written out field by field (tag, length, value; 1700000000000 is the varint
// 80 d0 95 ff bc 31), so a change of field numbers, order, version or encoding fails here
// even when encode and decode still agree with each other.
func TestCursorWireFormat(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    Cursor
		hex  string
	}{
		{"empty: version only", Cursor{Positions: map[Partition]ID{}}, "0801"},
		{"one position", Cursor{Positions: map[Partition]ID{{"stripe", 0}: {1700000000000, 3}}},
			"0801" + "1213" + "0a06" + "737472697065" + "1000" + "1880d095ffbc31" + "2003"},
		{"positions sorted by source, then partition; dead letters", Cursor{Positions: map[Partition]ID{{"stripe", 3}: {4, 5}, {"github", 0}: {}}, DeadLetters: true},
			"0801" + "120e" + "0a06" + "676974687562" + "1000" + "1800" + "2000" +
				"120e" + "0a06" + "737472697065" + "1003" + "1804" + "2005" + "1801"},
		{"dead letters of group g1", Cursor{Positions: map[Partition]ID{{"stripe", 0}: {}}, DeadLetters: true, Group: "g1"},
			"0801" + "120e" + "0a06" + "737472697065" + "1000" + "1800" + "2000" + "1801" + "2202" + "6731"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := goldenOpaque(t, tc.hex)
			if got := EncodeCursor(tc.c); got != want {
				t.Errorf("EncodeCursor = %s, want %s", got, want)
			}
			got, err := DecodeCursor(want)
			if err != nil || !reflect.DeepEqual(got, tc.c) {
				t.Errorf("DecodeCursor(%s) = %+v, %v; want %+v", want, got, err, tc.c)
			}
		})
	}
	// The literal, for a reader comparing with a client's stored cursor.
	if got := EncodeCursor(Cursor{Positions: map[Partition]ID{{"stripe", 0}: {1700000000000, 3}}}); got != "CAESEwoGc3RyaXBlEAAYgNCV_7wxIAM" {
		t.Errorf("got %s", got)
	}
}

// BenchmarkAckID encodes an ack id (every group delivery) and decodes it (every
// acknowledgement, nack or deadline change).
func BenchmarkAckID(b *testing.B) {
	key := bytes.Repeat([]byte{7}, AckKeyLen)
	a := AckID{Partition: Partition{"stripe", 3}, ID: ID{1700000000000, 12}, Group: "billing-workers"}
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = EncodeAckID(a, key)
		}
	})
	s := EncodeAckID(a, key)
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := DecodeAckID(s, key); !ok {
				b.Fatal("not decoded")
			}
		}
	})
}

// TestLargestCursorDecodes: the cursor of an event of a source of MaxPartitions partitions
// with the longest name (one position per partition, the others at their largest) decodes.
func TestLargestCursorDecodes(t *testing.T) {
	name := strings.Repeat("s", 63)
	parts := make([]Partition, MaxPartitions)
	for i := range parts {
		parts[i] = Partition{name, i}
	}
	cursor := cursorAfter(parts, parts[7], ID{1700000000000, 3}, true, strings.Repeat("g", 128))
	c, err := DecodeCursor(cursor)
	if err != nil {
		t.Fatalf("a cursor of %d bytes: %v", len(cursor), err)
	}
	if len(c.Positions) != MaxPartitions || c.Positions[parts[7]] != (ID{1700000000000, 3}) {
		t.Fatalf("decoded %d positions, partition 7 at %v", len(c.Positions), c.Positions[parts[7]])
	}
}
