package daemon

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	eventrelayv1 "github.com/eventrelay/eventrelay/gen/eventrelay/v1"
	"github.com/eventrelay/eventrelay/internal/config"
	"github.com/eventrelay/eventrelay/internal/e2e"
	"github.com/eventrelay/eventrelay/relay"
	"github.com/eventrelay/eventrelay/relay/verify"
)

const (
	edgeReaderToken    = "edge-reader-7f3a91"
	edgePublisherToken = "edge-publisher-2c88d0"
)

// zeros is an endless reader of zero bytes: a 100 MB body costs the test nothing.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// edgeRequest builds a request to relayd's HTTP listener. size > 0 sends a body of zeros of
// that length (chunked when chunked is set); token "" sends none.
func edgeRequest(t testing.TB, method, url, token string, body []byte, size int64, chunked bool) *http.Request {
	t.Helper()
	var r io.Reader = bytes.NewReader(body)
	n := int64(len(body))
	if size > 0 {
		r, n = io.LimitReader(zeros{}, size), size
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = n
	if chunked {
		req.ContentLength = -1
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	return req
}

// edgeDo sends req and returns the status (0 when the server hung up without answering).
func edgeDo(c *http.Client, req *http.Request) int {
	resp, err := c.Do(req)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestEventRoutesBeforeBody: EventService's HTTP routes authenticate before reading a byte
// of the body (401 without a token, 403 for a token that may not publish) and bound the
// body by http.max_request_bytes (413, announced or chunked); nothing is stored.
func TestEventRoutesBeforeBody(t *testing.T) {
	onBothStores(t, runEventRoutesBeforeBody)
}

func runEventRoutesBeforeBody(t *testing.T, url string) {
	cfg := testConfig(url)
	cfg.Auth.Tokens = []config.AuthToken{
		{Name: "reader", Token: relay.Secret{Value: []byte(edgeReaderToken)}},
		{Name: "publisher", Token: relay.Secret{Value: []byte(edgePublisherToken)}, Publish: true},
	}
	m := startMain(t, cfg)
	rdb := redisClient(t, url)
	base := "http://" + m.HTTPAddr
	before := secStore(t, rdb, cfg)
	publish := []byte(`{"source":"orders","id":"evt_pub","type":"t","data":"e30="}`)

	for _, tc := range []struct {
		name, method, path, token string
		size                      int64
		chunked                   bool
		want                      int
	}{
		{"publish without token, 100 MB", http.MethodPost, "/v1/events", "", 100 << 20, false, 401},
		{"publish without token, chunked 100 MB", http.MethodPost, "/v1/events", "", 100 << 20, true, 401},
		{"publish with a bad token", http.MethodPost, "/v1/events", "not-a-token", 100 << 20, false, 401},
		{"publish by a reader, 100 MB", http.MethodPost, "/v1/events", edgeReaderToken, 100 << 20, false, 403},
		{"acknowledge without token", http.MethodPost, "/v1/events:acknowledge", "", 10 << 20, false, 401},
		{"nack without token", http.MethodPost, "/v1/events:nack", "", 10 << 20, false, 401},
		{"redrive without token", http.MethodPost, "/v1/sources/orders:redrive", "", 10 << 20, false, 401},
		{"subscribe without token", http.MethodGet, "/v1/events:subscribe?sources=orders", "", 0, false, 401},
		{"publish over max_request_bytes", http.MethodPost, "/v1/events", edgePublisherToken, 2 << 20, false, 413},
		{"chunked publish over max_request_bytes", http.MethodPost, "/v1/events", edgePublisherToken, 2 << 20, true, 413},
		{"acknowledge over max_request_bytes", http.MethodPost, "/v1/events:acknowledge", edgeReaderToken, 2 << 20, true, 413},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := edgeRequest(t, tc.method, base+tc.path, tc.token, nil, tc.size, tc.chunked)
			if got := edgeDo(http.DefaultClient, req); got != tc.want {
				t.Fatalf("status %d, want %d", got, tc.want)
			}
		})
	}
	if after := secStore(t, rdb, cfg); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("store changed: %v -> %v", before, after)
	}
	// The same routes still work for who may use them.
	if got := edgeDo(http.DefaultClient, edgeRequest(t, http.MethodPost, base+"/v1/events", edgePublisherToken, publish, 0, false)); got != 200 {
		t.Fatalf("publish with the publisher token: %d, want 200", got)
	}
	if n, err := rdb.XLen(context.Background(), "relay:{orders:0}:s").Result(); err != nil || n != 1 {
		t.Fatalf("stream length %d (%v), want 1", n, err)
	}
}

// TestEventRoutesMemoryBound: 20 concurrent 100 MB requests to POST /v1/events, without a
// token (tokens configured) or over max_request_bytes (no tokens), leave relayd's memory
// within 64 MiB of idle.
func TestEventRoutesMemoryBound(t *testing.T) {
	if testing.Short() {
		t.Skip("sends 4 GB over loopback")
	}
	for _, tc := range []struct {
		name   string
		tokens bool
		want   int
	}{
		{"unauthenticated", true, 401},
		{"open, over the body limit", false, 413},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig("")
			if tc.tokens {
				cfg.Auth.Tokens = []config.AuthToken{{Name: "p", Token: relay.Secret{Value: []byte(edgePublisherToken)}, Publish: true}}
			}
			m := startMain(t, cfg)
			url := "http://" + m.HTTPAddr + "/v1/events"
			c := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 0, DisableKeepAlives: true}}
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			idle := ms.Sys
			var wg sync.WaitGroup
			statuses := make([]int, 20)
			for i := range statuses {
				wg.Add(1)
				go func() {
					defer wg.Done()
					statuses[i] = edgeDo(c, edgeRequest(t, http.MethodPost, url, "", nil, 100<<20, i%2 == 1))
				}()
			}
			wg.Wait()
			runtime.ReadMemStats(&ms)
			grew := int64(ms.Sys) - int64(idle)
			t.Logf("memory obtained from the OS grew by %d KiB", grew>>10)
			if grew > 64<<20 {
				t.Fatalf("memory grew by %d MiB, want at most 64", grew>>20)
			}
			// The answer comes before the body was read; the server then closes the
			// connection on the unread rest, which a client still writing may see as a reset
			// before it reads the answer (0). Anything else is wrong.
			for i, s := range statuses {
				if s != tc.want && s != 0 {
					t.Fatalf("request %d: status %d, want %d", i, s, tc.want)
				}
			}
		})
	}
}

