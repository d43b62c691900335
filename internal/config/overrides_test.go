package config

import (
	"net/netip"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/eventrelay/eventrelay/relay"
	"github.com/eventrelay/eventrelay/relay/push"
	"github.com/eventrelay/eventrelay/relay/verify"
)

// exampleEnv are the variables testdata/relay.example.yaml references.
var exampleEnv = []string{
	"ORDERS_SECRET=orders-current", "ORDERS_SECRET_OLD=orders-previous", "STRIPE_WEBHOOK_SECRET=whsec_example",
	"GITHUB_WEBHOOK_SECRET=gh-example", "TWILIO_AUTH_TOKEN=12345", "META_APP_SECRET=meta-app",
	"META_VERIFY_TOKEN=meta-verify", "LEGACY_CRM_TOKEN=crm-token", "BILLING_CONSUMER_TOKEN=billing-token",
	"OPS_TOKEN=ops-token", "BILLING_PUSH_SECRET=whsec_MDEyMzQ1Njc4OWFiY2RlZmdoaWprbG1u",
	"NEW_SECRET=rotated",
}

func src(c *Config, name string) *relay.SourceConfig {
	for i := range c.Sources {
		if c.Sources[i].Name == name {
			return &c.Sources[i]
		}
	}
	return nil
}

func vo(c *Config, name string) *verify.Options { return verify.OptionsOf(src(c, name)) }

