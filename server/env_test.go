package server

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	eventrelayv1 "github.com/eventrelay/eventrelay/gen/eventrelay/v1"
	"github.com/eventrelay/eventrelay/internal/e2e"
	"github.com/eventrelay/eventrelay/internal/redistest"
	"github.com/eventrelay/eventrelay/internal/syncbuf"
	"github.com/eventrelay/eventrelay/relay"
	"github.com/eventrelay/eventrelay/relay/embedded"
	"github.com/eventrelay/eventrelay/relay/redisstore"
	"github.com/eventrelay/eventrelay/relay/verify"
	"github.com/redis/go-redis/v9"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	"google.golang.org/grpc/metadata"
)

// Secrets of the test sources. Tests assert that none of them reaches a log line.
const (
	ordersSecret  = "orders-secret-5f1c"
	billingSecret = "billing-secret-9a2e"
	stripeSecret  = "whsec_stripe-secret-77d0"
)

// testSources: orders and billing (hmac), stripe (stripe: signed timestamps, JSON only).
func testSources() []relay.SourceConfig {
	srcs := []relay.SourceConfig{
		{Name: "orders", Provider: "hmac", MaxBodyBytes: 4096, Verify: &verify.Options{Secrets: []relay.Secret{{Value: []byte(ordersSecret)}}}},
		{Name: "billing", Provider: "hmac", MaxBodyBytes: 4096, Verify: &verify.Options{Secrets: []relay.Secret{{Value: []byte(billingSecret)}}}},
		{Name: "stripe", Provider: "stripe", MaxBodyBytes: 4096, Verify: &verify.Options{Secrets: []relay.Secret{{Value: []byte(stripeSecret)}}}},
	}
	for i := range srcs {
		srcs[i].SetDefaults()
	}
	return srcs
}

type envOptions struct {
	redisURL   string // "" = the embedded server
	sources    []relay.SourceConfig
	tokens     []Token
	ingress    IngressOptions
	reflection bool
	tracing    bool
}

// env is one relay: a Service on a store, the gRPC server on a loopback port, and the
// public HTTP handler (webhooks and EventService's HTTP routes) on an httptest server.
type env struct {
	t       testing.TB
	cfgs    map[string]*relay.SourceConfig
	svc     *relay.Service
	store   *redisstore.Store
	rdb     redis.UniversalClient
	metrics *Metrics
	logs    *logBuffer
	log     *slog.Logger
	spans   *tracetest.InMemoryExporter
	ended   chan sdktrace.ReadOnlySpan // every span as it ends
	seen    []sdktrace.ReadOnlySpan    // ended spans taken off ended by waitSpan
	handler http.Handler
	http    *httptest.Server
	grpc    *grpc.Server
	writes  *HeldWrites // the gRPC listener's connections (as relayd's)
	conn    *grpc.ClientConn
	events  eventrelayv1.EventServiceClient
}

func newEnv(t testing.TB, o envOptions) *env {
	t.Helper()
	if o.sources == nil {
		o.sources = testSources()
	}
	url := o.redisURL
	if url == "" {
		srv, err := embedded.Start()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(srv.Close)
		url = srv.URL()
	}
	e := &env{t: t, cfgs: map[string]*relay.SourceConfig{}, logs: &logBuffer{}, metrics: NewMetrics()}
	log := slog.New(LogHandler(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	e.log = log
	store, err := redisstore.Open(url, false, "", redisstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	e.store, e.rdb = store, store.Client()
	store.ObserveErrors(e.metrics.RedisError)
	store.ObserveBatches(func(p relay.Partition, n int) { e.metrics.ObserveBatch(p.Source, n) })

	var sources []*relay.Source
	for i := range o.sources {
		cfg := o.sources[i]
		v, err := verify.New(&cfg)
		if err != nil {
			t.Fatal(err)
		}
		sources = append(sources, &relay.Source{Config: cfg, Verifier: v})
		e.cfgs[cfg.Name] = &sources[len(sources)-1].Config
	}
	e.svc, err = relay.NewService(TraceStore(store), sources, relay.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.svc.Close() })
	e.metrics.WatchStreams(e.svc, 2*time.Second)

	var tp *sdktrace.TracerProvider
	if o.tracing {
		e.spans = tracetest.NewInMemoryExporter()
		e.ended = make(chan sdktrace.ReadOnlySpan, 10000)
		tp = sdktrace.NewTracerProvider(sdktrace.WithSyncer(e.spans), sdktrace.WithSpanProcessor(endNotifier(e.ended)))
		t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	}
	eopts := EventServerOptions{Auth: NewAuth(AuthOptions{Tokens: o.tokens}), Logger: log, Metrics: e.metrics}
	if tp != nil {
		eopts.TracerProvider = tp
	}
	e.writes = &HeldWrites{}
	eopts.Writes = e.writes
	events := NewEventServer(e.svc, eopts)
	webhooks := NewWebhookServer(e.svc, WebhookServerOptions{Logger: log, Metrics: e.metrics})

	e.grpc = NewGRPCServer(GRPCOptions{Reflection: o.reflection, Health: health.NewServer(), Logger: log, Events: events})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = e.grpc.Serve(e.writes.Listen(lis)) }()
	t.Cleanup(func() { GracefulStop(e.grpc, time.Second) })
	e.conn, err = grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.conn.Close() })
	e.events = eventrelayv1.NewEventServiceClient(e.conn)

	if o.ingress.ContentTypes == nil {
		o.ingress.ContentTypes = func(src *relay.SourceConfig, ct string) bool { return verify.SourceAccepts(src, ct) }
	}
	hopts := HTTPOptions{Webhooks: webhooks, Conn: e.conn, Ingress: o.ingress, Logger: log, Metrics: e.metrics}
	if tp != nil {
		hopts.TracerProvider = tp
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	e.handler, err = NewHTTPHandler(ctx, e.svc, hopts)
	if err != nil {
		t.Fatal(err)
	}
	e.http = httptest.NewServer(e.handler)
	t.Cleanup(e.http.Close)
	return e
}