// TestEventRoutesClientCert: with client certificates required on gRPC and no tokens,
// relayd refuses to start unless the HTTP listener demands them too for EventService
// (http.tls.client_ca_file); then the EventService routes refuse a client without a
// certificate while providers still deliver webhooks without one.
func TestEventRoutesClientCert(t *testing.T) {
	dir := t.TempDir()
	ca := secIssue(t, nil, "eventrelay test CA", false)
	srv := secIssue(t, ca, "relayd", true)
	cli := secIssue(t, ca, "consumer", false)
	certFile, keyFile := secWrite(t, dir, "srv.pem", srv.certPEM), secWrite(t, dir, "srv.key", srv.keyPEM)
	caFile := secWrite(t, dir, "ca.pem", ca.certPEM)

	cfg := testConfig(embeddedURL(t))
	cfg.HTTP.TLS = config.TLSConfig{CertFile: certFile, KeyFile: keyFile}
	cfg.GRPC.TLS = config.TLSConfig{CertFile: certFile, KeyFile: keyFile, ClientCAFile: caFile}
	err := cfg.Validate()
	if err == nil {
		t.Fatal("mTLS on gRPC, open HTTP EventService routes: configuration accepted")
	}
	for _, want := range []string{"http.tls.client_ca_file", "grpc.tls.client_ca_file", "auth.tokens", "POST /v1/events", "GET /v1/events:subscribe"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}

	cfg.HTTP.TLS.ClientCAFile = caFile
	if err := cfg.Validate(); err != nil {
		t.Fatalf("with http.tls.client_ca_file: %v", err)
	}
	m := startMain(t, cfg)
	rdb := redisClient(t, cfg.Redis.URL)
	base := "https://" + m.HTTPAddr
	anon := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool()}}}
	withCert := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool(), Certificates: []tls.Certificate{cli.tls(t)}}}}
	before := secStore(t, rdb, cfg)
	publish := []byte(`{"source":"orders","id":"evt_cert","type":"t","data":"e30="}`)

	for _, tc := range []struct {
		name, method, path string
		body               []byte
	}{
		{"publish", http.MethodPost, "/v1/events", publish},
		{"subscribe", http.MethodGet, "/v1/events:subscribe?sources=orders&start=START_POSITION_EARLIEST", nil},
		{"list", http.MethodGet, "/v1/sources/orders/events", nil},
	} {
		t.Run(tc.name+" without a client certificate", func(t *testing.T) {
			if got := edgeDo(anon, edgeRequest(t, tc.method, base+tc.path, "", tc.body, 0, false)); got != 401 {
				t.Fatalf("status %d, want 401", got)
			}
		})
	}
	if after := secStore(t, rdb, cfg); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("store changed: %v -> %v", before, after)
	}
	resp, err := anon.Do(secSigned(t, cfg, base, "orders", []byte(`{"id":"evt_hook","type":"t"}`), time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("webhook without a client certificate: %d, want 200", resp.StatusCode)
	}
	if got := edgeDo(withCert, edgeRequest(t, http.MethodPost, base+"/v1/events", "", publish, 0, false)); got != 200 {
		t.Fatalf("publish with a client certificate: %d, want 200", got)
	}
	n, err := rdb.XLen(context.Background(), "relay:{orders:0}:s").Result()
	if err != nil || n != 2 {
		t.Fatalf("stream length %d (%v), want 2", n, err)
	}
}

// TestSlowSendersHoldNoSlot: 64 unsigned senders dribbling their bodies (1 byte every 2 s)
// to one source, against a listener and a source that both allow 64 webhooks at once, hold
// no slot. Each slow sender waits for relayd's "100 Continue" (sent when the handler starts
// reading its body, past every check that comes before), so all 64 are inside relayd when
// the signed webhook is sent.
//
//   - http.min_body_rate off: the 64 are held for http.read_timeout; the signed webhook gets
//     200 while every one of them is still waiting for its answer.
//   - http.min_body_rate on (its default): the signed webhook gets 200 and each slow sender
//     ends with 408.
func TestSlowSendersHoldNoSlot(t *testing.T) {
	for _, tc := range []struct {
		name        string
		minBodyRate int64
		held        bool
	}{
		{"held for read_timeout (min_body_rate off)", 0, true},
		{"cut by min_body_rate", config.DefaultMinBodyRate, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(embeddedURL(t))
			cfg.HTTP.MaxConcurrent = 64
			cfg.HTTP.MinBodyRate = tc.minBodyRate
			cfg.Sources[0].MaxConcurrent = 64
			m := startMain(t, cfg)
			rdb := redisClient(t, cfg.Redis.URL)

			const slow = 64
			stop := make(chan struct{})
			var once sync.Once
			stopAll := func() { once.Do(func() { close(stop) }) }
			t.Cleanup(stopAll)
			inside := make(chan error, slow)
			statuses := make(chan int, slow)
			head := "POST /v1/webhooks/orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
				"Expect: 100-continue\r\nX-Signature: sha256=00\r\nContent-Length: 4000\r\n\r\n"
			for range slow {
				go func() {
					conn, err := net.Dial("tcp", m.HTTPAddr)
					if err != nil {
						inside <- err
						return
					}
					defer conn.Close()
					go func() { <-stop; conn.Close() }()
					// A guard against a hang, above every server timeout of the test.
					_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
					br := bufio.NewReader(conn)
					if _, err := io.WriteString(conn, head); err != nil {
						inside <- err
						return
					}
					// Go's server answers "100 Continue" when the handler first reads the body.
					line, err := br.ReadString('\n')
					if err == nil && !strings.Contains(line, " 100 ") {
						err = fmt.Errorf("first answer %q, want 100 Continue", line)
					}
					if err == nil {
						_, err = br.ReadString('\n') // the empty line ending it
					}
					inside <- err
					if err != nil {
						return
					}
					_, err = io.WriteString(conn, "{")
					tick := time.NewTicker(2 * time.Second)
					defer tick.Stop()
					for err == nil {
						// Dribble until the server answers and hangs up, or the test ends.
						select {
						case <-tick.C:
							_, err = io.WriteString(conn, " ")
						case <-stop:
							err = net.ErrClosed
						}
					}
					resp, rerr := http.ReadResponse(br, nil)
					if rerr != nil {
						statuses <- 0
						return
					}
					resp.Body.Close()
					statuses <- resp.StatusCode
				}()
			}
			for range slow {
				if err := <-inside; err != nil {
					t.Fatalf("slow sender: %v", err)
				}
			}
			// A generous timeout: what is asserted is the answer, not how fast it came.
			c := &http.Client{Timeout: 30 * time.Second}
			resp, err := c.Do(secSigned(t, cfg, "http://"+m.HTTPAddr, "orders", []byte(`{"id":"evt_signed","type":"t"}`), time.Now()))
			if err != nil {
				t.Fatalf("signed webhook next to %d slow senders: %v", slow, err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("signed webhook next to %d slow senders: %d, want 200", slow, resp.StatusCode)
			}
			if tc.held {
				if n := len(statuses); n != 0 {
					t.Fatalf("%d slow senders were answered before the signed webhook, want all %d still held", n, slow)
				}
				stopAll()
			} else {
				for range slow {
					if s := <-statuses; s != http.StatusRequestTimeout {
						t.Fatalf("slow sender answered %d, want 408", s)
					}
				}
			}
			if n, err := rdb.XLen(context.Background(), "relay:{orders:0}:s").Result(); err != nil || n != 1 {
				t.Fatalf("stream length %d (%v), want 1", n, err)
			}
		})
	}
}