// TestEveryOverride loads the complete example configuration, then each key overridden on
// its own, once by its RELAY_* variable and once by its flag, and checks the value that
// results: every leaf of the schema has a row (checked at the end), and every expected value
// is written out here.
func TestEveryOverride(t *testing.T) {
	ms := func(s string) time.Duration { d, _ := time.ParseDuration(s); return d }
	pfx := func(ss ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, s := range ss {
			out = append(out, netip.MustParsePrefix(s))
		}
		return out
	}
	type row struct {
		env, flag, value string
		get              func(c *Config) any
		want             any
	}
	// Flags a value needs (the other half of a pair, redis.url), given in both runs.
	with := map[string]map[string]string{
		"http.tls.cert_file":         {"http.tls.key_file": "/tls/key.pem"},
		"http.tls.key_file":          {"http.tls.cert_file": "/tls/crt.pem"},
		"http.tls.client_ca_file":    {"http.tls.cert_file": "/tls/crt.pem", "http.tls.key_file": "/tls/key.pem"},
		"grpc.tls.cert_file":         {"grpc.tls.key_file": "/g/key.pem"},
		"grpc.tls.key_file":          {"grpc.tls.cert_file": "/g/crt.pem"},
		"grpc.tls.client_ca_file":    {"grpc.tls.cert_file": "/g/crt.pem", "grpc.tls.key_file": "/g/key.pem"},
		"redis.cluster":              {"redis.url": "redis://10.1.2.3:6379"},
		"redis.master_name":          {"redis.url": "redis://10.1.2.3:26379"},
		"redis.min_replicas":         {"redis.url": "redis://10.1.2.3:6379"},
		"sources.orders.unsigned_id": {"sources.orders.template": "{timestamp}.{body}"},
		// orders has 4 partitions: a header key needs the opt-in.
		"sources.orders.partition_key": {"sources.orders.unsigned_partition_key": "true"},
	}
	rows := []row{
		{"RELAY_HTTP_ADDR", "http.addr", "127.0.0.1:18080", func(c *Config) any { return c.HTTP.Addr }, "127.0.0.1:18080"},
		{"RELAY_HTTP_TLS_CERT_FILE", "http.tls.cert_file", "/tls/crt.pem", func(c *Config) any { return c.HTTP.TLS.CertFile }, "/tls/crt.pem"},
		{"RELAY_HTTP_TLS_KEY_FILE", "http.tls.key_file", "/tls/key.pem", func(c *Config) any { return c.HTTP.TLS.KeyFile }, "/tls/key.pem"},
		{"RELAY_HTTP_TLS_CLIENT_CA_FILE", "http.tls.client_ca_file", "/tls/ca.pem", func(c *Config) any { return c.HTTP.TLS.ClientCAFile }, "/tls/ca.pem"},
		{"RELAY_HTTP_TRUSTED_PROXIES", "http.trusted_proxies", "192.0.2.0/24, 198.51.100.9", func(c *Config) any { return c.HTTP.TrustedProxies }, pfx("192.0.2.0/24", "198.51.100.9/32")},
		{"RELAY_HTTP_READ_TIMEOUT", "http.read_timeout", "45s", func(c *Config) any { return c.HTTP.ReadTimeout }, 45 * time.Second},
		{"RELAY_HTTP_WRITE_TIMEOUT", "http.write_timeout", "1m", func(c *Config) any { return c.HTTP.WriteTimeout }, time.Minute},
		{"RELAY_HTTP_IDLE_TIMEOUT", "http.idle_timeout", "5m", func(c *Config) any { return c.HTTP.IdleTimeout }, 5 * time.Minute},
		{"RELAY_HTTP_READ_HEADER_TIMEOUT", "http.read_header_timeout", "3s", func(c *Config) any { return c.HTTP.ReadHeaderTimeout }, 3 * time.Second},
		{"RELAY_HTTP_MAX_HEADER_BYTES", "http.max_header_bytes", "32768", func(c *Config) any { return c.HTTP.MaxHeaderBytes }, 32768},
		{"RELAY_HTTP_MAX_CONCURRENT", "http.max_concurrent", "77", func(c *Config) any { return c.HTTP.MaxConcurrent }, 77},
		{"RELAY_HTTP_MAX_REQUEST_BYTES", "http.max_request_bytes", "2097152", func(c *Config) any { return c.HTTP.MaxRequestBytes }, int64(2097152)},
		{"RELAY_HTTP_MIN_BODY_RATE", "http.min_body_rate", "0", func(c *Config) any { return c.HTTP.MinBodyRate }, int64(0)},
		{"RELAY_HTTP_MAX_BODY_MEMORY", "http.max_body_memory", "0", func(c *Config) any { return c.HTTP.MaxBodyMemory }, int64(0)},
		{"RELAY_HTTP_UNVERIFIED_LIMIT_RPS", "http.unverified_limit.rps", "2.5", func(c *Config) any { return c.HTTP.Unverified.RPS }, 2.5},
		{"RELAY_HTTP_UNVERIFIED_LIMIT_BURST", "http.unverified_limit.burst", "40", func(c *Config) any { return c.HTTP.Unverified.Burst }, 40},
		{"RELAY_GRPC_ADDR", "grpc.addr", "127.0.0.1:19090", func(c *Config) any { return c.GRPC.Addr }, "127.0.0.1:19090"},
		{"RELAY_GRPC_TLS_CERT_FILE", "grpc.tls.cert_file", "/g/crt.pem", func(c *Config) any { return c.GRPC.TLS.CertFile }, "/g/crt.pem"},
		{"RELAY_GRPC_TLS_KEY_FILE", "grpc.tls.key_file", "/g/key.pem", func(c *Config) any { return c.GRPC.TLS.KeyFile }, "/g/key.pem"},
		{"RELAY_GRPC_TLS_CLIENT_CA_FILE", "grpc.tls.client_ca_file", "/g/ca.pem", func(c *Config) any { return c.GRPC.TLS.ClientCAFile }, "/g/ca.pem"},
		{"RELAY_GRPC_REFLECTION", "grpc.reflection", "false", func(c *Config) any { return c.GRPC.Reflection }, false},
		{"RELAY_GRPC_MAX_STREAMS_PER_CONNECTION", "grpc.max_streams_per_connection", "250", func(c *Config) any { return c.GRPC.MaxStreamsPerConnection }, 250},
		{"RELAY_ADMIN_ADDR", "admin.addr", "127.0.0.1:19091", func(c *Config) any { return c.Admin.Addr }, "127.0.0.1:19091"},
		{"RELAY_REDIS_URL", "redis.url", "redis://10.1.2.3:6379/2", func(c *Config) any { return c.Redis.URL }, "redis://10.1.2.3:6379/2"},
		{"RELAY_REDIS_CLUSTER", "redis.cluster", "true", func(c *Config) any { return c.Redis.Cluster }, true},
		{"RELAY_REDIS_MASTER_NAME", "redis.master_name", "mymaster", func(c *Config) any { return c.Redis.MasterName }, "mymaster"},
		{"RELAY_REDIS_MIN_REPLICAS", "redis.min_replicas", "1", func(c *Config) any { return c.Redis.MinReplicas }, 1},
		{"RELAY_REDIS_TIMEOUT", "redis.timeout", "750ms", func(c *Config) any { return c.Redis.Timeout }, 750 * time.Millisecond},
		{"RELAY_REDIS_POOL_SIZE", "redis.pool_size", "300", func(c *Config) any { return c.Redis.PoolSize }, 300},
		{"RELAY_REDIS_APPEND_IN_FLIGHT", "redis.append_in_flight", "4", func(c *Config) any { return c.Redis.AppendInFlight }, 4},
		{"RELAY_LOG_LEVEL", "log.level", "DEBUG", func(c *Config) any { return c.Log.Level }, "debug"},
		{"RELAY_LOG_FORMAT", "log.format", "text", func(c *Config) any { return c.Log.Format }, "text"},
		{"RELAY_TRACING_OTLP_ENDPOINT", "tracing.otlp_endpoint", "otel:4317", func(c *Config) any { return c.Tracing.OTLPEndpoint }, "otel:4317"},
		{"RELAY_TRACING_SAMPLE_RATIO", "tracing.sample_ratio", "0.25", func(c *Config) any { return c.Tracing.SampleRatio }, 0.25},
		{"RELAY_SUBSCRIBE_TAIL_BUFFER", "subscribe.tail_buffer", "8192", func(c *Config) any { return c.Subscribe.TailBuffer }, 8192},
		{"RELAY_SUBSCRIBE_REPLAY_BATCH", "subscribe.replay_batch", "500", func(c *Config) any { return c.Subscribe.ReplayBatch }, 500},
		{"RELAY_SUBSCRIBE_MIN_HEARTBEAT", "subscribe.min_heartbeat", "200ms", func(c *Config) any { return c.Subscribe.MinHeartbeat }, 200 * time.Millisecond},
		{"RELAY_SUBSCRIBE_MAX_SUBSCRIBERS", "subscribe.max_subscribers", "99", func(c *Config) any { return c.Subscribe.MaxSubscribers }, 99},
		{"RELAY_SUBSCRIBE_SEND_TIMEOUT", "subscribe.send_timeout", "0s", func(c *Config) any { return c.Subscribe.SendTimeout }, time.Duration(0)},

		// A source's keys, on a source whose provider reads them.
		{"RELAY_SOURCES_GITHUB_PROVIDER", "sources.github.provider", "hmac", func(c *Config) any { return src(c, "github").Provider }, "hmac"},
		{"RELAY_SOURCES_ORDERS_SECRETS", "sources.orders.secrets", "env:NEW_SECRET,literal-two", func(c *Config) any {
			var v []string
			for _, s := range vo(c, "orders").Secrets {
				v = append(v, string(s.Value))
			}
			return v
		}, []string{"rotated", "literal-two"}},
		{"RELAY_SOURCES_ORDERS_HEADER", "sources.orders.header", "X-Sig", func(c *Config) any { return vo(c, "orders").Header }, "X-Sig"},
		{"RELAY_SOURCES_STRIPE_TOLERANCE", "sources.stripe.tolerance", "2m", func(c *Config) any { return vo(c, "stripe").Tolerance }, 2 * time.Minute},
		{"RELAY_SOURCES_TWILIO_SMS_URL", "sources.twilio-sms.url", "https://h.example.com/in", func(c *Config) any { return src(c, "twilio-sms").URL }, "https://h.example.com/in"},
		{"RELAY_SOURCES_ORDERS_ALGORITHM", "sources.orders.algorithm", "sha512", func(c *Config) any { return vo(c, "orders").Algorithm }, "sha512"},
		{"RELAY_SOURCES_ORDERS_ENCODING", "sources.orders.encoding", "base64", func(c *Config) any { return vo(c, "orders").Encoding }, "base64"},
		{"RELAY_SOURCES_ORDERS_PREFIX", "sources.orders.prefix", "v1=", func(c *Config) any { return vo(c, "orders").Prefix }, "v1="},
		{"RELAY_SOURCES_ORDERS_TEMPLATE", "sources.orders.template", "{id}:{timestamp}:{body}", func(c *Config) any { return vo(c, "orders").Template }, "{id}:{timestamp}:{body}"},
		{"RELAY_SOURCES_ORDERS_TIMESTAMP_HEADER", "sources.orders.timestamp_header", "X-Ts", func(c *Config) any { return vo(c, "orders").TimestampHeader }, "X-Ts"},
		{"RELAY_SOURCES_ORDERS_ID_HEADER", "sources.orders.id_header", "X-Request-Id", func(c *Config) any { return vo(c, "orders").IDHeader }, "X-Request-Id"},
		{"RELAY_SOURCES_ORDERS_ID_FIELD", "sources.orders.id_field", "event_id", func(c *Config) any { return vo(c, "orders").IDField }, "event_id"},
		{"RELAY_SOURCES_ORDERS_TYPE_FIELD", "sources.orders.type_field", "kind", func(c *Config) any { return vo(c, "orders").TypeField }, "kind"},
		{"RELAY_SOURCES_ORDERS_TYPE_HEADER", "sources.orders.type_header", "X-Event-Type", func(c *Config) any { return vo(c, "orders").TypeHeader }, "X-Event-Type"},
		{"RELAY_SOURCES_ORDERS_SUBJECT_FIELD", "sources.orders.subject_field", "order.id", func(c *Config) any { return vo(c, "orders").SubjectField }, "order.id"},
		{"RELAY_SOURCES_ORDERS_TIME_FIELD", "sources.orders.time_field", "ts", func(c *Config) any { return vo(c, "orders").TimeField }, "ts"},
		{"RELAY_SOURCES_LEGACY_CRM_QUERY_PARAM", "sources.legacy-crm.query_param", "key", func(c *Config) any { return vo(c, "legacy-crm").QueryParam }, "key"},
		{"RELAY_SOURCES_ORDERS_BODY_FORMAT", "sources.orders.body_format", "form", func(c *Config) any { return vo(c, "orders").BodyFormat }, "form"},
		{"RELAY_SOURCES_ORDERS_UNSIGNED_ID", "sources.orders.unsigned_id", "true", func(c *Config) any { return vo(c, "orders").UnsignedID }, true},
		{"RELAY_SOURCES_WHATSAPP_VERIFY_TOKEN", "sources.whatsapp.verify_token", "env:NEW_SECRET", func(c *Config) any { return string(vo(c, "whatsapp").VerifyToken.Value) }, "rotated"},
		{"RELAY_SOURCES_ORDERS_MAX_BODY_BYTES", "sources.orders.max_body_bytes", "4096", func(c *Config) any { return src(c, "orders").MaxBodyBytes }, int64(4096)},
		{"RELAY_SOURCES_ORDERS_ALLOW_IPS", "sources.orders.allow_ips", "192.0.2.1,2001:db8:1::/48", func(c *Config) any { return src(c, "orders").AllowIPs }, pfx("192.0.2.1/32", "2001:db8:1::/48")},
		{"RELAY_SOURCES_ORDERS_MAX_CONCURRENT", "sources.orders.max_concurrent", "8", func(c *Config) any { return src(c, "orders").MaxConcurrent }, 8},
		{"RELAY_SOURCES_ORDERS_MAX_GROUPS", "sources.orders.max_groups", "5", func(c *Config) any { return src(c, "orders").MaxGroups }, 5},
		{"RELAY_SOURCES_ORDERS_RATE_LIMIT_RPS", "sources.orders.rate_limit.rps", "7.5", func(c *Config) any { return src(c, "orders").RateLimit.RPS }, 7.5},
		{"RELAY_SOURCES_ORDERS_RATE_LIMIT_BURST", "sources.orders.rate_limit.burst", "9", func(c *Config) any { return src(c, "orders").RateLimit.Burst }, 9},
		{"RELAY_SOURCES_ORDERS_PARTITIONS", "sources.orders.partitions", "16", func(c *Config) any { return src(c, "orders").Partitions }, 16},
		{"RELAY_SOURCES_ORDERS_UNSIGNED_PARTITION_KEY", "sources.orders.unsigned_partition_key", "true", func(c *Config) any { return src(c, "orders").UnsignedPartitionKey }, true},
		{"RELAY_SOURCES_ORDERS_PARTITION_KEY", "sources.orders.partition_key", "header:X-Tenant", func(c *Config) any { return src(c, "orders").PartitionKey }, "header:X-Tenant"},
		{"RELAY_SOURCES_ORDERS_RETENTION", "sources.orders.retention", "24h", func(c *Config) any { return src(c, "orders").Retention }, 24 * time.Hour},
		{"RELAY_SOURCES_ORDERS_MAX_LEN", "sources.orders.max_len", "5000", func(c *Config) any { return src(c, "orders").MaxLen }, int64(5000)},
		{"RELAY_SOURCES_ORDERS_DEDUPE_WINDOW", "sources.orders.dedupe_window", "1h", func(c *Config) any { return src(c, "orders").DedupeWindow }, time.Hour},

		// An auth token's keys.
		{"RELAY_AUTH_TOKENS_OPS_TOKEN", "auth.tokens.ops.token", "env:NEW_SECRET", func(c *Config) any { return string(c.Auth.Tokens[1].Token.Value) }, "rotated"},
		{"RELAY_AUTH_TOKENS_OPS_SOURCES", "auth.tokens.ops.sources", "orders,github", func(c *Config) any { return c.Auth.Tokens[1].Sources }, []string{"orders", "github"}},
		{"RELAY_AUTH_TOKENS_OPS_PUBLISH", "auth.tokens.ops.publish", "false", func(c *Config) any { return c.Auth.Tokens[1].Publish }, false},
		{"RELAY_AUTH_TOKENS_OPS_GROUPS", "auth.tokens.ops.groups", "ops-*", func(c *Config) any { return c.Auth.Tokens[1].Groups }, []string{"ops-*"}},
		{"RELAY_AUTH_TOKENS_BILLING_CONSUMER_MAX_SUBSCRIPTIONS", "auth.tokens.billing-consumer.max_subscriptions", "3", func(c *Config) any { return c.Auth.Tokens[0].MaxSubscriptions }, 3},
		{"RELAY_AUTH_TOKENS_BILLING_CONSUMER_CONSOLE", "auth.tokens.billing-consumer.console", "yes", func(c *Config) any { return c.Auth.Tokens[0].Console }, true},

		// A push destination's keys.
		{"RELAY_DESTINATIONS_BILLING_URL", "destinations.billing.url", "https://b2.example.com/in", func(c *Config) any { return c.Destinations[0].URL }, "https://b2.example.com/in"},
		{"RELAY_DESTINATIONS_BILLING_SOURCES", "destinations.billing.sources", "stripe,orders", func(c *Config) any { return c.Destinations[0].Sources }, []string{"stripe", "orders"}},
		{"RELAY_DESTINATIONS_BILLING_TYPES", "destinations.billing.types", "charge.*", func(c *Config) any { return c.Destinations[0].Types }, []string{"charge.*"}},
		{"RELAY_DESTINATIONS_BILLING_FILTER", "destinations.billing.filter", `event.type != "x"`, func(c *Config) any { return c.Destinations[0].Filter }, `event.type != "x"`},
		{"RELAY_DESTINATIONS_BILLING_SECRETS", "destinations.billing.secrets", "whsec_dGhpcyBpcyB0aGUgc2Vjb25kIHNpZ25pbmcga2V5ISE=", func(c *Config) any { return string(c.Destinations[0].Secrets[0].Value) }, "whsec_dGhpcyBpcyB0aGUgc2Vjb25kIHNpZ25pbmcga2V5ISE="},
		{"RELAY_DESTINATIONS_BILLING_HEADERS", "destinations.billing.headers", "X-A=1,X-B=two", func(c *Config) any { return c.Destinations[0].Headers }, map[string]string{"X-A": "1", "X-B": "two"}},
		{"RELAY_DESTINATIONS_BILLING_TIMEOUT", "destinations.billing.timeout", "3s", func(c *Config) any { return c.Destinations[0].Timeout }, 3 * time.Second},
		{"RELAY_DESTINATIONS_BILLING_MAX_IN_FLIGHT", "destinations.billing.max_in_flight", "64", func(c *Config) any { return c.Destinations[0].MaxInFlight }, 64},
		{"RELAY_DESTINATIONS_BILLING_ORDERING", "destinations.billing.ordering", "partition_key", func(c *Config) any { return c.Destinations[0].Ordering }, push.OrderingPartitionKey},
		{"RELAY_DESTINATIONS_BILLING_RETRY_INITIAL", "destinations.billing.retry.initial", "250ms", func(c *Config) any { return c.Destinations[0].Retry.Initial }, ms("250ms")},
		{"RELAY_DESTINATIONS_BILLING_RETRY_MAX", "destinations.billing.retry.max", "1h", func(c *Config) any { return c.Destinations[0].Retry.Max }, time.Hour},
		{"RELAY_DESTINATIONS_BILLING_RETRY_MULTIPLIER", "destinations.billing.retry.multiplier", "1.5", func(c *Config) any { return c.Destinations[0].Retry.Multiplier }, 1.5},
		{"RELAY_DESTINATIONS_BILLING_RETRY_MAX_ATTEMPTS", "destinations.billing.retry.max_attempts", "25", func(c *Config) any { return c.Destinations[0].Retry.MaxAttempts }, 25},
		{"RELAY_DESTINATIONS_BILLING_RETRY_MAX_AGE", "destinations.billing.retry.max_age", "48h", func(c *Config) any { return c.Destinations[0].Retry.MaxAge }, 48 * time.Hour},
		{"RELAY_DESTINATIONS_BILLING_RATE_LIMIT_RPS", "destinations.billing.rate_limit.rps", "20", func(c *Config) any { return c.Destinations[0].RateLimit.RPS }, 20.0},
		{"RELAY_DESTINATIONS_BILLING_RATE_LIMIT_BURST", "destinations.billing.rate_limit.burst", "4", func(c *Config) any { return c.Destinations[0].RateLimit.Burst }, 4},
		{"RELAY_DESTINATIONS_BILLING_BREAKER_FAILURES", "destinations.billing.breaker.failures", "3", func(c *Config) any { return c.Destinations[0].Breaker.Failures }, 3},
		{"RELAY_DESTINATIONS_BILLING_BREAKER_COOLDOWN", "destinations.billing.breaker.cooldown", "2m", func(c *Config) any { return c.Destinations[0].Breaker.Cooldown }, 2 * time.Minute},
		{"RELAY_DESTINATIONS_BILLING_ALLOW_PRIVATE", "destinations.billing.allow_private", "true", func(c *Config) any { return c.Destinations[0].AllowPrivate }, true},
	}
	env := append(os.Environ()[:0:0], exampleEnv...)
	base, err := Load("testdata/relay.example.yaml", env, nil)
	if err != nil {
		t.Fatal(err)
	}
	covered := map[string]bool{}
	for _, r := range rows {
		covered[r.flag] = true
		if reflect.DeepEqual(r.get(base), r.want) {
			t.Errorf("%s: the example already has %v; choose another value", r.flag, r.want)
		}
		for _, via := range []string{"env", "flag"} {
			e, flags := env, map[string]string{}
			for k, v := range with[r.flag] {
				flags[k] = v
			}
			if via == "env" {
				e = append(append([]string(nil), env...), r.env+"="+r.value)
			} else {
				flags[r.flag] = r.value
			}
			cfg, err := Load("testdata/relay.example.yaml", e, flags)
			if err != nil {
				t.Errorf("%s by %s: %v", r.flag, via, err)
				continue
			}
			if got := r.get(cfg); !reflect.DeepEqual(got, r.want) {
				t.Errorf("%s by %s = %#v, want %#v", r.flag, via, got, r.want)
			}
		}
	}
	// Every leaf of the schema has a row (a named list's keys through one of its entries).
	check := func(prefix string, leaves []cfgLeaf, entry string) {
		for _, l := range leaves {
			found := covered[prefix+l.path]
			if !found && entry != "" {
				for k := range covered {
					if len(k) > len(prefix) && k[:len(prefix)] == prefix && hasSuffixPath(k, l.path) {
						found = true
					}
				}
			}
			if !found {
				t.Errorf("no override row for %s%s", prefix, l.path)
			}
		}
	}
	check("", cfgLeaves, "")
	check("sources.", cfgSourceLeaves, "name")
	check("auth.tokens.", cfgTokenLeaves, "name")
	check("destinations.", cfgDestLeaves, "name")
}

// hasSuffixPath reports whether key is "<prefix><name>.<path>".
func hasSuffixPath(key, path string) bool {
	return len(key) > len(path)+1 && key[len(key)-len(path)-1:] == "."+path
}
