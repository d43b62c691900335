package push_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"go.uber.org/goleak"

	"github.com/eventrelay/eventrelay/internal/redistest"
	"github.com/eventrelay/eventrelay/relay"
	"github.com/eventrelay/eventrelay/relay/filter"
	"github.com/eventrelay/eventrelay/relay/push"
	"github.com/eventrelay/eventrelay/relay/redisstore"
)

func TestMain(m *testing.M) {
	if os.Getenv(receiverEnv) != "" {
		benchReceiver() // the receiver process of BenchmarkPush
		return
	}
	goleak.VerifyTestMain(m)
}

// Secrets in the Standard Webhooks format, written out by hand: whsec_ and base64 of
// 24 bytes "0123456789abcdefghijklmn" and of 32 bytes "this is the second signing key!!".
const (
	secret1 = "whsec_MDEyMzQ1Njc4OWFiY2RlZmdoaWprbG1u"
	secret2 = "whsec_dGhpcyBpcyB0aGUgc2Vjb25kIHNpZ25pbmcga2V5ISE="
)

type acceptAll struct{}

func (acceptAll) Verify(req *relay.WebhookRequest, now time.Time) (*relay.Verified, error) {
	return &relay.Verified{Provider: "test", Scheme: "none"}, nil
}

// newService returns a Service on a fresh redis-server with sources "s" (4 partitions) and
// "t", filters compiled by relay/filter.
func newService(t *testing.T) *relay.Service {
	t.Helper()
	return newServiceAt(t, redistest.Start(t))
}

