package server

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventrelay/eventrelay/internal/e2e"
	"github.com/eventrelay/eventrelay/relay/verify"

	"github.com/eventrelay/eventrelay/relay"
)

func TestClientIP(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	for _, tc := range []struct {
		name, peer string
		xff        []string
		want       string // "" = invalid (no allowlist admits it)
	}{
		{"untrusted peer, no header", "198.51.100.1:4000", nil, "198.51.100.1"},
		{"untrusted peer spoofing the header", "198.51.100.1:4000", []string{"192.0.2.7"}, "198.51.100.1"},
		{"trusted proxy, no header: the proxy itself", "10.0.0.2:4000", nil, "10.0.0.2"},
		{"trusted proxy", "10.0.0.2:4000", []string{"192.0.2.7"}, "192.0.2.7"},
		{"right-most untrusted hop wins over a spoofed left entry", "10.0.0.2:4000", []string{"192.0.2.7, 198.51.100.9"}, "198.51.100.9"},
		{"chain of trusted proxies is skipped", "10.0.0.2:4000", []string{"192.0.2.7, 10.1.1.1", "10.2.2.2"}, "192.0.2.7"},
		{"garbage where the client should be fails closed", "10.0.0.2:4000", []string{"not-an-ip"}, ""},
		{"address with a port is garbage", "10.0.0.2:4000", []string{"192.0.2.7:55"}, ""},
		{"only trusted hops: the peer", "10.0.0.2:4000", []string{"10.9.9.9"}, "10.0.0.2"},
		{"IPv4-mapped IPv6 peer", "[::ffff:198.51.100.1]:4000", nil, "198.51.100.1"},
		{"IPv6 trusted proxy", "[fd00::1]:4000", []string{"2001:db8::5"}, "2001:db8::5"},
		{"unparseable peer", "pipe", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/v1/webhooks/x", nil)
			r.RemoteAddr = tc.peer
			for _, v := range tc.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			got := clientIP(r, trusted)
			if tc.want == "" {
				if got.IsValid() {
					t.Fatalf("got %s, want the invalid address", got)
				}
				return
			}
			if got != netip.MustParseAddr(tc.want) {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func TestBucket(t *testing.T) {
	t0 := time.Unix(1000, 0)
	b := newBucket(1, 2)
	steps := []struct {
		at   time.Duration
		ok   bool
		wait time.Duration
	}{
		{0, true, 0}, {0, true, 0}, {0, false, time.Second},
		{500 * time.Millisecond, false, 500 * time.Millisecond},
		{time.Second, true, 0}, {time.Second, false, time.Second},
		{10 * time.Second, true, 0}, {10 * time.Second, true, 0}, {10 * time.Second, false, time.Second}, // refill stops at burst
	}
	for i, s := range steps {
		// A request is admitted by peek and, once it passed, charged by spend.
		ok, wait := b.peek(t0.Add(s.at))
		if ok {
			b.spend(t0.Add(s.at))
		}
		if ok != s.ok || wait != s.wait {
			t.Fatalf("step %d at %s: got (%v, %s), want (%v, %s)", i, s.at, ok, wait, s.ok, s.wait)
		}
	}
	// Requests admitted together overdraw the bucket, down to -burst (2): five more charges at
	// 10s leave -2 tokens, so the next token is 3s away.
	at := t0.Add(10 * time.Second)
	for range 5 {
		b.spend(at)
	}
	if ok, wait := b.peek(at); ok || wait != 3*time.Second {
		t.Fatalf("after overdrawing: got (%v, %s), want (false, 3s)", ok, wait)
	}
}

// countingBody fails the test's expectations when read: the middleware must answer without it.
type countingBody struct {
	r     io.Reader
	reads atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) { b.reads.Add(1); return b.r.Read(p) }
func (b *countingBody) Close() error               { return nil }

// TestIngressLimits runs every answer the middleware gives before the signature is checked
// against the handler: each has its status and leaves the store as it was.
func TestIngressLimits(t *testing.T) {
	srcs := testSources()
	internal := relay.SourceConfig{
		Name:     "internal",
		Provider: "hmac",
		AllowIPs: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::/32")},
		Verify:   &verify.Options{Secrets: []relay.Secret{{Value: []byte(ordersSecret)}}},
	}
	limited := relay.SourceConfig{
		Name:      "limited",
		Provider:  "hmac",
		RateLimit: relay.RateLimit{RPS: 0.001, Burst: 2},
		Verify:    &verify.Options{Secrets: []relay.Secret{{Value: []byte(ordersSecret)}}},
	}
	internal.SetDefaults()
	limited.SetDefaults()
	srcs = append(srcs, internal, limited)
	e := newEnv(t, envOptions{redisURL: redisURL(t), sources: srcs,
		ingress: IngressOptions{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}})

	n := 0
	body := func() []byte { n++; return []byte(fmt.Sprintf(`{"id":"evt_%d","type":"t"}`, n)) }
	// req is a request to the handler (no network), from peer.
	req := func(source string, signed bool, peer string, hdr ...string) *http.Request {
		b := body()
		var r *http.Request
		if signed {
			r = e2e.SignedRequest(t, e.cfgs[source], "", source, b, time.Now())
		} else {
			r = httptest.NewRequest(http.MethodPost, "/v1/webhooks/"+source, strings.NewReader(string(b)))
			r.Header.Set("Content-Type", "application/json")
		}
		r.RemoteAddr = peer
		for i := 0; i+1 < len(hdr); i += 2 {
			r.Header.Add(hdr[i], hdr[i+1])
		}
		return r
	}
	const outside, inside, proxy = "198.51.100.1:5000", "192.0.2.7:5000", "10.0.0.2:5000"

	t.Run("allow_ips and X-Forwarded-For", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			r    *http.Request
			want int
		}{
			{"peer outside the list", req("internal", true, outside), 403},
			{"spoofed X-Forwarded-For from an untrusted peer", req("internal", true, outside, "X-Forwarded-For", "192.0.2.7"), 403},
			{"trusted proxy forwarding an outside client", req("internal", true, proxy, "X-Forwarded-For", "198.51.100.1"), 403},
			{"trusted proxy with client-written left entry", req("internal", true, proxy, "X-Forwarded-For", "192.0.2.7, 198.51.100.1"), 403},
			{"trusted proxy without header (the proxy is not listed)", req("internal", true, proxy), 403},
			{"trusted proxy, garbage header", req("internal", true, proxy, "X-Forwarded-For", "192.0.2.7 oops"), 403},
			{"unsigned from a listed peer: the allowlist is not authentication", req("internal", false, inside), 401},
			{"listed peer", req("internal", true, inside), 200},
			{"listed IPv6 peer", req("internal", true, "[2001:db8::9]:5000"), 200},
			{"trusted proxy forwarding a listed client", req("internal", true, proxy, "X-Forwarded-For", "192.0.2.7"), 200},
		} {
			t.Run(tc.name, func(t *testing.T) {
				before := e.streamState()
				a := e.do(tc.r)
				if a.status != tc.want {
					t.Fatalf("status %d, want %d: %s", a.status, tc.want, a.body)
				}
				after := e.streamState()
				if tc.want != 200 && !maps.Equal(before, after) {
					t.Fatalf("store changed: %v -> %v", before, after)
				}
				if tc.want == 200 && after["internal"] != before["internal"]+1 {
					t.Fatalf("not stored: %v -> %v", before, after)
				}
			})
		}
	})

	t.Run("rate limit spent by verified requests only", func(t *testing.T) {
		if a := e.do(req("limited", true, inside)); a.status != 200 {
			t.Fatalf("first: %d %s", a.status, a.body)
		}
		// Unsigned requests are refused on their own budget and leave the source's alone.
		for i := range 2 {
			if a := e.do(req("limited", false, inside)); a.status != 401 {
				t.Fatalf("unsigned %d: %d %s", i, a.status, a.body)
			}
		}
		if a := e.do(req("limited", true, inside)); a.status != 200 { // the last token
			t.Fatalf("second signed: %d %s", a.status, a.body)
		}
		before := e.streamState()
		a := e.do(req("limited", true, inside))
		if a.status != http.StatusTooManyRequests {
			t.Fatalf("third signed: %d %s", a.status, a.body)
		}
		// The bucket holds 2 tokens refilled at 0.001/s and both were spent just now: the next
		// token is 1/0.001 = 1000 s away, less the (sub-second) time the test has taken.
		if ra, err := strconv.Atoi(a.header.Get("Retry-After")); err != nil || ra < 999 || ra > 1000 {
			t.Fatalf("Retry-After %q, want 1000 (within a second)", a.header.Get("Retry-After"))
		}
		if after := e.streamState(); !maps.Equal(before, after) {
			t.Fatalf("store changed: %v -> %v", before, after)
		}
		if a := e.do(req("orders", true, inside)); a.status != 200 {
			t.Fatalf("the limit is per source: orders got %d", a.status)
		}
	})

	t.Run("answers without reading the body", func(t *testing.T) {
		for _, tc := range []struct {
			name     string
			source   string
			method   string
			ct       string
			length   int64
			want     int
			wantRead bool
		}{
			{"declared length over max_body_bytes", "orders", "POST", "application/json", 5000, 413, false},
			{"content type the provider never sends", "stripe", "POST", "text/plain", 10, 415, false},
			{"xml to stripe", "stripe", "POST", "application/xml; charset=utf-8", 10, 415, false},
			{"no content type to stripe", "stripe", "POST", "", 10, 415, false},
			{"PUT", "orders", "PUT", "application/json", 10, 405, false},
			{"DELETE", "orders", "DELETE", "application/json", 10, 405, false},
			{"PATCH", "orders", "PATCH", "application/json", 10, 405, false},
			{"unknown source", "nope", "POST", "application/json", 10, 404, false},
			{"nested path", "orders/extra", "POST", "application/json", 10, 404, false},
			{"disallowed address", "internal", "POST", "application/json", 10, 403, false},
		} {
			t.Run(tc.name, func(t *testing.T) {
				cb := &countingBody{r: strings.NewReader(strings.Repeat("x", int(tc.length)))}
				r := httptest.NewRequest(tc.method, "/v1/webhooks/"+tc.source, nil)
				r.Body, r.ContentLength = cb, tc.length
				r.RemoteAddr = outside
				if tc.ct != "" {
					r.Header.Set("Content-Type", tc.ct)
				}
				before := e.streamState()
				a := e.do(r)
				if a.status != tc.want {
					t.Fatalf("status %d, want %d: %s", a.status, tc.want, a.body)
				}
				if !tc.wantRead && cb.reads.Load() != 0 {
					t.Fatalf("the body was read %d times", cb.reads.Load())
				}
				if tc.want == 405 && a.header.Get("Allow") != "GET, POST" {
					t.Errorf("Allow %q", a.header.Get("Allow"))
				}
				if a.header.Get("Content-Type") != "application/json" || !strings.Contains(a.body, `"code"`) {
					t.Errorf("not a google.rpc.Status answer: %q %s", a.header.Get("Content-Type"), a.body)
				}
				if after := e.streamState(); !maps.Equal(before, after) {
					t.Fatalf("store changed: %v -> %v", before, after)
				}
			})
		}
	})

	t.Run("chunked body over max_body_bytes", func(t *testing.T) {
		big := strings.Repeat("x", 5000)
		r := httptest.NewRequest(http.MethodPost, "/v1/webhooks/orders", io.NopCloser(strings.NewReader(big)))
		r.ContentLength = -1
		r.Header.Set("Content-Type", "application/json")
		before := e.streamState()
		if a := e.do(r); a.status != 413 {
			t.Fatalf("status %d", a.status)
		}
		if after := e.streamState(); !maps.Equal(before, after) {
			t.Fatalf("store changed: %v -> %v", before, after)
		}
	})
}

// TestConcurrencyLimit holds max_concurrent requests inside the handler: the next one is shed
// with 503 and Retry-After at once instead of queueing, and a slot frees when one finishes.
func TestConcurrencyLimit(t *testing.T) {
	e := newEnv(t, envOptions{})
	in := newIngress(e.svc, IngressOptions{MaxConcurrent: 2}, e.log, e.metrics)
	entered := make(chan struct{})
	release := make(chan struct{})
	h := in.wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
		w.WriteHeader(http.StatusOK)
	}))
	post := func() *httptest.ResponseRecorder { return postTo(h, "orders") }
	done := make(chan int, 2)
	for range 2 {
		go func() { done <- post().Code }()
		<-entered // the request holds its slot
	}
	rec := post()
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "1" { // README: shed with Retry-After: 1
		t.Fatalf("third concurrent request: %d Retry-After %q, want 503 1", rec.Code, rec.Header().Get("Retry-After"))
	}
	release <- struct{}{}
	if code := <-done; code != 200 {
		t.Fatalf("held request: %d", code)
	}
	go func() { done <- post().Code }()
	<-entered // a freed slot is taken again
	close(release)
	for range 2 {
		if code := <-done; code != 200 {
			t.Fatalf("held request: %d", code)
		}
	}
	// Other paths are not limited by the webhook semaphore.
	rec = httptest.NewRecorder()
	in.wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })).
		ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/sources/orders/events", nil))
	if rec.Code != 204 {
		t.Fatalf("non-webhook path: %d", rec.Code)
	}
}

