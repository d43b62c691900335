package daemon

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/eventrelay/eventrelay/internal/config"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eventrelay/eventrelay/relay"
	"github.com/eventrelay/eventrelay/relay/embedded"
	"github.com/eventrelay/eventrelay/relay/filter"
	"github.com/eventrelay/eventrelay/relay/push"
	"github.com/eventrelay/eventrelay/relay/redisstore"
	"github.com/eventrelay/eventrelay/relay/verify"
	"github.com/eventrelay/eventrelay/server"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/test/bufconn"
)

// Main is relayd: configuration in, running listeners out. main() and the end-to-end tests
// share it.
type Main struct {
	Config *config.Config
	Logger *slog.Logger

	// Bound addresses, set by Run (useful with ":0" in tests).
	HTTPAddr, GRPCAddr, AdminAddr string

	// TracerProvider, when set before Run, records the spans instead of the provider built
	// from Config.Tracing (tests use an in-memory exporter).
	TracerProvider trace.TracerProvider
	traceShutdown  func(context.Context) error

	embedded  *embedded.Server
	store     *redisstore.Store
	svc       *relay.Service
	metrics   *server.Metrics
	pusher    *push.Pusher
	refused   *server.RefusedLog
	auth      *server.Auth // auth.tokens: also the admin API's (adminAuth)
	activity  *server.Activity
	console   http.Handler
	health    *health.Server
	ready     atomic.Bool
	grpc      *grpc.Server
	inproc    *grpc.Server
	inprocLis *bufconn.Listener
	conn      *grpc.ClientConn
	http      *http.Server
	admin     *http.Server
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// NewMain returns a Main for cfg.
func NewMain(cfg *config.Config, log *slog.Logger) *Main {
	if log == nil {
		log = slog.Default()
	}
	return &Main{Config: cfg, Logger: log}
}

// Run opens the store and starts every listener. It returns once they accept connections;
// Close stops them.
func (m *Main) Run(ctx context.Context) (err error) {
	cfg := m.Config
	log := m.Logger
	bg, cancel := context.WithCancel(context.Background())
	m.cancel = cancel

	// Store. go-redis's own lines (dial failures during an outage) go through slog too.
	redis.SetLogger(redisstore.SlogLogger{Log: log})
	url := cfg.Redis.URL
	if url == "" {
		m.embedded, err = embedded.Start()
		if err != nil {
			return fmt.Errorf("starting the embedded store: %w", err)
		}
		url = m.embedded.URL()
		log.Warn("no redis.url configured: using the embedded in-process store; events live in memory only and are lost when relayd stops")
	}
	m.store, err = redisstore.Open(url, cfg.Redis.Cluster, cfg.Redis.MasterName, redisstore.Options{
		OpTimeout: cfg.Redis.Timeout, MinReplicas: cfg.Redis.MinReplicas, PoolSize: cfg.RedisPoolSize(),
		MaxInFlight: cfg.Redis.AppendInFlight,
	})
	if err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	m.metrics = server.NewMetrics()
	m.refused = server.NewRefusedLog(server.DefaultRefusedPerSource)
	m.activity = server.NewActivity()
	m.store.ObserveErrors(m.metrics.RedisError)
	m.store.ObserveBatches(func(p relay.Partition, n int) { m.metrics.ObserveBatch(p.Source, n) })
	// Sources.
	var sources []*relay.Source
	for i := range cfg.Sources {
		sc := cfg.Sources[i]
		v, err := verify.New(&sc)
		if err != nil {
			return fmt.Errorf("sources[%d] (%s): %w", i, sc.Name, err)
		}
		for _, p := range verify.Problems(&sc) {
			log.Warn("source configuration problem", "source", sc.Name, "problem", p)
		}
		sources = append(sources, &relay.Source{Config: sc, Verifier: v})
		log.Info("source configured", "source", sc.Name, "provider", sc.Provider, "partitions", sc.Partitions,
			"webhook_path", "/v1/webhooks/"+sc.Name)
	}
	// Tracing: spans of ingest (the store wrapper records appends) and of deliveries.
	tp := m.TracerProvider
	if tp == nil {
		tp, m.traceShutdown, err = server.NewTracerProvider(ctx, server.TracingOptions{
			OTLPEndpoint: cfg.Tracing.OTLPEndpoint, SampleRatio: cfg.Tracing.SampleRatio})
		if err != nil {
			return err
		}
		if tp != nil {
			log.Info("tracing: exporting spans over OTLP/gRPC", "endpoint", cfg.Tracing.OTLPEndpoint, "sample_ratio", cfg.Tracing.SampleRatio)
		}
	}
	m.svc, err = relay.NewService(server.TraceStore(m.store), sources, relay.Options{Logger: log,
		TailBuffer: cfg.Subscribe.TailBuffer, ReplayBatch: cfg.Subscribe.ReplayBatch, MinHeartbeat: cfg.Subscribe.MinHeartbeat,
		CheckPartitions: true, CompileFilter: filter.Compile, OnFilterError: func(err error) { m.metrics.FilterError(err) }})
	if err != nil {
		return err
	}
	m.metrics.WatchStreams(m.svc, 2*time.Second)
	if err := m.store.Ping(ctx); err != nil {
		log.Warn("redis is not reachable yet; webhooks get 503 until it is", "redis", cfg.Redis.RedactedURL(), "err", err)
	} else {
		// Every source's partition count is recorded in Redis on first start; another count
		// for stored events is refused (see relay.Service.EnsurePartitions).
		if err := m.svc.EnsurePartitions(ctx); err != nil {
			return err
		}
		m.ready.Store(true)
		m.checkReplicas(ctx)
	}

	var tokens []server.Token
	for _, t := range cfg.Auth.Tokens {
		tokens = append(tokens, server.Token{Name: t.Name, Value: t.Token.Value, Sources: t.Sources, Publish: t.Publish, Groups: t.Groups,
			MaxSubscriptions: t.MaxSubscriptions, Console: t.Console})
	}
	auth := server.NewAuth(server.AuthOptions{Tokens: tokens})
	m.auth = auth
	writes := &server.HeldWrites{}
	events := server.NewEventServer(m.svc, server.EventServerOptions{Auth: auth, Logger: log, Metrics: m.metrics, TracerProvider: tp, Writes: writes,
		Limits: server.SubscribeLimits{MaxSubscribers: cfg.Subscribe.MaxSubscribers, SendTimeout: cfg.Subscribe.SendTimeout}})
	webhooks := server.NewWebhookServer(m.svc, server.WebhookServerOptions{Logger: log, Metrics: m.metrics})

	// gRPC: the public listener, and an in-memory one the gateway dials for EventService.
	m.health = health.NewServer()
	m.setServing(m.ready.Load())
	var creds credentials.TransportCredentials
	if cfg.GRPC.TLS.Enabled() {
		tc, err := serverTLS(cfg.GRPC.TLS)
		if err != nil {
			return fmt.Errorf("grpc.tls: %w", err)
		}
		creds = credentials.NewTLS(tc)
	}
	maxMsg := int(cfg.HTTP.MaxRequestBytes)
	m.grpc = server.NewGRPCServer(server.GRPCOptions{Creds: creds, Reflection: cfg.GRPC.Reflection, Health: m.health, Logger: log,
		MaxRecvMsgSize: maxMsg, MaxConcurrentStreams: cfg.GRPC.MaxStreamsPerConnection, MaxHeaderListSize: cfg.HTTP.MaxHeaderBytes, Events: events})
	m.inproc = server.NewGRPCServer(server.GRPCOptions{Logger: log, MaxRecvMsgSize: maxMsg, Events: events})
	m.inprocLis = bufconn.Listen(1 << 20)
	m.conn, err = grpc.NewClient("passthrough:///inproc",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return m.inprocLis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		// The gateway's own connection: relayd's answers are bounded where they are made (a
		// ListEvents page by MaxListPageBytes, an event by max_body_bytes), not by grpc-go's
		// 4 MiB default, which turned a larger answer into a 429 with Retry-After.
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(math.MaxInt32)))
	if err != nil {
		return err
	}
	handler, err := server.NewHTTPHandler(bg, m.svc, server.HTTPOptions{
		Webhooks: webhooks, Conn: m.conn, Logger: log, Metrics: m.metrics, TracerProvider: tp,
		StreamWriteTimeout: cfg.HTTP.WriteTimeout,
		Events: server.EventRoutesOptions{Auth: auth, MaxRequestBytes: cfg.HTTP.MaxRequestBytes,
			RequireClientCert: cfg.HTTP.TLS.ClientCAFile != ""},
		Ingress: server.IngressOptions{
			Refused:        m.refused,
			Activity:       m.activity,
			TrustedProxies: cfg.HTTP.TrustedProxies,
			MaxConcurrent:  cfg.HTTP.MaxConcurrent,
			MinBodyRate:    cfg.HTTP.MinBodyRate,
			ReadTimeout:    cfg.HTTP.ReadTimeout,
			MaxBodyMemory:  cfg.HTTP.MaxBodyMemory,
			Unverified:     cfg.HTTP.Unverified,
			ContentTypes: func(src *relay.SourceConfig, ct string) bool {
				return verify.SourceAccepts(src, ct)
			},
			CredentialHeaders: verify.CredentialHeaders,
		},
	})
	if err != nil {
		return err
	}
	// The web console, on the admin listener: EventService's routes for it are guarded by the
	// same tokens (with console: true); client certificates are the public listener's matter.
	m.console, err = server.NewConsoleHandler(bg, server.ConsoleOptions{Service: m.svc, Auth: auth, Conn: m.conn,
		Events:  server.EventRoutesOptions{Auth: auth, MaxRequestBytes: cfg.HTTP.MaxRequestBytes},
		Refused: m.refused, Activity: m.activity, Ingress: handler, StreamWriteTimeout: cfg.HTTP.WriteTimeout, Logger: log})
	if err != nil {
		return err
	}
	var httpTLS *tls.Config
	if cfg.HTTP.TLS.Enabled() {
		if httpTLS, err = serverTLS(cfg.HTTP.TLS); err != nil {
			return fmt.Errorf("http.tls: %w", err)
		}
		if httpTLS.ClientCAs != nil {
			// Providers have no client certificates: webhooks are served without one, and
			// the EventService routes refuse a request without a verified one.
			httpTLS.ClientAuth = tls.VerifyClientCertIfGiven
		}
	}

	grpcLis, err := net.Listen("tcp", cfg.GRPC.Addr)
	if err != nil {
		return fmt.Errorf("grpc.addr: %w", err)
	}
	m.GRPCAddr = grpcLis.Addr().String()
	httpLis, err := net.Listen("tcp", cfg.HTTP.Addr)
	if err != nil {
		grpcLis.Close()
		return fmt.Errorf("http.addr: %w", err)
	}
	m.HTTPAddr = httpLis.Addr().String()
	adminLis, err := net.Listen("tcp", cfg.Admin.Addr)
	if err != nil {
		grpcLis.Close()
		httpLis.Close()
		return fmt.Errorf("admin.addr: %w", err)
	}
	m.AdminAddr = adminLis.Addr().String()

	m.http = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: cfg.HTTP.ReadHeaderTimeout,
		ReadTimeout:       cfg.HTTP.ReadTimeout,
		WriteTimeout:      cfg.HTTP.WriteTimeout,
		IdleTimeout:       cfg.HTTP.IdleTimeout,
		MaxHeaderBytes:    cfg.HTTP.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		// With TLS, ServeTLS offers HTTP/2 and HTTP/1.1 by ALPN; a plaintext request gets
		// Go's bare 400 and nothing else.
		TLSConfig: httpTLS,
	}
	// Push destinations: this replica is a member of each destination's group, named after
	// its host and HTTP port, so that a restart takes up its own unfinished deliveries.
	if len(cfg.Destinations) > 0 {
		m.pusher, err = push.New(m.svc, cfg.Destinations, push.Options{Consumer: pushConsumer(m.HTTPAddr), Logger: log,
			TracerProvider: tp, Observer: m.metrics.WatchPush(m.svc, m.pushStatus, 2*time.Second)})
		if err != nil {
			grpcLis.Close()
			httpLis.Close()
			adminLis.Close()
			return fmt.Errorf("destinations: %w", err)
		}
		m.pusher.Start(bg)
		for _, d := range cfg.Destinations {
			log.Info("push destination configured", "destination", d.Name, "group", push.GroupName(d.Name), "ordering", d.Ordering)
		}
	}
	m.admin = &http.Server{Handler: m.adminHandler(), ReadHeaderTimeout: 10 * time.Second}

	m.serve("grpc", func() error { return m.grpc.Serve(writes.Listen(grpcLis)) })
	m.serve("grpc-inproc", func() error { return m.inproc.Serve(m.inprocLis) })
	m.serve("http", func() error {
		if httpTLS != nil {
			return m.http.ServeTLS(httpLis, "", "")
		}
		return m.http.Serve(httpLis)
	})
	m.serve("admin", func() error { return m.admin.Serve(adminLis) })
	m.wg.Add(1)
	go m.watchStore(bg)

	log.Info("relayd listening", "http", m.HTTPAddr, "grpc", m.GRPCAddr, "admin", m.AdminAddr,
		"http_tls", cfg.HTTP.TLS.Enabled(), "grpc_tls", cfg.GRPC.TLS.Enabled(), "redis", redisLabel(cfg))
	warnOpenEventService(log, auth.Open(), m.GRPCAddr, m.HTTPAddr)
	return nil
}