// newServiceAt returns a Service on the Redis at url with cfgs (default: "s" with 4
// partitions and "t").
func newServiceAt(t testing.TB, url string, cfgs ...relay.SourceConfig) *relay.Service {
	t.Helper()
	st, err := redisstore.Open(url, false, "", redisstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(cfgs) == 0 {
		cfgs = []relay.SourceConfig{{Name: "s", Partitions: 4}, {Name: "t"}}
	}
	var srcs []*relay.Source
	for _, c := range cfgs {
		c.SetDefaults()
		srcs = append(srcs, &relay.Source{Config: c, Verifier: acceptAll{}})
	}
	svc, err := relay.NewService(st, srcs, relay.Options{
		Logger: quiet(), CompileFilter: filter.Compile,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = svc.Close()
		_ = st.Close()
	})
	return svc
}

func quiet() *slog.Logger {
	if os.Getenv("PUSH_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func publish(t *testing.T, svc *relay.Service, source, id, typ, key string) {
	t.Helper()
	_, err := svc.Publish(context.Background(), relay.PublishInput{Source: source, ID: id, Type: typ, PartitionKey: key,
		DataContentType: "application/json", Data: []byte(`{"id":"` + id + `"}`)})
	if err != nil {
		t.Fatal(err)
	}
}

// delivery is one POST the receiver got.
type delivery struct {
	id, source, typ, cursor, key string
	attempt                      int
	header                       http.Header
	body                         []byte
	at                           time.Time
	answered                     int
}

// receiver is an HTTP endpoint whose answer to each POST is decided by answer (nil: 200).
type receiver struct {
	*httptest.Server
	mu     sync.Mutex
	got    []delivery
	answer func(d delivery, w http.ResponseWriter) int
	wake   chan struct{}
}

func newReceiver(t *testing.T, answer func(d delivery, w http.ResponseWriter) int) *receiver {
	r := &receiver{answer: answer, wake: make(chan struct{}, 1)}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		d := delivery{id: req.Header.Get("Webhook-Id"), source: req.Header.Get(push.HeaderSource),
			typ: req.Header.Get(push.HeaderType), cursor: req.Header.Get(push.HeaderCursor),
			header: req.Header.Clone(), body: body, at: time.Now()}
		d.attempt, _ = strconv.Atoi(req.Header.Get(push.HeaderAttempt))
		code := http.StatusOK
		if r.answer != nil {
			code = r.answer(d, w)
		}
		d.answered = code
		r.mu.Lock()
		r.got = append(r.got, d)
		r.mu.Unlock()
		select {
		case r.wake <- struct{}{}:
		default:
		}
		if code != 0 {
			w.WriteHeader(code)
		}
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) deliveries() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// newFailingReceiver returns a receiver answering code to every POST until heal is
// called, 200 after.
func newFailingReceiver(t *testing.T, code int) (rcv *receiver, heal func()) {
	var recovered atomic.Bool
	rcv = newReceiver(t, func(delivery, http.ResponseWriter) int {
		if recovered.Load() {
			return http.StatusOK
		}
		return code
	})
	return rcv, func() { recovered.Store(true) }
}

// successes returns the ids answered 2xx, in arrival order.
func (r *receiver) successes() []string {
	var ids []string
	for _, d := range r.deliveries() {
		if d.answered >= 200 && d.answered < 300 {
			ids = append(ids, d.id)
		}
	}
	return ids
}

// waitFor waits until cond holds (checked at each POST and every 100ms), failing after 30s.
func waitFor(t *testing.T, r *receiver, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for !cond() {
		select {
		case <-r.wake:
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			t.Fatalf("timed out waiting for %s; receiver got %d POSTs", what, len(r.deliveries()))
		}
	}
}

func destination(name, url string) push.Config {
	return push.Config{
		Name: name, URL: url, Secrets: []relay.Secret{{Value: []byte(secret1)}}, AllowPrivate: true,
		Retry:   push.Retry{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond},
		Breaker: push.Breaker{Failures: 1000}, // the breaker has its own test
	}
}

// counter counts attempts per class (an Observer).
type counter struct {
	mu      sync.Mutex
	classes map[push.Class]int
	dead    int
}

func (c *counter) Attempt(_ string, class push.Class, _ time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.classes == nil {
		c.classes = map[push.Class]int{}
	}
	c.classes[class]++
}

func (c *counter) DeadLettered(string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dead++
}

func (c *counter) count(class push.Class) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.classes[class]
}

func start(t *testing.T, svc *relay.Service, opts push.Options, cfgs ...push.Config) *push.Pusher {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quiet()
	}
	p, err := push.New(svc, cfgs, opts)
	if err != nil {
		t.Fatal(err)
	}
	p.Start(context.Background())
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func TestSignedWithStandardWebhooks(t *testing.T) {
	svc := newService(t)
	rcv := newReceiver(t, nil)
	d := destination("hooks", rcv.URL)
	d.Secrets = []relay.Secret{{Value: []byte(secret1)}, {Value: []byte(strings.TrimPrefix(secret2, "whsec_"))}}
	d.Headers = map[string]string{"Authorization": "Bearer to-the-receiver"}
	start(t, svc, push.Options{}, d)
	publish(t, svc, "s", "evt_1", "invoice.paid", "cus_1")
	waitFor(t, rcv, "one delivery", func() bool { return len(rcv.successes()) == 1 })

	got := rcv.deliveries()[0]
	if string(got.body) != `{"id":"evt_1"}` || got.header.Get("Content-Type") != "application/json" {
		t.Errorf("body %q content type %q, want the event's data as published", got.body, got.header.Get("Content-Type"))
	}
	if got.id != "evt_1" || got.source != "s" || got.typ != "invoice.paid" || got.attempt != 1 {
		t.Errorf("headers: id %q source %q type %q attempt %d; want evt_1 s invoice.paid 1", got.id, got.source, got.typ, got.attempt)
	}
	if got.header.Get("Authorization") != "Bearer to-the-receiver" || got.header.Get(push.HeaderDestination) != "hooks" {
		t.Errorf("configured header or destination header missing: %v", got.header)
	}
	if c, err := relay.DecodeCursor(got.cursor); err != nil || len(c.Positions) != 1 {
		t.Errorf("cursor header %q: %v %+v", got.cursor, err, c)
	}
	// Each secret verifies with the Standard Webhooks reference library, on its own.
	for _, sec := range []string{secret1, secret2} {
		wh, err := standardwebhooks.NewWebhook(sec)
		if err != nil {
			t.Fatal(err)
		}
		if err := wh.Verify(got.body, got.header); err != nil {
			t.Errorf("standardwebhooks.Verify with %s...: %v (signature %q)", sec[:10], err, got.header.Get("Webhook-Signature"))
		}
	}
	other, _ := standardwebhooks.NewWebhookRaw([]byte("a key that is not one of them!!"))
	if err := other.Verify(got.body, got.header); err == nil {
		t.Error("a third key verified the POST")
	}
	// The signature is of these exact bytes.
	if err := mustWebhook(t, secret1).Verify([]byte(`{"id":"evt_2"}`), got.header); err == nil {
		t.Error("the signature verified another body")
	}
}

func mustWebhook(t *testing.T, secret string) *standardwebhooks.Webhook {
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	return wh
}

func TestRetriesUntilDelivered(t *testing.T) {
	svc := newService(t)
	// Each event fails its first two attempts: a 500, then a connection cut.
	var mu sync.Mutex
	seen := map[string]int{}
	rcv := newReceiver(t, func(d delivery, w http.ResponseWriter) int {
		mu.Lock()
		seen[d.id]++
		n := seen[d.id]
		mu.Unlock()
		switch n {
		case 1:
			return http.StatusInternalServerError
		case 2:
			return http.StatusBadRequest
		}
		return http.StatusNoContent
	})
	obs := &counter{}
	start(t, svc, push.Options{Observer: obs}, destination("hooks", rcv.URL))
	var want []string
	for i := range 20 {
		id := fmt.Sprintf("e%02d", i)
		want = append(want, id)
		publish(t, svc, "s", id, "t", id)
	}
	waitFor(t, rcv, "20 deliveries", func() bool { return obs.count(push.ClassSuccess) >= 20 })
	got := rcv.successes()
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("delivered %v, want each of %v once", got, want)
	}
	for _, d := range rcv.deliveries() {
		if d.answered == http.StatusNoContent && d.attempt != 3 {
			t.Errorf("%s succeeded at attempt %d, want 3", d.id, d.attempt)
		}
	}
	if obs.count(push.ClassServerError) != 20 || obs.count(push.ClassClientError) != 20 || obs.count(push.ClassSuccess) != 20 {
		t.Errorf("attempts by class = %v, want 20 server_error, 20 client_error, 20 success", obs.classes)
	}
}