// TestUnsignedFloodSparesRateLimit: requests that fail verification draw from their client
// address's budget (http.unverified_limit), never the source's rate_limit: after two
// unsigned requests a signed one still gets 200, and past the attacker's budget its
// requests get 429 while the provider's (another address) still pass.
func TestUnsignedFloodSparesRateLimit(t *testing.T) {
	cfg := testConfig(embeddedURL(t))
	cfg.Sources[0].RateLimit = relay.RateLimit{RPS: 1, Burst: 2}
	cfg.HTTP.Unverified = relay.RateLimit{RPS: 0.001, Burst: 3}
	// relayd behind a proxy on loopback: X-Forwarded-For names the client.
	cfg.HTTP.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	m := startMain(t, cfg)
	rdb := redisClient(t, cfg.Redis.URL)
	unsigned := func() postResult {
		return post(t, m, "orders", []byte(`{"id":"evt_forged","type":"t"}`), "sha256=00", "X-Forwarded-For", "198.51.100.66")
	}
	signed := func(id string) postResult {
		b := []byte(`{"id":"` + id + `","type":"t"}`)
		return post(t, m, "orders", b, e2e.Sign(testSecret, b), "X-Forwarded-For", "203.0.113.10")
	}
	for i := range 2 {
		if r := unsigned(); r.status != 401 {
			t.Fatalf("unsigned %d: %d, want 401", i, r.status)
		}
	}
	if r := signed("evt_1"); r.status != 200 {
		t.Fatalf("signed after two unsigned: %d %s, want 200", r.status, r.body)
	}
	if r := unsigned(); r.status != 401 {
		t.Fatalf("third unsigned: %d, want 401", r.status)
	}
	r := unsigned()
	if r.status != http.StatusTooManyRequests {
		t.Fatalf("unsigned past the address's budget: %d, want 429", r.status)
	}
	// 3 tokens at 0.001/s, all spent: the next is 1000 s away.
	if ra := r.header.Get("Retry-After"); ra != "1000" && ra != "999" {
		t.Fatalf("Retry-After %q, want 1000", ra)
	}
	if r := signed("evt_2"); r.status != 200 {
		t.Fatalf("signed after the unsigned flood: %d %s, want 200", r.status, r.body)
	}
	if n, err := rdb.XLen(context.Background(), "relay:{orders:0}:s").Result(); err != nil || n != 2 {
		t.Fatalf("stream length %d (%v), want 2", n, err)
	}
}

// TestRedisURLRedacted: a start with every Redis URL form (Redis unreachable, so that
// relayd logs the URL and go-redis logs its dial failures) never shows a credential in the
// log, in /v1/admin/sources or in /metrics.
func TestRedisURLRedacted(t *testing.T) {
	for _, tc := range []struct {
		name, url, master string
		cluster           bool
		secrets           []string
	}{
		{"userinfo", "redis://relay:pw-userinfo-a1@127.0.0.1:1/0", "", false, []string{"pw-userinfo-a1"}},
		{"tls, password only", "rediss://:pw-userinfo-b2@127.0.0.1:1/0", "", false, []string{"pw-userinfo-b2"}},
		// go-redis refuses the option: the error must not show its value.
		{"password parameter refused", "redis://127.0.0.1:1/0?password=pw-query-c3", "", false, []string{"pw-query-c3"}},
		// Sentinel: userinfo is the sentinels' password, ?password= the master's.
		{"sentinel", "redis://:pw-sentinel-d4@127.0.0.1:1/0?password=pw-master-e5&addr=127.0.0.1:2", "mymaster", false,
			[]string{"pw-sentinel-d4", "pw-master-e5"}},
		{"cluster", "redis://:pw-cluster-f6@127.0.0.1:1?addr=127.0.0.1:2", "", true, []string{"pw-cluster-f6"}},
		{"cluster, user and TLS", "rediss://relay:pw-cluster-g7@127.0.0.1:1?addr=127.0.0.1:2&addr=127.0.0.1:3", "", true, []string{"pw-cluster-g7"}},
		// go-redis refuses these options on a cluster URL: the error must not show their values.
		{"cluster, password parameter", "redis://127.0.0.1:1?addr=127.0.0.1:2&password=pw-cluster-h8", "", true, []string{"pw-cluster-h8"}},
		{"sentinel, TLS, user and password", "rediss://sentinel:pw-sentinel-i9@127.0.0.1:1?username=app&password=pw-master-j0", "mymaster", false,
			[]string{"pw-sentinel-i9", "pw-master-j0"}},
		{"sentinel_password parameter", "redis://127.0.0.1:1?sentinel_password=pw-sentinel-k1&password=pw-master-l2", "mymaster", false,
			[]string{"pw-sentinel-k1", "pw-master-l2"}},
		// A unix socket takes ?password=; other secret-looking parameters are hidden too.
		{"unix socket, password parameter", "unix:///nonexistent/redis.sock?db=0&password=pw-unix-m3", "", false, []string{"pw-unix-m3"}},
		{"other secret parameters", "redis://127.0.0.1:1/0?client_name=relay&auth_token=pw-token-n4&api_key=pw-key-o5", "", false,
			[]string{"pw-token-n4", "pw-key-o5"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(tc.url)
			cfg.Redis.MasterName, cfg.Redis.Cluster = tc.master, tc.cluster
			cfg.Redis.Timeout = 50 * time.Millisecond
			var logs syncLog
			m := NewMain(cfg, secLogger(&logs))
			if err := m.Run(context.Background()); err != nil {
				logs.Write([]byte("Run: " + err.Error()))
			} else {
				// A webhook meets the unreachable store; the admin answers are read too.
				_ = post(t, m, "orders", []byte(`{"id":"evt_r"}`), e2e.Sign(testSecret, []byte(`{"id":"evt_r"}`)))
				for _, path := range []string{"/v1/admin/sources", "/metrics"} {
					_, body := secGet(t, "http://"+m.AdminAddr+path)
					logs.Write([]byte(body))
				}
			}
			_ = m.Close()
			out := logs.String()
			if !strings.Contains(out, "xxxxx") && !strings.Contains(out, "Run: ") {
				t.Errorf("the redacted URL is not logged:\n%s", out)
			}
			for _, s := range tc.secrets {
				if strings.Contains(out, s) {
					t.Errorf("%q appears in the output:\n%s", s, out)
				}
			}
		})
	}
}