// TestSourceConcurrencyLimit: sources[].max_concurrent bounds one source's webhooks in
// flight (503 + Retry-After beyond) while the other sources, under the listener's larger
// bound, still pass.
func TestSourceConcurrencyLimit(t *testing.T) {
	srcs := testSources()
	srcs[0].MaxConcurrent = 1 // orders
	e := newEnv(t, envOptions{sources: srcs})
	in := newIngress(e.svc, IngressOptions{MaxConcurrent: 8}, e.log, e.metrics)
	entered := make(chan struct{})
	release := make(chan struct{})
	h := in.wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
		w.WriteHeader(http.StatusOK)
	}))
	post := func(source string) *httptest.ResponseRecorder { return postTo(h, source) }
	done := make(chan int, 2)
	go func() { done <- post("orders").Code }()
	<-entered // orders' one slot is held
	if rec := post("orders"); rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "1" {
		t.Fatalf("second orders request: %d Retry-After %q, want 503 1", rec.Code, rec.Header().Get("Retry-After"))
	}
	go func() { done <- post("billing").Code }()
	<-entered // another source is not held back by orders' bound
	close(release)
	for range 2 {
		if code := <-done; code != 200 {
			t.Fatalf("held request: %d", code)
		}
	}
	go func() { done <- post("orders").Code }()
	<-entered // the slot is free again
	if code := <-done; code != 200 {
		t.Fatalf("orders after its slot was freed: %d", code)
	}
}

