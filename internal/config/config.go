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
	"io"
	"log/slog"
	"maps"
	"math"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

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
	CertFile string // cert_file
	KeyFile  string // key_file
	// ClientCAFile (client_ca_file) turns on mutual TLS: on gRPC every client must present a
	// certificate signed by one of these CAs; on HTTP the EventService routes demand one
	// while webhooks (from providers, which have none) do not.
	ClientCAFile string
}

// Enabled reports whether TLS is configured.
func (t TLSConfig) Enabled() bool { return t.CertFile != "" }

// HTTPConfig is the http: section.
type HTTPConfig struct {
	Addr string    // addr, default ":8080"
	TLS  TLSConfig // tls: {cert_file, key_file, client_ca_file}
	// TrustedProxies (trusted_proxies) are the peers whose X-Forwarded-For is believed when
	// checking a source's allow_ips and for logs. Empty: the TCP peer address is used.
	TrustedProxies    []netip.Prefix
	ReadTimeout       time.Duration // read_timeout, default 30s; 0 = none
	WriteTimeout      time.Duration // write_timeout, default 30s; 0 = none
	IdleTimeout       time.Duration // idle_timeout, default 120s; 0 = none
	ReadHeaderTimeout time.Duration // read_header_timeout, default 10s; 0 = none
	MaxHeaderBytes    int           // max_header_bytes, default 64 KiB
	MaxConcurrent     int           // max_concurrent requests in flight, default 1024; 0 = unlimited
	// MaxRequestBytes (max_request_bytes) bounds the body of every EventService request over
	// HTTP (413 beyond, before reading) and every gRPC message relayd receives, default 1 MiB.
	MaxRequestBytes int64
	// MinBodyRate (min_body_rate) is the slowest, in bytes per second, a webhook body may
	// arrive after its first second (408 beyond), default 1024; 0 = only read_timeout.
	MinBodyRate int64
	// Unverified (unverified_limit: {rps, burst}) is each client address's budget of webhook
	// requests that fail verification (429 beyond), default 1 per second, burst 20; rps 0 =
	// none. Such requests never spend a source's rate_limit.
	Unverified relay.RateLimit
}

// GRPCConfig is the grpc: section.
type GRPCConfig struct {
	Addr       string    // addr, default ":9090"
	TLS        TLSConfig // tls: {cert_file, key_file, client_ca_file}
	Reflection bool      // reflection: register the gRPC reflection service, default true
	// MaxStreamsPerConnection (max_streams_per_connection) bounds the concurrent streams of
	// one client connection (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS), default 100.
	MaxStreamsPerConnection int
}

// AdminConfig is the admin: section.
type AdminConfig struct {
	Addr string // addr, default ":9091"
}

// RedisConfig is the redis: section.
type RedisConfig struct {
	// URL (url) is redis://, rediss:// or unix://; "" = the embedded in-process server.
	// With Cluster, a go-redis cluster URL redis://h1:p1?addr=h2:p2&addr=h3:p3. It may
	// carry a password, so it is a secret value (literal, env:NAME or file:/path) and
	// String redacts it.
	URL         string
	Cluster     bool          // cluster: Redis Cluster
	MasterName  string        // master_name: Sentinel master; URL then names the sentinels
	MinReplicas int           // min_replicas: appends also wait (WAIT) for this many replicas
	Timeout     time.Duration // timeout: dial/read/write timeout, default 2s
	// PoolSize (pool_size) bounds the connections to each Redis server: relayd holds at
	// most two blocking reads per partition (the shared tail reader and the group watcher)
	// whatever the number of subscriptions, plus short commands. 0 (default): 2 × the
	// partitions of all sources + 64. A pool_size in the URL wins.
	PoolSize int
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
	return fmt.Sprintf("{URL:%s Cluster:%t MasterName:%s MinReplicas:%d Timeout:%s PoolSize:%d}",
		r.RedactedURL(), r.Cluster, r.MasterName, r.MinReplicas, r.Timeout, r.PoolSize)
}

// AuthConfig is the auth: section.
type AuthConfig struct {
	Tokens []AuthToken // tokens
}

// AuthToken is one bearer token of a subscriber or producer.
type AuthToken struct {
	Name string // name: shown in logs and metrics, never the token
	// Token (token) is the secret bearer value; Token.ID is the token's name.
	Token relay.Secret
	// Sources (sources) the token may read; empty or "*" = every source.
	Sources []string
	// Publish (publish): the token may also call Publish on those sources.
	Publish bool
	// Groups (groups): consumer groups (names or globs) the token may join and settle;
	// empty = every group for a token that may read every source, none otherwise.
	Groups []string
	// MaxSubscriptions (max_subscriptions) bounds the subscriptions the token holds open at
	// once (RESOURCE_EXHAUSTED beyond); 0 = only subscribe.max_subscribers.
	MaxSubscriptions int
}

// LogConfig is the log: section.
type LogConfig struct {
	Level  string // level: debug | info (default) | warn | error
	Format string // format: json (default) | text
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
	OTLPEndpoint string  // otlp_endpoint: OTLP/gRPC collector, e.g. "otel-collector:4317"; "" = off
	SampleRatio  float64 // sample_ratio of root traces, 0..1, default 1
}