// redisURL is a real redis-server for the test (skipped, or failed under
// RELAY_REQUIRE_REDIS=1, without one).
func redisURL(t testing.TB) string { return redistest.Start(t) }

// eachStore runs fn on the embedded server (url "") and on a real redis-server: promises
// that need nothing Redis-specific are checked by a plain `go test` too.
func eachStore(t *testing.T, fn func(t *testing.T, url string)) {
	t.Run("embedded", func(t *testing.T) { fn(t, "") })
	t.Run("redis", func(t *testing.T) { fn(t, redisURL(t)) })
}

// signedRequest is a webhook request to source signed by the source's provider at now.
func (e *env) signedRequest(source string, body []byte, now time.Time) *http.Request {
	e.t.Helper()
	return e2e.SignedRequest(e.t, e.cfgs[source], e.http.URL, source, body, now)
}

type answer struct {
	status int
	header http.Header
	body   string
}

// do sends req (over the network when it has a host, else to the handler directly).
func (e *env) do(req *http.Request) answer {
	e.t.Helper()
	if req.URL.Host == "" {
		rec := httptest.NewRecorder()
		e.handler.ServeHTTP(rec, req)
		return answer{rec.Code, rec.Header(), rec.Body.String()}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, string(b)}
}

// streamState is what the store holds: the number of keys and every stream's length.
func (e *env) streamState() map[string]int64 {
	e.t.Helper()
	ctx := context.Background()
	st := map[string]int64{}
	n, err := e.rdb.DBSize(ctx).Result()
	if err != nil {
		e.t.Fatal(err)
	}
	st["dbsize"] = n
	for name := range e.cfgs {
		p := relay.Partition{Source: name}
		l, err := e.rdb.XLen(ctx, redisstore.StreamKey(p)).Result()
		if err != nil {
			e.t.Fatal(err)
		}
		st[name] = l
	}
	return st
}

func bearer(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

// logBuffer collects log output.
type logBuffer struct{ syncbuf.Buffer }

// lines returns the log lines containing substr.
func (l *logBuffer) lines(substr string) []string {
	var out []string
	for _, line := range strings.Split(l.String(), "\n") {
		if strings.Contains(line, substr) {
			out = append(out, line)
		}
	}
	return out
}

// endNotifier is a span processor that hands every ended span to a channel.
type endNotifier chan sdktrace.ReadOnlySpan

func (n endNotifier) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (n endNotifier) OnEnd(s sdktrace.ReadOnlySpan)                   { n <- s }
func (n endNotifier) Shutdown(context.Context) error                  { return nil }
func (n endNotifier) ForceFlush(context.Context) error                { return nil }

// waitSpan returns the first ended span named name not returned before, waiting for it to end
// (spans end after the answer is written, so a client may see the answer first).
func (e *env) waitSpan(name string) sdktrace.ReadOnlySpan {
	e.t.Helper()
	for i, s := range e.seen {
		if s.Name() == name {
			e.seen = append(e.seen[:i], e.seen[i+1:]...)
			return s
		}
	}
	deadline := time.After(10 * time.Second) // a guard against hanging, not a timing check
	for {
		select {
		case s := <-e.ended:
			if s.Name() == name {
				return s
			}
			e.seen = append(e.seen, s)
		case <-deadline:
			e.t.Fatalf("span %q never ended", name)
		}
	}
}