// TestAddrBucketsBounded: the per-address budget of failed verifications tracks at most its
// bound of addresses (an attacker cycling addresses cannot grow it), keeps charging the
// addresses it tracks, and an address it never saw has its whole budget.
func TestAddrBucketsBounded(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	a := newAddrBuckets(0.001, 2, 4)
	hot := netip.MustParseAddr("198.51.100.66")
	a.spend(hot, now)
	a.spend(hot, now)
	if ok, _ := a.allow(hot, now); ok {
		t.Fatal("an address that spent its burst of 2 is still allowed")
	}
	for i := range 1000 {
		a.spend(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), now)
		a.mu.Lock()
		n := len(a.buckets)
		a.mu.Unlock()
		if n > 4 {
			t.Fatalf("%d addresses tracked, want at most 4", n)
		}
	}
	if ok, _ := a.allow(netip.MustParseAddr("203.0.113.10"), now); !ok {
		t.Fatal("an address never seen is refused")
	}
	var nilBuckets *addrBuckets // http.unverified_limit off
	nilBuckets.spend(hot, now)
	if ok, _ := nilBuckets.allow(hot, now); !ok {
		t.Fatal("with no budget configured an address is refused")
	}
}

// TestBucketTakeRefund: take spends a token at once, so that requests admitted together
// cannot overdraw the bucket, and refund gives it back (never above the burst).
func TestBucketTakeRefund(t *testing.T) {
	t0 := time.Unix(1000, 0)
	b := newBucket(1, 2)
	for i, want := range []bool{true, true, false} {
		if ok, _ := b.take(t0); ok != want {
			t.Fatalf("take %d: %v, want %v", i, ok, want)
		}
	}
	if _, wait := b.take(t0); wait != time.Second {
		t.Fatalf("wait with no token left: %s, want 1s", wait)
	}
	b.refund(t0)
	if ok, _ := b.take(t0); !ok {
		t.Fatal("no token after a refund")
	}
	for range 5 {
		b.refund(t0)
	}
	for i, want := range []bool{true, true, false} { // refunds stop at the burst
		if ok, _ := b.take(t0); ok != want {
			t.Fatalf("take %d after refunds: %v, want %v", i, ok, want)
		}
	}
}