// SubscribeConfig is the subscribe: section.
type SubscribeConfig struct {
	// TailBuffer (tail_buffer) is how many entries a tail subscriber may fall behind the
	// stream before it is cut with RESOURCE_EXHAUSTED, default 4096.
	TailBuffer int
	// ReplayBatch (replay_batch) is how many entries one history read of a replay fetches,
	// default 1000.
	ReplayBatch int
	// MinHeartbeat (min_heartbeat) is the shortest heartbeat_interval a subscriber may ask
	// for (INVALID_ARGUMENT below), default 1s, at least 100ms.
	MinHeartbeat time.Duration
	// MaxSubscribers (max_subscribers) bounds the subscriptions open at once over gRPC and
	// HTTP together (RESOURCE_EXHAUSTED beyond), default 10000.
	MaxSubscribers int
	// SendTimeout (send_timeout) ends a gRPC subscription whose send has been blocked that
	// long (a client that stopped reading) with RESOURCE_EXHAUSTED, default 30s; 0 = never.
	SendTimeout time.Duration
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
	DefaultUnverifiedRPS     = 1
	DefaultUnverifiedBurst   = 20
	DefaultTailBuffer        = 4096
	DefaultReplayBatch       = 1000
	DefaultMinHeartbeat      = time.Second
	DefaultMaxSubscribers    = 10000
	DefaultSendTimeout       = 30 * time.Second
	DefaultMaxStreamsPerConn = 100
)

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
			Unverified:        relay.RateLimit{RPS: DefaultUnverifiedRPS, Burst: DefaultUnverifiedBurst},
		},
		GRPC:    GRPCConfig{Addr: DefaultGRPCAddr, Reflection: true, MaxStreamsPerConnection: DefaultMaxStreamsPerConn},
		Admin:   AdminConfig{Addr: DefaultAdminAddr},
		Redis:   RedisConfig{Timeout: DefaultRedisTimeout},
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
	"RELAY_DEMO_SECRET":   true, // main: secret of the demo source
	"RELAY_TOKEN":         true, // relayctl: bearer token
	"RELAY_REQUIRE_REDIS": true, // tests: fail instead of skipping without redis-server
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
	d := &cfgDecoder{
		env:        cfgEnvMap(environ),
		origins:    map[*yaml.Node]string{},
		where:      map[string]string{},
		referenced: map[string]bool{},
	}
	root := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("config file: %w", err)
		}
		d.file, d.dir = path, filepath.Dir(path)
		if root, err = parseConfigYAML(data); err != nil {
			return nil, fmt.Errorf("config file %s: %w", path, err)
		}
	}

	d.applyEnv(root)
	d.applyFlags(root, flags)

	cfg := Default()
	d.decodeMap(root, "", cfg, cfgFields)
	d.checkUnusedEnv()

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
		cfg.Destinations[i].SetDefaults()
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
	if n, least := c.Redis.PoolSize, 2*c.partitions()+1; n != 0 && (n < least || n > 100000) {
		v.errf("redis.pool_size", "must be 0 (automatic) or %d (two blocking reads per partition + 1) to 100000, got %d", least, n)
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

// ---------------------------------------------------------------------------------------
// Schema: the keys of the file, which also define the RELAY_* variables and flag paths.

type cfgKind int

const (
	cfgKString       cfgKind = iota // any scalar, as written
	cfgKPath                        // file path; relative to the config file's directory when read from it
	cfgKBool                        // true/false
	cfgKInt                         // *int or *int64
	cfgKFloat                       // *float64
	cfgKDuration                    // Go duration: "30s", "5m", "168h"
	cfgKPrefixes                    // list of CIDR prefixes or bare IPs
	cfgKStrings                     // list of strings
	cfgKSecret                      // one secret: string or {id, value}; *relay.Secret or **relay.Secret
	cfgKSecrets                     // list of secrets
	cfgKSecretString                // a secret value resolved to a string (redis.url)
	cfgKMap                         // nested mapping with sub fields, same target
	cfgKSources                     // the sources list
	cfgKTokens                      // the auth.tokens list
	cfgKDestinations                // the destinations list
	cfgKStringMap                   // mapping of strings to strings (env and flags: "K=V,K2=V2")
)

// isList reports whether an environment/flag value of this kind is a comma-separated list.
func (k cfgKind) isList() bool {
	return k == cfgKPrefixes || k == cfgKStrings || k == cfgKSecrets || k == cfgKStringMap
}

type cfgField struct {
	name string
	kind cfgKind
	get  func(target any) any // pointer to the field within the target
	sub  []cfgField
}

func cfgF[T any](name string, k cfgKind, p func(*Config) *T) cfgField {
	return cfgField{name: name, kind: k, get: func(t any) any { return p(t.(*Config)) }}
}

func srcF[T any](name string, k cfgKind, p func(*relay.SourceConfig) *T) cfgField {
	return cfgField{name: name, kind: k, get: func(t any) any { return p(t.(*relay.SourceConfig)) }}
}

func tokF[T any](name string, k cfgKind, p func(*AuthToken) *T) cfgField {
	return cfgField{name: name, kind: k, get: func(t any) any { return p(t.(*AuthToken)) }}
}

func dstF[T any](name string, k cfgKind, p func(*push.Config) *T) cfgField {
	return cfgField{name: name, kind: k, get: func(t any) any { return p(t.(*push.Config)) }}
}

func cfgSection(name string, sub ...cfgField) cfgField {
	return cfgField{name: name, kind: cfgKMap, sub: sub}
}

var cfgFields = []cfgField{
	cfgSection("http",
		cfgF("addr", cfgKString, func(c *Config) *string { return &c.HTTP.Addr }),
		cfgSection("tls",
			cfgF("cert_file", cfgKPath, func(c *Config) *string { return &c.HTTP.TLS.CertFile }),
			cfgF("key_file", cfgKPath, func(c *Config) *string { return &c.HTTP.TLS.KeyFile }),
			cfgF("client_ca_file", cfgKPath, func(c *Config) *string { return &c.HTTP.TLS.ClientCAFile }),
		),
		cfgF("trusted_proxies", cfgKPrefixes, func(c *Config) *[]netip.Prefix { return &c.HTTP.TrustedProxies }),
		cfgF("read_timeout", cfgKDuration, func(c *Config) *time.Duration { return &c.HTTP.ReadTimeout }),
		cfgF("write_timeout", cfgKDuration, func(c *Config) *time.Duration { return &c.HTTP.WriteTimeout }),
		cfgF("idle_timeout", cfgKDuration, func(c *Config) *time.Duration { return &c.HTTP.IdleTimeout }),
		cfgF("read_header_timeout", cfgKDuration, func(c *Config) *time.Duration { return &c.HTTP.ReadHeaderTimeout }),
		cfgF("max_header_bytes", cfgKInt, func(c *Config) *int { return &c.HTTP.MaxHeaderBytes }),
		cfgF("max_concurrent", cfgKInt, func(c *Config) *int { return &c.HTTP.MaxConcurrent }),
		cfgF("max_request_bytes", cfgKInt, func(c *Config) *int64 { return &c.HTTP.MaxRequestBytes }),
		cfgF("min_body_rate", cfgKInt, func(c *Config) *int64 { return &c.HTTP.MinBodyRate }),
		cfgSection("unverified_limit",
			cfgF("rps", cfgKFloat, func(c *Config) *float64 { return &c.HTTP.Unverified.RPS }),
			cfgF("burst", cfgKInt, func(c *Config) *int { return &c.HTTP.Unverified.Burst }),
		),
	),
	cfgSection("grpc",
		cfgF("addr", cfgKString, func(c *Config) *string { return &c.GRPC.Addr }),
		cfgSection("tls",
			cfgF("cert_file", cfgKPath, func(c *Config) *string { return &c.GRPC.TLS.CertFile }),
			cfgF("key_file", cfgKPath, func(c *Config) *string { return &c.GRPC.TLS.KeyFile }),
			cfgF("client_ca_file", cfgKPath, func(c *Config) *string { return &c.GRPC.TLS.ClientCAFile }),
		),
		cfgF("reflection", cfgKBool, func(c *Config) *bool { return &c.GRPC.Reflection }),
		cfgF("max_streams_per_connection", cfgKInt, func(c *Config) *int { return &c.GRPC.MaxStreamsPerConnection }),
	),
	cfgSection("admin",
		cfgF("addr", cfgKString, func(c *Config) *string { return &c.Admin.Addr }),
	),
	cfgSection("redis",
		cfgF("url", cfgKSecretString, func(c *Config) *string { return &c.Redis.URL }),
		cfgF("cluster", cfgKBool, func(c *Config) *bool { return &c.Redis.Cluster }),
		cfgF("master_name", cfgKString, func(c *Config) *string { return &c.Redis.MasterName }),
		cfgF("min_replicas", cfgKInt, func(c *Config) *int { return &c.Redis.MinReplicas }),
		cfgF("timeout", cfgKDuration, func(c *Config) *time.Duration { return &c.Redis.Timeout }),
		cfgF("pool_size", cfgKInt, func(c *Config) *int { return &c.Redis.PoolSize }),
	),
	cfgSection("auth",
		cfgField{name: "tokens", kind: cfgKTokens, sub: cfgTokenFields},
	),
	cfgSection("log",
		cfgF("level", cfgKString, func(c *Config) *string { return &c.Log.Level }),
		cfgF("format", cfgKString, func(c *Config) *string { return &c.Log.Format }),
	),
	cfgSection("tracing",
		cfgF("otlp_endpoint", cfgKString, func(c *Config) *string { return &c.Tracing.OTLPEndpoint }),
		cfgF("sample_ratio", cfgKFloat, func(c *Config) *float64 { return &c.Tracing.SampleRatio }),
	),
	cfgSection("subscribe",
		cfgF("tail_buffer", cfgKInt, func(c *Config) *int { return &c.Subscribe.TailBuffer }),
		cfgF("replay_batch", cfgKInt, func(c *Config) *int { return &c.Subscribe.ReplayBatch }),
		cfgF("min_heartbeat", cfgKDuration, func(c *Config) *time.Duration { return &c.Subscribe.MinHeartbeat }),
		cfgF("max_subscribers", cfgKInt, func(c *Config) *int { return &c.Subscribe.MaxSubscribers }),
		cfgF("send_timeout", cfgKDuration, func(c *Config) *time.Duration { return &c.Subscribe.SendTimeout }),
	),
	{name: "sources", kind: cfgKSources, sub: cfgSourceFields},
	{name: "destinations", kind: cfgKDestinations, sub: cfgDestinationFields},
}

var cfgDestinationFields = []cfgField{
	dstF("name", cfgKString, func(d *push.Config) *string { return &d.Name }),
	dstF("url", cfgKString, func(d *push.Config) *string { return &d.URL }),
	dstF("sources", cfgKStrings, func(d *push.Config) *[]string { return &d.Sources }),
	dstF("types", cfgKStrings, func(d *push.Config) *[]string { return &d.Types }),
	dstF("filter", cfgKString, func(d *push.Config) *string { return &d.Filter }),
	dstF("secrets", cfgKSecrets, func(d *push.Config) *[]relay.Secret { return &d.Secrets }),
	dstF("headers", cfgKStringMap, func(d *push.Config) *map[string]string { return &d.Headers }),
	dstF("timeout", cfgKDuration, func(d *push.Config) *time.Duration { return &d.Timeout }),
	dstF("max_in_flight", cfgKInt, func(d *push.Config) *int { return &d.MaxInFlight }),
	dstF("ordering", cfgKString, func(d *push.Config) *string { return (*string)(&d.Ordering) }),
	cfgSection("retry",
		dstF("initial", cfgKDuration, func(d *push.Config) *time.Duration { return &d.Retry.Initial }),
		dstF("max", cfgKDuration, func(d *push.Config) *time.Duration { return &d.Retry.Max }),
		dstF("multiplier", cfgKFloat, func(d *push.Config) *float64 { return &d.Retry.Multiplier }),
		dstF("max_attempts", cfgKInt, func(d *push.Config) *int { return &d.Retry.MaxAttempts }),
		dstF("max_age", cfgKDuration, func(d *push.Config) *time.Duration { return &d.Retry.MaxAge }),
	),
	cfgSection("rate_limit",
		dstF("rps", cfgKFloat, func(d *push.Config) *float64 { return &d.RateLimit.RPS }),
		dstF("burst", cfgKInt, func(d *push.Config) *int { return &d.RateLimit.Burst }),
	),
	cfgSection("breaker",
		dstF("failures", cfgKInt, func(d *push.Config) *int { return &d.Breaker.Failures }),
		dstF("cooldown", cfgKDuration, func(d *push.Config) *time.Duration { return &d.Breaker.Cooldown }),
	),
	dstF("allow_private", cfgKBool, func(d *push.Config) *bool { return &d.AllowPrivate }),
}

var cfgTokenFields = []cfgField{
	tokF("name", cfgKString, func(t *AuthToken) *string { return &t.Name }),
	tokF("token", cfgKSecret, func(t *AuthToken) *relay.Secret { return &t.Token }),
	tokF("sources", cfgKStrings, func(t *AuthToken) *[]string { return &t.Sources }),
	tokF("publish", cfgKBool, func(t *AuthToken) *bool { return &t.Publish }),
	tokF("groups", cfgKStrings, func(t *AuthToken) *[]string { return &t.Groups }),
	tokF("max_subscriptions", cfgKInt, func(t *AuthToken) *int { return &t.MaxSubscriptions }),
}

type srcCfg = relay.SourceConfig

// cfgIsSourceKey reports whether key is a key of a source.
func cfgIsSourceKey(key string) bool {
	for _, f := range cfgSourceFields {
		if f.name == key {
			return true
		}
	}
	return false
}

var cfgSourceFields = []cfgField{
	srcF("name", cfgKString, func(s *srcCfg) *string { return &s.Name }),
	srcF("provider", cfgKString, func(s *srcCfg) *string { return &s.Provider }),
	srcF("secrets", cfgKSecrets, func(s *srcCfg) *[]relay.Secret { return &verify.OptionsOf(s).Secrets }),
	srcF("header", cfgKString, func(s *srcCfg) *string { return &verify.OptionsOf(s).Header }),
	srcF("tolerance", cfgKDuration, func(s *srcCfg) *time.Duration { return &verify.OptionsOf(s).Tolerance }),
	srcF("url", cfgKString, func(s *srcCfg) *string { return &s.URL }),
	srcF("algorithm", cfgKString, func(s *srcCfg) *string { return &verify.OptionsOf(s).Algorithm }),
	srcF("encoding", cfgKString, func(s *srcCfg) *string { return &verify.OptionsOf(s).Encoding }),
	srcF("prefix", cfgKString, func(s *srcCfg) *string { return &verify.OptionsOf(s).Prefix }),
	srcF("template", cfgKString, func(s *srcCfg) *string { return &verify.OptionsOf(s).Template }),
	srcF("timestamp_header", cfgKString, func(s *srcCfg) *string { return &verify.OptionsOf(s).TimestampHeader }),
	srcF("id_header", cfgKString, func(s *srcCfg) *string { return &verify.OptionsOf(s).IDHeader }),
	srcF("id_field", cfgKString, func(s *srcCfg) *string { return &verify.OptionsOf(s).IDField }),
	srcF("type_field", cfgKString, func(s *srcCfg) *string { return &verify.OptionsOf(s).TypeField }),
	srcF("type_header", cfgKString, func(s *srcCfg) *string { return &verify.OptionsOf(s).TypeHeader }),
	srcF("subject_field", cfgKString, func(s *srcCfg) *string { return &verify.OptionsOf(s).SubjectField }),
	srcF("time_field", cfgKString, func(s *srcCfg) *string { return &verify.OptionsOf(s).TimeField }),
	srcF("query_param", cfgKString, func(s *srcCfg) *string { return &verify.OptionsOf(s).QueryParam }),
	srcF("body_format", cfgKString, func(s *srcCfg) *string { return &verify.OptionsOf(s).BodyFormat }),
	srcF("unsigned_id", cfgKBool, func(s *srcCfg) *bool { return &verify.OptionsOf(s).UnsignedID }),
	srcF("verify_token", cfgKSecret, func(s *srcCfg) **relay.Secret { return &verify.OptionsOf(s).VerifyToken }),
	srcF("max_body_bytes", cfgKInt, func(s *srcCfg) *int64 { return &s.MaxBodyBytes }),
	srcF("allow_ips", cfgKPrefixes, func(s *srcCfg) *[]netip.Prefix { return &s.AllowIPs }),
	srcF("max_concurrent", cfgKInt, func(s *srcCfg) *int { return &s.MaxConcurrent }),
	srcF("max_groups", cfgKInt, func(s *srcCfg) *int { return &s.MaxGroups }),
	cfgSection("rate_limit",
		srcF("rps", cfgKFloat, func(s *srcCfg) *float64 { return &s.RateLimit.RPS }),
		srcF("burst", cfgKInt, func(s *srcCfg) *int { return &s.RateLimit.Burst }),
	),
	srcF("partitions", cfgKInt, func(s *srcCfg) *int { return &s.Partitions }),
	srcF("partition_key", cfgKString, func(s *srcCfg) *string { return &s.PartitionKey }),
	srcF("retention", cfgKDuration, func(s *srcCfg) *time.Duration { return &s.Retention }),
	srcF("max_len", cfgKInt, func(s *srcCfg) *int64 { return &s.MaxLen }),
	srcF("dedupe_window", cfgKDuration, func(s *srcCfg) *time.Duration { return &s.DedupeWindow }),
}

// cfgLeaf is a scalar (or list) key reachable by an environment variable or flag.
type cfgLeaf struct {
	path string // dotted, relative to its root (the config, a source or a token)
	kind cfgKind
}

// cfgLeavesOf flattens fields into their overridable leaves. Lists of mappings (sources, tokens)
// are addressed by name separately; a source's or token's name itself cannot be overridden.
func cfgLeavesOf(prefix string, fields []cfgField) []cfgLeaf {
	var out []cfgLeaf
	for _, f := range fields {
		p := f.name
		if prefix != "" {
			p = prefix + "." + f.name
		}
		switch f.kind {
		case cfgKMap:
			out = append(out, cfgLeavesOf(p, f.sub)...)
		case cfgKSources, cfgKTokens, cfgKDestinations:
		default:
			if f.name != "name" || prefix != "" {
				out = append(out, cfgLeaf{p, f.kind})
			}
		}
	}
	return out
}

var (
	cfgLeaves       = cfgLeavesOf("", cfgFields)
	cfgSourceLeaves = cfgLeavesOf("", cfgSourceFields)
	cfgTokenLeaves  = cfgLeavesOf("", cfgTokenFields)
	cfgDestLeaves   = cfgLeavesOf("", cfgDestinationFields)
)

// cfgNamedList is a list of named mappings whose keys RELAY_<env><NAME>_<KEY> and flags
// <path>.<name>.<key> override (they cannot add an entry).
type cfgNamedList struct {
	env, path string // "SOURCES_", "sources"
	what      string // in messages: "sources"
	unknown   string // the message of a variable naming no key of an entry
	suggest   bool   // add a did-you-mean suggestion to that message
	leaves    []cfgLeaf
}

var cfgNamedLists = []cfgNamedList{
	{env: "SOURCES_", path: "sources", what: "sources", suggest: true, leaves: cfgSourceLeaves,
		unknown: "names no key of a configured source (RELAY_SOURCES_<NAME>_<KEY> overrides a key of a source of the config file; it cannot add a source)"},
	{env: "AUTH_TOKENS_", path: "auth.tokens", what: "tokens", leaves: cfgTokenLeaves,
		unknown: "names no key of a configured auth token (RELAY_AUTH_TOKENS_<NAME>_<KEY> overrides token, sources, publish or groups of a token of the config file)"},
	{env: "DESTINATIONS_", path: "destinations", what: "destinations", suggest: true, leaves: cfgDestLeaves,
		unknown: "names no key of a configured destination (RELAY_DESTINATIONS_<NAME>_<KEY> overrides a key of a destination of the config file; it cannot add one)"},
}

// ownList returns the list node of l under root, made the tree's own (origin: who asked).
func (d *cfgDecoder) ownList(root *yaml.Node, l cfgNamedList, origin string) *yaml.Node {
	parent, key := root, l.path
	if section, rest, ok := strings.Cut(l.path, "."); ok {
		parent, key = d.childMapping(root, section, origin), rest
	}
	return yamlOwnList(parent, key)
}

// cfgEnvName is the environment form of a dotted path or a name: upper case, every character
// other than a letter or digit written "_".
func cfgEnvName(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			return r
		}
		return '_'
	}, s)
}