// TestPublishBounds: every Publish field is bounded, and the stored entry too; an event
// over a bound is refused naming the field (INVALID_ARGUMENT), one over the message limit
// by the transport, and nothing is stored.
func TestPublishBounds(t *testing.T) {
	onBothStores(t, runPublishBounds)
}

func runPublishBounds(t *testing.T, url string) {
	cfg := testConfig(url)
	cfg.Sources[0].MaxBodyBytes = 100
	m := startMain(t, cfg)
	rdb := redisClient(t, url)
	c := client(t, m)
	before := secStore(t, rdb, cfg)
	big := func(n int) string { return strings.Repeat("x", n) }
	many := func(n, size int) map[string]string {
		h := map[string]string{}
		for i := range n {
			h[fmt.Sprintf("h-%03d", i)] = big(size)
		}
		return h
	}
	ok := func() *eventrelayv1.PublishRequest {
		return &eventrelayv1.PublishRequest{Source: "orders", Type: "t", Data: []byte(`{}`)}
	}
	for _, tc := range []struct {
		name string
		mod  func(*eventrelayv1.PublishRequest)
		code codes.Code
		msg  string
	}{
		{"the 8 MB event", func(r *eventrelayv1.PublishRequest) {
			r.Headers = map[string]string{"x": big(5 << 20)}
			r.Subject, r.PartitionKey = big(2<<20), big(1<<20)
		}, codes.ResourceExhausted, ""},
		{"data over max_body_bytes", func(r *eventrelayv1.PublishRequest) { r.Data = []byte(big(101)) }, codes.InvalidArgument, "data:"},
		{"type", func(r *eventrelayv1.PublishRequest) { r.Type = big(257) }, codes.InvalidArgument, "type:"},
		{"subject", func(r *eventrelayv1.PublishRequest) { r.Subject = big(1025) }, codes.InvalidArgument, "subject:"},
		{"id", func(r *eventrelayv1.PublishRequest) { r.Id = big(1000) }, codes.InvalidArgument, "id"},
		{"partition key", func(r *eventrelayv1.PublishRequest) { r.PartitionKey = big(257) }, codes.InvalidArgument, "partition_key:"},
		{"content type", func(r *eventrelayv1.PublishRequest) { r.DataContentType = big(257) }, codes.InvalidArgument, "data_content_type:"},
		{"a header value", func(r *eventrelayv1.PublishRequest) { r.Headers = map[string]string{"x-big": big(8<<10 + 1)} }, codes.InvalidArgument, `headers["x-big"]`},
		{"a header name", func(r *eventrelayv1.PublishRequest) { r.Headers = map[string]string{big(257): "v"} }, codes.InvalidArgument, "headers: a name"},
		{"too many headers", func(r *eventrelayv1.PublishRequest) { r.Headers = many(101, 1) }, codes.InvalidArgument, "headers: 101"},
		{"all headers together", func(r *eventrelayv1.PublishRequest) { r.Headers = many(9, 8<<10) }, codes.InvalidArgument, "headers: 73"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := ok()
			tc.mod(r)
			_, err := c.Publish(context.Background(), r)
			if status.Code(err) != tc.code || !strings.Contains(status.Convert(err).Message(), tc.msg) {
				t.Fatalf("Publish = %v, want %s naming %q", err, tc.code, tc.msg)
			}
		})
	}
	if after := secStore(t, rdb, cfg); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("store changed: %v -> %v", before, after)
	}
	// At the bounds, it is stored.
	r := ok()
	r.Data, r.Type, r.Subject, r.PartitionKey = []byte(`"`+big(98)+`"`), big(256), big(1024), big(256)
	r.Headers = many(7, 8<<10)
	if _, err := c.Publish(context.Background(), r); err != nil {
		t.Fatalf("Publish at the bounds: %v", err)
	}
}

