package daemon

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	eventrelayv1 "github.com/eventrelay/eventrelay/gen/eventrelay/v1"
	"github.com/eventrelay/eventrelay/internal/e2e"
)

// TestRedriveReachesOnlyTheGroup: dead letters belong to the group that failed them, and a
// redrive delivers them again to that group alone. Five events are acknowledged by group B,
// streamed to a tail subscriber, and dead-lettered by group A; redriving the five to A
// delivers each to A once more as a first attempt, while B and the tail get nothing new, the
// streams' XLEN does not change and A's dead letters are empty. Page tokens of one group's
// dead letters are refused for another group's and for the stream; a redrive or listing
// without a group is refused and changes nothing.
func TestRedriveReachesOnlyTheGroup(t *testing.T) {
	onBothStores(t, runRedriveReachesOnlyTheGroup)
}

func runRedriveReachesOnlyTheGroup(t *testing.T, url string) {
	cfg := testConfig(url)
	cfg.Sources[0].Partitions = 2
	m := startMain(t, cfg)
	c := client(t, m)
	rdb := redisClient(t, url)
	ctx := context.Background()
	xlen := func() int64 {
		t.Helper()
		n := int64(0)
		for _, key := range []string{"relay:{orders:0}:s", "relay:{orders:1}:s"} {
			l, err := rdb.XLen(ctx, key).Result()
			if err != nil {
				t.Fatal(err)
			}
			n += l
		}
		return n
	}
	deadLetters := func(group string) []string {
		t.Helper()
		resp, err := c.ListEvents(ctx, &eventrelayv1.ListEventsRequest{Source: "orders", DeadLetters: true, Group: group})
		if err != nil {
			t.Fatalf("ListEvents(dead letters of %s): %v", group, err)
		}
		var ids []string
		for _, d := range resp.GetDeliveries() {
			ids = append(ids, d.GetEvent().GetId())
		}
		slices.Sort(ids)
		return ids
	}

	tail := subscribe(t, c, &eventrelayv1.SubscribeRequest{Sources: []string{"orders"}, HeartbeatInterval: durationpb.New(100 * time.Millisecond)})
	defer tail.Close()
	reqA := groupReq("orders", "a", "a1", 200*time.Millisecond)
	reqA.MaxDeliveryAttempts = 1
	a := subscribe(t, c, reqA)
	defer a.Close()
	b := subscribe(t, c, groupReq("orders", "b", "b1", 0))
	defer b.Close()
	for _, s := range []*sub{tail, a, b} {
		s.Ready(t)
	}
	want := []string{"evt_rd_0", "evt_rd_1", "evt_rd_2", "evt_rd_3", "evt_rd_4"}
	for _, id := range want {
		mustPost(t, m.HTTPAddr, "orders", id)
	}
	collect := func(s *sub, n int, acks bool) []string {
		t.Helper()
		var ids []string
		for range n {
			d := s.Next(t)
			ids = append(ids, d.GetEvent().GetId())
			if acks {
				if u := ack(t, c, d.GetAckId()); len(u) != 0 {
					t.Fatalf("ack of %s: unknown %v", d.GetEvent().GetId(), u)
				}
			}
		}
		slices.Sort(ids)
		return ids
	}
	if got := collect(b, 5, true); !slices.Equal(got, want) {
		t.Fatalf("group b got %v, want %v", got, want)
	}
	if got := collect(tail, 5, false); !slices.Equal(got, want) {
		t.Fatalf("the tail got %v, want %v", got, want)
	}
	// A never acknowledges: with one attempt allowed, its claim path dead-letters the five.
	if got := collect(a, 5, false); !slices.Equal(got, want) {
		t.Fatalf("group a got %v, want %v", got, want)
	}
	e2e.Eventually(t, "group a's five dead letters", func() bool { return len(deadLetters("a")) == 5 })
	if got := deadLetters("a"); !slices.Equal(got, want) {
		t.Fatalf("dead letters of a: %v, want %v", got, want)
	}
	if got := deadLetters("b"); len(got) != 0 {
		t.Fatalf("dead letters of b: %v, want none (they belong to a)", got)
	}
	before := xlen()
	if before != 5 {
		t.Fatalf("XLEN %d before the redrive, want 5", before)
	}

	// Page tokens: one of a's dead letters is refused for b's and for the stream.
	page, err := c.ListEvents(ctx, &eventrelayv1.ListEventsRequest{Source: "orders", DeadLetters: true, Group: "a", PageSize: 2})
	if err != nil || page.GetNextPageToken() == "" || len(page.GetDeliveries()) != 2 {
		t.Fatalf("first page of a's dead letters: %v %v", page, err)
	}
	for _, tc := range []struct {
		name string
		req  *eventrelayv1.ListEventsRequest
		want string
	}{
		{"a's dead-letter token for b's dead letters", &eventrelayv1.ListEventsRequest{Source: "orders", DeadLetters: true, Group: "b", PageToken: page.GetNextPageToken()}, `group "a"`},
		{"a's dead-letter token for the stream", &eventrelayv1.ListEventsRequest{Source: "orders", PageToken: page.GetNextPageToken()}, "main-stream"},
		{"dead letters without a group", &eventrelayv1.ListEventsRequest{Source: "orders", DeadLetters: true}, "group"},
		{"a group without dead letters", &eventrelayv1.ListEventsRequest{Source: "orders", Group: "a"}, "group"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.ListEvents(ctx, tc.req)
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), tc.want) {
				t.Fatalf("ListEvents = %v, want INVALID_ARGUMENT naming %q", err, tc.want)
			}
		})
	}
	if next, err := c.ListEvents(ctx, &eventrelayv1.ListEventsRequest{Source: "orders", DeadLetters: true, Group: "a", PageToken: page.GetNextPageToken()}); err != nil || len(next.GetDeliveries()) != 3 {
		t.Fatalf("the next page of a's dead letters: %v %v", next, err)
	}

	// Bad redrives are refused and change nothing.
	if _, err := c.RedriveDeadLetters(ctx, &eventrelayv1.RedriveDeadLettersRequest{Source: "orders", Ids: want}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("redrive without a group: %v, want INVALID_ARGUMENT", err)
	}
	if code, body := postJSON(t, m, "/v1/sources/orders:redrive", map[string]any{"group": "bad name"}); code != http.StatusBadRequest {
		t.Fatalf("HTTP redrive of a bad group: %d %s, want 400", code, body)
	}
	if got := deadLetters("a"); len(got) != 5 {
		t.Fatalf("dead letters of a after refused redrives: %v", got)
	}
	if resp, err := c.RedriveDeadLetters(ctx, &eventrelayv1.RedriveDeadLettersRequest{Source: "orders", Group: "b"}); err != nil || resp.GetRedriven() != 0 {
		t.Fatalf("redrive of b (no dead letters): %v %v, want 0", resp, err)
	}

	resp, err := c.RedriveDeadLetters(ctx, &eventrelayv1.RedriveDeadLettersRequest{Source: "orders", Group: "a", Ids: want})
	if err != nil || resp.GetRedriven() != 5 {
		t.Fatalf("RedriveDeadLetters(a, 5 ids): %v %v, want 5", resp, err)
	}
	// A gets each again, as a first attempt, and acknowledges it.
	var again []string
	for range 5 {
		d := a.Next(t)
		if d.GetDeliveryAttempt() != 1 {
			t.Errorf("redriven %s delivered as attempt %d, want 1", d.GetEvent().GetId(), d.GetDeliveryAttempt())
		}
		again = append(again, d.GetEvent().GetId())
		if u := ack(t, c, d.GetAckId()); len(u) != 0 {
			t.Fatalf("ack of redriven %s: unknown %v", d.GetEvent().GetId(), u)
		}
	}
	slices.Sort(again)
	if !slices.Equal(again, want) {
		t.Fatalf("group a got %v after the redrive, want %v", again, want)
	}
	b.Quiet(t, time.Second, "group b after a's redrive")
	tail.Quiet(t, 100*time.Millisecond, "the tail after a's redrive")
	a.Quiet(t, 100*time.Millisecond, "group a after acknowledging the redriven events")
	if after := xlen(); after != before {
		t.Errorf("XLEN %d after the redrive, want %d (the stream does not grow)", after, before)
	}
	if got := deadLetters("a"); len(got) != 0 {
		t.Errorf("dead letters of a after the redrive: %v", got)
	}
	// A's dead letters read as a stream: none left; another group's cursor is refused.
	dl := subscribe(t, c, &eventrelayv1.SubscribeRequest{Sources: []string{"orders"}, DeadLetters: true, Group: "a",
		Start: eventrelayv1.StartPosition_START_POSITION_EARLIEST, HeartbeatInterval: durationpb.New(100 * time.Millisecond)})
	defer dl.Close()
	dl.Ready(t)
	dl.Quiet(t, 100*time.Millisecond, "a's dead letters after the redrive")
	bad := subscribe(t, c, &eventrelayv1.SubscribeRequest{Sources: []string{"orders"}, DeadLetters: true, Group: "b", AfterCursor: page.GetNextPageToken()})
	if err := bad.End(t); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("subscribing to b's dead letters after a's cursor: %v, want INVALID_ARGUMENT", err)
	}
}