// ---------------------------------------------------------------------------------------
// Parsing and overrides on the YAML node tree

func parseConfigYAML(data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if err == io.EOF { // empty file
			return &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}, nil
		}
		return nil, err
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err != io.EOF {
		if err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("line %d: only one YAML document is allowed", extra.Line)
	}
	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}, nil
		}
		root = root.Content[0]
	}
	root = yamlDeref(root)
	if yamlIsNull(root) {
		return &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}, nil
	}
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("line %d: the top level must be a mapping of sections (http:, grpc:, sources:, ...)", root.Line)
	}
	return root, nil
}

func yamlDeref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func yamlIsNull(n *yaml.Node) bool {
	return n == nil || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

func cfgEnvMap(environ []string) map[string]string {
	m := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

// yamlLookupKey finds key in mapping m: its value and the index of its key node in m.Content,
// or -1 when it only comes from a merge (<<).
func yamlLookupKey(m *yaml.Node, key string) (*yaml.Node, int) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if k := m.Content[i]; k.Kind == yaml.ScalarNode && k.Value == key && k.ShortTag() != "!!merge" {
			return m.Content[i+1], i
		}
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].ShortTag() != "!!merge" {
			continue
		}
		for _, src := range yamlMergeSources(m.Content[i+1]) {
			if v, _ := yamlLookupKey(src, key); v != nil {
				return v, -1
			}
		}
	}
	return nil, -1
}

