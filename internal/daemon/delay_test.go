package daemon

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	eventrelayv1 "github.com/eventrelay/eventrelay/gen/eventrelay/v1"
)

// replicas starts two relayd replicas on one store (on the embedded store, the second uses
// the first's embedded server) and returns them with a client of each.
func replicas(t *testing.T, url string, sources ...string) (a, b *Main, ca, cb eventrelayv1.EventServiceClient) {
	t.Helper()
	cfg := testConfig(url)
	for _, s := range sources {
		addSource(cfg, s)
	}
	a = startMain(t, cfg)
	cfgB := testConfig(storeURL(a))
	for _, s := range sources {
		addSource(cfgB, s)
	}
	b = startMain(t, cfgB)
	return a, b, client(t, a), client(t, b)
}

// redeliveredAfter waits for the next delivery of s and returns it with the time since from.
func redeliveredAfter(t *testing.T, s *sub, from time.Time) (*eventrelayv1.Delivery, time.Duration) {
	t.Helper()
	d := s.Next(t)
	return d, time.Since(from)
}

// TestNackDelayBeyondDeadline is issue 12.3: with a 1 s ack deadline, a Nack with a 2.5 s
// delay sent through another replica redelivers after the delay (not at the deadline), and
// ModifyAckDeadline keeps long work from being redelivered.
func TestNackDelayBeyondDeadline(t *testing.T) {
	bothStores(t, func(t *testing.T, url string) {
		a, _, ca, cb := replicas(t, url, "slow")
		s := subscribe(t, ca, groupReq("slow", "g", "c1", time.Second))
		s.Ready(t)
		mustPost(t, a.HTTPAddr, "slow", "evt_slow")
		d := s.Next(t)

		t.Run("Nack delay longer than the ack deadline", func(t *testing.T) {
			const delay = 2500 * time.Millisecond
			from := time.Now()
			resp, err := cb.Nack(context.Background(), &eventrelayv1.NackRequest{AckIds: []string{d.AckId}, Delay: durationpb.New(delay)})
			if err != nil || len(resp.UnknownAckIds) != 0 {
				t.Fatalf("Nack: %v %v", resp, err)
			}
			var took time.Duration
			d, took = redeliveredAfter(t, s, from)
			t.Logf("Nack delay %v: redelivered after %v (ack deadline 1s)", delay, took)
			if d.Event.Id != "evt_slow" || d.DeliveryAttempt != 2 {
				t.Fatalf("redelivered %s attempt %d", d.Event.Id, d.DeliveryAttempt)
			}
			if took < delay-200*time.Millisecond {
				t.Fatalf("redelivered after %v, before the %v delay", took, delay)
			}
		})
		t.Run("Nack delay shorter than the ack deadline", func(t *testing.T) {
			const delay = 400 * time.Millisecond
			from := time.Now()
			if _, err := cb.Nack(context.Background(), &eventrelayv1.NackRequest{AckIds: []string{d.AckId}, Delay: durationpb.New(delay)}); err != nil {
				t.Fatal(err)
			}
			var took time.Duration
			d, took = redeliveredAfter(t, s, from)
			t.Logf("Nack delay %v: redelivered after %v", delay, took)
			if d.DeliveryAttempt != 3 || took < delay-200*time.Millisecond {
				t.Fatalf("attempt %d after %v", d.DeliveryAttempt, took)
			}
		})
		t.Run("ModifyAckDeadline extends the deadline", func(t *testing.T) {
			const deadline = 2 * time.Second
			from := time.Now()
			resp, err := cb.ModifyAckDeadline(context.Background(), &eventrelayv1.ModifyAckDeadlineRequest{AckIds: []string{d.AckId}, AckDeadline: durationpb.New(deadline)})
			if err != nil || len(resp.UnknownAckIds) != 0 {
				t.Fatalf("ModifyAckDeadline: %v %v", resp, err)
			}
			var took time.Duration
			d, took = redeliveredAfter(t, s, from)
			t.Logf("ModifyAckDeadline %v: redelivered after %v", deadline, took)
			if d.DeliveryAttempt != 4 || took < deadline-200*time.Millisecond {
				t.Fatalf("attempt %d after %v", d.DeliveryAttempt, took)
			}
		})
		t.Run("long work kept alive by ModifyAckDeadline is not redelivered", func(t *testing.T) {
			// 3 s of work with a 1 s ack deadline: extended by 1 s every 300 ms, alternately
			// through both replicas and over HTTP.
			end := time.Now().Add(3 * time.Second)
			for i := 0; time.Now().Before(end); i++ {
				switch i % 3 {
				case 0, 1:
					c := []eventrelayv1.EventServiceClient{ca, cb}[i%3]
					if _, err := c.ModifyAckDeadline(context.Background(), &eventrelayv1.ModifyAckDeadlineRequest{AckIds: []string{d.AckId}, AckDeadline: durationpb.New(time.Second)}); err != nil {
						t.Fatal(err)
					}
				default:
					if code, body := postJSON(t, a, "/v1/events:modifyAckDeadline", map[string]any{"ack_ids": []string{d.AckId}, "ack_deadline": "1s"}); code != 200 {
						t.Fatalf("POST /v1/events:modifyAckDeadline: %d %s", code, body)
					}
				}
				s.Quiet(t, 300*time.Millisecond, "redelivered while its deadline was being extended")
			}
			if u := ack(t, cb, d.AckId); len(u) != 0 {
				t.Fatalf("the kept-alive delivery was not pending any more: %v", u)
			}
			s.Quiet(t, 1500*time.Millisecond, "redelivered after its ack")
		})
	})
}