// TestRateLimitConcurrent: a source's rate_limit admits at most its burst of webhooks at
// once (before, tokens were checked at admission and spent after the answer, so every
// request that came while others were in flight passed), and a request that is not
// answered 2xx gives its token back.
func TestRateLimitConcurrent(t *testing.T) {
	srcs := testSources()
	srcs[0].RateLimit = relay.RateLimit{RPS: 0.001, Burst: 2} // orders: no refill during the test
	e := newEnv(t, envOptions{sources: srcs})
	in := newIngress(e.svc, IngressOptions{}, e.log, e.metrics)
	type held struct{ answer chan int }
	entered := make(chan held)
	h := in.wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := held{answer: make(chan int)}
		entered <- hd
		w.WriteHeader(<-hd.answer)
	}))
	post := func() *httptest.ResponseRecorder { return postTo(h, "orders") }
	done := make(chan int, 3)
	var inside []held
	for range 2 {
		go func() { done <- post().Code }()
		inside = append(inside, <-entered)
	}
	third := make(chan *httptest.ResponseRecorder, 1)
	go func() { third <- post() }()
	select {
	case rec := <-third:
		if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") == "" {
			t.Fatalf("third request while two hold the burst: %d Retry-After %q, want 429 with Retry-After", rec.Code, rec.Header().Get("Retry-After"))
		}
	case hd := <-entered:
		hd.answer <- http.StatusOK
		t.Fatal("a third request was admitted while two held the burst of 2")
	}
	inside[0].answer <- http.StatusUnauthorized // not a 2xx: its token comes back
	if code := <-done; code != http.StatusUnauthorized {
		t.Fatalf("first: %d", code)
	}
	go func() { done <- post().Code }()
	next := <-entered
	inside[1].answer <- http.StatusOK
	next.answer <- http.StatusOK
	for range 2 {
		if code := <-done; code != http.StatusOK {
			t.Fatalf("held request: %d", code)
		}
	}
	if rec := post(); rec.Code != http.StatusTooManyRequests { // both tokens spent by 2xx answers
		t.Fatalf("after two 200s: %d, want 429", rec.Code)
	}
}

