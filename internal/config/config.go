// Package config is relayd's configuration (docs/configuration.md). The key names below are a public contract: the
// YAML keys, the RELAY_* environment variables derived from them and the flag paths.
//
// Sources of configuration, lowest precedence first:
//
//  1. Default.
//  2. The YAML file given to Load (relayd -config relay.yaml), if any.
//  3. Environment variables RELAY_<PATH>: the key path upper-cased and joined by "_",
//     e.g. RELAY_REDIS_URL, RELAY_HTTP_TLS_CERT_FILE, RELAY_LOG_LEVEL. A key of an existing
//     source is RELAY_SOURCES_<NAME>_<KEY>, with the source name upper-cased and "-" written
//     "_" (RELAY_SOURCES_ORDERS_SECRETS, RELAY_SOURCES_ORDERS_EU_RATE_LIMIT_RPS); a key of an
//     existing auth token is RELAY_AUTH_TOKENS_<NAME>_<KEY> (TOKEN, SOURCES, PUBLISH, GROUPS).
//     List values (secrets, allow_ips, trusted_proxies, an auth token's sources and groups) are
//     comma-separated and replace the whole list. The environment can override sources and
//     tokens but not add them.
//  4. Flags: a map from dotted key path to value, e.g. "redis.url", "http.addr", "log.level",
//     "sources.orders.tolerance".
//
// A secret value (source secrets, verify_token, auth token values, redis.url) may be a
// literal, "env:NAME" (the value of an environment variable, which must be set and non-empty)
// or "file:/path" (the file's contents, one trailing newline trimmed; a relative path in the
// YAML file is relative to the file's directory). Unknown keys, unknown RELAY_* variables
// that look like configuration paths, and invalid values are errors that name the key; no
// error ever contains a secret value.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/eventrelay/eventrelay/relay"
	"github.com/eventrelay/eventrelay/relay/filter"
	"github.com/eventrelay/eventrelay/relay/push"
	"github.com/eventrelay/eventrelay/relay/redisstore"
	"github.com/eventrelay/eventrelay/relay/verify"
	"github.com/eventrelay/eventrelay/server"
)

// Config is the whole configuration of relayd.
type Config struct {
	HTTP    HTTPConfig    // http: the public webhook ingress and the grpc-gateway
	GRPC    GRPCConfig    // grpc: the gRPC API for internal consumers and producers
	Admin   AdminConfig   // admin: /metrics, /healthz, /readyz, /openapi.json, pprof
	Redis   RedisConfig   // redis: the store; empty URL = embedded in-process server
	Auth    AuthConfig    // auth: bearer tokens of subscribers and producers
	Log     LogConfig     // log: level and format
	Tracing TracingConfig // tracing: OpenTelemetry export, off by default
	// Subscribe (subscribe:) tunes the delivery of tail subscriptions.
	Subscribe SubscribeConfig
	// Sources are the configured webhook sources, with relay.SourceConfig.SetDefaults
	// applied by Load. Load never adds the demo source: when Sources is empty,
	// main decides whether to add it.
	Sources []relay.SourceConfig
	// Destinations (destinations:) are the push destinations, with push.Config.SetDefaults
	// applied by Load.
	Destinations []push.Config
}

// TLSConfig names PEM files. TLS is on when CertFile is set.
type TLSConfig struct {
	CertFile string `koanf:"cert_file,path"` // cert_file
	KeyFile  string `koanf:"key_file,path"`  // key_file
	// ClientCAFile (client_ca_file) turns on mutual TLS: on gRPC every client must present a
	// certificate signed by one of these CAs; on HTTP the EventService routes demand one
	// while webhooks (from providers, which have none) do not.
	ClientCAFile string `koanf:"client_ca_file,path"`
}

// Enabled reports whether TLS is configured.
func (t TLSConfig) Enabled() bool { return t.CertFile != "" }