func yamlMergeSources(v *yaml.Node) []*yaml.Node {
	v = yamlDeref(v)
	switch v.Kind {
	case yaml.MappingNode:
		return []*yaml.Node{v}
	case yaml.SequenceNode:
		var out []*yaml.Node
		for _, e := range v.Content {
			if e = yamlDeref(e); e.Kind == yaml.MappingNode {
				out = append(out, e)
			}
		}
		return out
	}
	return nil
}

// yamlSetKey sets key in m to val, replacing an explicit key or adding one (which overrides a
// merged key).
func yamlSetKey(m *yaml.Node, key string, val *yaml.Node) {
	if _, i := yamlLookupKey(m, key); i >= 0 {
		m.Content[i+1] = val
		return
	}
	m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key}, val)
}

// yamlOwnCopy returns a shallow copy of n (after aliases) so that setting keys in it never
// changes an anchored node shared with other parts of the file.
func yamlOwnCopy(n *yaml.Node) *yaml.Node {
	c := *yamlDeref(n)
	c.Anchor = ""
	c.Content = slices.Clone(c.Content)
	return &c
}

// childMapping returns the mapping under key in m, owned by m, creating it if needed.
func (d *cfgDecoder) childMapping(m *yaml.Node, key, origin string) *yaml.Node {
	v, _ := yamlLookupKey(m, key)
	if v = yamlDeref(v); v != nil && v.Kind == yaml.MappingNode {
		c := yamlOwnCopy(v)
		yamlSetKey(m, key, c)
		return c
	}
	c := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	d.origins[c] = origin
	yamlSetKey(m, key, c)
	return c
}