// TestRateLimitGET: a GET to a webhook path (a provider's verification handshake) spends the
// source's rate limit too, and gives its token back unless it is answered 2xx.
func TestRateLimitGET(t *testing.T) {
	srcs := testSources()
	srcs[0].RateLimit = relay.RateLimit{RPS: 0.001, Burst: 1} // orders: no refill during the test
	e := newEnv(t, envOptions{sources: srcs})
	in := newIngress(e.svc, IngressOptions{}, e.log, e.metrics)
	status := http.StatusNotFound
	h := in.wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(status) }))
	get := func() int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/webhooks/orders", nil))
		return rec.Code
	}
	for i, want := range []int{http.StatusNotFound, http.StatusNotFound} { // not 2xx: the token comes back
		if got := get(); got != want {
			t.Fatalf("GET %d: %d, want %d", i, got, want)
		}
	}
	status = http.StatusOK
	if got := get(); got != http.StatusOK {
		t.Fatalf("handshake: %d, want 200", got)
	}
	if got := get(); got != http.StatusTooManyRequests {
		t.Fatalf("a second handshake with the burst of 1 spent: %d, want 429", got)
	}
}

// recordedDeadlines records the read deadlines http.ResponseController sets.
type recordedDeadlines struct {
	http.ResponseWriter
	deadlines []time.Time
}

func (w *recordedDeadlines) SetReadDeadline(t time.Time) error {
	w.deadlines = append(w.deadlines, t)
	return nil
}

// stallingBody returns n bytes at once, then a timeout, as a connection whose sender
// stopped would once its read deadline passed.
type stallingBody struct{ n int }

func (b *stallingBody) Read(p []byte) (int, error) {
	if b.n == 0 {
		return 0, os.ErrDeadlineExceeded
	}
	k := min(len(p), b.n)
	b.n -= k
	return k, nil
}
func (b *stallingBody) Close() error { return nil }

