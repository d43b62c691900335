package daemon

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	eventrelayv1 "github.com/eventrelay/eventrelay/gen/eventrelay/v1"
	"github.com/eventrelay/eventrelay/internal/e2e"
)

// TestGroupSettingsBelongToGroup: a group's type filter and ack deadline are recorded when it
// is created; a member asking for others is refused naming the setting and the group's
// value, a member omitting them takes the group's, so members never acknowledge each other's
// events as filtered out nor reclaim each other's work. A source has at most max_groups groups.
func TestGroupSettingsBelongToGroup(t *testing.T) {
	onBothStores(t, runGroupSettings)
}

func runGroupSettings(t *testing.T, url string) {
	cfg := testConfig(url)
	cfg.Sources[0].MaxGroups = 3
	m := startMain(t, cfg)
	c := client(t, m)
	rdb := redisClient(t, url)
	refused := func(req *eventrelayv1.SubscribeRequest, want ...string) {
		t.Helper()
		s := subscribe(t, c, req)
		err := s.End(t)
		if status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("Subscribe %v: %v, want FAILED_PRECONDITION", req, err)
		}
		for _, w := range want {
			if !strings.Contains(status.Convert(err).Message(), w) {
				t.Errorf("%q does not name %q", status.Convert(err).Message(), w)
			}
		}
	}

	// Filters: A reads order.*; B asking for invoice.* is refused; C without types takes order.*.
	reqA := groupReq("orders", "mix", "a", 0)
	reqA.Types = []string{"order.*"}
	a := subscribe(t, c, reqA)
	defer a.Close()
	a.Ready(t)
	reqB := groupReq("orders", "mix", "b", 0)
	reqB.Types = []string{"invoice.*"}
	refused(reqB, "types", "[order.*]", "[invoice.*]")
	cm := subscribe(t, c, groupReq("orders", "mix", "c", 0))
	defer cm.Close()
	cm.Ready(t)
	post := func(id, typ string) {
		t.Helper()
		if r := postHook(context.Background(), http.DefaultClient, m.HTTPAddr, "orders", hookBody(id, typ)); r.status != http.StatusOK {
			t.Fatalf("POST %s: %d %v", id, r.status, r.err)
		}
	}
	for i := range 10 {
		post(fmt.Sprintf("evt_inv_%d", i), "invoice.paid")
		post(fmt.Sprintf("evt_ord_%d", i), "order.created")
	}
	// Between them, A and C get every order event once and no invoice.
	got := map[string]int{}
	for len(got) < 10 {
		var d *eventrelayv1.Delivery
		select {
		case d = <-a.Deliveries:
		case d = <-cm.Deliveries:
		case <-time.After(waitFor):
			t.Fatalf("order events delivered to the group: %v", got)
		}
		if !strings.HasPrefix(d.GetEvent().GetType(), "order.") {
			t.Fatalf("member got %s of type %s: not the group's filter", d.GetEvent().GetId(), d.GetEvent().GetType())
		}
		got[d.GetEvent().GetId()]++
		ack(t, c, d.GetAckId())
	}
	for id, n := range got {
		if n != 1 {
			t.Errorf("%s delivered %d times", id, n)
		}
	}
	a.Close()
	cm.Close()

	// Deadlines: W holds 5 deliveries under 60s; a member asking for 1s is refused; one
	// omitting it takes 60s and reclaims none of them within 3s.
	w := subscribe(t, c, groupReq("orders", "work", "w", time.Minute))
	defer w.Close()
	w.Ready(t)
	for i := range 5 {
		post(fmt.Sprintf("evt_work_%d", i), "order.created")
	}
	for range 25 { // the 20 earlier events, then the 5 new ones (the group reads from now on)
		if d := w.Next(t); strings.HasPrefix(d.GetEvent().GetId(), "evt_work_") {
			if d.GetEvent().GetId() == "evt_work_4" {
				break
			}
		}
	}
	refused(groupReq("orders", "work", "x", time.Second), "ack_deadline", "1m0s", "1s")
	y := subscribe(t, c, groupReq("orders", "work", "y", 0))
	defer y.Close()
	y.Ready(t)
	y.Quiet(t, 3*time.Second, "a member that took the group's 60s deadline reclaimed W's work")

	// max_groups: mix and work exist; a third group is created, a fourth refused.
	third := subscribe(t, c, groupReq("orders", "third", "t", 0))
	defer third.Close()
	third.Ready(t)
	refused(groupReq("orders", "fourth", "f", 0), "max_groups")
	groups, err := rdb.XInfoGroups(context.Background(), "relay:{orders:0}:s").Result()
	if err != nil || len(groups) != 3 {
		t.Fatalf("groups on the stream: %v (%v), want mix, work and third", groups, err)
	}
}

// TestGroupFlowControlAcrossPartitions: a group member with max_outstanding 10 reading a
// source of 4 partitions never holds more than 10 unacknowledged deliveries (the partitions
// share one budget); acknowledging 5 lets exactly 5 more through.
func TestGroupFlowControlAcrossPartitions(t *testing.T) {
	onBothStores(t, runGroupFlowControl)
}