// setPath sets the dotted path under mapping m to value, split on commas for list kinds.
func (d *cfgDecoder) setPath(m *yaml.Node, path string, k cfgKind, value, origin string) {
	segs := strings.Split(path, ".")
	for _, s := range segs[:len(segs)-1] {
		m = d.childMapping(m, s, origin)
	}
	var leaf *yaml.Node
	if k.isList() {
		leaf = &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		for item := range strings.SplitSeq(value, ",") {
			if item = strings.TrimSpace(item); item != "" {
				n := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: item}
				d.origins[n] = origin
				leaf.Content = append(leaf.Content, n)
			}
		}
	} else {
		leaf = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: value}
	}
	d.origins[leaf] = origin
	yamlSetKey(m, segs[len(segs)-1], leaf)
}

// cfgNamedEntry is one element of sources: or auth.tokens: in the file.
type cfgNamedEntry struct {
	name  string
	index int
}

// cfgNamedEntries lists the elements of the list under section (e.g. "sources" or
// "auth"→"tokens") with a scalar name.
func cfgNamedEntries(list *yaml.Node) []cfgNamedEntry {
	var out []cfgNamedEntry
	if list = yamlDeref(list); list == nil || list.Kind != yaml.SequenceNode {
		return nil
	}
	for i, e := range list.Content {
		if e = yamlDeref(e); e.Kind != yaml.MappingNode {
			continue
		}
		if n, _ := yamlLookupKey(e, "name"); yamlDeref(n) != nil && yamlDeref(n).Kind == yaml.ScalarNode {
			out = append(out, cfgNamedEntry{yamlDeref(n).Value, i})
		}
	}
	return out
}

// yamlOwnList returns the list under key in m, owned by m (nil if absent or not a list).
func yamlOwnList(m *yaml.Node, key string) *yaml.Node {
	v, _ := yamlLookupKey(m, key)
	if v = yamlDeref(v); v == nil || v.Kind != yaml.SequenceNode {
		return nil
	}
	c := yamlOwnCopy(v)
	yamlSetKey(m, key, c)
	return c
}

// setInEntry sets path in element i of list, copying the element first.
func (d *cfgDecoder) setInEntry(list *yaml.Node, i int, path string, k cfgKind, value, origin string) {
	e := yamlOwnCopy(list.Content[i])
	list.Content[i] = e
	d.setPath(e, path, k, value, origin)
}

// cfgListTarget resolves the variable suffix rest ("ORDERS_EU_TOLERANCE") against the names of
// entries: the entries it addresses and the leaf. Several matching entries with different
// names (e.g. "a-b" and "a_b") are ambiguous.
func cfgListTarget(rest string, entries []cfgNamedEntry, fields []cfgLeaf) (idx []int, leaf cfgLeaf, names []string) {
	for _, e := range entries {
		prefix := cfgEnvName(e.name) + "_"
		if !strings.HasPrefix(rest, prefix) {
			continue
		}
		for _, l := range fields {
			if cfgEnvName(l.path) == rest[len(prefix):] {
				idx = append(idx, e.index)
				leaf = l
				if !slices.Contains(names, e.name) {
					names = append(names, e.name)
				}
			}
		}
	}
	return idx, leaf, names
}