// HTTPConfig is the http: section.
type HTTPConfig struct {
	Addr string    `koanf:"addr"` // addr, default ":8080"
	TLS  TLSConfig `koanf:"tls"`  // tls: {cert_file, key_file, client_ca_file}
	// TrustedProxies (trusted_proxies) are the peers whose X-Forwarded-For is believed when
	// checking a source's allow_ips and for logs. Empty: the TCP peer address is used.
	TrustedProxies    []netip.Prefix `koanf:"trusted_proxies"`
	ReadTimeout       time.Duration  `koanf:"read_timeout"`        // read_timeout, default 30s; 0 = none
	WriteTimeout      time.Duration  `koanf:"write_timeout"`       // write_timeout, default 30s; 0 = none
	IdleTimeout       time.Duration  `koanf:"idle_timeout"`        // idle_timeout, default 120s; 0 = none
	ReadHeaderTimeout time.Duration  `koanf:"read_header_timeout"` // read_header_timeout, default 10s; 0 = none
	MaxHeaderBytes    int            `koanf:"max_header_bytes"`    // max_header_bytes, default 64 KiB
	MaxConcurrent     int            `koanf:"max_concurrent"`      // max_concurrent requests in flight, default 1024; 0 = unlimited
	// MaxRequestBytes (max_request_bytes) bounds the body of every EventService request over
	// HTTP (413 beyond, before reading) and every gRPC message relayd receives, default 1 MiB.
	MaxRequestBytes int64 `koanf:"max_request_bytes"`
	// MinBodyRate (min_body_rate) is the slowest, in bytes per second, a webhook body may
	// arrive after its first second (408 beyond), default 1024; 0 = only read_timeout.
	MinBodyRate int64 `koanf:"min_body_rate"`
	// MaxBodyMemory (max_body_memory) bounds the bytes of webhook bodies relayd holds at
	// once, while they arrive, are verified and are stored (503 + Retry-After beyond),
	// default 256 MiB; 0 = unbounded.
	MaxBodyMemory int64 `koanf:"max_body_memory"`
	// Unverified (unverified_limit: {rps, burst}) is each client address's budget of webhook
	// requests that fail verification (429 beyond), default 1 per second, burst 20; rps 0 =
	// none. Such requests never spend a source's rate_limit.
	Unverified relay.RateLimit `koanf:"unverified_limit"`
}

// GRPCConfig is the grpc: section.
type GRPCConfig struct {
	Addr       string    `koanf:"addr"`       // addr, default ":9090"
	TLS        TLSConfig `koanf:"tls"`        // tls: {cert_file, key_file, client_ca_file}
	Reflection bool      `koanf:"reflection"` // reflection: register the gRPC reflection service, default true
	// MaxStreamsPerConnection (max_streams_per_connection) bounds the concurrent streams of
	// one client connection (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS), default 100.
	MaxStreamsPerConnection int `koanf:"max_streams_per_connection"`
}

// AdminConfig is the admin: section.
type AdminConfig struct {
	Addr string `koanf:"addr"` // addr, default ":9091"
}

// RedisConfig is the redis: section.
type RedisConfig struct {
	// URL (url) is redis://, rediss:// or unix://; "" = the embedded in-process server.
	// With Cluster, a go-redis cluster URL redis://h1:p1?addr=h2:p2&addr=h3:p3. It may
	// carry a password, so it is a secret value (literal, env:NAME or file:/path) and
	// String redacts it.
	URL         string        `koanf:"url,secret"`
	Cluster     bool          `koanf:"cluster"`      // cluster: Redis Cluster
	MasterName  string        `koanf:"master_name"`  // master_name: Sentinel master; URL then names the sentinels
	MinReplicas int           `koanf:"min_replicas"` // min_replicas: appends also wait (WAIT) for this many replicas
	Timeout     time.Duration `koanf:"timeout"`      // timeout: dial/read/write timeout, default 2s
	// PoolSize (pool_size) bounds the connections to each Redis server: relayd holds at
	// most one blocking read per partition (the shared reader of its tail and group
	// subscriptions) whatever the number of subscriptions, plus short commands. 0
	// (default): the partitions of all sources + 64. A pool_size in the URL wins.
	PoolSize int `koanf:"pool_size"`
	// AppendInFlight (append_in_flight) is how many append round trips one partition may
	// have in flight at once (1 to redisstore.MaxInFlightLimit, default 1); appends that
	// come meanwhile form the next batch.
	AppendInFlight int `koanf:"append_in_flight"`
}

// RedisPoolSize returns the pool size relayd opens Redis with (RedisConfig.PoolSize, or the
// automatic size for the configured partitions).
func (c *Config) RedisPoolSize() int {
	if c.Redis.PoolSize > 0 {
		return c.Redis.PoolSize
	}
	return redisstore.PoolSizeFor(c.partitions())
}

// partitions returns the partitions of all sources.
func (c *Config) partitions() int {
	n := 0
	for _, s := range c.Sources {
		n += s.Partitions
	}
	return n
}