// TestFarFutureTimestamps: correctly signed requests whose signed timestamp lies beyond the
// tolerance in the future (far enough that the difference overflows a Duration) get 401 and
// store nothing. Signatures are computed here by hand (HMAC-SHA256 over the documented
// string), not with verify.Sign.
func TestFarFutureTimestamps(t *testing.T) {
	const stripeSecret, hmacSecret = "whsec_far_future_test", "far-future-hmac"
	cfg := testConfig(embeddedURL(t))
	cfg.Sources = append(cfg.Sources,
		secSource("stripe", "stripe", stripeSecret),
		secSource("stamped", "hmac", hmacSecret, func(s *relay.SourceConfig) {
			verify.OptionsOf(s).TimestampHeader, verify.OptionsOf(s).Template = "X-Timestamp", "{timestamp}.{body}"
		}))
	m := startMain(t, cfg)
	rdb := redisClient(t, cfg.Redis.URL)
	mac := func(secret, msg string) string {
		h := hmac.New(sha256.New, []byte(secret))
		h.Write([]byte(msg))
		return hex.EncodeToString(h.Sum(nil))
	}
	body := `{"id":"evt_future","object":"event","type":"charge.succeeded"}`
	stripe := func(ts string) func(*http.Request) {
		return func(r *http.Request) {
			r.Header.Set("Stripe-Signature", "t="+ts+",v1="+mac(stripeSecret, ts+"."+body))
		}
	}
	stamped := func(ts string) func(*http.Request) {
		return func(r *http.Request) {
			r.Header.Set("X-Timestamp", ts)
			r.Header.Set("X-Signature", "sha256="+mac(hmacSecret, ts+"."+body))
		}
	}
	now := time.Now()
	for _, tc := range []struct {
		name, source string
		sign         func(*http.Request)
		want         int
	}{
		{"stripe: t=99999999999", "stripe", stripe("99999999999"), 401},
		{"stripe: t in milliseconds", "stripe", stripe(strconv.FormatInt(now.UnixMilli(), 10)), 401},
		{"stripe: 10 minutes ahead", "stripe", stripe(strconv.FormatInt(now.Add(10*time.Minute).Unix(), 10)), 401},
		{"stripe: year 1", "stripe", stripe("-62135596800"), 401},
		{"hmac: 9999-12-31T23:59:59Z", "stamped", stamped("9999-12-31T23:59:59Z"), 401},
		{"hmac: unix seconds far ahead", "stamped", stamped("99999999999"), 401},
		{"hmac: 0001-01-01T00:00:00Z", "stamped", stamped("0001-01-01T00:00:00Z"), 401},
		// Controls: the same signatures as of now pass.
		{"stripe: now", "stripe", stripe(strconv.FormatInt(now.Unix(), 10)), 200},
		{"hmac: now", "stamped", stamped(now.UTC().Format(time.RFC3339)), 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodPost, "http://"+m.HTTPAddr+"/v1/webhooks/"+tc.source, strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			tc.sign(req)
			if got := edgeDo(http.DefaultClient, req); got != tc.want {
				t.Fatalf("status %d, want %d", got, tc.want)
			}
		})
	}
	for src, want := range map[string]int64{"stripe": 1, "stamped": 1} {
		if n, err := rdb.XLen(context.Background(), "relay:{"+src+":0}:s").Result(); err != nil || n != want {
			t.Errorf("%s: stream length %d (%v), want %d", src, n, err, want)
		}
	}
}

// TestBodyFormat: a source reads one body format (body_format, or its provider's default),
// so the unsigned Content-Type cannot change what a signed body means: a captured JSON
// webhook replayed as a form, or a JSON body whose string smuggles form fields, gets 415 and
// is not stored.
func TestBodyFormat(t *testing.T) {
	onBothStores(t, runBodyFormat)
}

func runBodyFormat(t *testing.T, storeURL string) {
	const ghSecret = "gh-body-format-secret"
	cfg := testConfig(storeURL)
	cfg.Sources = append(cfg.Sources,
		secSource("gh", "github", ghSecret),
		secSource("ghform", "github", ghSecret, func(s *relay.SourceConfig) { verify.OptionsOf(s).BodyFormat = "form" }))
	m := startMain(t, cfg)
	rdb := redisClient(t, cfg.Redis.URL)
	mac := func(secret, body string) string {
		h := hmac.New(sha256.New, []byte(secret))
		h.Write([]byte(body))
		return "sha256=" + hex.EncodeToString(h.Sum(nil))
	}
	send := func(source, ct, body string, hdr ...string) int {
		req, err := http.NewRequest(http.MethodPost, "http://"+m.HTTPAddr+"/v1/webhooks/"+source, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", ct)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		return edgeDo(http.DefaultClient, req)
	}
	ghBody := `{"action":"opened","number":7}`
	ghHeaders := []string{"X-Hub-Signature-256", mac(ghSecret, ghBody), "X-GitHub-Event", "issues", "X-GitHub-Delivery", "d-77"}
	smuggled := `{"id":"evt_1","note":"x&type=refund.issued&id=evt_forged"}`
	formBody := "payload=" + url.QueryEscape(ghBody)
	for _, tc := range []struct {
		name, source, ct, body string
		hdr                    []string
		want                   int
	}{
		{"github json", "gh", "application/json", ghBody, ghHeaders, 200},
		{"the same capture replayed as a form", "gh", "application/x-www-form-urlencoded", ghBody, ghHeaders, 415},
		{"the same capture replayed as multipart", "gh", "multipart/form-data; boundary=x", ghBody, ghHeaders, 415},
		{"hmac json smuggling form fields, sent as a form", "orders", "application/x-www-form-urlencoded", smuggled,
			[]string{"X-Signature", e2e.Sign(testSecret, []byte(smuggled))}, 415},
		{"hmac json as text/plain", "orders", "text/plain", smuggled, []string{"X-Signature", e2e.Sign(testSecret, []byte(smuggled))}, 415},
		{"github form source: a form", "ghform", "application/x-www-form-urlencoded", formBody,
			[]string{"X-Hub-Signature-256", mac(ghSecret, formBody), "X-GitHub-Event", "issues", "X-GitHub-Delivery", "d-78"}, 200},
		{"github form source: json", "ghform", "application/json", ghBody, ghHeaders, 415},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := send(tc.source, tc.ct, tc.body, tc.hdr...); got != tc.want {
				t.Fatalf("status %d, want %d", got, tc.want)
			}
		})
	}
	for src, want := range map[string]int64{"gh": 1, "ghform": 1, "orders": 0} {
		if n, err := rdb.XLen(context.Background(), "relay:{"+src+":0}:s").Result(); err != nil && want > 0 || n != want {
			t.Errorf("%s: stream length %d (%v), want %d", src, n, err, want)
		}
	}

	// An id_header the signature does not cover fails the start unless accepted.
	start := func(mod func(*relay.SourceConfig)) error {
		c := testConfig("")
		verify.OptionsOf(&c.Sources[0]).IDHeader = "X-Delivery-Id"
		mod(&c.Sources[0])
		m := NewMain(c, nil)
		defer m.Close()
		return m.Run(context.Background())
	}
	err := start(func(*relay.SourceConfig) {})
	if err == nil || !strings.Contains(err.Error(), "id_header") || !strings.Contains(err.Error(), "unsigned_id") {
		t.Fatalf("unsigned id_header: Run = %v, want an error naming id_header and unsigned_id", err)
	}
	if err := start(func(s *relay.SourceConfig) { verify.OptionsOf(s).UnsignedID = true }); err != nil {
		t.Fatalf("with unsigned_id: %v", err)
	}
	if err := start(func(s *relay.SourceConfig) { verify.OptionsOf(s).Template = "{id}.{body}" }); err != nil {
		t.Fatalf("with {id} signed: %v", err)
	}
}