// TestReadBodyDeadline: http.min_body_rate sets the connection's read deadline from the bytes
// received so far, which replaces the server's http.read_timeout deadline. A body that sends
// most of itself at once earns a rate deadline far beyond read_timeout (100,000 bytes at
// 1,024 bytes/s: about 98 s); every deadline set stays at or before until.
func TestReadBodyDeadline(t *testing.T) {
	for _, tc := range []struct {
		name  string
		until time.Duration // 0: none
	}{
		{"read_timeout caps the rate deadline", 5 * time.Second},
		{"no read_timeout", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			var until time.Time
			if tc.until > 0 {
				until = start.Add(tc.until)
			}
			w := &recordedDeadlines{ResponseWriter: httptest.NewRecorder()}
			r := httptest.NewRequest(http.MethodPost, "/v1/webhooks/orders", nil)
			r.Body, r.ContentLength = &stallingBody{n: 100_000}, 110_000
			_, held, err := readBody(w, r, 1<<20, 1024, until, nil)
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("err %v, want the stalled read's timeout", err)
			}
			if held == 0 {
				t.Fatal("held 0 bytes for a buffer of 100,000")
			}
			last := w.deadlines[len(w.deadlines)-1] // the deadline of the read that stalled
			switch {
			case tc.until > 0 && last.After(until):
				t.Fatalf("read deadline %s after the start, past read_timeout %s", last.Sub(start), tc.until)
			case tc.until == 0 && last.Sub(start) < 90*time.Second:
				t.Fatalf("read deadline %s after the start, want the rate's (about 98 s)", last.Sub(start))
			}
		})
	}
}

// TestReadBodyMemory: every byte of a body's buffer is taken from the listener's budget
// (http.max_body_memory) before it is allocated; a body that would go over it fails with
// errBodyMemory, and what each call reports held returns the budget to zero.
func TestReadBodyMemory(t *testing.T) {
	budget := &byteBudget{limit: 300 << 10}
	read := func(n int) ([]byte, int64, error) {
		r := httptest.NewRequest(http.MethodPost, "/v1/webhooks/orders", strings.NewReader(strings.Repeat("x", n)))
		return readBody(httptest.NewRecorder(), r, 1<<20, 0, time.Time{}, budget)
	}
	b1, h1, err := read(200 << 10)
	if err != nil || len(b1) != 200<<10 || h1 < 200<<10 {
		t.Fatalf("first body: %d bytes, held %d, %v", len(b1), h1, err)
	}
	_, h2, err := read(200 << 10)
	if !errors.Is(err, errBodyMemory) {
		t.Fatalf("second body of 200 KiB with %d of 300 KiB held: %v, want errBodyMemory", budget.used.Load(), err)
	}
	b3, h3, err := read(1000) // a small one still fits
	if err != nil || len(b3) != 1000 {
		t.Fatalf("small body: %d bytes, %v", len(b3), err)
	}
	for _, h := range []int64{h1, h2, h3} {
		budget.give(h)
	}
	if used := budget.used.Load(); used != 0 {
		t.Fatalf("%d bytes still held after every body was given back", used)
	}
	if _, h, err := read(200 << 10); err != nil {
		t.Fatalf("after the first was given back: %v", err)
	} else {
		budget.give(h)
	}
}

// TestUndecodableIDsRefused: ids whose bytes are not UTF-8 decode to U+FFFD, so two distinct
// webhooks would carry one id and the second be answered duplicate and dropped; both are
// refused with 400 and nothing is stored.
func TestUndecodableIDsRefused(t *testing.T) {
	e := newEnv(t, envOptions{})
	for _, body := range [][]byte{
		[]byte("{\"id\":\"dup-\xfe\xfe\",\"type\":\"a\"}"),
		[]byte("{\"id\":\"dup-\xc0\xc1\",\"type\":\"b\"}"),
		[]byte(`{"id":"dup-\udc00\udc01","type":"c"}`),
	} {
		before := e.streamState()
		a := e.do(e2e.SignedRequest(t, e.cfgs["orders"], "", "orders", body, time.Now()))
		if a.status != http.StatusBadRequest || !strings.Contains(a.body, "UTF-8") {
			t.Errorf("id %q: %d %s, want 400 naming UTF-8", body, a.status, a.body)
		}
		if after := e.streamState(); !maps.Equal(before, after) {
			t.Errorf("id %q: store changed %v -> %v", body, before, after)
		}
	}
}

// postTo POSTs the body {} as JSON to source's webhook path on h.
func postTo(h http.Handler, source string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodPost, "/v1/webhooks/"+source, strings.NewReader("{}"))
	r.Header.Set("Content-Type", "application/json")
	h.ServeHTTP(rec, r)
	return rec
}