// warnOpenEventService warns when EventService has no tokens (open) and a listener is
// reachable beyond loopback.
func warnOpenEventService(log *slog.Logger, open bool, addrs ...string) {
	if open && !loopbackOnly(addrs...) {
		log.Warn("no auth.tokens configured: EventService (Subscribe, Publish, ...) is open to anyone who can reach the gRPC and HTTP listeners",
			"http_routes", strings.Join(server.EventRoutes, ", "))
	}
}

func redisLabel(cfg *config.Config) string {
	if cfg.Redis.URL == "" {
		return "embedded (in memory)"
	}
	return cfg.Redis.RedactedURL()
}

func loopbackOnly(addrs ...string) bool {
	for _, a := range addrs {
		host, _, err := net.SplitHostPort(a)
		if err != nil {
			return false
		}
		ip := net.ParseIP(host)
		if ip == nil || !ip.IsLoopback() {
			return false
		}
	}
	return true
}

func (m *Main) serve(name string, fn func() error) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		if err := fn(); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, grpc.ErrServerStopped) {
			m.Logger.Error("listener failed", "listener", name, "err", err)
		}
	}()
}

func (m *Main) setServing(ok bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if ok {
		st = healthpb.HealthCheckResponse_SERVING
	}
	m.health.SetServingStatus("", st)
	m.health.SetServingStatus("eventrelay.v1.EventService", st)
	m.health.SetServingStatus("eventrelay.v1.WebhookService", st)
}