func TestRetryAfterIsHonoured(t *testing.T) {
	svc := newService(t)
	var mu sync.Mutex
	n := 0
	rcv := newReceiver(t, func(d delivery, w http.ResponseWriter) int {
		mu.Lock()
		defer mu.Unlock()
		n++
		switch n {
		case 1:
			w.Header().Set("Retry-After", "1")
			return http.StatusTooManyRequests
		case 2:
			w.Header().Set("Retry-After", "1")
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	start(t, svc, push.Options{}, destination("hooks", rcv.URL))
	publish(t, svc, "s", "e1", "t", "k")
	waitFor(t, rcv, "the third attempt", func() bool { return len(rcv.successes()) == 1 })
	ds := rcv.deliveries()
	for i := 1; i < 3; i++ {
		// The backoff alone would retry within 50ms; Retry-After asked for a second.
		if gap := ds[i].at.Sub(ds[i-1].at); gap < time.Second {
			t.Errorf("attempt %d came %s after attempt %d, before the Retry-After of 1s", i+1, gap, i)
		}
	}
}

func TestTimeoutRetries(t *testing.T) {
	svc := newService(t)
	release := make(chan struct{})
	var mu sync.Mutex
	n := 0
	rcv := newReceiver(t, func(d delivery, w http.ResponseWriter) int {
		mu.Lock()
		n++
		first := n == 1
		mu.Unlock()
		if first {
			select { // hangs past the destination's timeout
			case <-release:
			case <-time.After(5 * time.Second):
			}
		}
		return http.StatusOK
	})
	t.Cleanup(func() { close(release) }) // before the receiver closes
	obs := &counter{}
	d := destination("hooks", rcv.URL)
	d.Timeout = 200 * time.Millisecond
	start(t, svc, push.Options{Observer: obs}, d)
	publish(t, svc, "s", "e1", "t", "k")
	waitFor(t, rcv, "the retry after the timeout", func() bool { return obs.count(push.ClassSuccess) == 1 })
	if obs.count(push.ClassTimeout) != 1 {
		t.Errorf("timeouts = %d, want 1", obs.count(push.ClassTimeout))
	}
}

func TestGonePausesUntilResumed(t *testing.T) {
	svc := newService(t)
	rcv, heal := newFailingReceiver(t, http.StatusGone)
	p := start(t, svc, push.Options{}, destination("hooks", rcv.URL))
	publish(t, svc, "s", "e1", "t", "k")
	waitFor(t, rcv, "the 410", func() bool { return len(rcv.deliveries()) == 1 })
	waitFor(t, rcv, "the pause", func() bool { return p.Status()[0].State == "paused" })
	if st := p.Status()[0]; !strings.Contains(st.PausedReason, "410") {
		t.Errorf("paused reason %q does not mention the 410", st.PausedReason)
	}
	publish(t, svc, "s", "e2", "t", "k2")
	// Paused: nothing is sent. (A short look; the resumed delivery below is the real check.)
	time.Sleep(300 * time.Millisecond)
	if n := len(rcv.deliveries()); n != 1 {
		t.Fatalf("a paused destination sent %d more POSTs", n-1)
	}
	heal()
	if err := p.Resume("hooks"); err != nil {
		t.Fatal(err)
	}
	if err := p.Resume("nope"); relay.ErrorCode(err) != relay.CodeNotFound {
		t.Errorf("Resume of an unknown destination = %v, want CodeNotFound", err)
	}
	// e1 was left pending when the destination paused: it comes back, after its hold.
	resumed := time.Now()
	defer func() {
		for _, d := range rcv.deliveries() {
			t.Logf("%s attempt %d at +%s: %d", d.id, d.attempt, d.at.Sub(resumed), d.answered)
		}
	}()
	waitFor(t, rcv, "e1 and e2 after the resume", func() bool {
		got := rcv.successes()
		return slices.Contains(got, "e1") && slices.Contains(got, "e2")
	})
}

func TestDeadLettersPastMaxAttemptsAndRedrive(t *testing.T) {
	svc := newService(t)
	rcv, heal := newFailingReceiver(t, http.StatusBadGateway)
	obs := &counter{}
	d := destination("hooks", rcv.URL)
	d.Retry.MaxAttempts = 3
	p := start(t, svc, push.Options{Observer: obs}, d)
	publish(t, svc, "t", "e1", "t", "k")
	waitFor(t, rcv, "the dead letter", func() bool { return p.Status()[0].DeadLettered == 1 })
	if n := len(rcv.deliveries()); n != 3 {
		t.Errorf("attempts before dead-lettering = %d, want 3", n)
	}
	items, _, err := svc.ListEvents(t.Context(), relay.ListQuery{Source: "t", DeadLetters: true, Group: "dest:hooks", PageSize: 10})
	if err != nil || len(items) != 1 {
		t.Fatalf("dead letters of dest:hooks = %d, %v; want 1", len(items), err)
	}
	heal()
	n, err := svc.Redrive(t.Context(), "t", "dest:hooks", nil)
	if err != nil || n != 1 {
		t.Fatalf("Redrive = %d, %v", n, err)
	}
	waitFor(t, rcv, "the redriven event", func() bool { return len(rcv.successes()) == 1 })
}

func TestMaxAgeDeadLetters(t *testing.T) {
	svc := newService(t)
	rcv := newReceiver(t, func(delivery, http.ResponseWriter) int { return http.StatusInternalServerError })
	d := destination("hooks", rcv.URL)
	d.Retry = push.Retry{Initial: 5 * time.Second, Max: 5 * time.Second, Multiplier: 1, MaxAge: time.Second, MaxAttempts: 100}
	p := start(t, svc, push.Options{}, d)
	publish(t, svc, "t", "e1", "t", "k")
	waitFor(t, rcv, "the dead letter", func() bool { return p.Status()[0].DeadLettered == 1 })
	// A retry of up to 5s would take the event past its 1s max_age... unless the jitter drew
	// less than the second left; then a second attempt is made, never more than a few.
	if n := len(rcv.deliveries()); n < 1 || n > 3 {
		t.Errorf("attempts = %d, want 1 to 3 before max_age", n)
	}
}

func TestOrderedByPartitionKey(t *testing.T) {
	svc := newService(t)
	rnd := rand.New(rand.NewPCG(1, 2))
	var mu sync.Mutex
	rcv := newReceiver(t, func(d delivery, w http.ResponseWriter) int {
		mu.Lock()
		defer mu.Unlock()
		if rnd.IntN(10) < 3 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	d := destination("ordered", rcv.URL)
	d.Ordering = push.OrderingPartitionKey
	d.MaxInFlight = 8
	d.Retry.MaxAttempts = 100
	start(t, svc, push.Options{}, d)
	const keys, per = 6, 25
	for i := range per {
		for k := range keys {
			publish(t, svc, "s", fmt.Sprintf("k%d-%03d", k, i), "t", fmt.Sprintf("k%d", k))
		}
	}
	waitFor(t, rcv, "every event", func() bool { return len(rcv.successes()) >= keys*per })
	// Per key: the POSTs (failed ones included) come in publication order, each event's
	// attempts before the next event's first.
	last := map[string]string{}
	for _, dl := range rcv.deliveries() {
		key := dl.id[:2]
		if prev := last[key]; dl.id < prev {
			t.Fatalf("key %s: %s was sent after %s", key, dl.id, prev)
		}
		last[key] = dl.id
	}
	if got := rcv.successes(); len(got) != keys*per {
		t.Errorf("%d successful POSTs, want %d (each event once)", len(got), keys*per)
	}
}

func TestBreakerOpensAndProbes(t *testing.T) {
	svc := newService(t)
	rcv, heal := newFailingReceiver(t, http.StatusInternalServerError)
	d := destination("hooks", rcv.URL)
	d.Breaker = push.Breaker{Failures: 3, Cooldown: time.Second}
	d.Retry.MaxAttempts = 100
	d.MaxInFlight = 1
	p := start(t, svc, push.Options{}, d)
	publish(t, svc, "s", "e1", "t", "k")
	waitFor(t, rcv, "the breaker to open", func() bool { return p.Status()[0].Breaker == push.BreakerOpen })
	n := len(rcv.deliveries())
	if n != 3 {
		t.Errorf("%d attempts opened the breaker, want 3", n)
	}
	heal()
	// After the cool-down one probe goes through, succeeds and closes the breaker.
	waitFor(t, rcv, "the probe", func() bool { return len(rcv.successes()) == 1 })
	waitFor(t, rcv, "the breaker to close", func() bool { return p.Status()[0].Breaker == push.BreakerClosed })
	ds := rcv.deliveries()
	if gap := ds[len(ds)-1].at.Sub(ds[n-1].at); gap < time.Second {
		t.Errorf("the probe came %s after the breaker opened, before the 1s cool-down", gap)
	}
}

func TestPrivateAddressesRefused(t *testing.T) {
	svc := newService(t)
	rcv := newReceiver(t, nil)
	obs := &counter{}
	d := destination("hooks", rcv.URL) // 127.0.0.1
	d.AllowPrivate = false
	d.Retry.MaxAttempts = 2
	p := start(t, svc, push.Options{Observer: obs}, d)
	publish(t, svc, "s", "e1", "t", "k")
	waitForStatus(t, p, func(s push.Status) bool { return s.DeadLettered == 1 })
	if n := len(rcv.deliveries()); n != 0 {
		t.Errorf("a loopback destination without allow_private got %d POSTs", n)
	}
	if obs.count(push.ClassPrivate) != 2 {
		t.Errorf("attempts refused = %d, want 2 (%v)", obs.count(push.ClassPrivate), obs.classes)
	}
	if st := p.Status()[0]; !strings.Contains(st.LastError, "allow_private") {
		t.Errorf("last error %q does not say how to allow it", st.LastError)
	}
}

func waitForStatus(t *testing.T, p *push.Pusher, cond func(push.Status) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond(p.Status()[0]) {
		if time.Now().After(deadline) {
			t.Fatalf("status never reached the condition: %+v", p.Status()[0])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRedirectsNotFollowed(t *testing.T) {
	svc := newService(t)
	target := newReceiver(t, nil)
	rcv := newReceiver(t, func(d delivery, w http.ResponseWriter) int {
		w.Header().Set("Location", target.URL)
		return http.StatusFound
	})
	obs := &counter{}
	d := destination("hooks", rcv.URL)
	d.Retry.MaxAttempts = 1
	p := start(t, svc, push.Options{Observer: obs}, d)
	publish(t, svc, "s", "e1", "t", "k")
	waitForStatus(t, p, func(s push.Status) bool { return s.DeadLettered == 1 })
	if len(target.deliveries()) != 0 || obs.count(push.ClassRedirect) != 1 {
		t.Errorf("redirect target got %d POSTs, redirects counted %d; want 0 and 1", len(target.deliveries()), obs.count(push.ClassRedirect))
	}
}

func TestTypesAndFilter(t *testing.T) {
	svc := newService(t)
	rcv := newReceiver(t, nil)
	d := destination("hooks", rcv.URL)
	d.Sources = []string{"s"}
	d.Types = []string{"invoice.*"}
	d.Filter = `data.id != "skip"`
	start(t, svc, push.Options{}, d)
	publish(t, svc, "s", "a", "invoice.paid", "k")
	publish(t, svc, "s", "skip", "invoice.paid", "k")
	publish(t, svc, "s", "b", "customer.created", "k")
	publish(t, svc, "t", "c", "invoice.paid", "k") // another source
	publish(t, svc, "s", "d", "invoice.voided", "k")
	waitFor(t, rcv, "a and d", func() bool { return len(rcv.successes()) >= 2 })
	time.Sleep(200 * time.Millisecond) // nothing else may follow
	got := rcv.successes()
	slices.Sort(got) // partitions are delivered in parallel
	if !slices.Equal(got, []string{"a", "d"}) {
		t.Errorf("delivered %v, want [a d]", got)
	}
}

func TestTwoReplicasShareTheWork(t *testing.T) {
	url := redistest.Start(t)
	svc1, svc2 := newServiceAt(t, url), newServiceAt(t, url)
	rcv := newReceiver(t, nil)
	start(t, svc1, push.Options{Consumer: "replica-1"}, destination("hooks", rcv.URL))
	start(t, svc2, push.Options{Consumer: "replica-2"}, destination("hooks", rcv.URL))
	var want []string
	for i := range 200 {
		id := fmt.Sprintf("e%03d", i)
		want = append(want, id)
		publish(t, svc1, "s", id, "t", id)
	}
	waitFor(t, rcv, "200 deliveries", func() bool { return len(rcv.successes()) >= 200 })
	time.Sleep(200 * time.Millisecond)
	got := rcv.successes()
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("delivered %d events (%d distinct wanted); duplicates or gaps", len(got), len(want))
	}
}

func TestConfigValidate(t *testing.T) {
	good := func() push.Config {
		c := push.Config{Name: "hooks", URL: "https://example.com/in", Secrets: []relay.Secret{{Value: []byte(secret1)}}}
		c.SetDefaults()
		return c
	}
	tests := []struct {
		name   string
		change func(c *push.Config)
		want   string // "" : valid
	}{
		{"good", func(*push.Config) {}, ""},
		{"bad name", func(c *push.Config) { c.Name = "Hooks!" }, `name: "Hooks!" must match [a-z0-9][a-z0-9_-]{0,62}`},
		{"no url", func(c *push.Config) { c.URL = "" }, "url: required"},
		{"relative url", func(c *push.Config) { c.URL = "/in" }, "url: must be an absolute http or https URL without a fragment"},
		{"ftp url", func(c *push.Config) { c.URL = "ftp://example.com" }, "url: must be an absolute http or https URL without a fragment"},
		{"no secret", func(c *push.Config) { c.Secrets = nil }, "secrets: at least one signing secret (whsec_<base64>) is required"},
		{"secret not base64", func(c *push.Config) { c.Secrets[0].Value = []byte("whsec_not base64!") }, "secrets[0]: must be whsec_ followed by standard base64"},
		{"secret too short", func(c *push.Config) { c.Secrets[0].Value = []byte("whsec_c2hvcnQ=") }, "secrets[0]: key must be 24 to 64 bytes, got 5"},
		{"reserved header", func(c *push.Config) { c.Headers = map[string]string{"Webhook-Id": "x"} }, "headers.Webhook-Id: set by the relay on every POST; cannot be replaced"},
		{"relay header", func(c *push.Config) { c.Headers = map[string]string{"Eventrelay-Source": "x"} }, "headers.Eventrelay-Source: set by the relay on every POST; cannot be replaced"},
		{"bad header name", func(c *push.Config) { c.Headers = map[string]string{"X Bad": "x"} }, `headers: "X Bad" is not a valid header name`},
		{"header CRLF", func(c *push.Config) { c.Headers = map[string]string{"X-Ok": "a\r\nb"} }, "headers.X-Ok: value must not contain CR, LF or NUL"},
		{"ordering", func(c *push.Config) { c.Ordering = "fifo" }, `ordering: must be none or partition_key, got "fifo"`},
		{"timeout", func(c *push.Config) { c.Timeout = time.Hour }, "timeout: must be 100ms to 5m, got 1h0m0s"},
		{"in flight", func(c *push.Config) { c.MaxInFlight = 5000 }, "max_in_flight: must be 1 to 1024, got 5000"},
		{"max below initial", func(c *push.Config) { c.Retry.Initial = time.Minute; c.Retry.Max = time.Second }, "retry.max: must be retry.initial (1m0s) to 12h0m0s, got 1s"},
		{"multiplier", func(c *push.Config) { c.Retry.Multiplier = 0.5 }, "retry.multiplier: must be at least 1"},
		{"attempts", func(c *push.Config) { c.Retry.MaxAttempts = -1 }, "retry.max_attempts: must be 1 to 1000, got -1"},
		{"max age", func(c *push.Config) { c.Retry.MaxAge = time.Millisecond }, "retry.max_age: must be at least 1s, got 1ms"},
		{"rate", func(c *push.Config) { c.RateLimit.RPS = -1 }, "rate_limit.rps: must be a non-negative number"},
		{"breaker", func(c *push.Config) { c.Breaker.Failures = -2 }, "breaker.failures: must be at least 1, got -2"},
		{"source", func(c *push.Config) { c.Sources = []string{"Bad"} }, `sources[0]: "Bad" is not a source name`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good()
			tt.change(&c)
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			if err == nil || err.Error() != tt.want {
				t.Fatalf("Validate = %v\nwant %s", err, tt.want)
			}
			if strings.Contains(err.Error(), strings.TrimPrefix(secret1, "whsec_")) {
				t.Error("the error shows the secret")
			}
		})
	}
}

func TestNewChecksSourcesAndFilter(t *testing.T) {
	svc := newService(t)
	d := destination("hooks", "http://127.0.0.1:1/")
	d.Sources = []string{"nope"}
	if _, err := push.New(svc, []push.Config{d}, push.Options{}); err == nil || !strings.Contains(err.Error(), `sources: "nope" is not a configured source`) {
		t.Errorf("New with an unknown source = %v", err)
	}
	d = destination("hooks", "http://127.0.0.1:1/")
	d.Filter = "data.("
	if _, err := push.New(svc, []push.Config{d}, push.Options{}); err == nil || !strings.HasPrefix(err.Error(), `destination "hooks": filter: `) {
		t.Errorf("New with a bad filter = %v", err)
	}
	if _, err := push.New(svc, []push.Config{destination("a", "http://x/"), destination("a", "http://y/")}, push.Options{}); err == nil || !strings.Contains(err.Error(), "name used twice") {
		t.Errorf("New with a name twice = %v", err)
	}
}

// Stopping a Pusher lets the attempts in flight finish and settles them: a receiver that
// accepted an event does not get it again from the replica that comes back.
func TestCloseFinishesAttemptsInFlight(t *testing.T) {
	svc := newService(t)
	started := make(chan struct{}, 10)
	rcv := newReceiver(t, func(d delivery, w http.ResponseWriter) int {
		if d.id != "marker" {
			started <- struct{}{}
			time.Sleep(300 * time.Millisecond) // still in flight when Close is called
		}
		return http.StatusOK
	})
	d := destination("hooks", rcv.URL)
	d.MaxInFlight = 4
	p, err := push.New(svc, []push.Config{d}, push.Options{Logger: quiet(), Consumer: "replica-1"})
	if err != nil {
		t.Fatal(err)
	}
	p.Start(context.Background())
	for i := range 4 {
		publish(t, svc, "s", fmt.Sprintf("e%d", i), "t", fmt.Sprintf("k%d", i))
	}
	for range 4 {
		<-started
	}
	_ = p.Close() // returns once the four answers are in and acknowledged
	if got := rcv.successes(); len(got) != 4 {
		t.Fatalf("Close returned with %d of the 4 attempts in flight answered", len(got))
	}
	start(t, svc, push.Options{Consumer: "replica-1"}, d)
	publish(t, svc, "s", "marker", "t", "m")
	waitFor(t, rcv, "the marker", func() bool { return slices.Contains(rcv.successes(), "marker") })
	if got := rcv.successes(); len(got) != 5 {
		t.Errorf("after the restart the receiver got %v: events it had accepted were sent again", got)
	}
}

// An unordered destination has at most max_in_flight POSTs outstanding, and uses them: with
// slow answers, several are in flight at once, and every event arrives once.
func TestMaxInFlightBoundsConcurrentPOSTs(t *testing.T) {
	svc := newService(t)
	var now, most atomic.Int32
	rcv := newReceiver(t, func(delivery, http.ResponseWriter) int {
		n := now.Add(1)
		defer now.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		time.Sleep(20 * time.Millisecond)
		return http.StatusOK
	})
	d := destination("hooks", rcv.URL)
	d.MaxInFlight = 3
	start(t, svc, push.Options{}, d)
	var want []string
	for i := range 30 {
		id := fmt.Sprintf("e%02d", i)
		want = append(want, id)
		publish(t, svc, "s", id, "t", id)
	}
	waitFor(t, rcv, "30 events", func() bool { return len(rcv.successes()) >= 30 })
	got := rcv.successes()
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("received %v, want each of %v once", got, want)
	}
	if m := most.Load(); m > 3 || m < 2 {
		t.Errorf("%d POSTs in flight at once at most, want 2 or 3 (max_in_flight 3, 30 events waiting)", m)
	}
}
