package daemon

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	eventrelayv1 "github.com/eventrelay/eventrelay/gen/eventrelay/v1"
	"github.com/eventrelay/eventrelay/internal/e2e"
	"github.com/eventrelay/eventrelay/internal/redistest"
)

// connectedClients is redistest.ConnectedClients, failing t on an error.
func connectedClients(t testing.TB, addr string) int {
	t.Helper()
	n, err := redistest.ConnectedClients(addr)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRedisConnectionsBoundedBySubscriptions: 200 subscriptions opened at once (tails,
// replays and members of four groups over four partitions) hold at most the documented
// number of Redis connections (relayd's pool: one blocking read per partition + 64 for short
// commands, not one blocking read per subscription and partition), and once they close relayd
// is back to its idle count within 10 s.
func TestRedisConnectionsBoundedBySubscriptions(t *testing.T) {
	e2e.Slow(t)
	srv := redistest.Start(t)
	addr := strings.TrimPrefix(srv, "redis://")
	const partitions = 4
	cfg := testConfig(srv)
	cfg.Sources[0].Partitions = partitions
	m := startMain(t, cfg)
	for i := range 20 {
		mustPost(t, m.HTTPAddr, "orders", fmt.Sprintf("evt_conn_%d", i))
	}
	idle := connectedClients(t, addr) // relayd's idle connections and this one

	// The count is sampled while the subscriptions open, run and take events.
	peak, stop, sampled := 0, make(chan struct{}), make(chan struct{})
	var sampleErr error
	go func() {
		defer close(sampled)
		for {
			n, err := redistest.ConnectedClients(addr)
			if err != nil {
				sampleErr = err
				return
			}
			peak = max(peak, n)
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	hb := durationpb.New(100 * time.Millisecond)
	var subs []*sub
	clients := []eventrelayv1.EventServiceClient{client(t, m), client(t, m), client(t, m)}
	for i := range 200 {
		var req *eventrelayv1.SubscribeRequest
		switch i % 4 {
		case 0:
			req = &eventrelayv1.SubscribeRequest{Sources: []string{"orders"}, HeartbeatInterval: hb}
		case 1:
			req = &eventrelayv1.SubscribeRequest{Sources: []string{"orders"}, Start: eventrelayv1.StartPosition_START_POSITION_EARLIEST, HeartbeatInterval: hb}
		default:
			req = groupReq("orders", fmt.Sprintf("conn-%d", i%8), "", time.Minute) // 4 groups
			req.HeartbeatInterval = hb
		}
		subs = append(subs, subscribe(t, clients[i%len(clients)], req))
	}
	for _, s := range subs {
		s.Ready(t)
	}
	for i := range 20 {
		mustPost(t, m.HTTPAddr, "orders", fmt.Sprintf("evt_conn_live_%d", i))
	}
	for _, s := range subs[:2] { // the tail and the replay receive them
		s.Next(t)
	}
	close(stop)
	<-sampled
	if sampleErr != nil {
		t.Fatal(sampleErr)
	}
	// The bound: relayd's pool, redis.pool_size = 4 partitions + 64, whatever the number of
	// subscriptions, plus this test's INFO connection.
	const bound = 4 + 64 + 1
	if peak > bound {
		t.Errorf("%d Redis connections with 200 subscriptions open, want at most %d", peak, bound)
	} else {
		t.Logf("%d Redis connections with 200 subscriptions open (bound %d, idle %d)", peak, bound, idle)
	}
	for _, s := range subs {
		s.Close()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := connectedClients(t, addr)
		if n <= idle {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d Redis connections 10 s after the subscriptions closed, want the idle %d", n, idle)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