// checkReplicas compares redis.min_replicas with the replicas each master has when relayd
// starts (or first reaches Redis) and warns of the two ways they can disagree: fewer
// replicas than min_replicas (every append is refused until more attach), and more (an
// acknowledged event can be lost when a failover promotes a replica that had not received
// it; docs/scaling.md, "Replication and failover").
func (m *Main) checkReplicas(ctx context.Context) {
	want := m.Config.Redis.MinReplicas
	if want == 0 {
		return
	}
	counts, err := m.store.ReplicaCounts(ctx)
	if err != nil {
		m.Logger.Warn("could not read the Redis replicas to compare with redis.min_replicas", "err", relay.ErrorMessage(err))
		return
	}
	for addr, n := range counts {
		master := "the Redis master"
		if addr != "" {
			master = "Redis master " + addr
		}
		switch {
		case n < want:
			m.Logger.Warn(fmt.Sprintf("redis.min_replicas is %d but %s has %d replicas connected: its appends are answered 503 until enough attach", want, master, n),
				"master", addr, "replicas", n, "min_replicas", want)
		case n > want:
			m.Logger.Warn(fmt.Sprintf("redis.min_replicas is %d of the %d replicas of %s: an acknowledged event can be lost if a failover promotes a replica that had not received it; set it to %d to rule that out (docs/scaling.md)", want, n, master, n),
				"master", addr, "replicas", n, "min_replicas", want)
		}
	}
}