// TestSubscriptionLimits: subscribe.max_subscribers bounds the subscriptions over gRPC and
// HTTP together, auth.tokens[].max_subscriptions those of one token (RESOURCE_EXHAUSTED, 429
// over HTTP), a closed subscription frees its place, heartbeats faster than
// subscribe.min_heartbeat are refused, and the goroutines return to their count once all
// are closed.
func TestSubscriptionLimits(t *testing.T) {
	cfg := testConfig(embeddedURL(t))
	cfg.Subscribe.MaxSubscribers = 3
	cfg.Subscribe.MinHeartbeat = time.Second
	cfg.Auth.Tokens = []config.AuthToken{
		{Name: "capped", Token: relay.Secret{Value: []byte(edgeReaderToken)}, MaxSubscriptions: 2},
		{Name: "free", Token: relay.Secret{Value: []byte(edgePublisherToken)}},
	}
	m := startMain(t, cfg)
	c := client(t, m)
	var base int
	open := func(token string) (eventrelayv1.EventService_SubscribeClient, context.CancelFunc, error) {
		ctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token))
		st, err := c.Subscribe(ctx, &eventrelayv1.SubscribeRequest{Sources: []string{"orders"}, HeartbeatInterval: durationpb.New(time.Second)})
		if err == nil {
			_, err = st.Header() // the stream is open (or refused)
			if err == nil {
				// A refusal arrives as the status; an admitted stream sends its first heartbeat.
				_, err = st.Recv()
			}
		}
		if err != nil {
			cancel()
		}
		return st, cancel, err
	}
	// Warm up: the client's connection, the gateway's in-process one and the shared reader
	// of orders exist from the first subscriptions on; count the goroutines after them.
	if _, cancel, err := open(edgePublisherToken); err != nil {
		t.Fatal(err)
	} else {
		cancel()
	}
	warm := edgeRequest(t, http.MethodGet, "http://"+m.HTTPAddr+"/v1/sources/orders/events", edgePublisherToken, nil, 0, false)
	if got := edgeDo(http.DefaultClient, warm); got != 200 {
		t.Fatalf("list: %d", got)
	}
	http.DefaultClient.CloseIdleConnections()
	secAwait(t, "no subscriber left", func() bool { return subscribersGauge(t, m) == 0 })
	base = runtime.NumGoroutine()

	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+edgePublisherToken)
	st, err := c.Subscribe(ctx, &eventrelayv1.SubscribeRequest{Sources: []string{"orders"}, HeartbeatInterval: durationpb.New(500 * time.Millisecond)})
	if err == nil {
		_, err = st.Recv()
	}
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "at least 1s") {
		t.Fatalf("heartbeat 500ms: %v, want INVALID_ARGUMENT (at least 1s)", err)
	}
	_, c1, err := open(edgeReaderToken)
	if err != nil {
		t.Fatalf("first capped subscription: %v", err)
	}
	_, c2, err := open(edgeReaderToken)
	if err != nil {
		t.Fatalf("second capped subscription: %v", err)
	}
	if _, _, err := open(edgeReaderToken); status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "max_subscriptions") {
		t.Fatalf("third capped subscription: %v, want RESOURCE_EXHAUSTED naming max_subscriptions", err)
	}
	_, c3, err := open(edgePublisherToken)
	if err != nil {
		t.Fatalf("a subscription of another token: %v", err)
	}
	if _, _, err := open(edgePublisherToken); status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "max_subscribers") {
		t.Fatalf("a fourth subscription: %v, want RESOURCE_EXHAUSTED naming max_subscribers", err)
	}
	req := edgeRequest(t, http.MethodGet, "http://"+m.HTTPAddr+"/v1/events:subscribe?sources=orders&heartbeat_interval=1s", edgePublisherToken, nil, 0, false)
	if got := edgeDo(http.DefaultClient, req); got != http.StatusTooManyRequests {
		t.Fatalf("a fourth subscription over HTTP: %d, want 429", got)
	}
	c1()
	secAwait(t, "the closed subscription's place to be free", func() bool {
		_, cancel, err := open(edgeReaderToken)
		if err == nil {
			cancel()
		}
		return err == nil
	})
	c2()
	c3()
	secAwait(t, "no subscriber left", func() bool { return subscribersGauge(t, m) == 0 })
	t.Logf("goroutines: %d at the start, %d now", base, runtime.NumGoroutine())
	http.DefaultClient.CloseIdleConnections()
	secAwait(t, "goroutines back to their count", func() bool { return runtime.NumGoroutine() <= base+2 })
	t.Logf("goroutines: %d at the start, %d at the end", base, runtime.NumGoroutine())
}

// TestStalledSubscribersEnd: a gRPC subscriber that stops reading is ended once its send has
// been blocked for subscribe.send_timeout, and an HTTP one once the stream has not accepted a
// write for http.write_timeout; the subscribers gauge drops to zero.
func TestStalledSubscribersEnd(t *testing.T) {
	cfg := testConfig(embeddedURL(t))
	cfg.Sources[0].MaxBodyBytes = 8 << 10
	cfg.Subscribe.SendTimeout = time.Second
	cfg.HTTP.WriteTimeout = time.Second
	m := startMain(t, cfg)
	c := client(t, m)

	// gRPC: the client never calls Recv after the first message.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := c.Subscribe(ctx, &eventrelayv1.SubscribeRequest{Sources: []string{"orders"}, HeartbeatInterval: durationpb.New(100 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err != nil {
		t.Fatal(err)
	}
	// HTTP: a raw connection with a small receive buffer that reads nothing.
	conn, err := net.Dial("tcp", m.HTTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.(*net.TCPConn).SetReadBuffer(4096)
	if _, err := io.WriteString(conn, "GET /v1/events:subscribe?sources=orders&heartbeat_interval=0.1s HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	secAwait(t, "both subscribers", func() bool { return subscribersGauge(t, m) == 2 })
	data := []byte(`"` + strings.Repeat("x", 7<<10) + `"`)
	for i := 0; subscribersGauge(t, m) > 0; i++ {
		if i == 4000 {
			t.Fatalf("%d subscribers still open after 4000 events of 7 KiB", subscribersGauge(t, m))
		}
		if _, err := c.Publish(context.Background(), &eventrelayv1.PublishRequest{Source: "orders", Type: "t", Data: data}); err != nil {
			t.Fatal(err)
		}
	}
}

// grpcMaxStreams reads the SETTINGS frame relayd's gRPC listener sends a new HTTP/2
// connection (parsed by hand, RFC 9113 §6.5) and returns its SETTINGS_MAX_CONCURRENT_STREAMS
// (0x3); ok is false when the frame does not carry it.
func grpcMaxStreams(t *testing.T, addr string) (n uint32, ok bool) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	// The client preface and an empty SETTINGS frame (length 0, type 4, flags 0, stream 0).
	if _, err := io.WriteString(conn, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	for {
		var hdr [9]byte
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			t.Fatalf("reading the server's frames: %v", err)
		}
		length := int(hdr[0])<<16 | int(hdr[1])<<8 | int(hdr[2])
		payload := make([]byte, length)
		if _, err := io.ReadFull(br, payload); err != nil {
			t.Fatal(err)
		}
		if hdr[3] != 0x4 || hdr[4]&0x1 != 0 { // not SETTINGS, or its ACK
			continue
		}
		for i := 0; i+6 <= len(payload); i += 6 {
			if id := uint16(payload[i])<<8 | uint16(payload[i+1]); id == 0x3 {
				return uint32(payload[i+2])<<24 | uint32(payload[i+3])<<16 | uint32(payload[i+4])<<8 | uint32(payload[i+5]), true
			}
		}
		return 0, false
	}
}