// TestSettleBadInput: out-of-range delays and deadlines are INVALID_ARGUMENT and change
// nothing.
func TestSettleBadInput(t *testing.T) {
	bothStores(t, func(t *testing.T, url string) {
		cfg := testConfig(url)
		m := startMain(t, cfg)
		c := client(t, m)
		s := subscribe(t, c, groupReq("orders", "g", "c1", time.Minute))
		s.Ready(t)
		mustPost(t, m.HTTPAddr, "orders", "evt_bad")
		d := s.Next(t)
		rdb := redisClient(t, storeURL(m))
		before := groupState(t, rdb, "relay:{orders:0}:s", "g")
		for _, tc := range []struct {
			name string
			call func() error
		}{
			{"nack delay over 12h", func() error {
				_, err := c.Nack(context.Background(), &eventrelayv1.NackRequest{AckIds: []string{d.AckId}, Delay: durationpb.New(13 * time.Hour)})
				return err
			}},
			{"negative nack delay", func() error {
				_, err := c.Nack(context.Background(), &eventrelayv1.NackRequest{AckIds: []string{d.AckId}, Delay: durationpb.New(-time.Second)})
				return err
			}},
			{"ack deadline over 12h", func() error {
				_, err := c.ModifyAckDeadline(context.Background(), &eventrelayv1.ModifyAckDeadlineRequest{AckIds: []string{d.AckId}, AckDeadline: durationpb.New(13 * time.Hour)})
				return err
			}},
			{"negative ack deadline", func() error {
				_, err := c.ModifyAckDeadline(context.Background(), &eventrelayv1.ModifyAckDeadlineRequest{AckIds: []string{d.AckId}, AckDeadline: durationpb.New(-time.Second)})
				return err
			}},
			{"missing ack deadline", func() error {
				_, err := c.ModifyAckDeadline(context.Background(), &eventrelayv1.ModifyAckDeadlineRequest{AckIds: []string{d.AckId}})
				return err
			}},
			{"too many ack ids", func() error {
				ids := make([]string, 10001)
				for i := range ids {
					ids[i] = d.AckId
				}
				_, err := c.ModifyAckDeadline(context.Background(), &eventrelayv1.ModifyAckDeadlineRequest{AckIds: ids, AckDeadline: durationpb.New(time.Second)})
				return err
			}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if err := tc.call(); status.Code(err) != codes.InvalidArgument {
					t.Fatalf("got %v, want InvalidArgument", err)
				}
				if after := groupState(t, rdb, "relay:{orders:0}:s", "g"); after != before {
					t.Fatalf("store changed:\n%s\n->\n%s", before, after)
				}
			})
		}
		if code, body := postJSON(t, m, "/v1/events:modifyAckDeadline", map[string]any{"ack_ids": []string{d.AckId}, "ack_deadline": "-1s"}); code != 400 {
			t.Fatalf("POST /v1/events:modifyAckDeadline with a negative deadline: %d %s", code, body)
		}
	})
}

// TestNackBatchDeadlines is issue 12.10: one Nack carrying ack ids of groups with different
// ack deadlines (1 s and 1 min) on two partitions delays every one of them by the Nack's
// delay, whatever the first ack id's deadline.
func TestNackBatchDeadlines(t *testing.T) {
	bothStores(t, func(t *testing.T, url string) {
		cfg := testConfig(url)
		cfg.Sources[0].Partitions = 2
		m := startMain(t, cfg)
		c := client(t, m)
		short := subscribe(t, c, groupReq("orders", "short", "c1", time.Second))
		long := subscribe(t, c, groupReq("orders", "long", "c1", time.Minute))
		short.Ready(t)
		long.Ready(t)
		const n = 6 // over both partitions
		for i := range n {
			mustPost(t, m.HTTPAddr, "orders", fmt.Sprintf("evt_batch%d", i))
		}
		var ids []string
		for range n {
			ids = append(ids, long.Next(t).AckId) // the 1 min deadline first
		}
		for range n {
			ids = append(ids, short.Next(t).AckId)
		}
		const delay = 1500 * time.Millisecond
		from := time.Now()
		resp, err := c.Nack(context.Background(), &eventrelayv1.NackRequest{AckIds: ids, Delay: durationpb.New(delay)})
		if err != nil || len(resp.UnknownAckIds) != 0 {
			t.Fatalf("Nack: %v %v", resp, err)
		}
		for name, s := range map[string]*sub{"short": short, "long": long} {
			seen := map[string]bool{}
			for range n {
				d, took := redeliveredAfter(t, s, from)
				if d.DeliveryAttempt != 2 || took < delay-200*time.Millisecond {
					t.Fatalf("%s: %s attempt %d after %v, want attempt 2 after %v", name, d.Event.Id, d.DeliveryAttempt, took, delay)
				}
				seen[d.Event.Id] = true
			}
			t.Logf("%s (deadline %s): all %d redelivered by %v", name, map[string]string{"short": "1s", "long": "1m"}[name], n, time.Since(from))
			if len(seen) != n {
				t.Fatalf("%s: redelivered %v", name, seen)
			}
		}
	})
}
