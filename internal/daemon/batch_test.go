package daemon

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	eventrelayv1 "github.com/eventrelay/eventrelay/gen/eventrelay/v1"
)

// recvBatched reads n deliveries from a subscription, as recvMessages does, with the
// subscription's heartbeats an hour apart: a delivery held back until one (a batch that
// waited for more) fails the test.
func recvBatched(t testing.TB, c eventrelayv1.EventServiceClient, req *eventrelayv1.SubscribeRequest, n int) (ds []*eventrelayv1.Delivery, sizes []int) {
	t.Helper()
	req.HeartbeatInterval = durationpb.New(time.Hour)
	return recvMessages(t, c, req, n)
}

func eventIDs(ds []*eventrelayv1.Delivery) []string {
	ids := make([]string, len(ds))
	for i, d := range ds {
		ids[i] = d.GetEvent().GetId()
	}
	return ids
}

// TestBatchedDeliveries: a subscription with max_batch gets the deliveries it would get
// without, with the same cursors, in messages of at most max_batch deliveries that were
// ready together; a delivery alone goes out at once as a plain one.
func TestBatchedDeliveries(t *testing.T) {
	onBothStores(t, func(t *testing.T, url string) {
		m := startMain(t, testConfig(url))
		c := client(t, m)
		var want []string
		for i := range 250 {
			id := fmt.Sprintf("b%03d", i)
			if _, err := c.Publish(context.Background(), &eventrelayv1.PublishRequest{Source: "orders", Id: id, Type: "order.created", Data: []byte(`{}`)}); err != nil {
				t.Fatal(err)
			}
			want = append(want, id)
		}
		earliest := func(maxBatch int32) *eventrelayv1.SubscribeRequest {
			return &eventrelayv1.SubscribeRequest{Sources: []string{"orders"}, Start: eventrelayv1.StartPosition_START_POSITION_EARLIEST, MaxBatch: maxBatch}
		}

		// History is read in one go (subscribe.replay_batch is 1000), so it comes in full batches.
		batched, sizes := recvBatched(t, c, earliest(100), 250)
		if !slices.Equal(sizes, []int{100, 100, 50}) {
			t.Fatalf("batch sizes %v, want [100 100 50]", sizes)
		}
		if got := eventIDs(batched); !slices.Equal(got, want) {
			t.Fatalf("batched replay delivered %v", got)
		}
		plain, sizes := recvBatched(t, c, earliest(0), 250)
		if slices.ContainsFunc(sizes, func(n int) bool { return n != 1 }) {
			t.Fatalf("without max_batch: message sizes %v", sizes)
		}
		for i := range plain {
			if batched[i].GetCursor() == "" || batched[i].GetCursor() != plain[i].GetCursor() {
				t.Fatalf("delivery %d: cursor %q batched, %q plain", i, batched[i].GetCursor(), plain[i].GetCursor())
			}
		}

		// The HTTP form: the first NDJSON line is a batch of the first 100.
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		hreq, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+m.HTTPAddr+"/v1/events:subscribe?sources=orders&start=START_POSITION_EARLIEST&max_batch=100", nil)
		resp, err := http.DefaultClient.Do(hreq)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		var line struct {
			Result struct {
				Batch struct {
					Deliveries []struct {
						Event  struct{ ID string }
						Cursor string
					}
				}
			}
		}
		if !sc.Scan() || json.Unmarshal(sc.Bytes(), &line) != nil {
			t.Fatalf("HTTP: %d, first line %q", resp.StatusCode, sc.Bytes())
		}
		resp.Body.Close()
		var httpIDs []string
		for i, d := range line.Result.Batch.Deliveries {
			if d.Cursor != batched[i].GetCursor() {
				t.Fatalf("HTTP: delivery %d has cursor %q, gRPC %q", i, d.Cursor, batched[i].GetCursor())
			}
			httpIDs = append(httpIDs, d.Event.ID)
		}
		if !slices.Equal(httpIDs, want[:100]) {
			t.Fatalf("HTTP: the first line's batch holds %v", httpIDs)
		}

		// Resuming after a delivery in the middle of a batch gives exactly the rest.
		rest, _ := recvBatched(t, c, &eventrelayv1.SubscribeRequest{Sources: []string{"orders"}, AfterCursor: batched[149].GetCursor(), MaxBatch: 1000}, 100)
		if got := eventIDs(rest); !slices.Equal(got, want[150:]) {
			t.Fatalf("after the 150th: %v", got)
		}

		// A tail: an event published alone is sent at once, as a plain delivery.
		published := make(chan error, 1)
		go func() {
			time.Sleep(100 * time.Millisecond) // most likely after the tail below is reading
			_, err := c.Publish(context.Background(), &eventrelayv1.PublishRequest{Source: "orders", Id: "alone", Type: "order.created", Data: []byte(`{}`)})
			published <- err
		}()
		alone, sizes := recvBatched(t, c, &eventrelayv1.SubscribeRequest{Sources: []string{"orders"}, AfterCursor: batched[249].GetCursor(), MaxBatch: 100}, 1)
		if err := <-published; err != nil {
			t.Fatal(err)
		}
		if alone[0].GetEvent().GetId() != "alone" || !slices.Equal(sizes, []int{1}) {
			t.Fatalf("tail got %q in messages of %v", alone[0].GetEvent().GetId(), sizes)
		}
		want = append(want, "alone")

		// A group member (deliveries come through the group's reads, not history reads):
		// batched deliveries with ack ids; acknowledging them all leaves nothing to redeliver.
		req := groupReq("orders", "batched", "m1", 30*time.Second)
		req.Start, req.MaxBatch = eventrelayv1.StartPosition_START_POSITION_EARLIEST, 64
		ds, sizes := recvBatched(t, c, req, len(want))
		if got := eventIDs(ds); !slices.Equal(got, want) {
			t.Fatalf("group delivered %v", got)
		}
		// One read of the group's new entries hands all 251 to the send loop together.
		if !slices.Equal(sizes, []int{64, 64, 64, 59}) {
			t.Fatalf("group message sizes %v, want [64 64 64 59]", sizes)
		}
		var ackIDs []string
		for _, d := range ds {
			if d.GetAckId() == "" || d.GetDeliveryAttempt() != 1 {
				t.Fatalf("group delivery %s: ack id %q, attempt %d", d.GetEvent().GetId(), d.GetAckId(), d.GetDeliveryAttempt())
			}
			ackIDs = append(ackIDs, d.GetAckId())
		}
		if unknown := ack(t, c, ackIDs...); len(unknown) != 0 {
			t.Fatalf("%d ack ids did not acknowledge", len(unknown))
		}
		again := subscribe(t, c, &eventrelayv1.SubscribeRequest{Sources: []string{"orders"}, Group: "batched", Consumer: "m2", MaxBatch: 64, HeartbeatInterval: durationpb.New(100 * time.Millisecond)})
		again.Ready(t)
		again.Quiet(t, time.Second, "every delivery was acknowledged")
	})
}

// TestBatchedDeliveriesBadMaxBatch: max_batch outside 0..1000 is INVALID_ARGUMENT naming it.
func TestBatchedDeliveriesBadMaxBatch(t *testing.T) {
	m := startMain(t, testConfig(""))
	c := client(t, m)
	for _, n := range []int32{-1, 1001} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		stream, err := c.Subscribe(ctx, &eventrelayv1.SubscribeRequest{Sources: []string{"orders"}, MaxBatch: n})
		if err == nil {
			_, err = stream.Recv()
		}
		cancel()
		if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "max_batch") {
			t.Fatalf("max_batch %d: %v, want INVALID_ARGUMENT naming max_batch", n, err)
		}
	}
}
