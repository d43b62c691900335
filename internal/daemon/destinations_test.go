package daemon

// Push destinations end to end (issue 16): relayd processes POST webhooks they verified to an
// HTTP receiver, signed the Standard Webhooks way; replicas share a destination; a relayd
// killed mid-delivery delivers everything after its restart.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/eventrelay/eventrelay/internal/e2e"
	"github.com/eventrelay/eventrelay/internal/redistest"
)

// pushSecret is a Standard Webhooks secret written out by hand (base64 of the 24 bytes
// "0123456789abcdefghijklmn").
const pushSecret = "whsec_MDEyMzQ1Njc4OWFiY2RlZmdoaWprbG1u"

// pushReceiver records POSTs; delay slows each answer.
type pushReceiver struct {
	*httptest.Server
	mu    sync.Mutex
	ids   []string // webhook-id of each 2xx answer, in order
	bad   []string // POSTs whose signature did not verify
	delay time.Duration
}

func newPushReceiver(t *testing.T, delay time.Duration) *pushReceiver {
	wh, err := standardwebhooks.NewWebhook(pushSecret)
	if err != nil {
		t.Fatal(err)
	}
	r := &pushReceiver{delay: delay}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		if r.delay > 0 {
			time.Sleep(r.delay)
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		if err := wh.Verify(body, req.Header); err != nil {
			r.bad = append(r.bad, req.Header.Get("Webhook-Id")+": "+err.Error())
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		r.ids = append(r.ids, req.Header.Get("Webhook-Id"))
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *pushReceiver) received() (ids, bad []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.ids), slices.Clone(r.bad)
}

func destinationYAML(url string, extra string) string {
	return fmt.Sprintf("destinations:\n  - {name: hooks, url: %q, secrets: [%q], allow_private: true%s}\n", url, pushSecret, extra)
}

// distinct reports the distinct ids and how many came more than once.
func distinct(ids []string) (set map[string]bool, dups int) {
	set = map[string]bool{}
	for _, id := range ids {
		if set[id] {
			dups++
		}
		set[id] = true
	}
	return set, dups
}

func TestPushDestinationEndToEnd(t *testing.T) {
	rcv := newPushReceiver(t, 0)
	r := e2e.Start(t, "sources:\n"+e2e.HMACSource("orders")+destinationYAML(rcv.URL, ", types: [\"order.*\"]"))
	e2e.MustPost(t, r.HTTP, "orders", "o-1", "order.created", 1)
	e2e.MustPost(t, r.HTTP, "orders", "o-2", "refund.created", 2) // not of the destination's types
	e2e.MustPost(t, r.HTTP, "orders", "o-3", "order.paid", 3)
	e2e.Eventually(t, "two deliveries", func() bool { ids, _ := rcv.received(); return len(ids) >= 2 })
	time.Sleep(200 * time.Millisecond)
	ids, bad := rcv.received()
	slices.Sort(ids)
	if !slices.Equal(ids, []string{"o-1", "o-3"}) || len(bad) > 0 {
		t.Errorf("receiver verified %v (bad signatures %v), want [o-1 o-3]", ids, bad)
	}

	// The admin endpoint and the metrics tell the same.
	resp, err := http.Get("http://" + r.Admin + "/v1/admin/destinations")
	if err != nil {
		t.Fatal(err)
	}
	var st []struct {
		Name, State, Breaker, Group string
		Delivered                   int64
	}
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if err != nil || len(st) != 1 || st[0].Name != "hooks" || st[0].Group != "dest:hooks" || st[0].State != "running" ||
		st[0].Breaker != "closed" || st[0].Delivered != 2 {
		t.Errorf("GET /v1/admin/destinations = %+v, %v", st, err)
	}
	metrics := scrape(t, r.Admin)
	for _, want := range []string{
		`eventrelay_push_attempts_total{destination="hooks",result="success"} 2`,
		`eventrelay_push_attempt_duration_seconds_count{destination="hooks"} 2`,
		`eventrelay_push_paused{destination="hooks"} 0`,
		`eventrelay_push_breaker_open{destination="hooks"} 0`,
		`eventrelay_push_backlog{destination="hooks"} 0`,
	} {
		if !strings.Contains(metrics, want+"\n") {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	resp, err = http.Post("http://"+r.Admin+"/v1/admin/destinations/nope/resume", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("resume of an unknown destination: %d, want 404", resp.StatusCode)
	}
}

func scrape(t *testing.T, admin string) string {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// Two relayd replicas on one Redis share a destination: every event is delivered, none
// twice (the receiver always answers 2xx, so nothing is retried).
func TestPushDestinationSharedByReplicas(t *testing.T) {
	e2e.Slow(t)
	url := redistest.Start(t)
	rcv := newPushReceiver(t, 0)
	cfg := "redis: {url: " + url + "}\nsources:\n" + e2e.HMACSource("orders", "partitions: 4") + destinationYAML(rcv.URL, "")
	r1, r2 := e2e.Start(t, cfg), e2e.Start(t, cfg)
	const n = 300
	for i := range n {
		addr := r1.HTTP
		if i%2 == 1 {
			addr = r2.HTTP
		}
		e2e.MustPost(t, addr, "orders", fmt.Sprintf("e-%03d", i), "t", i)
	}
	e2e.Eventually(t, "every event", func() bool { ids, _ := rcv.received(); set, _ := distinct(ids); return len(set) == n })
	time.Sleep(300 * time.Millisecond)
	ids, bad := rcv.received()
	if _, dups := distinct(ids); dups > 0 || len(bad) > 0 {
		t.Errorf("%d duplicate deliveries, %d bad signatures", dups, len(bad))
	}
	for _, r := range []*e2e.Relayd{r1, r2} {
		if !strings.Contains(scrape(t, r.Admin), `eventrelay_push_attempts_total{destination="hooks",result="success"}`) {
			t.Errorf("replica %s delivered nothing: the work was not shared", r.HTTP)
		}
	}
}

// relayd SIGKILLed in the middle of deliveries delivers every event after its restart
// (at least once: the ones unacknowledged at the kill may come twice).
func TestPushDestinationSurvivesKill(t *testing.T) {
	e2e.Slow(t)
	url := redistest.Start(t)
	rcv := newPushReceiver(t, 20*time.Millisecond)
	r := e2e.Start(t, "redis: {url: "+url+"}\nsources:\n"+e2e.HMACSource("orders", "partitions: 2")+destinationYAML(rcv.URL, ", max_in_flight: 4"))
	const n = 200
	for i := range n {
		e2e.MustPost(t, r.HTTP, "orders", fmt.Sprintf("k-%03d", i), "t", i)
	}
	e2e.Eventually(t, "some deliveries", func() bool { ids, _ := rcv.received(); return len(ids) >= 30 })
	r.Kill()
	before, _ := rcv.received()
	if len(before) >= n {
		t.Fatalf("all %d delivered before the kill; the test needs a slower receiver", n)
	}
	if err := r.Restart(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		ids, _ := rcv.received()
		if set, _ := distinct(ids); len(set) == n {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	ids, bad := rcv.received()
	set, dups := distinct(ids)
	if len(set) != n || len(bad) > 0 {
		t.Fatalf("after the restart %d of %d events delivered (%d bad signatures)", len(set), n, len(bad))
	}
	// At most the deliveries the replica held unacknowledged at the kill come twice: its
	// group budget is 2 x max_in_flight.
	if dups > 8 {
		t.Errorf("%d events delivered twice; at most 8 (those unacknowledged at the kill) may be", dups)
	}
}

// An ordered destination is delivered by one replica at a time; when that replica dies the
// other takes over, and each key's events still arrive in order (a key's event that was in
// flight at the kill comes again before any later one of the key).
func TestPushOrderedTakeover(t *testing.T) {
	e2e.Slow(t)
	url := redistest.Start(t)
	var mu sync.Mutex
	var got []string // webhook-id of each POST, in arrival order
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		time.Sleep(5 * time.Millisecond)
		mu.Lock()
		got = append(got, req.Header.Get("Webhook-Id"))
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(rcv.Close)
	cfg := "redis: {url: " + url + "}\nsources:\n" + e2e.HMACSource("orders", "partitions: 2", "partition_key: key") +
		destinationYAML(rcv.URL, ", ordering: partition_key, max_in_flight: 4")
	r1 := e2e.Start(t, cfg)
	r2 := e2e.Start(t, cfg)
	const keys, per = 4, 60
	post := func(i int) {
		for k := range keys {
			body := []byte(fmt.Sprintf(`{"id":"k%d-%03d","type":"t","key":"k%d"}`, k, i, k))
			ctx, cancel := context.WithTimeout(context.Background(), e2e.Wait)
			code, err := e2e.Post(ctx, r1.HTTP, "orders", body)
			cancel()
			if err != nil || code != http.StatusOK {
				t.Fatalf("POST: %d %v", code, err)
			}
		}
	}
	for i := range per / 2 {
		post(i)
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(got) }
	e2e.Eventually(t, "deliveries to begin", func() bool { return count() >= 10 })
	// Kill whichever replica holds the lease (the one that delivered).
	holder, other := r1, r2
	if !strings.Contains(scrape(t, r1.Admin), `eventrelay_push_attempts_total{destination="hooks",result="success"}`) {
		holder, other = r2, r1
	}
	holder.Kill()
	for i := per / 2; i < per; i++ {
		for k := range keys {
			body := []byte(fmt.Sprintf(`{"id":"k%d-%03d","type":"t","key":"k%d"}`, k, i, k))
			ctx, cancel := context.WithTimeout(context.Background(), e2e.Wait)
			code, err := e2e.Post(ctx, other.HTTP, "orders", body)
			cancel()
			if err != nil || code != http.StatusOK {
				t.Fatalf("POST: %d %v", code, err)
			}
		}
	}
	// The survivor takes the lease (30s TTL) and waits for the holder's deliveries to lapse.
	deadline := time.Now().Add(120 * time.Second)
	for {
		mu.Lock()
		set, _ := distinct(got)
		mu.Unlock()
		if len(set) == keys*per {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d events delivered after the takeover", len(set), keys*per)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Per key, the arrivals are in order with at-least-once rewinds: an event arrives for the
	// first time only right after the one before it, and a repeat (an event the dead replica
	// sent whose acknowledgement was lost, or that was in flight) starts a replay that goes on
	// in order from there, before anything new of the key.
	mu.Lock()
	defer mu.Unlock()
	type state struct{ max, prev int }
	keyState := map[string]*state{}
	for _, id := range got {
		var k, n int
		if _, err := fmt.Sscanf(id, "k%d-%d", &k, &n); err != nil {
			t.Fatalf("unexpected id %q", id)
		}
		st := keyState[id[:2]]
		if st == nil {
			st = &state{max: -1, prev: -1}
			keyState[id[:2]] = st
		}
		switch {
		case n > st.max:
			if n != st.max+1 || (st.prev != st.max && st.prev != -1) {
				t.Fatalf("key k%d: %s arrived after k%d-%03d (the highest so far k%d-%03d)", k, id, k, st.prev, k, st.max)
			}
			st.max = n
		case st.prev < st.max && n != st.prev+1:
			t.Fatalf("key k%d: the replay after k%d-%03d went on with %s", k, k, st.prev, id)
		}
		st.prev = n
	}
}
