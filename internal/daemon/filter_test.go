package daemon

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	eventrelayv1 "github.com/eventrelay/eventrelay/gen/eventrelay/v1"
)

// postInvoice posts a signed JSON event of type typ whose payload carries amount (omitted
// when negative).
func postInvoice(t testing.TB, addr, id, typ string, amount int) {
	t.Helper()
	body := fmt.Sprintf(`{"id":%q,"type":%q,"data":{"object":{"amount_due":%d,"currency":"eur"}}}`, id, typ, amount)
	if amount < 0 {
		body = fmt.Sprintf(`{"id":%q,"type":%q,"data":{"object":{"currency":"eur"}}}`, id, typ)
	}
	r := postHook(context.Background(), http.DefaultClient, addr, "orders", []byte(body))
	if r.err != nil || r.status != http.StatusOK {
		t.Fatalf("POST %s: %d %v", id, r.status, r.err)
	}
}

// filterErrors reads eventrelay_filter_errors_total from the admin listener.
func filterErrors(t testing.TB, m *Main) float64 {
	t.Helper()
	resp, err := http.Get("http://" + m.AdminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	mm := regexp.MustCompile(`(?m)^eventrelay_filter_errors_total (\S+)$`).FindSubmatch(b)
	if mm == nil {
		t.Fatalf("no eventrelay_filter_errors_total in /metrics")
	}
	v, _ := strconv.ParseFloat(string(mm[1]), 64)
	return v
}

const invoiceFilter = `event.type.startsWith("invoice.") && data.data.object.amount_due > 100000`

// TestFilterTail: a tail subscription with a filter receives only the matching events, in
// order; an event the filter cannot evaluate (no amount_due) is skipped, counted in
// eventrelay_filter_errors_total, and does not end the stream; the heartbeats of a filter
// that matches nothing carry a cursor past everything examined, so a resume from it
// rescans nothing.
func TestFilterTail(t *testing.T) {
	bothStores(t, func(t *testing.T, url string) {
		m := startMain(t, testConfig(url))
		c := client(t, m)
		req := &eventrelayv1.SubscribeRequest{Sources: []string{"orders"}, Filter: invoiceFilter,
			HeartbeatInterval: durationpb.New(100 * time.Millisecond)}
		s := subscribe(t, c, req)
		s.Ready(t)
		errsBefore := filterErrors(t, m)
		postInvoice(t, m.HTTPAddr, "in_small", "invoice.paid", 500)
		postInvoice(t, m.HTTPAddr, "ch_big", "charge.succeeded", 900000)
		postInvoice(t, m.HTTPAddr, "in_noamount", "invoice.created", -1)
		postInvoice(t, m.HTTPAddr, "in_big", "invoice.payment_failed", 125000)
		postInvoice(t, m.HTTPAddr, "in_big2", "invoice.paid", 100001)
		for _, want := range []string{"in_big", "in_big2"} {
			if d := s.Next(t); d.Event.GetId() != want {
				t.Fatalf("delivered %s, want %s", d.Event.GetId(), want)
			}
		}
		s.Quiet(t, 300*time.Millisecond, "an event the filter does not match")
		if got := filterErrors(t, m) - errsBefore; got != 1 {
			t.Errorf("eventrelay_filter_errors_total grew by %v, want 1 (in_noamount)", got)
		}

		// A filter that matches nothing: its heartbeats advance past the events examined.
		none := &eventrelayv1.SubscribeRequest{Sources: []string{"orders"}, Filter: `event.type == "nothing.ever"`,
			Start: eventrelayv1.StartPosition_START_POSITION_EARLIEST, HeartbeatInterval: durationpb.New(100 * time.Millisecond)}
		cursor := lastHeartbeatCursor(t, c, none, 5)
		resumed := &eventrelayv1.SubscribeRequest{Sources: []string{"orders"}, AfterCursor: cursor,
			HeartbeatInterval: durationpb.New(100 * time.Millisecond)}
		r := subscribe(t, c, resumed)
		r.Ready(t)
		r.Quiet(t, 300*time.Millisecond, "resuming from a filtered stream's heartbeat cursor")
		postInvoice(t, m.HTTPAddr, "in_after", "invoice.paid", 1)
		if d := r.Next(t); d.Event.GetId() != "in_after" {
			t.Errorf("after the heartbeat cursor: %s, want in_after", d.Event.GetId())
		}
	})
}

// lastHeartbeatCursor subscribes with req and returns the cursor of the heartbeat that
// follows the examination of n entries: the heartbeats' cursors until one stops changing.
func lastHeartbeatCursor(t *testing.T, c eventrelayv1.EventServiceClient, req *eventrelayv1.SubscribeRequest, n int) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	stream, err := c.Subscribe(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	prev := ""
	for {
		msg, err := stream.Recv()
		if err != nil {
			t.Fatalf("filtered stream: %v", err)
		}
		if d := msg.GetDelivery(); d != nil {
			t.Fatalf("a filter matching nothing delivered %s", d.Event.GetId())
		}
		cur := msg.GetHeartbeat().GetCursor()
		if cur != "" && cur == prev {
			return cur
		}
		prev = cur
	}
}

// TestFilterBadExpression: a filter that does not compile is INVALID_ARGUMENT with CEL's
// message and position, over gRPC and HTTP; in group mode no group is created.
func TestFilterBadExpression(t *testing.T) {
	bothStores(t, func(t *testing.T, url string) {
		m := startMain(t, testConfig(url))
		c := client(t, m)
		for _, tc := range []struct {
			name, expr string
			want       []string
		}{
			{"syntax", `event.type ==`, []string{"filter: ", "1:14", "Syntax error"}},
			{"unknown field", `event.typo == "x"`, []string{"filter: ", "1:6", "undefined field 'typo'"}},
			{"not a bool", `event.type`, []string{"filter: the expression is of type string; it must be a bool"}},
			{"too long", strings.Repeat("a", 4097), []string{"filter: at most 4096 bytes, got 4097"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				for _, group := range []string{"", "fg-bad"} {
					req := &eventrelayv1.SubscribeRequest{Sources: []string{"orders"}, Filter: tc.expr, Group: group}
					stream, err := c.Subscribe(context.Background(), req)
					if err == nil {
						_, err = stream.Recv()
					}
					if status.Code(err) != codes.InvalidArgument {
						t.Fatalf("group %q: %v, want InvalidArgument", group, err)
					}
					if msg := status.Convert(err).Message(); !containsAll(msg, tc.want) {
						t.Fatalf("message %q lacks one of %q", msg, tc.want)
					}
				}
				// HTTP: the same answer, 400.
				resp, err := http.Get("http://" + m.HTTPAddr + "/v1/events:subscribe?sources=orders&filter=" + queryEscape(tc.expr))
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), tc.want[len(tc.want)-1]) {
					t.Errorf("HTTP: %d %s", resp.StatusCode, b)
				}
			})
		}
		// The group was never created: a member may create it with another filter.
		s := subscribe(t, c, &eventrelayv1.SubscribeRequest{Sources: []string{"orders"}, Group: "fg-bad", Filter: `true`,
			HeartbeatInterval: durationpb.New(100 * time.Millisecond)})
		s.Ready(t)
	})
}