func runGroupFlowControl(t *testing.T, url string) {
	cfg := testConfig(url)
	cfg.Sources[0].Partitions = 4
	m := startMain(t, cfg)
	c := client(t, m)
	req := groupReq("orders", "fc", "only", time.Minute)
	req.Start = eventrelayv1.StartPosition_START_POSITION_EARLIEST
	req.MaxOutstanding = 10
	for i := range 100 { // spread over the 4 partitions by their ids
		mustPost(t, m.HTTPAddr, "orders", fmt.Sprintf("evt_fc_%03d", i))
	}
	s := subscribe(t, c, req)
	defer s.Close()
	var held []*eventrelayv1.Delivery
	for range 10 {
		held = append(held, s.Next(t))
	}
	s.Quiet(t, 2*time.Second, "an 11th delivery while 10 are unacknowledged")
	ack(t, c, held[0].GetAckId(), held[1].GetAckId(), held[2].GetAckId(), held[3].GetAckId(), held[4].GetAckId())
	for range 5 {
		s.Next(t)
	}
	s.Quiet(t, 2*time.Second, "a delivery beyond the 5 the acknowledgements freed")
	s.Close()

	// The consumer comes back holding 15 pending deliveries spread over the partitions: the
	// re-read of its pending entries is bounded by the same budget.
	again := subscribe(t, c, req)
	defer again.Close()
	for range 10 {
		again.Next(t)
	}
	again.Quiet(t, 2*time.Second, "more than max_outstanding pending deliveries re-read after a reconnect")
}

// TestAnonymousConsumersRemoved: a group subscription without a consumer name leaves no
// consumer behind in Redis when it ends with nothing pending (one with pending deliveries
// stays until they are settled or reclaimed).
func TestAnonymousConsumersRemoved(t *testing.T) {
	onBothStores(t, runAnonymousConsumers)
}

func runAnonymousConsumers(t *testing.T, url string) {
	cfg := testConfig(url)
	m := startMain(t, cfg)
	c := client(t, m)
	rdb := redisClient(t, url)
	consumers := func() int {
		cs, err := rdb.XInfoConsumers(context.Background(), "relay:{orders:0}:s", "anon").Result()
		if err != nil {
			t.Fatal(err)
		}
		return len(cs)
	}
	for i := range 5 {
		s := subscribe(t, c, groupReq("orders", "anon", "", time.Minute))
		s.Ready(t)
		mustPost(t, m.HTTPAddr, "orders", fmt.Sprintf("evt_anon_%d", i))
		ack(t, c, s.Next(t).GetAckId())
		s.Close()
		// The next event is posted once the stream has ended on the server too (an event
		// read by a stream that is ending stays pending for its consumer).
		e2e.Eventually(t, "the stream to end", func() bool { return subscribersGauge(t, m) == 0 })
	}
	e2e.Eventually(t, "the five acknowledged anonymous consumers to be removed", func() bool { return consumers() == 0 })
	s := subscribe(t, c, groupReq("orders", "anon", "", time.Minute))
	s.Ready(t)
	mustPost(t, m.HTTPAddr, "orders", "evt_anon_held")
	s.Next(t) // not acknowledged
	s.Close()
	if n := consumers(); n != 1 {
		t.Fatalf("%d consumers, want the one holding a pending delivery", n)
	}
}

// TestListPageTokenKind: a page token of a dead-letter listing is refused for a stream
// listing and the other way round, and one of another source too.
func TestListPageTokenKind(t *testing.T) {
	cfg := testConfig(embeddedURL(t))
	addSource(cfg, "other")
	m := startMain(t, cfg)
	c := client(t, m)
	for i := range 3 {
		mustPost(t, m.HTTPAddr, "orders", fmt.Sprintf("evt_page_%d", i))
	}
	first, err := c.ListEvents(context.Background(), &eventrelayv1.ListEventsRequest{Source: "orders", PageSize: 1})
	if err != nil || first.GetNextPageToken() == "" {
		t.Fatalf("ListEvents: %v %v", first, err)
	}
	for _, tc := range []struct {
		name string
		req  *eventrelayv1.ListEventsRequest
		want string
	}{
		{"stream token for dead letters", &eventrelayv1.ListEventsRequest{Source: "orders", DeadLetters: true, Group: "g", PageToken: first.GetNextPageToken()}, "main-stream"},
		{"token of another source", &eventrelayv1.ListEventsRequest{Source: "other", PageToken: first.GetNextPageToken()}, "source orders"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.ListEvents(context.Background(), tc.req)
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ListEvents = %v, want INVALID_ARGUMENT naming %q", err, tc.want)
			}
		})
	}
	if next, err := c.ListEvents(context.Background(), &eventrelayv1.ListEventsRequest{Source: "orders", PageSize: 1, PageToken: first.GetNextPageToken()}); err != nil || len(next.GetDeliveries()) != 1 {
		t.Fatalf("the next page: %v %v", next, err)
	}
}