// watchStore follows Redis reachability for readiness and gRPC health.
func (m *Main) watchStore(ctx context.Context) {
	defer m.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	mismatchLogged := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		err := m.store.Ping(pctx)
		cancel()
		if err == nil && !m.svc.PartitionsChecked() {
			// Redis was unreachable at start-up: check the partition counts before serving.
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err = m.svc.EnsurePartitions(cctx)
			cancel()
			if relay.ErrorCode(err) == relay.CodeFailedPrecondition && !mismatchLogged {
				m.Logger.Error("refusing to serve: the configured partitions do not match Redis; fix the configuration and restart", "err", err)
				mismatchLogged = true
			}
			if err == nil {
				m.checkReplicas(ctx)
			}
		}
		ok := err == nil
		if ok != m.ready.Load() {
			if ok {
				m.Logger.Info("redis reachable again")
			} else {
				m.Logger.Warn("redis unreachable", "err", err)
			}
			m.ready.Store(ok)
			m.setServing(ok)
		}
	}
}

func (m *Main) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.metrics.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		if !m.ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("redis unreachable\n"))
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(server.OpenAPI())
	})
	mux.HandleFunc("GET /v1/admin/sources", m.adminAuth(m.adminSources))
	mux.HandleFunc("GET /v1/admin/sources/{name}/refused", m.adminAuth(m.adminRefused))
	mux.HandleFunc("GET /v1/admin/destinations", m.adminAuth(m.adminDestinations))
	mux.HandleFunc("POST /v1/admin/destinations/{name}/resume", m.adminAuth(m.adminResume))
	mux.Handle("/", m.console) // the web console: "/", "/console/", "/v1/console/", EventService's routes
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	// No /debug/pprof/cmdline: the command line may carry a secret (-redis-url).
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	// Without tokens nothing else stops a web page the operator opens from having their
	// browser POST here (a test webhook signed by relayd, a redrive, a resume, a publish).
	return server.CrossOriginGuard(mux)
}

