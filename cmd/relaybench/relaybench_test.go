package main

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	eventrelayv1 "github.com/eventrelay/eventrelay/gen/eventrelay/v1"
)

// TestConsumeSplitsMessages feeds gRPC-framed SubscribeResponses (deliveries, a heartbeat, a
// batch) to the minimal client in every possible split and checks the counts and the event
// ids it hands out.
func TestConsumeSplitsMessages(t *testing.T) {
	var stream []byte
	for _, id := range []string{"a", "bb", "ccc"} {
		b, _ := proto.Marshal(&eventrelayv1.SubscribeResponse{Kind: &eventrelayv1.SubscribeResponse_Delivery{
			Delivery: &eventrelayv1.Delivery{Event: &eventrelayv1.Event{Id: id}, Cursor: "c"}}})
		stream = append(stream, grpcFrame(b)...)
	}
	hb, _ := proto.Marshal(&eventrelayv1.SubscribeResponse{Kind: &eventrelayv1.SubscribeResponse_Heartbeat{Heartbeat: &eventrelayv1.Heartbeat{Cursor: "c"}}})
	stream = append(stream, grpcFrame(hb)...)
	batch, _ := proto.Marshal(&eventrelayv1.SubscribeResponse{Kind: &eventrelayv1.SubscribeResponse_Batch{Batch: &eventrelayv1.DeliveryBatch{
		Deliveries: []*eventrelayv1.Delivery{{Event: &eventrelayv1.Event{Id: "d"}, Cursor: "c"}, {Event: &eventrelayv1.Event{Id: "ee"}, AckId: "a"}}}}})
	stream = append(stream, grpcFrame(batch)...)
	for split := 1; split <= len(stream); split++ {
		var ids []string
		s := &h2sub{onMsg: func(m []byte) {
			id, ok := deliveryEventID(m)
			if !ok {
				t.Fatalf("split %d: no event id in %x", split, m)
			}
			ids = append(ids, id)
		}}
		for b := stream; len(b) > 0; {
			n := min(split, len(b))
			s.consume(b[:n])
			b = b[n:]
		}
		if got := strings.Join(ids, ","); got != "a,bb,ccc,d,ee" || s.deliveries.Load() != 5 || s.heartbeats.Load() != 1 {
			t.Fatalf("split %d: ids %q, %d deliveries, %d heartbeats", split, got, s.deliveries.Load(), s.heartbeats.Load())
		}
	}
}

func TestReadResponse(t *testing.T) {
	for name, tc := range map[string]struct {
		raw, body string
		status    int
		keep      bool
	}{
		"length":  {"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello", "hello", 200, true},
		"chunked": {"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nTrailer: v\r\n\r\n", "abcde", 503, true},
		"close":   {"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\nConnection: close\r\n\r\n", "", 401, false},
	} {
		h := &httpConn{br: bufio.NewReader(strings.NewReader(tc.raw))}
		status, body, keep, err := h.readResponse()
		if err != nil || status != tc.status || string(body) != tc.body || keep != tc.keep {
			t.Errorf("%s: %d %q keep=%v %v", name, status, body, keep, err)
		}
	}
}

func TestReplaceSection(t *testing.T) {
	path := filepath.Join(t.TempDir(), "B.md")
	if err := os.WriteFile(path, []byte("# T\n\nprose\n<!-- a -->\nold\n<!-- b -->\nafter\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := replaceSection(path, "<!-- a -->", "<!-- b -->", "<!-- a -->\nnew\n<!-- b -->\n"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "# T\n\nprose\n<!-- a -->\nnew\n<!-- b -->\nafter\n" {
		t.Fatalf("replaced: %q", b)
	}
	if err := replaceSection(path, "<!-- c -->", "<!-- d -->", "<!-- c -->\nx\n<!-- d -->\n"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); !strings.HasSuffix(string(b), "after\n\n<!-- c -->\nx\n<!-- d -->\n") {
		t.Fatalf("appended: %q", b)
	}
}

func TestBytesCodecPassesMessagesThrough(t *testing.T) {
	in := []byte{0x0a, 0x03, 'a', 'b', 'c'}
	bs, err := bytesCodec{}.Marshal(&in)
	if err != nil || string(bs.Materialize()) != string(in) {
		t.Fatalf("Marshal = %q, %v", bs.Materialize(), err)
	}
	var out []byte
	if err := (bytesCodec{}).Unmarshal(bs, &out); err != nil || string(out) != "\x0a\x03abc" {
		t.Fatalf("Unmarshal = %q, %v", out, err)
	}
}