// cfgPendingEnv is a RELAY_* variable that names no configuration key; it is reported after
// decoding unless the file references it as an env: secret.
type cfgPendingEnv struct {
	name, msg string
}

var cfgSections = []string{"HTTP", "GRPC", "ADMIN", "REDIS", "AUTH", "LOG", "TRACING", "SUBSCRIBE", "SOURCES", "DESTINATIONS"}

// applyEnv applies the RELAY_* variables to the node tree.
func (d *cfgDecoder) applyEnv(root *yaml.Node) {
	names := slices.Sorted(maps.Keys(d.env))
	top := map[string]cfgLeaf{}
	for _, l := range cfgLeaves {
		top["RELAY_"+cfgEnvName(l.path)] = l
	}
	for _, name := range names {
		if !strings.HasPrefix(name, "RELAY_") || cfgIgnoredEnv[name] {
			continue
		}
		value := d.env[name]
		if l, ok := top[name]; ok {
			d.setPath(root, l.path, l.kind, value, name)
			continue
		}
		rest := strings.TrimPrefix(name, "RELAY_")
		i := slices.IndexFunc(cfgNamedLists, func(l cfgNamedList) bool { return strings.HasPrefix(rest, l.env) })
		if i < 0 {
			if cfgLooksLikeConfig(rest, top) {
				d.pending = append(d.pending, cfgPendingEnv{name, "unknown configuration variable" + d.envSuggestion(name, root)})
			}
			continue
		}
		l := cfgNamedLists[i]
		list := d.ownList(root, l, name)
		idx, leaf, matched := cfgListTarget(strings.TrimPrefix(rest, l.env), cfgNamedEntries(list), l.leaves)
		switch {
		case len(matched) > 1:
			d.pending = append(d.pending, cfgPendingEnv{name, fmt.Sprintf("ambiguous: matches %s %q", l.what, matched)})
		case len(idx) > 0:
			for _, i := range idx {
				d.setInEntry(list, i, leaf.path, leaf.kind, value, name)
			}
		default:
			msg := l.unknown
			if l.suggest {
				msg += d.envSuggestion(name, root)
			}
			d.pending = append(d.pending, cfgPendingEnv{name, msg})
		}
	}
}

// cfgLooksLikeConfig reports whether RELAY_<rest> looks meant as a configuration path: its
// first word is a section name or a typo of one, or the whole is a typo of a known path.
func cfgLooksLikeConfig(rest string, top map[string]cfgLeaf) bool {
	first, _, _ := strings.Cut(rest, "_")
	for _, s := range cfgSections {
		if first == s || (len(first) >= 3 && cfgLevenshtein(first, s) <= 1) {
			return true
		}
	}
	for k := range top {
		if cfgLevenshtein("RELAY_"+rest, k) <= 2 {
			return true
		}
	}
	return false
}

// envSuggestion proposes the closest known variable.
func (d *cfgDecoder) envSuggestion(name string, root *yaml.Node) string {
	var known []string
	for _, l := range cfgLeaves {
		known = append(known, "RELAY_"+cfgEnvName(l.path))
	}
	for _, l := range cfgNamedLists {
		if !l.suggest {
			continue
		}
		for _, e := range cfgNamedEntries(yamlDeref(yamlGet(root, l.path))) {
			for _, leaf := range l.leaves {
				known = append(known, "RELAY_"+l.env+cfgEnvName(e.name)+"_"+cfgEnvName(leaf.path))
			}
		}
	}
	return cfgSuggest(name, known)
}

func yamlGet(m *yaml.Node, key string) *yaml.Node {
	v, _ := yamlLookupKey(m, key)
	return v
}

func (d *cfgDecoder) checkUnusedEnv() {
	for _, p := range d.pending {
		if d.referenced[p.name] {
			continue // a secret of the file: env:RELAY_...
		}
		d.errs = append(d.errs, &FieldError{Path: p.name, Msg: p.msg})
	}
}

// applyFlags applies flags (dotted path → value). Sources and tokens are addressed by name:
// "sources.orders.tolerance", "auth.tokens.ci.token".
func (d *cfgDecoder) applyFlags(root *yaml.Node, flags map[string]string) {
	keys := slices.Sorted(maps.Keys(flags))
	for _, key := range keys {
		value, origin := flags[key], "flag "+key
		if l, ok := cfgFindLeaf(cfgLeaves, key); ok {
			d.setPath(root, l.path, l.kind, value, origin)
			continue
		}
		i := slices.IndexFunc(cfgNamedLists, func(l cfgNamedList) bool { return strings.HasPrefix(key, l.path+".") })
		if i < 0 {
			var known []string
			for _, l := range cfgLeaves {
				known = append(known, l.path)
			}
			d.errs = append(d.errs, &FieldError{Path: "flag " + key, Msg: "unknown configuration key" + cfgSuggest(key, known)})
			continue
		}
		l := cfgNamedLists[i]
		list, rest, fields := d.ownList(root, l, origin), strings.TrimPrefix(key, l.path+"."), l.leaves
		found := false
		for _, e := range cfgNamedEntries(list) {
			if l, ok := cfgFindLeaf(fields, strings.TrimPrefix(rest, e.name+".")); ok && strings.HasPrefix(rest, e.name+".") {
				d.setInEntry(list, e.index, l.path, l.kind, value, origin)
				found = true
			}
		}
		if !found {
			d.errs = append(d.errs, &FieldError{Path: "flag " + key, Msg: "names no key of a configured entry (use sources.<name>.<key>, auth.tokens.<name>.<key> or destinations.<name>.<key>)"})
		}
	}
}

func cfgFindLeaf(ls []cfgLeaf, path string) (cfgLeaf, bool) {
	for _, l := range ls {
		if l.path == path {
			return l, true
		}
	}
	return cfgLeaf{}, false
}

// ---------------------------------------------------------------------------------------
// Decoding the node tree into Config

type cfgDecoder struct {
	file, dir  string
	env        map[string]string
	origins    map[*yaml.Node]string // nodes set by a variable or flag → its name
	where      map[string]string     // key path → origin of its value, for Validate errors
	referenced map[string]bool       // variables named by env: secrets
	pending    []cfgPendingEnv
	errs       []*FieldError
}