// RedactedURL returns URL with every credential (userinfo password, password and
// sentinel_password query parameters, ...) replaced by "xxxxx", for logs.
func (r RedisConfig) RedactedURL() string { return redisstore.RedactURL(r.URL) }

// String hides the password of the URL so a RedisConfig can be logged.
func (r RedisConfig) String() string {
	return fmt.Sprintf("{URL:%s Cluster:%t MasterName:%s MinReplicas:%d Timeout:%s PoolSize:%d AppendInFlight:%d}",
		r.RedactedURL(), r.Cluster, r.MasterName, r.MinReplicas, r.Timeout, r.PoolSize, r.AppendInFlight)
}

// AuthConfig is the auth: section.
type AuthConfig struct {
	Tokens []AuthToken `koanf:"tokens"` // tokens
}

// AuthToken is one bearer token of a subscriber or producer.
type AuthToken struct {
	Name string `koanf:"name"` // name: shown in logs and metrics, never the token
	// Token (token) is the secret bearer value; Token.ID is the token's name.
	Token relay.Secret `koanf:"token"`
	// Sources (sources) the token may read; empty or "*" = every source.
	Sources []string `koanf:"sources"`
	// Publish (publish): the token may also call Publish on those sources.
	Publish bool `koanf:"publish"`
	// Groups (groups): consumer groups (names or globs) the token may join and settle;
	// empty = every group for a token that may read every source, none otherwise.
	Groups []string `koanf:"groups"`
	// MaxSubscriptions (max_subscriptions) bounds the subscriptions the token holds open at
	// once (RESOURCE_EXHAUSTED beyond); 0 = only subscribe.max_subscribers.
	MaxSubscriptions int `koanf:"max_subscriptions"`
	// Console (console) lets the token open the web console on the admin listener, which then
	// shows only what the token may read; default false.
	Console bool `koanf:"console"`
}

// LogConfig is the log: section.
type LogConfig struct {
	Level  string `koanf:"level"`  // level: debug | info (default) | warn | error
	Format string `koanf:"format"` // format: json (default) | text
}