// adminHandlerFunc is an admin API handler; p is the caller's token (nil without auth.tokens:
// everything is allowed).
type adminHandlerFunc func(w http.ResponseWriter, r *http.Request, p *server.Principal)

// adminAuth guards the admin API (/v1/admin/*) like the console: without auth.tokens it is
// open (the listener is private); with them it takes a token with console: true (401 without
// a valid one, 403 for a token without console), and each handler shows or changes only what
// that token may read or publish to.
func (m *Main) adminAuth(h adminHandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if m.auth.Open() {
			h(w, r, nil)
			return
		}
		p, err := m.auth.AuthenticateHTTP(r)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="relayd admin"`)
			http.Error(w, "a token with console: true is required (auth.tokens): "+relay.ErrorMessage(err), http.StatusUnauthorized)
			return
		}
		if !p.CanOpenConsole() {
			http.Error(w, "token "+p.Name+" may not use the admin API (it needs console: true)", http.StatusForbidden)
			return
		}
		h(w, r, p)
	}
}

// canRead reports whether p (nil: no tokens) may read source.
func canRead(p *server.Principal, source string) bool { return p == nil || p.CanRead(source) }

// SourceStatus is one element of the admin endpoint GET /v1/admin/sources (relayctl sources).
type SourceStatus struct {
	Name       string        `json:"name"`
	Provider   string        `json:"provider"`
	Partitions int           `json:"partitions"`
	Length     int64         `json:"length"`       // entries retained, all partitions
	DeadLetter int64         `json:"dead_letters"` // entries in the dead-letter streams of all groups
	Groups     []GroupStatus `json:"groups"`
}

// GroupStatus is a consumer group of a source, summed over its partitions.
type GroupStatus struct {
	Name      string `json:"name"`
	Lag       int64  `json:"lag"`     // entries not yet delivered to the group; -1: unknown
	Pending   int64  `json:"pending"` // delivered, not yet acknowledged
	Consumers int64  `json:"consumers"`
	// DeadLetters counts the group's dead letters (all partitions).
	DeadLetters int64 `json:"dead_letters"`
}

// adminSources answers GET /v1/admin/sources: every configured source with its stream length,
// dead letters and consumer groups (lag, pending), from relay.Service.Stats (the numbers
// the metrics carry).
func (m *Main) adminSources(w http.ResponseWriter, r *http.Request, p *server.Principal) {
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	stats, err := m.svc.Stats(ctx)
	if err != nil {
		http.Error(w, "store unavailable", http.StatusServiceUnavailable)
		return
	}
	out := make([]SourceStatus, 0, len(stats))
	for _, s := range stats {
		if !canRead(p, s.Name) {
			continue
		}
		st := SourceStatus{Name: s.Name, Provider: s.Provider, Partitions: s.Partitions, Length: s.Length,
			DeadLetter: s.DeadLetters, Groups: make([]GroupStatus, 0, len(s.Groups))}
		for _, g := range s.Groups {
			st.Groups = append(st.Groups, GroupStatus{Name: g.Name, Lag: g.Lag, Pending: g.Pending,
				Consumers: g.Consumers, DeadLetters: g.DeadLetters})
		}
		out = append(out, st)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

// Close stops accepting requests, finishes in-flight ingests, ends streams with UNAVAILABLE
// (clients resume by cursor) and closes the store. It is idempotent.
func (m *Main) Close() error {
	m.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 6*time.Second)
		defer cancel()
		// End the streams first: a Subscribe over HTTP is an in-flight request that Shutdown
		// would otherwise wait for until its timeout, and then cut without an error message.
		if m.pusher != nil {
			_ = m.pusher.Close() // attempts in flight finish (each within its timeout) and are settled
		}
		if m.svc != nil {
			_ = m.svc.Close()
		}
		if m.http != nil {
			if err := m.http.Shutdown(ctx); err != nil {
				_ = m.http.Close()
			}
		}
		if m.grpc != nil {
			server.GracefulStop(m.grpc, 2*time.Second)
		}
		if m.inproc != nil {
			server.GracefulStop(m.inproc, time.Second)
		}
		if m.conn != nil {
			_ = m.conn.Close()
		}
		if m.admin != nil {
			_ = m.admin.Shutdown(ctx)
		}
		if m.cancel != nil {
			m.cancel()
		}
		m.wg.Wait()
		if m.store != nil {
			m.closeErr = m.store.Close()
		}
		if m.embedded != nil {
			m.embedded.Close()
		}
		if m.traceShutdown != nil {
			_ = m.traceShutdown(ctx) // flushes pending spans
		}
	})
	return m.closeErr
}

// serverTLS loads a listener's certificate and, for mTLS, the client CA pool.
func serverTLS(c config.TLSConfig) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, err
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if c.ClientCAFile != "" {
		pem, err := os.ReadFile(c.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("client_ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("client_ca_file: no PEM certificates in %s", c.ClientCAFile)
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return tc, nil
}