// origin describes where n came from: "RELAY_X", "flag x.y" or "file.yaml:12".
func (d *cfgDecoder) origin(n *yaml.Node) string {
	if o, ok := d.origins[n]; ok {
		return o
	}
	if d.file != "" && n != nil && n.Line > 0 {
		return fmt.Sprintf("%s:%d", d.file, n.Line)
	}
	return ""
}

// fromFile reports whether n was read from the config file (not set by a variable or flag).
func (d *cfgDecoder) fromFile(n *yaml.Node) bool {
	_, set := d.origins[n]
	return !set && d.file != ""
}

// originOf finds the origin of path or of its closest parent.
func (d *cfgDecoder) originOf(path string) string {
	for p := path; p != ""; {
		if o, ok := d.where[p]; ok {
			return o
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return ""
}

func (d *cfgDecoder) errf(n *yaml.Node, path, format string, args ...any) {
	d.errs = append(d.errs, &FieldError{Path: path, Msg: fmt.Sprintf(format, args...), Origin: d.origin(n)})
}

func cfgJoinPath(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

type cfgPair struct {
	key   string
	kn, v *yaml.Node
}

// pairs lists the keys of mapping n, merge keys (<<) resolved, explicit keys first.
func (d *cfgDecoder) pairs(n *yaml.Node, path string) []cfgPair {
	var out []cfgPair
	seen := map[string]bool{}
	var merged []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.ShortTag() == "!!merge" {
			merged = append(merged, yamlMergeSources(v)...)
			continue
		}
		if k.Kind != yaml.ScalarNode {
			d.errf(k, cfgJoinPath(path, "?"), "keys must be strings")
			continue
		}
		if seen[k.Value] {
			d.errf(k, cfgJoinPath(path, k.Value), "duplicate key")
			continue
		}
		seen[k.Value] = true
		out = append(out, cfgPair{k.Value, k, v})
	}
	for _, m := range merged {
		for _, p := range d.pairs(m, path) {
			if !seen[p.key] {
				seen[p.key] = true
				out = append(out, p)
			}
		}
	}
	return out
}

func (d *cfgDecoder) decodeMap(n *yaml.Node, path string, target any, fields []cfgField) {
	n = yamlDeref(n)
	if yamlIsNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.errf(n, cfgPathOrTop(path), "must be a mapping of keys")
		return
	}
	for _, p := range d.pairs(n, path) {
		kp := cfgJoinPath(path, p.key)
		i := slices.IndexFunc(fields, func(f cfgField) bool { return f.name == p.key })
		if i < 0 {
			names := make([]string, len(fields))
			for j, f := range fields {
				names[j] = f.name
			}
			d.errf(p.kn, kp, "unknown key%s", cfgSuggest(p.key, names))
			continue
		}
		d.decodeField(p.v, kp, target, &fields[i])
	}
}

func cfgPathOrTop(p string) string {
	if p == "" {
		return "(top level)"
	}
	return p
}

// cfgDecodeList decodes the list of mappings v (sources, tokens, destinations) with fields.
func cfgDecodeList[T any](d *cfgDecoder, v *yaml.Node, path string, fields []cfgField) []T {
	items := d.list(v, path)
	out := make([]T, len(items))
	for i, e := range items {
		ep := fmt.Sprintf("%s[%d]", path, i)
		d.where[ep] = d.origin(yamlDeref(e))
		d.decodeMap(e, ep, &out[i], fields)
	}
	return out
}

func (d *cfgDecoder) decodeField(v *yaml.Node, path string, target any, f *cfgField) {
	v = yamlDeref(v)
	d.where[path] = d.origin(v)
	if yamlIsNull(v) {
		return // "key:" with no value keeps the default
	}
	switch f.kind {
	case cfgKMap:
		d.decodeMap(v, path, target, f.sub)
		return
	case cfgKSources:
		target.(*Config).Sources = cfgDecodeList[relay.SourceConfig](d, v, path, f.sub)
		return
	case cfgKTokens:
		toks := cfgDecodeList[AuthToken](d, v, path, f.sub)
		for i := range toks {
			toks[i].Token.ID = toks[i].Name
		}
		target.(*Config).Auth.Tokens = toks
		return
	case cfgKDestinations:
		target.(*Config).Destinations = cfgDecodeList[push.Config](d, v, path, f.sub)
		return
	case cfgKStringMap:
		out := map[string]string{}
		if v.Kind == yaml.SequenceNode { // from RELAY_* or a flag: "Name=value" items
			for i, e := range v.Content {
				ep := fmt.Sprintf("%s[%d]", path, i)
				if s, ok := d.scalar(e, ep); ok {
					k, val, found := strings.Cut(s, "=")
					if !found || strings.TrimSpace(k) == "" {
						d.errf(e, path, "must be Name=value items separated by commas")
						continue
					}
					out[strings.TrimSpace(k)] = strings.TrimSpace(val)
				}
			}
		} else if v.Kind != yaml.MappingNode {
			d.errf(v, path, "must be a mapping of header names to values")
			return
		} else {
			for _, pr := range d.pairs(v, path) {
				if s, ok := d.scalar(pr.v, cfgJoinPath(path, pr.key)); ok {
					out[pr.key] = s
				}
			}
		}
		*f.get(target).(*map[string]string) = out
		return
	case cfgKPrefixes:
		var out []netip.Prefix
		for i, e := range d.list(v, path) {
			ep := fmt.Sprintf("%s[%d]", path, i)
			if s, ok := d.scalar(e, ep); ok {
				p, err := cfgParsePrefix(s)
				if err != nil {
					d.errf(e, ep, "%v", err)
					continue
				}
				out = append(out, p)
			}
		}
		*f.get(target).(*[]netip.Prefix) = out
		return
	case cfgKStrings:
		var out []string
		for i, e := range d.list(v, path) {
			if s, ok := d.scalar(e, fmt.Sprintf("%s[%d]", path, i)); ok {
				out = append(out, s)
			}
		}
		*f.get(target).(*[]string) = out
		return
	case cfgKSecrets:
		var out []relay.Secret
		for i, e := range d.list(v, path) {
			if sec, ok := d.secret(e, fmt.Sprintf("%s[%d]", path, i)); ok {
				out = append(out, sec)
			}
		}
		*f.get(target).(*[]relay.Secret) = out
		return
	case cfgKSecret:
		sec, ok := d.secret(v, path)
		if !ok {
			return
		}
		switch p := f.get(target).(type) {
		case *relay.Secret:
			*p = sec
		case **relay.Secret:
			*p = &sec
		}
		return
	}

	s, ok := d.scalar(v, path)
	if !ok {
		return
	}
	switch f.kind {
	case cfgKString:
		*f.get(target).(*string) = s
	case cfgKPath:
		if s != "" && d.fromFile(v) && !filepath.IsAbs(s) {
			s = filepath.Join(d.dir, s)
		}
		*f.get(target).(*string) = s
	case cfgKSecretString:
		if s == "" {
			*f.get(target).(*string) = ""
		} else if b, ok := d.resolveSecret(v, path, s); ok {
			*f.get(target).(*string) = string(b)
		}
	case cfgKBool:
		b, ok := cfgParseBool(s)
		if !ok {
			d.errf(v, path, "must be true or false, got %q", s)
			return
		}
		*f.get(target).(*bool) = b
	case cfgKInt:
		n, err := strconv.ParseInt(strings.ReplaceAll(s, "_", ""), 10, 64)
		if err != nil {
			d.errf(v, path, "must be an integer, got %q", s)
			return
		}
		switch p := f.get(target).(type) {
		case *int:
			if n != int64(int(n)) {
				d.errf(v, path, "out of range: %s", s)
				return
			}
			*p = int(n)
		case *int64:
			*p = n
		}
	case cfgKFloat:
		x, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(x) || math.IsInf(x, 0) {
			d.errf(v, path, "must be a number, got %q", s)
			return
		}
		*f.get(target).(*float64) = x
	case cfgKDuration:
		dur, err := time.ParseDuration(s)
		if err != nil {
			d.errf(v, path, "invalid duration %q (use a Go duration such as \"30s\", \"5m\" or \"168h\")", s)
			return
		}
		if dur < 0 {
			d.errf(v, path, "must not be negative, got %s", s)
			return
		}
		*f.get(target).(*time.Duration) = dur
	default:
		panic(fmt.Sprintf("config: unhandled kind %d for %s", f.kind, path))
	}
}

// list returns the elements of sequence v, or reports that v is not a list.
func (d *cfgDecoder) list(v *yaml.Node, path string) []*yaml.Node {
	if v.Kind != yaml.SequenceNode {
		d.errf(v, path, "must be a list")
		return nil
	}
	return v.Content
}

// scalar returns the text of scalar v. It never prints the value: v may be a secret.
func (d *cfgDecoder) scalar(v *yaml.Node, path string) (string, bool) {
	v = yamlDeref(v)
	d.where[path] = d.origin(v)
	if v.Kind != yaml.ScalarNode {
		d.errf(v, path, "must be a single value, not a %s", yamlKindName(v.Kind))
		return "", false
	}
	return v.Value, true
}

func yamlKindName(k yaml.Kind) string {
	switch k {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	}
	return "value"
}

// secret decodes one secret: a string (literal, env:NAME, file:/path) or {id, value}.
func (d *cfgDecoder) secret(v *yaml.Node, path string) (relay.Secret, bool) {
	v = yamlDeref(v)
	d.where[path] = d.origin(v)
	var sec relay.Secret
	spec := v
	if v.Kind == yaml.MappingNode {
		spec = nil
		for _, p := range d.pairs(v, path) {
			kp := cfgJoinPath(path, p.key)
			switch p.key {
			case "id":
				if s, ok := d.scalar(p.v, kp); ok {
					sec.ID = s
				}
			case "value":
				spec = yamlDeref(p.v)
			default:
				d.errf(p.kn, kp, "unknown key%s", cfgSuggest(p.key, []string{"id", "value"}))
			}
		}
		if spec == nil || yamlIsNull(spec) {
			d.errf(v, cfgJoinPath(path, "value"), "required")
			return sec, false
		}
		path = cfgJoinPath(path, "value")
	}
	s, ok := d.scalar(spec, path)
	if !ok {
		return sec, false
	}
	b, ok := d.resolveSecret(spec, path, s)
	if !ok {
		return sec, false
	}
	sec.Value = b
	return sec, true
}

// resolveSecret resolves a literal, env:NAME or file:/path. Errors name the variable or file,
// never the value.
func (d *cfgDecoder) resolveSecret(n *yaml.Node, path, spec string) ([]byte, bool) {
	switch {
	case strings.HasPrefix(spec, "env:"):
		name := strings.TrimPrefix(spec, "env:")
		if name == "" {
			d.errf(n, path, "env: needs a variable name, e.g. env:ORDERS_SECRET")
			return nil, false
		}
		d.referenced[name] = true
		val, set := d.env[name]
		if !set {
			d.errf(n, path, "env:%s is not set", name)
			return nil, false
		}
		if val == "" {
			d.errf(n, path, "env:%s is empty", name)
			return nil, false
		}
		return []byte(val), true
	case strings.HasPrefix(spec, "file:"):
		name := strings.TrimPrefix(spec, "file:")
		if name == "" {
			d.errf(n, path, "file: needs a path, e.g. file:/run/secrets/orders")
			return nil, false
		}
		p := name
		if d.fromFile(n) && !filepath.IsAbs(p) {
			p = filepath.Join(d.dir, p)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			var pe *os.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			d.errf(n, path, "file:%s cannot be read: %v", name, err)
			return nil, false
		}
		if bytes.HasSuffix(data, []byte("\r\n")) {
			data = data[:len(data)-2]
		} else if bytes.HasSuffix(data, []byte("\n")) {
			data = data[:len(data)-1]
		}
		if len(data) == 0 {
			d.errf(n, path, "file:%s is empty", name)
			return nil, false
		}
		return data, true
	}
	if spec == "" {
		d.errf(n, path, "empty secret")
		return nil, false
	}
	return []byte(spec), true
}

func cfgParseBool(s string) (bool, bool) {
	switch strings.ToLower(s) {
	case "true", "yes", "on", "1":
		return true, true
	case "false", "no", "off", "0":
		return false, true
	}
	return false, false
}

// cfgParsePrefix parses a CIDR prefix or a bare IP (a /32 or /128).
func cfgParsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("invalid CIDR %q (want e.g. 10.0.0.0/8, 2001:db8::/32 or a single IP)", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("invalid IP or CIDR %q (want e.g. 10.0.0.0/8, 2001:db8::/32 or a single IP)", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// cfgSuggest returns ` (did you mean "x"?)` for the closest candidate, if close enough.
func cfgSuggest(got string, candidates []string) string {
	best, bestD := "", 3
	for _, c := range candidates {
		if dist := cfgLevenshtein(strings.ToLower(got), strings.ToLower(c)); dist < bestD {
			best, bestD = c, dist
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func cfgLevenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