// SlogLevel returns Level as a slog.Level (info for an unknown level).
func (l LogConfig) SlogLevel() slog.Level {
	switch l.Level {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// TracingConfig is the tracing: section.
type TracingConfig struct {
	OTLPEndpoint string  `koanf:"otlp_endpoint"` // otlp_endpoint: OTLP/gRPC collector, e.g. "otel-collector:4317"; "" = off
	SampleRatio  float64 `koanf:"sample_ratio"`  // sample_ratio of root traces, 0..1, default 1
}

// SubscribeConfig is the subscribe: section.
type SubscribeConfig struct {
	// TailBuffer (tail_buffer) is how many entries a tail subscriber may fall behind the
	// stream before it is cut with RESOURCE_EXHAUSTED, default 4096.
	TailBuffer int `koanf:"tail_buffer"`
	// ReplayBatch (replay_batch) is how many entries one history read of a replay fetches,
	// default 1000.
	ReplayBatch int `koanf:"replay_batch"`
	// MinHeartbeat (min_heartbeat) is the shortest heartbeat_interval a subscriber may ask
	// for (INVALID_ARGUMENT below), default 1s, at least 100ms.
	MinHeartbeat time.Duration `koanf:"min_heartbeat"`
	// MaxSubscribers (max_subscribers) bounds the subscriptions open at once over gRPC and
	// HTTP together (RESOURCE_EXHAUSTED beyond), default 10000.
	MaxSubscribers int `koanf:"max_subscribers"`
	// SendTimeout (send_timeout) ends a gRPC subscription whose send has been blocked that
	// long (a client that stopped reading) with RESOURCE_EXHAUSTED, default 30s; 0 = never.
	SendTimeout time.Duration `koanf:"send_timeout"`
}

// Bounds of the subscribe: keys.
const (
	MaxTailBuffer  = 1 << 20
	MaxReplayBatch = 10000
)

// Defaults of Default.
const (
	DefaultHTTPAddr          = ":8080"
	DefaultGRPCAddr          = ":9090"
	DefaultAdminAddr         = ":9091"
	DefaultRedisTimeout      = 2 * time.Second
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultReadTimeout       = 30 * time.Second
	DefaultWriteTimeout      = 30 * time.Second
	DefaultIdleTimeout       = 120 * time.Second
	DefaultMaxHeaderBytes    = 64 << 10
	DefaultMaxConcurrent     = 1024
	DefaultMaxRequestBytes   = server.DefaultMaxRequestBytes
	DefaultMinBodyRate       = 1024
	DefaultMaxBodyMemory     = 256 << 20
	DefaultUnverifiedRPS     = 1
	DefaultUnverifiedBurst   = 20
	DefaultTailBuffer        = 4096
	DefaultReplayBatch       = 1000
	DefaultMinHeartbeat      = time.Second
	DefaultMaxSubscribers    = 10000
	DefaultSendTimeout       = 30 * time.Second
	DefaultMaxStreamsPerConn = 100
)

// explicitZeros returns, for destination i, how to set back to 0 the settings written as 0
// that SetDefaults would take for "absent" and replace by their defaults: set back after
// SetDefaults, they are refused by push.Config.Validate like any other value out of range,
// naming the key (a max_attempts: 0 meant as "no limit", or a breaker.failures: 0 meant as
// "no breaker", would silently have been 10).
func (d *loader) explicitZeros(i int, c *push.Config) (restore []func()) {
	for key, field := range map[string]any{
		"timeout": &c.Timeout, "max_in_flight": &c.MaxInFlight,
		"retry.initial": &c.Retry.Initial, "retry.max": &c.Retry.Max, "retry.multiplier": &c.Retry.Multiplier,
		"retry.max_attempts": &c.Retry.MaxAttempts, "retry.max_age": &c.Retry.MaxAge,
		"breaker.failures": &c.Breaker.Failures, "breaker.cooldown": &c.Breaker.Cooldown,
	} {
		if _, set := d.where[fmt.Sprintf("destinations[%d].%s", i, key)]; !set {
			continue
		}
		switch f := field.(type) {
		case *time.Duration:
			if *f == 0 {
				restore = append(restore, func() { *f = 0 })
			}
		case *int:
			if *f == 0 {
				restore = append(restore, func() { *f = 0 })
			}
		case *float64:
			if *f == 0 {
				restore = append(restore, func() { *f = 0 })
			}
		}
	}
	return restore
}

// maxBodySlack is what a webhook body's buffer may take beyond the body (rounding to
// pages, the byte read to tell a longer body).
const maxBodySlack = 64 << 10

// Default returns the configuration used when nothing is configured: HTTP on :8080,
// gRPC on :9090 with reflection, admin on :9091, the embedded Redis, JSON logs at info,
// tracing off and no sources.
func Default() *Config {
	return &Config{
		HTTP: HTTPConfig{
			Addr:              DefaultHTTPAddr,
			ReadTimeout:       DefaultReadTimeout,
			WriteTimeout:      DefaultWriteTimeout,
			IdleTimeout:       DefaultIdleTimeout,
			ReadHeaderTimeout: DefaultReadHeaderTimeout,
			MaxHeaderBytes:    DefaultMaxHeaderBytes,
			MaxConcurrent:     DefaultMaxConcurrent,
			MaxRequestBytes:   DefaultMaxRequestBytes,
			MinBodyRate:       DefaultMinBodyRate,
			MaxBodyMemory:     DefaultMaxBodyMemory,
			Unverified:        relay.RateLimit{RPS: DefaultUnverifiedRPS, Burst: DefaultUnverifiedBurst},
		},
		GRPC:    GRPCConfig{Addr: DefaultGRPCAddr, Reflection: true, MaxStreamsPerConnection: DefaultMaxStreamsPerConn},
		Admin:   AdminConfig{Addr: DefaultAdminAddr},
		Redis:   RedisConfig{Timeout: DefaultRedisTimeout, AppendInFlight: redisstore.DefaultMaxInFlight},
		Log:     LogConfig{Level: "info", Format: "json"},
		Tracing: TracingConfig{SampleRatio: 1},
		Subscribe: SubscribeConfig{TailBuffer: DefaultTailBuffer, ReplayBatch: DefaultReplayBatch,
			MinHeartbeat: DefaultMinHeartbeat, MaxSubscribers: DefaultMaxSubscribers, SendTimeout: DefaultSendTimeout},
	}
}

// FieldError is one configuration problem. Path is the key path ("sources[2].header",
// "redis.url") or, for an unknown variable or flag, its name. Origin, when known, says where
// the value came from: "relay.yaml:12", "RELAY_REDIS_URL" or "flag redis.url".
type FieldError struct {
	Path   string
	Msg    string
	Origin string
}

func (e *FieldError) Error() string {
	s := e.Path + ": " + e.Msg
	if e.Origin != "" {
		s += " (" + e.Origin + ")"
	}
	return s
}

// cfgIgnoredEnv are RELAY_* variables read elsewhere, never configuration paths.
var cfgIgnoredEnv = map[string]bool{
	"RELAY_DEMO_SECRET":     true, // main: secret of the demo source
	"RELAY_TOKEN":           true, // relayctl: bearer token
	"RELAY_REQUIRE_REDIS":   true, // tests: fail instead of skipping without redis-server
	"RELAY_REQUIRE_BROWSER": true, // tests: fail instead of skipping without chromium
	"RELAY_SCREENSHOTS":     true, // tests: where the console's browser test saves screenshots
}

// cfgKnownProviders are the provider names relay/verify accepts (aliases included).
var cfgKnownProviders = verify.Providers()

// Load builds the configuration from Default, the YAML file at path (none when
// path is ""), the RELAY_* variables of environ (as os.Environ returns it; also used to
// resolve env:NAME secrets) and flags (dotted key path → value), in increasing precedence.
// It applies relay.SourceConfig.SetDefaults to every source, then Validate.
//
// With no file and no sources configured the result has no sources: Load does not add
// the demo source, main does.
//
// The error lists every problem found, one per line, each a *FieldError naming the key.
func Load(path string, environ []string, flags map[string]string) (*Config, error) {
	cfg := Default()
	d := newLoader(environ)
	if err := d.load(path, flags, cfg); err != nil {
		return nil, err
	}

	cfg.Log.Level = strings.ToLower(cfg.Log.Level)
	if cfg.Log.Level == "warning" {
		cfg.Log.Level = "warn"
	}
	cfg.Log.Format = strings.ToLower(cfg.Log.Format)
	for i := range cfg.Sources {
		s := &cfg.Sources[i]
		s.Provider = strings.ToLower(strings.TrimSpace(s.Provider)) // as relay/verify reads it
		s.SetDefaults()
		if s.RateLimit.RPS > 0 && s.RateLimit.Burst == 0 {
			// A token bucket needs a burst of at least one token.
			s.RateLimit.Burst = max(1, int(math.Ceil(s.RateLimit.RPS)))
		}
	}
	for i := range cfg.Destinations {
		restore := d.explicitZeros(i, &cfg.Destinations[i])
		cfg.Destinations[i].SetDefaults()
		for _, zero := range restore {
			zero()
		}
	}

	errs := d.errs
	for _, e := range cfg.validate() {
		// A value that failed to decode was left out: do not also report the consequences
		// (e.g. "at least one secret is required" after "secrets[0]: env:X is not set").
		if slices.ContainsFunc(d.errs, func(de *FieldError) bool { return cfgRelatedPaths(de.Path, e.Path) }) {
			continue
		}
		if e.Origin == "" {
			e.Origin = d.originOf(e.Path)
		}
		errs = append(errs, e)
	}
	if len(errs) > 0 {
		return nil, cfgJoinErrors(errs)
	}
	return cfg, nil
}

// cfgRelatedPaths reports whether one key path is the other or contains it.
func cfgRelatedPaths(a, b string) bool {
	if len(a) > len(b) {
		a, b = b, a
	}
	return a == b || (strings.HasPrefix(b, a) && (b[len(a)] == '.' || b[len(a)] == '['))
}

// Validate checks the whole configuration: addresses, TLS pairs, Redis options, tokens, log
// settings and every source (relay.SourceConfig.Validate plus provider, secrets and options).
// It does not apply defaults. The error lists every problem, one *FieldError per line.
func (c *Config) Validate() error {
	if errs := c.validate(); len(errs) > 0 {
		return cfgJoinErrors(errs)
	}
	return nil
}

func cfgJoinErrors(fes []*FieldError) error {
	errs := make([]error, len(fes))
	for i, e := range fes {
		errs[i] = e
	}
	return errors.Join(errs...)
}

// ---------------------------------------------------------------------------------------
// Validation

func (c *Config) validate() []*FieldError {
	var v cfgValidator
	v.addr("http.addr", c.HTTP.Addr)
	v.addr("grpc.addr", c.GRPC.Addr)
	v.addr("admin.addr", c.Admin.Addr)
	v.distinctAddrs([][2]string{{"http.addr", c.HTTP.Addr}, {"grpc.addr", c.GRPC.Addr}, {"admin.addr", c.Admin.Addr}})
	v.tls("http.tls", c.HTTP.TLS)
	v.tls("grpc.tls", c.GRPC.TLS)
	if c.HTTP.MaxRequestBytes < 1024 {
		v.errf("http.max_request_bytes", "must be at least 1024, got %d", c.HTTP.MaxRequestBytes)
	}
	// An EventService route is never less protected over HTTP than over gRPC: with client
	// certificates required on gRPC and no tokens, the HTTP routes must demand them too.
	if c.GRPC.TLS.ClientCAFile != "" && len(c.Auth.Tokens) == 0 && c.HTTP.TLS.ClientCAFile == "" {
		v.errf("http.tls.client_ca_file", "grpc.tls.client_ca_file requires client certificates on gRPC, but with no auth.tokens "+
			"EventService's HTTP routes (%s) would serve anyone: set http.tls.client_ca_file (and http.tls.cert_file) or auth.tokens",
			strings.Join(server.EventRoutes, ", "))
	}
	for _, d := range []struct {
		key string
		val time.Duration
	}{
		{"http.read_timeout", c.HTTP.ReadTimeout}, {"http.write_timeout", c.HTTP.WriteTimeout},
		{"http.idle_timeout", c.HTTP.IdleTimeout}, {"http.read_header_timeout", c.HTTP.ReadHeaderTimeout},
		{"redis.timeout", c.Redis.Timeout},
	} {
		v.nonNegative(d.key, int64(d.val))
	}
	v.nonNegative("http.max_header_bytes", int64(c.HTTP.MaxHeaderBytes))
	v.nonNegative("http.max_concurrent", int64(c.HTTP.MaxConcurrent))
	v.nonNegative("http.min_body_rate", c.HTTP.MinBodyRate)
	v.nonNegative("http.max_body_memory", c.HTTP.MaxBodyMemory)
	if c.HTTP.Unverified.RPS < 0 || c.HTTP.Unverified.Burst < 0 {
		v.errf("http.unverified_limit", "rps and burst must not be negative")
	}
	for i, p := range c.HTTP.TrustedProxies {
		if !p.IsValid() {
			v.errf(fmt.Sprintf("http.trusted_proxies[%d]", i), "invalid prefix")
		}
	}

	// Redis.
	if c.Redis.URL != "" {
		u, err := url.Parse(c.Redis.URL)
		switch {
		case err != nil: // the URL may hold a password: never print it nor err
			v.errf("redis.url", "not a valid URL")
		case u.Scheme != "redis" && u.Scheme != "rediss" && u.Scheme != "unix":
			v.errf("redis.url", "must start with redis://, rediss:// or unix://")
		}
	} else {
		if c.Redis.Cluster {
			v.errf("redis.cluster", "needs redis.url (the embedded server is a single node)")
		}
		if c.Redis.MasterName != "" {
			v.errf("redis.master_name", "needs redis.url naming the sentinels")
		}
		if c.Redis.MinReplicas > 0 {
			v.errf("redis.min_replicas", "needs redis.url (the embedded server has no replicas)")
		}
	}
	if c.Redis.Cluster && c.Redis.MasterName != "" {
		v.errf("redis.master_name", "cannot be combined with redis.cluster")
	}
	v.nonNegative("redis.min_replicas", int64(c.Redis.MinReplicas))
	if n, least := c.Redis.PoolSize, c.partitions()+1; n != 0 && (n < least || n > 100000) {
		v.errf("redis.pool_size", "must be 0 (automatic) or %d (one blocking read per partition + 1) to 100000, got %d", least, n)
	}
	if n := c.Redis.AppendInFlight; n < 1 || n > redisstore.MaxInFlightLimit {
		v.errf("redis.append_in_flight", "must be 1 to %d, got %d", redisstore.MaxInFlightLimit, n)
	}

	if n := c.Subscribe.TailBuffer; n < 1 || n > MaxTailBuffer {
		v.errf("subscribe.tail_buffer", "must be 1 to %d, got %d", MaxTailBuffer, n)
	}
	if d := c.Subscribe.MinHeartbeat; d < relay.MinHeartbeat {
		v.errf("subscribe.min_heartbeat", "must be at least %s, got %s", relay.MinHeartbeat, d)
	}
	if n := c.Subscribe.MaxSubscribers; n < 1 {
		v.errf("subscribe.max_subscribers", "must be at least 1, got %d", n)
	}
	v.nonNegative("subscribe.send_timeout", int64(c.Subscribe.SendTimeout))
	if n := c.GRPC.MaxStreamsPerConnection; n < 1 {
		v.errf("grpc.max_streams_per_connection", "must be at least 1, got %d", n)
	}
	for i, t := range c.Auth.Tokens {
		if t.MaxSubscriptions < 0 {
			v.errf(fmt.Sprintf("auth.tokens[%d].max_subscriptions", i), "must not be negative, got %d", t.MaxSubscriptions)
		}
	}
	if n := c.Subscribe.ReplayBatch; n < 1 || n > MaxReplayBatch {
		v.errf("subscribe.replay_batch", "must be 1 to %d, got %d", MaxReplayBatch, n)
	}

	// Log and tracing.
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		v.errf("log.level", "must be debug, info, warn or error, got %q", c.Log.Level)
	}
	switch c.Log.Format {
	case "json", "text":
	default:
		v.errf("log.format", "must be json or text, got %q", c.Log.Format)
	}
	if math.IsNaN(c.Tracing.SampleRatio) || c.Tracing.SampleRatio < 0 || c.Tracing.SampleRatio > 1 {
		v.errf("tracing.sample_ratio", "must be between 0 and 1, got %v", c.Tracing.SampleRatio)
	}

	// Sources.
	names := map[string]int{}
	for i := range c.Sources {
		s := &c.Sources[i]
		p := fmt.Sprintf("sources[%d]", i)
		if j, dup := names[s.Name]; dup && s.Name != "" {
			v.errf(p+".name", "duplicate source %q (also sources[%d])", s.Name, j)
		} else {
			names[s.Name] = i
		}
		v.source(p, s)
		// One body of the largest size must fit (its buffer may exceed it by a few pages).
		if m := c.HTTP.MaxBodyMemory; m > 0 && s.MaxBodyBytes > 0 && m < s.MaxBodyBytes+maxBodySlack {
			v.errf("http.max_body_memory", "%d is too small for sources[%d].max_body_bytes %d: it must be at least %d (or 0: unbounded)",
				m, i, s.MaxBodyBytes, s.MaxBodyBytes+maxBodySlack)
		}
	}

	// Auth tokens.
	tokenNames := map[string]int{}
	for i, t := range c.Auth.Tokens {
		p := fmt.Sprintf("auth.tokens[%d]", i)
		if t.Name == "" {
			v.errf(p+".name", "required")
		} else if j, dup := tokenNames[t.Name]; dup {
			v.errf(p+".name", "duplicate token name %q (also auth.tokens[%d])", t.Name, j)
		} else {
			tokenNames[t.Name] = i
		}
		if len(t.Token.Value) == 0 {
			v.errf(p+".token", "required")
		}
		for j := range i {
			if len(t.Token.Value) > 0 && bytes.Equal(c.Auth.Tokens[j].Token.Value, t.Token.Value) {
				v.errf(p+".token", "same value as auth.tokens[%d].token", j)
			}
		}
		for j, g := range t.Groups {
			if !validGroupGlob(g) {
				v.errf(fmt.Sprintf("%s.groups[%d]", p, j), "%q is not a group name or glob (letters, digits, . _ : - and the wildcards * ?)", g)
			}
		}
		for j, s := range t.Sources {
			sp := fmt.Sprintf("%s.sources[%d]", p, j)
			switch {
			case s == "*":
			case !relay.ValidSourceName(s):
				v.errf(sp, "%q is not a valid source name", s)
			case len(c.Sources) > 0:
				if _, ok := names[s]; !ok {
					v.errf(sp, "no source named %q", s)
				}
			}
		}
	}
	destNames := map[string]int{}
	for i := range c.Destinations {
		v.destination(fmt.Sprintf("destinations[%d]", i), &c.Destinations[i], names, destNames, i)
	}
	return v.errs
}

// destination checks one push destination: push.Config.Validate (whose error names each key),
// its name unique, its sources configured and its filter compiling.
func (v *cfgValidator) destination(p string, d *push.Config, sources, seen map[string]int, i int) {
	v.keyed(p, d.Validate())
	if j, dup := seen[d.Name]; dup && d.Name != "" {
		v.errf(p+".name", "duplicate destination name %q (also destinations[%d])", d.Name, j)
	} else {
		seen[d.Name] = i
	}
	for j, s := range d.Sources {
		if _, ok := sources[s]; !ok && len(sources) > 0 && relay.ValidSourceName(s) {
			v.errf(fmt.Sprintf("%s.sources[%d]", p, j), "no source named %q", s)
		}
	}
	if d.Filter != "" && len(d.Filter) <= relay.MaxFilterLen {
		if _, err := filter.Compile(d.Filter); err != nil {
			v.errf(p+".filter", "%s", relay.ErrorMessage(err))
		}
	}
}

// validGroupGlob reports whether g is a consumer group name, or a glob over group names
// ("*" and "?" standing for name characters).
func validGroupGlob(g string) bool {
	return relay.ValidGroupName(strings.NewReplacer("*", "x", "?", "x").Replace(g))
}

type cfgValidator struct{ errs []*FieldError }

func (v *cfgValidator) errf(path, format string, args ...any) {
	v.errs = append(v.errs, &FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (v *cfgValidator) nonNegative(path string, n int64) {
	if n < 0 {
		v.errf(path, "must not be negative")
	}
}

func (v *cfgValidator) addr(path, addr string) {
	if addr == "" {
		v.errf(path, "required")
		return
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		v.errf(path, "must be host:port, e.g. \":8080\", got %q", addr)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		v.errf(path, "port must be a number 0-65535, got %q", port)
	}
}

func (v *cfgValidator) distinctAddrs(addrs [][2]string) {
	for i, a := range addrs {
		for _, b := range addrs[:i] {
			if a[1] != "" && a[1] == b[1] && !strings.HasSuffix(a[1], ":0") {
				v.errf(a[0], "same address as %s (%s)", b[0], a[1])
				break
			}
		}
	}
}

func (v *cfgValidator) tls(path string, t TLSConfig) {
	switch {
	case t.CertFile != "" && t.KeyFile == "":
		v.errf(path+".key_file", "required with cert_file")
	case t.CertFile == "" && t.KeyFile != "":
		v.errf(path+".cert_file", "required with key_file")
	}
	if t.ClientCAFile != "" && t.CertFile == "" {
		v.errf(path+".client_ca_file", "needs cert_file and key_file")
	}
}

func (v *cfgValidator) source(p string, s *relay.SourceConfig) {
	o := verify.OptionsOf(s)
	knownProvider := true
	if prov := strings.ToLower(strings.TrimSpace(s.Provider)); prov != "" && !slices.Contains(cfgKnownProviders, prov) {
		v.errf(p+".provider", "unknown provider %q%s (see docs/providers.md)", s.Provider, cfgSuggest(s.Provider, cfgKnownProviders))
		knownProvider = false
	}
	if len(o.Secrets) == 0 {
		v.errf(p+".secrets", "at least one secret is required (a source without a secret rejects every request)")
	}
	ids := map[string]int{}
	for i, sec := range o.Secrets {
		sp := fmt.Sprintf("%s.secrets[%d]", p, i)
		if len(sec.Value) == 0 {
			v.errf(sp, "empty secret")
		}
		if sec.ID != "" {
			if j, dup := ids[sec.ID]; dup {
				v.errf(sp+".id", "duplicate id %q (also secrets[%d])", sec.ID, j)
			} else {
				ids[sec.ID] = i
			}
		}
	}
	if o.VerifyToken != nil && len(o.VerifyToken.Value) == 0 {
		v.errf(p+".verify_token", "empty secret")
	}
	// The provider options are relay/verify's to check (algorithm, encoding, url, template,
	// headers, body_format, unsigned_id, options the provider does not read): its error
	// names the option, to which the source's key path is added here.
	if knownProvider {
		if _, err := verify.New(s); err != nil {
			if key, msg, ok := strings.Cut(err.Error(), ": "); ok && cfgIsSourceKey(key) {
				v.errf(p+"."+key, "%s", msg)
			} else {
				v.errf(p, "%v", err)
			}
		}
	}
	v.keyed(p, s.Validate())
}

// keyed adds the problems of err, each "<key>: <problem>" relative to the entry at path p
// (relay.SourceConfig.Validate, push.Config.Validate), with p joined to the key.
func (v *cfgValidator) keyed(p string, err error) {
	if err == nil {
		return
	}
	for _, line := range strings.Split(err.Error(), "\n") {
		if key, msg, ok := strings.Cut(line, ": "); ok {
			v.errf(p+"."+key, "%s", msg)
		} else {
			v.errf(p, "%s", line)
		}
	}
}