// TestStreamsPerConnection: grpc.max_streams_per_connection is what relayd announces to every
// gRPC connection (SETTINGS_MAX_CONCURRENT_STREAMS; 100 by default): one connection holding
// that many subscriptions gets no further stream until one ends, while another connection is
// served.
func TestStreamsPerConnection(t *testing.T) {
	t.Run("default", func(t *testing.T) {
		m := startMain(t, testConfig(embeddedURL(t)))
		if n, ok := grpcMaxStreams(t, m.GRPCAddr); !ok || n != 100 {
			t.Fatalf("SETTINGS_MAX_CONCURRENT_STREAMS %d (sent: %v), want 100", n, ok)
		}
	})
	t.Run("two per connection", func(t *testing.T) {
		cfg := testConfig(embeddedURL(t))
		cfg.GRPC.MaxStreamsPerConnection = 2
		m := startMain(t, cfg)
		if n, ok := grpcMaxStreams(t, m.GRPCAddr); !ok || n != 2 {
			t.Fatalf("SETTINGS_MAX_CONCURRENT_STREAMS %d (sent: %v), want 2", n, ok)
		}
		req := &eventrelayv1.SubscribeRequest{Sources: []string{"orders"}, HeartbeatInterval: durationpb.New(100 * time.Millisecond)}
		subscribe := func(c eventrelayv1.EventServiceClient) (context.CancelFunc, error) {
			ctx, cancel := context.WithCancel(context.Background())
			st, err := c.Subscribe(ctx, req)
			if err == nil {
				_, err = st.Recv() // the first heartbeat: the subscription is open
			}
			return cancel, err
		}
		one := client(t, m)
		var cancels []context.CancelFunc
		for i := range 2 {
			cancel, err := subscribe(one)
			if err != nil {
				t.Fatalf("subscription %d on the connection: %v", i, err)
			}
			cancels = append(cancels, cancel)
		}
		third := make(chan error, 1)
		var cancelThird context.CancelFunc
		var mu sync.Mutex
		go func() {
			cancel, err := subscribe(one)
			mu.Lock()
			cancelThird = cancel
			mu.Unlock()
			third <- err
		}()
		// Another connection is served meanwhile.
		other, err := subscribe(client(t, m))
		if err != nil {
			t.Fatalf("a subscription on another connection: %v", err)
		}
		defer other()
		secAwait(t, "three subscribers", func() bool { return subscribersGauge(t, m) == 3 })
		select {
		case err := <-third:
			t.Fatalf("a third stream on the connection was opened (%v) while two were", err)
		default:
		}
		cancels[0]()
		if err := <-third; err != nil {
			t.Fatalf("the third stream once one ended: %v", err)
		}
		mu.Lock()
		cancelThird()
		mu.Unlock()
		cancels[1]()
		secAwait(t, "one subscriber left", func() bool { return subscribersGauge(t, m) == 1 })
	})
}

// TestStalledBodies: clients that send most of a body at once and then stall. Such a body
// earned a http.min_body_rate deadline far beyond http.read_timeout (150 KiB at 1,024 bytes/s:
// about 150 s), and each held its buffer meanwhile, with nothing bounding their number.
//
//   - http.max_body_memory (480 KiB here) holds two of them (announcing 200 KiB and sending
//     150 KiB, each holds 150 to about 208 KiB of buffer, whatever the runtime's growth);
//     a third body of 250 KiB cannot fit in what is left (at most 180 KiB) and is answered
//     503 with Retry-After at once, storing nothing;
//   - a small signed webhook still fits beside them and gets 200;
//   - the stalled two are answered 408 by http.read_timeout (10 s here), not by the rate;
//   - then a large body fits again.
func TestStalledBodies(t *testing.T) {
	cfg := testConfig(embeddedURL(t))
	cfg.HTTP.ReadTimeout = 10 * time.Second
	cfg.HTTP.MaxBodyMemory = 480 << 10
	cfg.Sources[0].MaxBodyBytes = 256 << 10
	m := startMain(t, cfg)
	rdb := redisClient(t, cfg.Redis.URL)

	const length, sent = 200 << 10, 150 << 10
	// stall sends the headers of a body of length and sent bytes of it, then nothing; it
	// reports the status of the answer (0: none before the guard deadline, far above
	// read_timeout).
	stall := func(length, sent int, sentBody chan<- struct{}) <-chan int {
		status := make(chan int, 1)
		conn, err := net.Dial("tcp", m.HTTPAddr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
		go func() {
			head := fmt.Sprintf("POST /v1/webhooks/orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"+
				"X-Signature: sha256=00\r\nContent-Length: %d\r\n\r\n", length)
			_, err := io.WriteString(conn, head+"{"+strings.Repeat(" ", sent-1))
			if sentBody != nil {
				close(sentBody)
			}
			if err != nil {
				status <- 0
				return
			}
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				status <- 0
				return
			}
			resp.Body.Close()
			status <- resp.StatusCode
		}()
		return status
	}
	var first []<-chan int
	for range 2 {
		sentBody := make(chan struct{})
		first = append(first, stall(length, sent, sentBody))
		<-sentBody
	}
	waitUntil(t, "two stalled bodies held", func() bool { return bodyBytes(t, m) >= 2*sent })
	third := stall(250<<10, 250<<10, nil)
	if s := <-third; s != http.StatusServiceUnavailable {
		t.Fatalf("a third large body beside two stalled ones: %d, want 503", s)
	}
	if got := post(t, m, "orders", []byte(`{"id":"evt_small","type":"t"}`), e2e.Sign(testSecret, []byte(`{"id":"evt_small","type":"t"}`))); got.status != 200 {
		t.Fatalf("small signed webhook beside the stalled bodies: %d %s", got.status, got.body)
	}
	for i, c := range first {
		if s := <-c; s != http.StatusRequestTimeout {
			t.Fatalf("stalled body %d: %d, want 408 by http.read_timeout", i, s)
		}
	}
	waitUntil(t, "the stalled bodies' memory given back", func() bool { return bodyBytes(t, m) == 0 })
	big := append([]byte(`{"id":"evt_big","type":"t","pad":"`), bytes.Repeat([]byte("x"), length)...)
	big = append(big, `"}`...)
	if got := post(t, m, "orders", big, e2e.Sign(testSecret, big)); got.status != 200 {
		t.Fatalf("large signed webhook once the stalled ones ended: %d %s", got.status, got.body)
	}
	if n, err := rdb.XLen(context.Background(), "relay:{orders:0}:s").Result(); err != nil || n != 2 {
		t.Fatalf("stream length %d (%v), want 2", n, err)
	}
}

