package config

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eventrelay/eventrelay/relay"
	"github.com/eventrelay/eventrelay/relay/push"
	"github.com/eventrelay/eventrelay/relay/verify"
)

// cfgWriteConfig writes body to relay.yaml in a fresh directory and returns its path.
func cfgWriteConfig(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "relay.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func cfgWriteFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func cfgPrefixes(t *testing.T, ss ...string) []netip.Prefix {
	t.Helper()
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func TestConfigDefaults(t *testing.T) {
	cfg, err := Load("", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		HTTP: HTTPConfig{
			Addr: ":8080", ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
			WriteTimeout: 30 * time.Second, IdleTimeout: 120 * time.Second,
			MaxHeaderBytes: 64 << 10, MaxConcurrent: 1024,
			MaxRequestBytes: 1 << 20, MinBodyRate: 1024, MaxBodyMemory: 256 << 20, Unverified: relay.RateLimit{RPS: 1, Burst: 20},
		},
		GRPC:      GRPCConfig{Addr: ":9090", Reflection: true, MaxStreamsPerConnection: 100},
		Admin:     AdminConfig{Addr: ":9091"},
		Redis:     RedisConfig{Timeout: 2 * time.Second, AppendInFlight: 1},
		Log:       LogConfig{Level: "info", Format: "json"},
		Tracing:   TracingConfig{SampleRatio: 1},
		Subscribe: SubscribeConfig{TailBuffer: 4096, ReplayBatch: 1000, MinHeartbeat: time.Second, MaxSubscribers: 10000, SendTimeout: 30 * time.Second},
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("Load with nothing configured:\n got %+v\nwant %+v", cfg, want)
	}
	if !reflect.DeepEqual(Default(), want) {
		t.Errorf("Default:\n got %+v\nwant %+v", Default(), want)
	}
	if len(cfg.Sources) != 0 {
		t.Errorf("Load added sources %v; the demo source is main's business", cfg.Sources)
	}
	if err := Default().Validate(); err != nil {
		t.Errorf("Default().Validate() = %v", err)
	}
	// An empty file and a comments-only file are the defaults too.
	for _, body := range []string{"", "# nothing\n", "---\n"} {
		cfg, err := Load(cfgWriteConfig(t, body), nil, nil)
		if err != nil || !reflect.DeepEqual(cfg, want) {
			t.Errorf("Load(%q) = %+v, %v", body, cfg, err)
		}
	}
}

const cfgFullYAML = `
http:
  addr: "127.0.0.1:8443"
  tls: { cert_file: tls/http.crt, key_file: /abs/http.key }
  trusted_proxies: ["10.0.0.0/8", "192.168.1.7", "fd00::/8", "2001:db8::1"]
  read_timeout: 31s
  write_timeout: 32s
  idle_timeout: 2m
  read_header_timeout: 5s
  max_header_bytes: 32768
  max_concurrent: 10
  max_request_bytes: 65536
  min_body_rate: 2048
  max_body_memory: 67108864
  unverified_limit: { rps: 0.5, burst: 5 }
grpc:
  addr: ":9443"
  tls: { cert_file: /g.crt, key_file: /g.key, client_ca_file: /ca.pem }
  reflection: false
  max_streams_per_connection: 7
admin:
  addr: "localhost:9999"
redis:
  url: "redis://:pw@redis-1:6379/2?addr=redis-2:6379"
  cluster: true
  master_name: ""
  min_replicas: 1
  timeout: 500ms
  append_in_flight: 3
auth:
  tokens:
    - name: reader
      token: env:READER_TOKEN
      sources: [orders]
      publish: false
    - name: writer
      token: { id: ignored-id, value: "writer-literal-token" }
      sources: ["*"]
      publish: true
log: { level: DEBUG, format: text }
tracing: { otlp_endpoint: "otel:4317", sample_ratio: 0.25 }
subscribe: { tail_buffer: 64, replay_batch: 50, min_heartbeat: 2s, max_subscribers: 9, send_timeout: 5s }
sources:
  - name: orders
    provider: hmac
    secrets:
      - "literal-secret"
      - env:ORDERS_SECRET
      - file:orders.secret
      - { id: "2024-06", value: "env:ORDERS_OLD" }
    header: X-Sig
    tolerance: 5m
    url: https://hooks.example.com/v1/webhooks/orders
    algorithm: sha512
    encoding: base64
    prefix: "sha512="
    template: "{timestamp}.{id}.{url}.{body}"
    timestamp_header: X-Ts
    id_header: X-Id
    id_field: meta.id
    type_field: meta.type
    type_header: X-Type
    subject_field: customer.id
    time_field: created
    max_body_bytes: 2048
    allow_ips: ["203.0.113.0/24", "198.51.100.7", "2001:db8::/32", "2001:db8::7"]
    rate_limit: { rps: 2.5, burst: 7 }
    max_concurrent: 32
    partitions: 8
    partition_key: header:X-Customer
    unsigned_partition_key: true
    retention: 0s
    max_len: 10000
    dedupe_window: 24h
  - name: gh_2
    provider: GitHub
    secrets: [gh-secret]
  - name: ci
    provider: token
    secrets: [ci-token]
    query_param: tok
  - name: wa
    provider: meta
    secrets: [meta-secret]
    verify_token: env:VERIFY
`

func TestConfigFullRoundTrip(t *testing.T) {
	path := cfgWriteConfig(t, cfgFullYAML)
	dir := filepath.Dir(path)
	cfgWriteFile(t, dir, "orders.secret", "from-file\n")
	env := []string{"READER_TOKEN=reader-token", "ORDERS_SECRET=from-env", "ORDERS_OLD=old-secret", "VERIFY=verify-me"}
	cfg, err := Load(path, env, nil)
	if err != nil {
		t.Fatal(err)
	}
	vt := relay.Secret{Value: []byte("verify-me")}
	want := &Config{
		HTTP: HTTPConfig{
			Addr:              "127.0.0.1:8443",
			TLS:               TLSConfig{CertFile: filepath.Join(dir, "tls/http.crt"), KeyFile: "/abs/http.key"},
			TrustedProxies:    cfgPrefixes(t, "10.0.0.0/8", "192.168.1.7/32", "fd00::/8", "2001:db8::1/128"),
			ReadTimeout:       31 * time.Second,
			WriteTimeout:      32 * time.Second,
			IdleTimeout:       2 * time.Minute,
			ReadHeaderTimeout: 5 * time.Second,
			MaxHeaderBytes:    32768,
			MaxConcurrent:     10,
			MaxRequestBytes:   65536,
			MinBodyRate:       2048,
			MaxBodyMemory:     64 << 20,
			Unverified:        relay.RateLimit{RPS: 0.5, Burst: 5},
		},
		GRPC: GRPCConfig{Addr: ":9443", TLS: TLSConfig{CertFile: "/g.crt", KeyFile: "/g.key", ClientCAFile: "/ca.pem"},
			MaxStreamsPerConnection: 7},
		Admin: AdminConfig{Addr: "localhost:9999"},
		Redis: RedisConfig{URL: "redis://:pw@redis-1:6379/2?addr=redis-2:6379", Cluster: true, MinReplicas: 1, Timeout: 500 * time.Millisecond, AppendInFlight: 3},
		Auth: AuthConfig{Tokens: []AuthToken{
			{Name: "reader", Token: relay.Secret{ID: "reader", Value: []byte("reader-token")}, Sources: []string{"orders"}},
			{Name: "writer", Token: relay.Secret{ID: "writer", Value: []byte("writer-literal-token")}, Sources: []string{"*"}, Publish: true},
		}},
		Log:       LogConfig{Level: "debug", Format: "text"},
		Tracing:   TracingConfig{OTLPEndpoint: "otel:4317", SampleRatio: 0.25},
		Subscribe: SubscribeConfig{TailBuffer: 64, ReplayBatch: 50, MinHeartbeat: 2 * time.Second, MaxSubscribers: 9, SendTimeout: 5 * time.Second},
		Sources: []relay.SourceConfig{
			{
				Name:                 "orders",
				Provider:             "hmac",
				URL:                  "https://hooks.example.com/v1/webhooks/orders",
				MaxBodyBytes:         2048,
				AllowIPs:             cfgPrefixes(t, "203.0.113.0/24", "198.51.100.7/32", "2001:db8::/32", "2001:db8::7/128"),
				RateLimit:            relay.RateLimit{RPS: 2.5, Burst: 7},
				MaxConcurrent:        32,
				Partitions:           8,
				PartitionKey:         "header:X-Customer",
				UnsignedPartitionKey: true,
				Retention:            0,
				MaxLen:               10000,
				DedupeWindow:         24 * time.Hour,
				Verify: &verify.Options{Secrets: []relay.Secret{
					{Value: []byte("literal-secret")},
					{Value: []byte("from-env")},
					{Value: []byte("from-file")},
					{ID: "2024-06", Value: []byte("old-secret")},
				}, Header: "X-Sig", Tolerance: 5 * time.Minute, Algorithm: "sha512", Encoding: "base64", Prefix: "sha512=", Template: "{timestamp}.{id}.{url}.{body}", TimestampHeader: "X-Ts", IDHeader: "X-Id", IDField: "meta.id", TypeField: "meta.type", TypeHeader: "X-Type", SubjectField: "customer.id", TimeField: "created"},
			},
			{
				Name:          "gh_2",
				Provider:      "github",
				MaxBodyBytes:  relay.DefaultMaxBodyBytes,
				Partitions:    1,
				Retention:     relay.DefaultRetention,
				DedupeWindow:  relay.DefaultDedupeWindow,
				MaxConcurrent: relay.DefaultSourceMaxConcurrent,
				Verify:        &verify.Options{Secrets: []relay.Secret{{Value: []byte("gh-secret")}}},
			},
			{
				Name: "ci", Provider: "token", MaxBodyBytes: relay.DefaultMaxBodyBytes, Partitions: 1, Retention: relay.DefaultRetention,
				DedupeWindow: relay.DefaultDedupeWindow, MaxConcurrent: relay.DefaultSourceMaxConcurrent,
				Verify: &verify.Options{Secrets: []relay.Secret{{Value: []byte("ci-token")}}, QueryParam: "tok"},
			},
			{
				Name: "wa", Provider: "meta", MaxBodyBytes: relay.DefaultMaxBodyBytes, Partitions: 1, Retention: relay.DefaultRetention,
				DedupeWindow: relay.DefaultDedupeWindow, MaxConcurrent: relay.DefaultSourceMaxConcurrent,
				Verify: &verify.Options{Secrets: []relay.Secret{{Value: []byte("meta-secret")}}, VerifyToken: &vt},
			},
		},
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("mismatch:\n got %#v\nwant %#v", *cfg, *want)
		for i := range min(len(cfg.Sources), len(want.Sources)) {
			if !reflect.DeepEqual(cfg.Sources[i], want.Sources[i]) {
				t.Errorf("sources[%d]:\n got %+v\nwant %+v", i, cfg.Sources[i], want.Sources[i])
			}
		}
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("Validate of a loaded config: %v", err)
	}
}

func TestConfigExampleFile(t *testing.T) {
	cfg, err := Load("testdata/relay.example.yaml", exampleEnv, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range cfg.Sources {
		names = append(names, s.Name)
	}
	if want := []string{"orders", "stripe", "github", "twilio-sms", "whatsapp", "legacy-crm"}; !slices.Equal(names, want) {
		t.Errorf("sources = %v, want %v", names, want)
	}
	o := cfg.Sources[0]
	if len(verify.OptionsOf(&o).Secrets) != 2 || verify.OptionsOf(&o).Secrets[0].ID != "2025-01" || string(verify.OptionsOf(&o).Secrets[1].Value) != "orders-previous" {
		t.Errorf("orders secrets = %v", verify.OptionsOf(&o).Secrets)
	}
	if o.Partitions != 4 || o.RateLimit != (relay.RateLimit{RPS: 100, Burst: 200}) || len(o.AllowIPs) != 3 {
		t.Errorf("orders = %+v", o)
	}
	if crm := cfg.Sources[5]; crm.RateLimit.Burst != 5 {
		t.Errorf("legacy-crm burst = %d, want 5 (defaults to rps)", crm.RateLimit.Burst)
	}
	if wa := cfg.Sources[4]; verify.OptionsOf(&wa).VerifyToken == nil || string(verify.OptionsOf(&wa).VerifyToken.Value) != "meta-verify" {
		t.Errorf("whatsapp verify_token = %v", verify.OptionsOf(&wa).VerifyToken)
	}
	wantDest := []push.Config{{
		Name: "billing", URL: "https://billing.internal.example.com/hooks/eventrelay", Sources: []string{"stripe"},
		Types: []string{"invoice.*", "customer.subscription.*"}, Filter: "data.data.object.livemode == true",
		Secrets: []relay.Secret{{Value: []byte("whsec_MDEyMzQ1Njc4OWFiY2RlZmdoaWprbG1u")}},
		Headers: map[string]string{"Authorization": "Bearer static-token-for-the-receiver"},
		Timeout: 10 * time.Second, MaxInFlight: 16, Ordering: push.OrderingNone,
		Retry:   push.Retry{Initial: time.Second, Max: 10 * time.Minute, Multiplier: 2, MaxAttempts: 10, MaxAge: 24 * time.Hour},
		Breaker: push.Breaker{Failures: 10, Cooldown: 30 * time.Second},
	}}
	if !reflect.DeepEqual(cfg.Destinations, wantDest) {
		t.Errorf("destinations = %+v\nwant %+v", cfg.Destinations, wantDest)
	}
	if cfg.Redis.URL != "" || cfg.HTTP.Addr != ":8080" || len(cfg.Auth.Tokens) != 2 || len(cfg.HTTP.TrustedProxies) != 2 {
		t.Errorf("cfg = %+v", cfg)
	}

	// Every key of the file format appears in the example.
	data, err := os.ReadFile("testdata/relay.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, leaves := range [][]cfgLeaf{cfgLeaves, cfgSourceLeaves, cfgTokenLeaves, cfgDestLeaves} {
		for _, l := range leaves {
			keys = append(keys, strings.Split(l.path, ".")...)
		}
	}
	for _, k := range keys {
		if !strings.Contains(string(data), k+":") {
			t.Errorf("key %q is not documented in testdata/relay.example.yaml", k)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	const src = "sources:\n  - name: orders\n    secrets: [s1]\n"
	tests := []struct {
		name  string
		yaml  string
		env   []string
		flags map[string]string
		want  []string // substrings of the error
	}{
		{"unknown top-level key", "htpp:\n  addr: \":1\"\n", nil, nil,
			[]string{`htpp: unknown key (did you mean "http"?)`, "relay.yaml:1)"}},
		{"unknown key in a section", "redis:\n  ulr: redis://x\n", nil, nil,
			[]string{`redis.ulr: unknown key (did you mean "url"?)`}},
		{"unknown key in http.tls", "http:\n  tls:\n    client_file: /ca\n", nil, nil,
			[]string{"http.tls.client_file: unknown key"}},
		{"http client CA without TLS", "http:\n  tls:\n    client_ca_file: /ca\n", nil, nil,
			[]string{"http.tls.client_ca_file: needs cert_file and key_file"}},
		{"http limits", "http:\n  max_request_bytes: 10\n  min_body_rate: -1\n  max_body_memory: -1\n  unverified_limit: {rps: -1}\n", nil, nil,
			[]string{"http.max_request_bytes: must be at least 1024, got 10", "http.min_body_rate", "http.max_body_memory: must not be negative",
				"http.unverified_limit: rps and burst must not be negative"}},
		{"max_body_memory below a source's max_body_bytes", "http:\n  max_body_memory: 1048576\nsources:\n  - {name: a, secrets: [x]}\n", nil, nil,
			[]string{"http.max_body_memory: 1048576 is too small for sources[0].max_body_bytes 1048576: it must be at least 1114112 (or 0: unbounded)"}},
		{"unsigned header partition key", "sources:\n  - {name: a, secrets: [x], partitions: 4, partition_key: \"header:X-Tenant\"}\n", nil, nil,
			[]string{"sources[0].partition_key: header:X-Tenant is not covered by the signature", "set unsigned_partition_key: true"}},
		{"source max_concurrent", "sources:\n  - {name: a, secrets: [x], max_concurrent: -2}\n", nil, nil,
			[]string{"max_concurrent: must not be negative, got -2"}},
		{"unknown key in a source",
			src + "  - name: b\n    secrets: [s]\n  - name: c\n    secrets: [s]\n    hedaer: X-Sig\n", nil, nil,
			[]string{`sources[2].hedaer: unknown key (did you mean "header"?)`, "relay.yaml:8"}},
		{"unknown key in rate_limit", src + "    rate_limit: { rps: 1, brust: 2 }\n", nil, nil,
			[]string{"sources[0].rate_limit.brust: unknown key"}},
		{"unknown key in a secret map", "sources:\n  - name: a\n    secrets: [{id: x, valeu: y}]\n", nil, nil,
			[]string{"sources[0].secrets[0].valeu: unknown key", "sources[0].secrets[0].value: required"}},
		{"unknown key in a token", "auth:\n  tokens:\n    - name: t\n      token: x\n      publsh: true\n", nil, nil,
			[]string{"auth.tokens[0].publsh: unknown key"}},
		{"duplicate key", "log:\n  level: info\n  level: debug\n", nil, nil,
			[]string{"log.level: duplicate key"}},
		{"bad duration", src + "    tolerance: 5 minutes\n", nil, nil,
			[]string{`sources[0].tolerance: invalid duration "5 minutes"`, "relay.yaml:4"}},
		{"bad duration, no unit", "http:\n  read_timeout: 30\n", nil, nil,
			[]string{`http.read_timeout: invalid duration "30"`}},
		{"negative duration", src + "    retention: -1h\n", nil, nil,
			[]string{"sources[0].retention: must not be negative"}},
		{"bad CIDR", src + "    allow_ips: [10.0.0.0/8, 10.0.0.0/33]\n", nil, nil,
			[]string{`sources[0].allow_ips[1]: invalid CIDR "10.0.0.0/33"`}},
		{"bad IP", "http:\n  trusted_proxies: [not-an-ip]\n", nil, nil,
			[]string{`http.trusted_proxies[0]: invalid IP or CIDR "not-an-ip"`}},
		{"list expected", src + "    allow_ips: 10.0.0.0/8\n", nil, nil,
			[]string{"sources[0].allow_ips: must be a list"}},
		{"bad source name", "sources:\n  - name: Orders\n    secrets: [s]\n", nil, nil,
			[]string{`sources[0].name: "Orders" must match [a-z0-9][a-z0-9_-]{0,62}`, "relay.yaml:2"}},
		{"missing source name", "sources:\n  - secrets: [s]\n", nil, nil,
			[]string{"sources[0].name: required"}},
		{"duplicate source", src + "  - name: orders\n    secrets: [s2]\n", nil, nil,
			[]string{`sources[1].name: duplicate source "orders" (also sources[0])`, "relay.yaml:4)"}},
		{"unknown provider", src + "    provider: strpie\n", nil, nil,
			[]string{`sources[0].provider: unknown provider "strpie" (did you mean "stripe"?)`}},
		{"no secrets", "sources:\n  - name: a\n", nil, nil,
			[]string{"sources[0].secrets: at least one secret is required"}},
		{"bad algorithm", src + "    algorithm: md5\n", nil, nil,
			[]string{`sources[0].algorithm: unknown "md5" (want sha1, sha256 or sha512)`}},
		{"bad source url", src + "    url: /relative\n", nil, nil,
			[]string{`sources[0].url: "/relative" is not an absolute http(s) URL`}},
		{"negative numbers", src + "    max_body_bytes: -1\n    partitions: -2\n    max_len: -3\n    rate_limit: {rps: -1, burst: -1}\n" +
			"redis:\n  url: redis://r\n  min_replicas: -1\nhttp:\n  max_concurrent: -5\n", nil, nil,
			[]string{"sources[0].max_body_bytes: must be positive", "sources[0].partitions: must be 1..1024, got -2",
				"sources[0].max_len: must not be negative", "sources[0].rate_limit.rps: must be a non-negative number",
				"sources[0].rate_limit.burst: must not be negative", "redis.min_replicas: must not be negative",
				"http.max_concurrent: must not be negative"}},
		{"too many partitions", src + "    partitions: 2000\n", nil, nil,
			[]string{"sources[0].partitions: must be 1..1024, got 2000"}},
		{"dedupe window too short", src + "    dedupe_window: 10ms\n", nil, nil,
			[]string{"sources[0].dedupe_window: must be at least 1s"}},
		{"not an integer", src + "    partitions: four\n", nil, nil,
			[]string{`sources[0].partitions: must be an integer, got "four"`}},
		{"not a bool", "grpc:\n  reflection: maybe\n", nil, nil,
			[]string{`grpc.reflection: must be true or false, got "maybe"`}},
		{"unknown log level", "log:\n  level: verbose\n", nil, nil,
			[]string{`log.level: must be debug, info, warn or error, got "verbose"`, "relay.yaml:2"}},
		{"unknown log format", "log:\n  format: xml\n", nil, nil,
			[]string{`log.format: must be json or text, got "xml"`}},
		{"sample ratio", "tracing:\n  sample_ratio: 2\n", nil, nil,
			[]string{"tracing.sample_ratio: must be between 0 and 1"}},
		{"tail buffer", "subscribe:\n  tail_buffer: 0\n", nil, nil,
			[]string{"subscribe.tail_buffer: must be 1 to 1048576, got 0"}},
		{"replay batch from env", "", []string{"RELAY_SUBSCRIBE_REPLAY_BATCH=20000"}, nil,
			[]string{"subscribe.replay_batch: must be 1 to 10000, got 20000 (RELAY_SUBSCRIBE_REPLAY_BATCH)"}},
		{"bad addr", "http:\n  addr: \"8080\"\n", nil, nil,
			[]string{`http.addr: must be host:port, e.g. ":8080", got "8080"`}},
		{"same addr", "grpc:\n  addr: \":8080\"\n", nil, nil,
			[]string{"grpc.addr: same address as http.addr"}},
		{"tls pair", "http:\n  tls: {cert_file: /c}\ngrpc:\n  tls: {client_ca_file: /ca}\n", nil, nil,
			[]string{"http.tls.key_file: required with cert_file", "grpc.tls.client_ca_file: needs cert_file and key_file"}},
		{"redis options need a url", "redis:\n  cluster: true\n  min_replicas: 1\n", nil, nil,
			[]string{"redis.cluster: needs redis.url", "redis.min_replicas: needs redis.url"}},
		{"pool too small for the partitions", "redis:\n  pool_size: 1\n" + src, nil, nil,
			[]string{"redis.pool_size: must be 0 (automatic) or 2 (one blocking read per partition + 1) to 100000, got 1"}},
		{"pool size from env", src, []string{"RELAY_REDIS_POOL_SIZE=-1"}, nil,
			[]string{"redis.pool_size: must be 0 (automatic) or 2 (one blocking read per partition + 1) to 100000, got -1 (RELAY_REDIS_POOL_SIZE)"}},
		{"append in flight", "redis:\n  append_in_flight: 0\n", nil, nil,
			[]string{"redis.append_in_flight: must be 1 to 64, got 0"}},
		{"append in flight from env", "", []string{"RELAY_REDIS_APPEND_IN_FLIGHT=65"}, nil,
			[]string{"redis.append_in_flight: must be 1 to 64, got 65 (RELAY_REDIS_APPEND_IN_FLIGHT)"}},
		{"redis url scheme", "redis:\n  url: http://x\n", nil, nil,
			[]string{"redis.url: must start with redis://, rediss:// or unix://"}},
		{"section not a mapping", "http: [1, 2]\n", nil, nil,
			[]string{"http: must be a mapping of keys"}},
		{"top level not a mapping", "- a\n- b\n", nil, nil,
			[]string{"the top level must be a mapping"}},
		{"yaml syntax", "http:\n  addr: [\n", nil, nil, []string{"config file"}},
		{"two documents", "log: {level: info}\n---\nlog: {level: debug}\n", nil, nil,
			[]string{"only one YAML document is allowed"}},
		{"env: unset", src + "  - name: b\n    secrets: [s, \"env:ORDERS_SECRET\"]\n", nil, nil,
			[]string{"sources[1].secrets[1]: env:ORDERS_SECRET is not set", "relay.yaml:5"}},
		{"env: empty", src + "  - name: b\n    secrets: [\"env:ORDERS_SECRET\"]\n", []string{"ORDERS_SECRET="}, nil,
			[]string{"sources[1].secrets[0]: env:ORDERS_SECRET is empty"}},
		{"env: no name", "sources:\n  - name: a\n    secrets: [\"env:\"]\n", nil, nil,
			[]string{"sources[0].secrets[0]: env: needs a variable name"}},
		{"file: missing", "sources:\n  - name: a\n    secrets: [\"file:/nonexistent/relay/secret\"]\n", nil, nil,
			[]string{"sources[0].secrets[0]: file:/nonexistent/relay/secret cannot be read: no such file or directory"}},
		{"map secret from env unset", "sources:\n  - name: a\n    secrets: [{id: k1, value: \"env:NOPE\"}]\n", nil, nil,
			[]string{"sources[0].secrets[0].value: env:NOPE is not set"}},
		{"verify_token unset", src + "    verify_token: env:VT\n", nil, nil,
			[]string{"sources[0].verify_token: env:VT is not set"}},
		{"auth token unset", "auth:\n  tokens:\n    - name: ci\n      token: env:CI_TOKEN\n", nil, nil,
			[]string{"auth.tokens[0].token: env:CI_TOKEN is not set"}},
		{"auth token problems", src + "auth:\n  tokens:\n    - {name: a, token: same, sources: [nope]}\n    - {name: a, token: same}\n    - {token: x, sources: [Bad]}\n", nil, nil,
			[]string{`auth.tokens[0].sources[0]: no source named "nope"`, `auth.tokens[1].name: duplicate token name "a"`,
				"auth.tokens[1].token: same value as auth.tokens[0].token", "auth.tokens[2].name: required",
				`auth.tokens[2].sources[0]: "Bad" is not a valid source name`}},
		{"auth token groups", src + "auth:\n  tokens:\n    - {name: a, token: t1, groups: [billing, 'work-*', '?x', '', '.hidden', 'a b']}\n", nil, nil,
			[]string{`auth.tokens[0].groups[3]: "" is not a group name or glob`, `auth.tokens[0].groups[4]: ".hidden" is not a group name or glob`,
				`auth.tokens[0].groups[5]: "a b" is not a group name or glob`}},
		{"duplicate secret ids", "sources:\n  - name: a\n    secrets: [{id: k, value: x}, {id: k, value: y}]\n", nil, nil,
			[]string{`sources[0].secrets[1].id: duplicate id "k"`}},
		{"unknown RELAY variable", "", []string{"RELAY_REDIS_ULR=redis://x"}, nil,
			[]string{`RELAY_REDIS_ULR: unknown configuration variable (did you mean "RELAY_REDIS_URL"?)`}},
		{"unknown RELAY section typo", "", []string{"RELAY_REDSI_URL=redis://x"}, nil,
			[]string{"RELAY_REDSI_URL: unknown configuration variable"}},
		{"RELAY variable for a missing source", src, []string{"RELAY_SOURCES_PAYMENTS_TOLERANCE=1m"}, nil,
			[]string{"RELAY_SOURCES_PAYMENTS_TOLERANCE: names no key of a configured source"}},
		{"RELAY variable for an unknown source key", src, []string{"RELAY_SOURCES_ORDERS_TOLERANSE=1m"}, nil,
			[]string{`RELAY_SOURCES_ORDERS_TOLERANSE: names no key of a configured source`, `did you mean "RELAY_SOURCES_ORDERS_TOLERANCE"?`}},
		{"RELAY variable for a missing token", "", []string{"RELAY_AUTH_TOKENS_CI_TOKEN=x"}, nil,
			[]string{"RELAY_AUTH_TOKENS_CI_TOKEN: names no key of a configured auth token"}},
		{"ambiguous source variable", "sources:\n  - {name: a-b, secrets: [x]}\n  - {name: a_b, secrets: [y]}\n",
			[]string{"RELAY_SOURCES_A_B_TOLERANCE=1m"}, nil,
			[]string{`RELAY_SOURCES_A_B_TOLERANCE: ambiguous: matches sources ["a-b" "a_b"]`}},
		{"bad value from env names the variable", src, []string{"RELAY_SOURCES_ORDERS_TOLERANCE=5x"}, nil,
			[]string{`sources[0].tolerance: invalid duration "5x"`, "(RELAY_SOURCES_ORDERS_TOLERANCE)"}},
		{"bad log level from env", "", []string{"RELAY_LOG_LEVEL=loud"}, nil,
			[]string{`log.level: must be debug, info, warn or error, got "loud" (RELAY_LOG_LEVEL)`}},
		{"bad value from a flag", "", nil, map[string]string{"redis.min_replicas": "x"},
			[]string{`redis.min_replicas: must be an integer, got "x" (flag redis.min_replicas)`}},
		{"unknown flag", "", nil, map[string]string{"redis.ulr": "x"},
			[]string{`flag redis.ulr: unknown configuration key (did you mean "redis.url"?)`}},
		{"flag for a missing source", src, nil, map[string]string{"sources.nope.tolerance": "1m"},
			[]string{"flag sources.nope.tolerance: names no key of a configured entry"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := ""
			if tt.yaml != "" {
				path = cfgWriteConfig(t, tt.yaml)
			}
			cfg, err := Load(path, tt.env, tt.flags)
			if err == nil {
				t.Fatalf("no error; config %+v", cfg)
			}
			if cfg != nil {
				t.Errorf("config returned with an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestConfigErrorsAreFieldErrors(t *testing.T) {
	_, err := Load(cfgWriteConfig(t, "sources:\n  - name: BAD\n    secrets: [x]\n    tolerance: nope\n"), nil, nil)
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Path != "sources[0].tolerance" || !strings.HasSuffix(fe.Origin, "relay.yaml:4") {
		t.Fatalf("errors.As(%v) = %+v", err, fe)
	}
	// Validation errors are reported with decoding errors, but not their consequences.
	if !strings.Contains(err.Error(), `sources[0].name: "BAD" must match`) {
		t.Errorf("validation error missing: %v", err)
	}
	_, err = Load(cfgWriteConfig(t, "sources:\n  - name: a\n    secrets: [\"env:UNSET\"]\n"), nil, nil)
	if err == nil || strings.Count(err.Error(), "\n") != 0 || !strings.Contains(err.Error(), "sources[0].secrets[0]: env:UNSET is not set") {
		t.Errorf("want exactly one error, got:\n%v", err)
	}
}

func TestConfigSecretResolution(t *testing.T) {
	dir := t.TempDir()
	cfgWriteFile(t, dir, "one-newline", "s3\n")
	cfgWriteFile(t, dir, "two-newlines", "s4\n\n")
	cfgWriteFile(t, dir, "crlf", "s5\r\n")
	cfgWriteFile(t, dir, "none", "s6")
	abs := cfgWriteFile(t, t.TempDir(), "abs", "s7\n")
	tests := []struct {
		name   string
		secret string // YAML for one entry of secrets
		env    []string
		want   relay.Secret
	}{
		{"literal", `"plain"`, nil, relay.Secret{Value: []byte("plain")}},
		{"literal number", `12345`, nil, relay.Secret{Value: []byte("12345")}},
		{"env", `"env:MY_SECRET"`, []string{"MY_SECRET=from env"}, relay.Secret{Value: []byte("from env")}},
		{"env, last wins", `"env:MY_SECRET"`, []string{"MY_SECRET=a", "MY_SECRET=b"}, relay.Secret{Value: []byte("b")}},
		{"file relative to the config", `"file:one-newline"`, nil, relay.Secret{Value: []byte("s3")}},
		{"file, only one newline trimmed", `"file:two-newlines"`, nil, relay.Secret{Value: []byte("s4\n")}},
		{"file, CRLF", `"file:crlf"`, nil, relay.Secret{Value: []byte("s5")}},
		{"file, no newline", `"file:none"`, nil, relay.Secret{Value: []byte("s6")}},
		{"file, absolute", `"file:` + abs + `"`, nil, relay.Secret{Value: []byte("s7")}},
		{"map with id, literal", `{id: "2024-06", value: lit}`, nil, relay.Secret{ID: "2024-06", Value: []byte("lit")}},
		{"map with id, env", `{id: "2024-06", value: "env:X"}`, []string{"X=xv"}, relay.Secret{ID: "2024-06", Value: []byte("xv")}},
		{"map with id, file", `{id: k, value: "file:none"}`, nil, relay.Secret{ID: "k", Value: []byte("s6")}},
		{"map without id", `{value: v}`, nil, relay.Secret{Value: []byte("v")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := cfgWriteFile(t, dir, "relay.yaml", "sources:\n  - name: a\n    provider: meta\n    secrets: ["+tt.secret+"]\n    verify_token: "+tt.secret+"\n")
			cfg, err := Load(path, tt.env, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := verify.OptionsOf(&cfg.Sources[0]).Secrets; len(got) != 1 || !reflect.DeepEqual(got[0], tt.want) {
				t.Errorf("secrets = %q, want %q", got[0].Value, tt.want.Value)
			}
			if got := verify.OptionsOf(&cfg.Sources[0]).VerifyToken; got == nil || !reflect.DeepEqual(*got, tt.want) {
				t.Errorf("verify_token = %v, want %v", got, tt.want)
			}
		})
	}

	t.Run("redis url and auth token", func(t *testing.T) {
		path := cfgWriteFile(t, dir, "relay.yaml", "redis:\n  url: env:REDIS_URL\nauth:\n  tokens:\n    - {name: ci, token: \"file:none\"}\n")
		cfg, err := Load(path, []string{"REDIS_URL=redis://:pw@r:6379"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Redis.URL != "redis://:pw@r:6379" || string(cfg.Auth.Tokens[0].Token.Value) != "s6" || cfg.Auth.Tokens[0].Token.ID != "ci" {
			t.Errorf("redis %q token %q", cfg.Redis.URL, cfg.Auth.Tokens[0].Token.Value)
		}
		if s := cfg.Redis.String(); strings.Contains(s, "pw") {
			t.Errorf("RedisConfig.String leaks the password: %s", s)
		}
	})

	t.Run("file: from env is relative to the working directory", func(t *testing.T) {
		t.Chdir(dir) // "none" is in the working directory, not in the config file's
		path := cfgWriteConfig(t, "sources:\n  - {name: a, secrets: [x]}\n")
		cfg, err := Load(path, []string{"RELAY_SOURCES_A_SECRETS=file:none, env:Y", "Y=yv"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := verify.OptionsOf(&cfg.Sources[0]).Secrets; len(got) != 2 || string(got[0].Value) != "s6" || string(got[1].Value) != "yv" {
			t.Errorf("secrets = %v %q", got, got)
		}
	})
}

func TestConfigPrecedence(t *testing.T) {
	const file = `
http: { addr: ":1001" }
grpc: { addr: ":1002" }
admin: { addr: ":1003" }
redis: { url: "redis://file:6379", min_replicas: 1 }
log: { level: warn }
sources:
  - name: orders-eu
    provider: stripe
    secrets: ["file-secret"]
    tolerance: 1m
    rate_limit: { rps: 1, burst: 2 }
  - name: b
    secrets: ["b"]
auth:
  tokens:
    - { name: ci-bot, token: file-token }
`
	path := cfgWriteConfig(t, file)
	tests := []struct {
		name  string
		env   []string
		flags map[string]string
		check func(t *testing.T, c *Config)
	}{
		{"file only", nil, nil, func(t *testing.T, c *Config) {
			if c.HTTP.Addr != ":1001" || c.Redis.URL != "redis://file:6379" || c.Log.Level != "warn" || verify.OptionsOf(&c.Sources[0]).Tolerance != time.Minute {
				t.Errorf("%+v", c)
			}
		}},
		{"env over file", []string{
			"RELAY_HTTP_ADDR=:2001", "RELAY_REDIS_URL=redis://env:6379", "RELAY_LOG_LEVEL=error",
			"RELAY_REDIS_MIN_REPLICAS=2", "RELAY_REDIS_POOL_SIZE=300", "RELAY_GRPC_TLS_CERT_FILE=/env.crt", "RELAY_GRPC_TLS_KEY_FILE=/env.key",
			"RELAY_SOURCES_ORDERS_EU_TOLERANCE=2m", "RELAY_SOURCES_ORDERS_EU_SECRETS=lit1, env:S2",
			"RELAY_SOURCES_ORDERS_EU_RATE_LIMIT_RPS=9", "RELAY_SOURCES_ORDERS_EU_ALLOW_IPS=10.0.0.1,fd00::/8",
			"RELAY_AUTH_TOKENS_CI_BOT_TOKEN=env-token", "RELAY_AUTH_TOKENS_CI_BOT_PUBLISH=true",
			"RELAY_AUTH_TOKENS_CI_BOT_GROUPS=billing, work-*",
			"RELAY_HTTP_TRUSTED_PROXIES=10.0.0.0/8", "RELAY_TRACING_SAMPLE_RATIO=0.5", "RELAY_GRPC_REFLECTION=false",
			"S2=s2",
		}, nil, func(t *testing.T, c *Config) {
			if c.HTTP.Addr != ":2001" || c.Redis.URL != "redis://env:6379" || c.Log.Level != "error" || c.Redis.MinReplicas != 2 || c.Redis.PoolSize != 300 || c.RedisPoolSize() != 300 {
				t.Errorf("%+v", c)
			}
			if c.GRPC.TLS.CertFile != "/env.crt" || c.GRPC.Reflection || c.Tracing.SampleRatio != 0.5 {
				t.Errorf("grpc %+v tracing %+v", c.GRPC, c.Tracing)
			}
			if !slices.Equal(c.HTTP.TrustedProxies, cfgPrefixes(t, "10.0.0.0/8")) {
				t.Errorf("trusted_proxies %v", c.HTTP.TrustedProxies)
			}
			s := c.Sources[0]
			if verify.OptionsOf(&s).Tolerance != 2*time.Minute || len(verify.OptionsOf(&s).Secrets) != 2 || string(verify.OptionsOf(&s).Secrets[0].Value) != "lit1" || string(verify.OptionsOf(&s).Secrets[1].Value) != "s2" {
				t.Errorf("source %+v", s)
			}
			if s.RateLimit != (relay.RateLimit{RPS: 9, Burst: 2}) || !slices.Equal(s.AllowIPs, cfgPrefixes(t, "10.0.0.1/32", "fd00::/8")) {
				t.Errorf("rate_limit %+v allow_ips %v", s.RateLimit, s.AllowIPs)
			}
			if tok := c.Auth.Tokens[0]; string(tok.Token.Value) != "env-token" || !tok.Publish || !slices.Equal(tok.Groups, []string{"billing", "work-*"}) {
				t.Errorf("token %+v", tok)
			}
			if verify.OptionsOf(&c.Sources[1]).Tolerance != 0 {
				t.Errorf("override leaked into source b")
			}
		}},
		{"flags over env", []string{"RELAY_HTTP_ADDR=:2001", "RELAY_REDIS_URL=redis://env:6379", "RELAY_LOG_LEVEL=error",
			"RELAY_SOURCES_ORDERS_EU_TOLERANCE=2m", "RELAY_ADMIN_ADDR=:2003"},
			map[string]string{"http.addr": ":3001", "redis.url": "redis://flag:6379", "log.level": "debug",
				"grpc.addr": ":3002", "sources.orders-eu.tolerance": "3m", "auth.tokens.ci-bot.token": "flag-token"},
			func(t *testing.T, c *Config) {
				if c.HTTP.Addr != ":3001" || c.Redis.URL != "redis://flag:6379" || c.Log.Level != "debug" || c.GRPC.Addr != ":3002" {
					t.Errorf("%+v", c)
				}
				if c.Admin.Addr != ":2003" {
					t.Errorf("admin.addr = %q, want env value", c.Admin.Addr)
				}
				if verify.OptionsOf(&c.Sources[0]).Tolerance != 3*time.Minute || string(c.Auth.Tokens[0].Token.Value) != "flag-token" {
					t.Errorf("source %+v token %+v", c.Sources[0], c.Auth.Tokens[0])
				}
			}},
		{"empty env value clears a string", []string{"RELAY_REDIS_URL=", "RELAY_REDIS_MIN_REPLICAS=0"}, nil, func(t *testing.T, c *Config) {
			if c.Redis.URL != "" {
				t.Errorf("redis.url = %q", c.Redis.URL)
			}
		}},
		{"ignored and unrelated RELAY variables", []string{"RELAY_DEMO_SECRET=x", "RELAY_TOKEN=y", "RELAY_REQUIRE_REDIS=1",
			"RELAY_CONFIG=/etc/relay.yaml", "NOT_RELAY_REDIS_URL=z"}, nil, func(t *testing.T, c *Config) {
			if c.Redis.URL != "redis://file:6379" {
				t.Errorf("redis.url = %q", c.Redis.URL)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(path, tt.env, tt.flags)
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
		})
	}

	t.Run("env and flags without a file", func(t *testing.T) {
		c, err := Load("", []string{"RELAY_REDIS_URL=redis://env:6379", "RELAY_HTTP_TLS_CERT_FILE=rel.crt", "RELAY_HTTP_TLS_KEY_FILE=rel.key"},
			map[string]string{"admin.addr": "127.0.0.1:7000"})
		if err != nil {
			t.Fatal(err)
		}
		if c.Redis.URL != "redis://env:6379" || c.Admin.Addr != "127.0.0.1:7000" || c.HTTP.TLS.CertFile != "rel.crt" || len(c.Sources) != 0 {
			t.Errorf("%+v", c)
		}
	})
}

// Every key of the schema can be set from the environment and from a flag.
func TestConfigEveryLeafOverridable(t *testing.T) {
	sample := map[cfgKind]string{
		cfgKString: "x", cfgKPath: "/x", cfgKBool: "true", cfgKInt: "1", cfgKFloat: "0.5", cfgKDuration: "1s",
		cfgKPrefixes: "10.0.0.0/8", cfgKStrings: "a", cfgKSecret: "s", cfgKSecrets: "s", cfgKSecretString: "redis://r:1",
	}
	path := cfgWriteConfig(t, "sources:\n  - {name: my-src, secrets: [x]}\nauth:\n  tokens: [{name: t1, token: x}]\n")
	check := func(t *testing.T, origin string, err error) {
		t.Helper()
		if err != nil && (strings.Contains(err.Error(), "unknown key") || strings.Contains(err.Error(), "unknown configuration") || strings.Contains(err.Error(), "names no key")) {
			t.Errorf("%s: %v", origin, err)
		}
	}
	for _, l := range cfgLeaves {
		_, err := Load(path, []string{"RELAY_" + cfgEnvName(l.path) + "=" + sample[l.kind]}, nil)
		check(t, l.path, err)
		_, err = Load(path, nil, map[string]string{l.path: sample[l.kind]})
		check(t, l.path, err)
	}
	for _, l := range cfgSourceLeaves {
		_, err := Load(path, []string{"RELAY_SOURCES_MY_SRC_" + cfgEnvName(l.path) + "=" + sample[l.kind]}, nil)
		check(t, l.path, err)
		_, err = Load(path, nil, map[string]string{"sources.my-src." + l.path: sample[l.kind]})
		check(t, l.path, err)
	}
	for _, l := range cfgTokenLeaves {
		_, err := Load(path, []string{"RELAY_AUTH_TOKENS_T1_" + cfgEnvName(l.path) + "=" + sample[l.kind]}, nil)
		check(t, l.path, err)
	}
	// The documented names.
	var names []string
	for _, l := range cfgLeaves {
		names = append(names, "RELAY_"+cfgEnvName(l.path))
	}
	for _, n := range []string{"RELAY_REDIS_URL", "RELAY_HTTP_ADDR", "RELAY_GRPC_TLS_CERT_FILE", "RELAY_REDIS_MIN_REPLICAS",
		"RELAY_LOG_LEVEL", "RELAY_HTTP_READ_HEADER_TIMEOUT", "RELAY_TRACING_OTLP_ENDPOINT", "RELAY_GRPC_TLS_CLIENT_CA_FILE"} {
		if !slices.Contains(names, n) {
			t.Errorf("%s is not a configuration variable", n)
		}
	}
}

func TestConfigAnchorsAndMerge(t *testing.T) {
	const file = `
x-defaults: &defaults
  provider: stripe
  tolerance: 1m
  rate_limit: { rps: 10, burst: 20 }
sources:
  - { <<: *defaults, name: a, secrets: [a] }
  - { <<: *defaults, name: b, secrets: [b], tolerance: 2m }
`
	// x-defaults is not a key: anchors must live inside known keys.
	if _, err := Load(cfgWriteConfig(t, file), nil, nil); err == nil || !strings.Contains(err.Error(), "x-defaults: unknown key") {
		t.Fatalf("err = %v", err)
	}
	const file2 = `
sources:
  - &a { provider: stripe, name: a, secrets: [a], tolerance: 1m, rate_limit: { rps: 10, burst: 20 } }
  - { <<: *a, name: b, tolerance: 2m }
`
	c, err := Load(cfgWriteConfig(t, file2), []string{"RELAY_SOURCES_B_RATE_LIMIT_BURST=5"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	a, b := c.Sources[0], c.Sources[1]
	if verify.OptionsOf(&a).Tolerance != time.Minute || verify.OptionsOf(&b).Tolerance != 2*time.Minute || string(verify.OptionsOf(&b).Secrets[0].Value) != "a" {
		t.Errorf("a %+v b %+v", a, b)
	}
	if a.RateLimit.Burst != 20 || b.RateLimit.Burst != 5 {
		t.Errorf("override of b changed the anchored a, or was lost: a %+v b %+v", a.RateLimit, b.RateLimit)
	}
}

// No secret value appears in any error, whatever goes wrong around it.
func TestConfigErrorsNeverContainSecrets(t *testing.T) {
	const secret = "S3CRET-VALUE"
	dir := t.TempDir()
	cfgWriteFile(t, dir, "secretfile", secret+"\n")
	tests := []struct {
		name  string
		yaml  string
		env   []string
		flags map[string]string
	}{
		{"secret map with unknown key", "sources:\n  - name: a\n    secrets: [{id: k, value: " + secret + ", extra: " + secret + "x}]\n", nil, nil},
		{"secrets not a list", "sources:\n  - name: a\n    secrets: " + secret + "\n", nil, nil},
		{"secret is a list", "sources:\n  - name: a\n    secrets: [[" + secret + "]]\n    verify_token: [" + secret + "]\n", nil, nil},
		{"duplicate tokens", "auth:\n  tokens:\n    - {name: a, token: " + secret + "}\n    - {name: b, token: " + secret + "}\n", nil, nil},
		{"token with other errors", "auth:\n  tokens:\n    - {token: " + secret + ", sources: [Bad]}\n", nil, nil},
		{"redis url with password, bad scheme", "redis:\n  url: \"http://u:" + secret + "@h\"\n", nil, nil},
		{"redis url unparsable", "redis:\n  url: \"redis://u:" + secret + "@h:bad port\"\n", nil, nil},
		{"redis url from env", "", []string{"RELAY_REDIS_URL=%%redis://:" + secret + "@h"}, nil},
		{"secrets from env, bad source", "sources:\n  - name: Bad\n    secrets: [x]\n", []string{"RELAY_SOURCES_BAD_SECRETS=" + secret}, nil},
		{"secret from file, other error", "sources:\n  - name: a\n    secrets: [\"file:secretfile\"]\n    tolerance: x\n", nil, nil},
		{"env secret, other error", "sources:\n  - name: a\n    secrets: [\"env:S\"]\n    partitions: 0x\n", []string{"S=" + secret}, nil},
		{"secret from a flag", "sources:\n  - name: a\n    secrets: [x]\n    tolerance: x\n", nil, map[string]string{"sources.a.secrets": secret}},
		{"secret under an unknown key", "sources:\n  - name: a\n    secrets: [x]\n    secret: " + secret + "\n", nil, nil},
		{"unknown RELAY variable holding a secret", "", []string{"RELAY_SOURCES_NOPE_SECRETS=" + secret, "RELAY_AUTH_TOKEN=" + secret}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := ""
			if tt.yaml != "" {
				path = cfgWriteFile(t, dir, "relay.yaml", tt.yaml)
			}
			_, err := Load(path, tt.env, tt.flags)
			if err == nil {
				t.Fatal("no error")
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error leaks the secret:\n%v", err)
			}
		})
	}
	// Printing a loaded config does not show secrets either.
	path := cfgWriteFile(t, dir, "relay.yaml", "redis: {url: \"redis://:"+secret+"@h:6379\"}\nsources:\n  - {name: a, provider: meta, secrets: [\""+secret+"\"], verify_token: \""+secret+"\"}\nauth:\n  tokens: [{name: t, token: \""+secret+"\"}]\n")
	c, err := Load(path, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, format := range []string{"%v", "%+v"} {
		if s := fmt.Sprintf(format, c); strings.Contains(s, secret) {
			t.Errorf("%s of the config leaks a secret: %s", format, s)
		}
	}
}

func TestConfigValidateProgrammatic(t *testing.T) {
	// main adds the demo source to a loaded config and validates again.
	c := Default()
	demo := relay.SourceConfig{Name: "demo", Verify: &verify.Options{Secrets: []relay.Secret{{Value: []byte("demo-secret")}}}}
	demo.SetDefaults()
	c.Sources = append(c.Sources, demo)
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c.Sources = append(c.Sources, demo)
	c.Log.Level = "loud"
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), `sources[1].name: duplicate source "demo"`) || !strings.Contains(err.Error(), "log.level") {
		t.Fatalf("err = %v", err)
	}
}

func TestDestinations(t *testing.T) {
	const file = `
sources:
  - {name: orders, secrets: [s1]}
  - {name: stripe, provider: stripe, secrets: [whsec_x]}
destinations:
  - name: crm
    url: https://crm.example.com/in
    secrets: [whsec_MDEyMzQ1Njc4OWFiY2RlZmdoaWprbG1u]
  - name: audit-log
    url: https://audit.example.com/in
    sources: [orders]
    secrets: [env:AUDIT_SECRET]
    headers: {X-Team: payments}
`
	path := filepath.Join(t.TempDir(), "relay.yaml")
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{
		"AUDIT_SECRET=whsec_dGhpcyBpcyB0aGUgc2Vjb25kIHNpZ25pbmcga2V5ISE=",
		"RELAY_DESTINATIONS_AUDIT_LOG_MAX_IN_FLIGHT=64",
		"RELAY_DESTINATIONS_AUDIT_LOG_RETRY_MAX_ATTEMPTS=3",
		"RELAY_DESTINATIONS_AUDIT_LOG_HEADERS=X-Team=ops, X-Env=prod",
		"RELAY_DESTINATIONS_CRM_ORDERING=partition_key",
	}
	flags := map[string]string{"destinations.crm.breaker.cooldown": "1m", "destinations.audit-log.allow_private": "true"}
	cfg, err := Load(path, env, flags)
	if err != nil {
		t.Fatal(err)
	}
	crm, audit := cfg.Destinations[0], cfg.Destinations[1]
	if crm.Ordering != push.OrderingPartitionKey || crm.Breaker.Cooldown != time.Minute || crm.MaxInFlight != 16 || crm.Timeout != 10*time.Second {
		t.Errorf("crm = %+v", crm)
	}
	if audit.MaxInFlight != 64 || audit.Retry.MaxAttempts != 3 || !audit.AllowPrivate ||
		!reflect.DeepEqual(audit.Headers, map[string]string{"X-Team": "ops", "X-Env": "prod"}) ||
		string(audit.Secrets[0].Value) != "whsec_dGhpcyBpcyB0aGUgc2Vjb25kIHNpZ25pbmcga2V5ISE=" {
		t.Errorf("audit-log = %+v", audit)
	}

	bad := []struct {
		name  string
		env   []string
		flags map[string]string
		want  []string
	}{
		{"unknown destination", []string{"AUDIT_SECRET=whsec_dGhpcyBpcyB0aGUgc2Vjb25kIHNpZ25pbmcga2V5ISE=", "RELAY_DESTINATIONS_BILLING_URL=https://x"}, nil,
			[]string{"RELAY_DESTINATIONS_BILLING_URL: names no key of a configured destination (RELAY_DESTINATIONS_<NAME>_<KEY> overrides a key of a destination of the config file; it cannot add one)"}},
		{"bad values", []string{"AUDIT_SECRET=short", "RELAY_DESTINATIONS_CRM_URL=ftp://x", "RELAY_DESTINATIONS_CRM_SOURCES=orders,nope",
			"RELAY_DESTINATIONS_CRM_FILTER=data.(", "RELAY_DESTINATIONS_CRM_HEADERS=novalue"}, nil,
			[]string{
				"destinations[0].url: must be an absolute http or https URL without a fragment (RELAY_DESTINATIONS_CRM_URL)",
				`destinations[0].sources[1]: no source named "nope" (RELAY_DESTINATIONS_CRM_SOURCES)`,
				"destinations[0].filter: ",
				"destinations[0].headers: must be Name=value items separated by commas (RELAY_DESTINATIONS_CRM_HEADERS)",
				"destinations[1].secrets[0]: must be whsec_ followed by standard base64",
			}},
		{"flag of no destination", []string{"AUDIT_SECRET=whsec_dGhpcyBpcyB0aGUgc2Vjb25kIHNpZ25pbmcga2V5ISE="}, map[string]string{"destinations.nope.url": "https://x"},
			[]string{"flag destinations.nope.url: names no key of a configured entry (use sources.<name>.<key>, auth.tokens.<name>.<key> or destinations.<name>.<key>)"}},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(path, tt.env, tt.flags)
			if err == nil {
				t.Fatal("Load succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			for _, secret := range []string{"=short", ": short", "dGhpcyBpcyB0aGUg", "MDEyMzQ1Njc4"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("the error shows a secret: %v", err)
				}
			}
		})
	}

	// A duplicate name, in the file.
	dup := file + `  - name: crm
    url: https://crm2.example.com/in
    secrets: [whsec_MDEyMzQ1Njc4OWFiY2RlZmdoaWprbG1u]
`
	if err := os.WriteFile(path, []byte(dup), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(path, env, nil)
	if want := `destinations[2].name: duplicate destination name "crm" (also destinations[0])`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Load with a duplicate destination = %v, want %s", err, want)
	}
}

// Every field of the types the file is decoded into has its key as a koanf tag: an untagged
// field would be accepted under its Go name.
func TestEveryFieldHasAKey(t *testing.T) {
	seen := map[reflect.Type]bool{}
	var walk func(path string, typ reflect.Type)
	walk = func(path string, typ reflect.Type) {
		for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice || typ.Kind() == reflect.Map {
			typ = typ.Elem()
		}
		if typ.Kind() != reflect.Struct || seen[typ] || typ.PkgPath() == "time" || typ.PkgPath() == "net/netip" || typ == reflect.TypeFor[relay.Secret]() {
			return
		}
		seen[typ] = true
		for f := range typ.Fields() {
			tag, ok := f.Tag.Lookup("koanf")
			if !ok && f.IsExported() {
				t.Errorf("%s.%s (%s) has no koanf tag", typ, f.Name, path)
				continue
			}
			if tag != "-" {
				walk(path+"."+f.Name, f.Type)
			}
		}
	}
	walk("document", reflect.TypeFor[document]())
	if len(seen) < 12 {
		t.Errorf("walked %d types, want the document's 12 or more", len(seen))
	}
}

// Every decoding problem of a file is reported at once, each with its key and line.
func TestConfigReportsEveryDecodeError(t *testing.T) {
	const file = `htpp: {addr: ":1"}
http:
  read_timeout: 30
  trusted_proxies: nope
  unverified_limit: {rps: [1], burst: x}
grpc: [1]
sources:
  - name: a
    secrets: [{id: k, value: x, extra: 1}, [x]]
    rate_limit: {rps: 1, brust: 2}
    partitions: 1.5
    allow_ips: [1.2.3.4/40]
  - just-a-string
destinations:
  - name: d
    url: https://x.example
    headers: {X-List: [1]}
    secrets: whsec_abc
`
	_, err := Load(cfgWriteConfig(t, file), []string{"RELAY_SOURCES_A_MAX_LEN=abc"}, map[string]string{"destinations.d.rate_limit.rps": "x"})
	if err == nil {
		t.Fatal("no error")
	}
	lines := strings.Split(err.Error(), "\n")
	for _, want := range []struct{ msg, origin string }{
		{`htpp: unknown key (did you mean "http"?)`, "relay.yaml:1)"},
		{`http.read_timeout: invalid duration "30"`, ""},
		{`http.trusted_proxies: must be a list`, "relay.yaml:4)"},
		{`http.unverified_limit.rps: must be a single value, not a list`, ""},
		{`http.unverified_limit.burst: must be an integer, got "x"`, ""},
		{`grpc: must be a mapping of keys`, "relay.yaml:6)"},
		{`sources[0].secrets[0].extra: unknown key`, ""},
		{`sources[0].secrets[1]: must be a single value, not a list`, ""},
		{`sources[0].rate_limit.brust: unknown key (did you mean "burst"?)`, "relay.yaml:10)"},
		{`sources[0].partitions: must be an integer, got "1.5"`, "relay.yaml:11)"},
		{`sources[0].allow_ips[0]: invalid CIDR "1.2.3.4/40"`, ""},
		{`sources[0].max_len: must be an integer, got "abc"`, "(RELAY_SOURCES_A_MAX_LEN)"},
		{`sources[1]: must be a mapping of keys`, "relay.yaml:13)"},
		{`destinations[0].headers[X-List]: must be a single value, not a list`, ""},
		{`destinations[0].secrets: must be a list`, "relay.yaml:18)"},
		{`destinations[0].rate_limit.rps: must be a number, got "x"`, "(flag destinations.d.rate_limit.rps)"},
	} {
		if !slices.ContainsFunc(lines, func(l string) bool {
			return strings.HasPrefix(l, want.msg) && strings.HasSuffix(l, want.origin)
		}) {
			t.Errorf("no line %q ... %q", want.msg, want.origin)
		}
	}
	if t.Failed() {
		t.Logf("error:\n%v", err)
	}
}

// TestDestinationExplicitZeros: a destination setting written as 0, whose 0 would otherwise
// stand for "absent" and become the default, is refused naming the key and where it came from
// (file, variable or flag); an absent key still takes the default.
func TestDestinationExplicitZeros(t *testing.T) {
	file := `sources:
  - {name: a, secrets: [x]}
destinations:
  - name: d
    url: https://x.example
    secrets: [whsec_MDEyMzQ1Njc4OWFiY2RlZmdoaWprbG1u]
    timeout: 0s
    retry: {max_attempts: 0}
`
	_, err := Load(cfgWriteConfig(t, file), []string{"RELAY_DESTINATIONS_D_MAX_IN_FLIGHT=0"}, map[string]string{"destinations.d.breaker.failures": "0"})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		"destinations[0].timeout: must be 100ms to 5m, got 0s (",
		"destinations[0].retry.max_attempts: must be 1 to 1000, got 0 (",
		"destinations[0].max_in_flight: must be 1 to 1024, got 0 (RELAY_DESTINATIONS_D_MAX_IN_FLIGHT)",
		"destinations[0].breaker.failures: must be at least 1, got 0 (flag destinations.d.breaker.failures)",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	for _, line := range []string{"relay.yaml:7)", "relay.yaml:8)"} { // timeout, retry.max_attempts
		if !strings.Contains(err.Error(), line) {
			t.Errorf("error does not point at %s:\n%v", line, err)
		}
	}
	cfg, err := Load(cfgWriteConfig(t, strings.ReplaceAll(strings.ReplaceAll(file, "    timeout: 0s\n", ""), "    retry: {max_attempts: 0}\n", "")), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := cfg.Destinations[0]; d.Timeout != 10*time.Second || d.Retry.MaxAttempts != 10 || d.Breaker.Failures != 10 {
		t.Errorf("defaults of absent keys: timeout %s, max_attempts %d, breaker.failures %d; want 10s, 10, 10", d.Timeout, d.Retry.MaxAttempts, d.Breaker.Failures)
	}
}