// TestFilterGroup: the filter is a group setting: the first member records it, a member
// omitting it takes it, a member asking for another is FAILED_PRECONDITION naming the
// group's; events the filter holds back are acknowledged as handled (never redelivered,
// nothing pending).
func TestFilterGroup(t *testing.T) {
	bothStores(t, func(t *testing.T, url string) {
		m := startMain(t, testConfig(url))
		c := client(t, m)
		req := groupReq("orders", "big-invoices", "c1", time.Second)
		req.Filter = invoiceFilter
		s1 := subscribe(t, c, req)
		s1.Ready(t)

		other := groupReq("orders", "big-invoices", "c2", 0)
		other.Filter = `true`
		stream, err := c.Subscribe(context.Background(), other)
		if err == nil {
			_, err = stream.Recv()
		}
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(status.Convert(err).Message(), "filter \""+strings.ReplaceAll(invoiceFilter, `"`, `\"`)+"\"") {
			t.Fatalf("another filter: %v, want FailedPrecondition naming the group's", err)
		}

		postInvoice(t, m.HTTPAddr, "g_small", "invoice.paid", 5)
		postInvoice(t, m.HTTPAddr, "g_big", "invoice.paid", 200000)
		d := s1.Next(t)
		if d.Event.GetId() != "g_big" {
			t.Fatalf("group delivered %s, want g_big", d.Event.GetId())
		}
		ack(t, c, d.AckId)
		s1.Close()

		// A member omitting the filter takes the group's; nothing is pending or redelivered
		// (g_small was acknowledged as filtered out).
		s2 := subscribe(t, c, groupReq("orders", "big-invoices", "c3", 0))
		s2.Ready(t)
		s2.Quiet(t, 1500*time.Millisecond, "a filtered-out or acknowledged event redelivered")
		postInvoice(t, m.HTTPAddr, "g_small2", "invoice.paid", 7)
		postInvoice(t, m.HTTPAddr, "g_big2", "invoice.paid", 300000)
		if d := s2.Next(t); d.Event.GetId() != "g_big2" {
			t.Fatalf("member without a filter got %s, want g_big2 (the group's filter)", d.Event.GetId())
		}
	})
}

// TestFilterHTTP: the HTTP form takes the filter as the filter= query parameter.
func TestFilterHTTP(t *testing.T) {
	m := startMain(t, testConfig(""))
	postInvoice(t, m.HTTPAddr, "h_small", "invoice.paid", 10)
	postInvoice(t, m.HTTPAddr, "h_big", "invoice.paid", 100500)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+m.HTTPAddr+"/v1/events:subscribe?sources=orders&start=START_POSITION_EARLIEST&filter="+queryEscape(invoiceFilter), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var line struct {
			Result struct {
				Delivery *struct {
					Event struct {
						ID string `json:"id"`
					} `json:"event"`
				} `json:"delivery"`
			} `json:"result"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("%s: %v", sc.Bytes(), err)
		}
		if d := line.Result.Delivery; d != nil {
			if d.Event.ID != "h_big" {
				t.Fatalf("HTTP filtered stream delivered %s, want h_big", d.Event.ID)
			}
			return
		}
	}
	t.Fatalf("stream ended: %v", sc.Err())
}

func queryEscape(s string) string { return url.QueryEscape(s) }

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}