// bodyBytes is relayd's eventrelay_webhook_body_bytes.
func bodyBytes(t *testing.T, m *Main) int {
	t.Helper()
	for line := range strings.Lines(scrape(t, m.AdminAddr)) {
		if v, ok := strings.CutPrefix(line, "eventrelay_webhook_body_bytes "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("eventrelay_webhook_body_bytes %q: %v", v, err)
			}
			return int(f)
		}
	}
	t.Fatal("/metrics lacks eventrelay_webhook_body_bytes")
	return 0
}

// waitUntil polls cond until it holds, failing the test after 30 s (a guard against a hang).
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestCrossOriginRefused: with no auth.tokens (the default), a web page the operator opens
// could have their browser POST to the listeners it reaches: the console's test webhook
// (which relayd signs itself), a publish. Requests a browser marks as cross-origin
// (Sec-Fetch-Site, or an Origin whose host is not the request's) are answered 403 and change
// nothing; the console's own (same-origin) and non-browser requests (no such headers) pass.
func TestCrossOriginRefused(t *testing.T) {
	cfg := testConfig(embeddedURL(t))
	m := startMain(t, cfg)
	rdb := redisClient(t, cfg.Redis.URL)
	n := 0
	length := func() int64 {
		l, err := rdb.XLen(context.Background(), "relay:{orders:0}:s").Result()
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	for _, tc := range []struct {
		name string
		hdr  []string // name, value pairs
		want int
	}{
		{"cross-site fetch", []string{"Sec-Fetch-Site", "cross-site"}, http.StatusForbidden},
		{"same-site other origin", []string{"Sec-Fetch-Site", "same-site"}, http.StatusForbidden},
		{"foreign Origin without Sec-Fetch-Site", []string{"Origin", "http://evil.example"}, http.StatusForbidden},
		{"no browser headers (relayctl, curl)", nil, http.StatusOK},
		{"the console itself", []string{"Sec-Fetch-Site", "same-origin"}, http.StatusOK},
		{"typed into the address bar", []string{"Sec-Fetch-Site", "none"}, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, target := range []struct{ addr, path, body string }{
				{m.AdminAddr, "/v1/console/sources/orders/send", `{"body":"{\"id\":\"evt_csrf_%d\",\"type\":\"t\"}","content_type":"application/json"}`},
				{m.AdminAddr, "/v1/events", `{"source":"orders","id":"evt_csrf_%d","type":"t","data":"e30="}`},
				{m.HTTPAddr, "/v1/events", `{"source":"orders","id":"evt_csrf_%d","type":"t","data":"e30="}`},
			} {
				n++
				req, err := http.NewRequest(http.MethodPost, "http://"+target.addr+target.path, strings.NewReader(fmt.Sprintf(target.body, n)))
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Content-Type", "text/plain;charset=UTF-8") // a "simple" request: no preflight
				for i := 0; i+1 < len(tc.hdr); i += 2 {
					req.Header.Set(tc.hdr[i], tc.hdr[i+1])
				}
				before := length()
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != tc.want {
					t.Fatalf("POST %s%s: %d %s, want %d", target.addr, target.path, resp.StatusCode, body, tc.want)
				}
				want := before
				if tc.want == http.StatusOK {
					want++
				} else if !strings.Contains(string(body), "cross-origin request refused") {
					t.Fatalf("POST %s: refusal %s does not say why", target.path, body)
				}
				if got := length(); got != want {
					t.Fatalf("POST %s%s: stream length %d -> %d, want %d", target.addr, target.path, before, got, want)
				}
			}
		})
	}
}

// TestGRPCMetadataBounded: a call's metadata is bounded by http.max_header_bytes (64 KiB by
// default), as an HTTP request's headers are; grpc-go's own bound is 16 MiB per call, held
// before any token is checked. A call within it is answered.
func TestGRPCMetadataBounded(t *testing.T) {
	m := startMain(t, testConfig(embeddedURL(t)))
	c := client(t, m)
	call := func(size int) error {
		ctx := metadata.AppendToOutgoingContext(context.Background(), "x-pad", strings.Repeat("x", size))
		_, err := c.GetEvent(ctx, &eventrelayv1.GetEventRequest{Source: "orders", Id: "nope"})
		return err
	}
	if err := call(1 << 20); err == nil || status.Code(err) == codes.NotFound {
		t.Fatalf("a call with 1 MiB of metadata: %v, want it refused before the handler", err)
	}
	if err := call(8 << 10); status.Code(err) != codes.NotFound {
		t.Fatalf("a call with 8 KiB of metadata: %v, want the handler's NOT_FOUND", err)
	}
}
