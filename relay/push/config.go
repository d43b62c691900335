package push

import (
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/eventrelay/eventrelay/relay"
)

// Ordering is how a destination orders its deliveries.
type Ordering string

const (
	// OrderingNone sends in parallel, up to max_in_flight; a retried event may arrive after
	// later ones.
	OrderingNone Ordering = "none"
	// OrderingPartitionKey keeps each partition key's events in order: at most one of a key's
	// events is in flight, and the next waits until the previous one is acknowledged or
	// dead-lettered, retries included.
	OrderingPartitionKey Ordering = "partition_key"
)

// Defaults of a destination's options.
const (
	DefaultTimeout          = 10 * time.Second
	DefaultMaxInFlight      = 16
	DefaultRetryInitial     = time.Second
	DefaultRetryMax         = 10 * time.Minute
	DefaultRetryMultiplier  = 2.0
	DefaultRetryMaxAttempts = 10
	DefaultRetryMaxAge      = 24 * time.Hour
	DefaultBreakerFailures  = 10
	DefaultBreakerCooldown  = 30 * time.Second
	// MaxInFlight bounds max_in_flight.
	MaxInFlight = 1024
	// MaxAttempts bounds retry.max_attempts.
	MaxAttempts = 1000
)

// Config is one push destination: a consumer group (GroupName) over its sources whose
// members, in every relayd replica, POST each matching event to URL, signed the Standard
// Webhooks way.
type Config struct {
	// Name identifies the destination; its consumer group is "dest:<name>".
	Name string `koanf:"name"`
	// URL receives the POSTs (http or https).
	URL string `koanf:"url"`
	// Sources are the sources delivered; empty: every configured source.
	Sources []string `koanf:"sources"`
	// Types are type globs an event must match; empty: every type.
	Types []string `koanf:"types"`
	// Filter is a filter expression (as SubscribeRequest.filter) an event must match.
	Filter string `koanf:"filter"`
	// Secrets sign every POST (webhook-signature); each is "whsec_" followed by the
	// base64 key (the prefix may be left out). Several sign with each, for rotation.
	Secrets []relay.Secret `koanf:"secrets"`
	// Headers are added to every POST.
	Headers map[string]string `koanf:"headers"`
	// Timeout bounds one attempt, response included.
	Timeout time.Duration `koanf:"timeout"`
	// MaxInFlight bounds the attempts in flight at once (per replica).
	MaxInFlight int `koanf:"max_in_flight"`
	// Ordering: OrderingNone (default) or OrderingPartitionKey.
	Ordering Ordering `koanf:"ordering"`
	// Retry is the retry policy.
	Retry Retry `koanf:"retry"`
	// RateLimit bounds the attempts per second (0: no bound).
	RateLimit relay.RateLimit `koanf:"rate_limit"`
	// Breaker is the circuit breaker.
	Breaker Breaker `koanf:"breaker"`
	// AllowPrivate lets the destination resolve to loopback, link-local, private or
	// otherwise non-public addresses, refused by default.
	AllowPrivate bool `koanf:"allow_private"`
}

// Retry is a destination's retry policy: exponential backoff with full jitter.
type Retry struct {
	// Initial is the backoff cap of the first retry.
	Initial time.Duration `koanf:"initial"`
	// Max caps the backoff.
	Max time.Duration `koanf:"max"`
	// Multiplier grows the cap per attempt.
	Multiplier float64 `koanf:"multiplier"`
	// MaxAttempts is how many attempts an event gets before it is dead-lettered.
	MaxAttempts int `koanf:"max_attempts"`
	// MaxAge dead-letters an event once retrying it would go past this age (since it was
	// received).
	MaxAge time.Duration `koanf:"max_age"`
}

// Breaker is a destination's circuit breaker: after Failures consecutive failed attempts the
// destination sends nothing for Cooldown, then probes with one attempt.
type Breaker struct {
	Failures int           `koanf:"failures"`
	Cooldown time.Duration `koanf:"cooldown"`
}

// GroupName returns the consumer group of destination name.
func GroupName(name string) string { return "dest:" + name }

// SetDefaults fills in the options left zero.
func (c *Config) SetDefaults() {
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
	if c.Ordering == "" {
		c.Ordering = OrderingNone
	}
	r := &c.Retry
	if r.Initial == 0 {
		r.Initial = DefaultRetryInitial
	}
	if r.Max == 0 {
		r.Max = max(DefaultRetryMax, r.Initial)
	}
	if r.Multiplier == 0 {
		r.Multiplier = DefaultRetryMultiplier
	}
	if r.MaxAttempts == 0 {
		r.MaxAttempts = DefaultRetryMaxAttempts
	}
	if r.MaxAge == 0 {
		r.MaxAge = DefaultRetryMaxAge
	}
	if c.Breaker.Failures == 0 {
		c.Breaker.Failures = DefaultBreakerFailures
	}
	if c.Breaker.Cooldown == 0 {
		c.Breaker.Cooldown = DefaultBreakerCooldown
	}
	if c.RateLimit.RPS > 0 && c.RateLimit.Burst == 0 {
		c.RateLimit.Burst = max(1, int(math.Ceil(c.RateLimit.RPS)))
	}
}

// reservedHeaders are set by the relay on every POST; headers may not replace them. The
// other webhook-* names are refused too: they belong to the Standard Webhooks headers
// (webhook-id, webhook-timestamp, webhook-signature), which a receiver trusts.
var reservedHeaders = []string{"content-type", "content-length", "host", "webhook-id", "webhook-timestamp",
	"webhook-signature", "traceparent", "tracestate", "transfer-encoding", "connection"}

// Validate checks c (after SetDefaults). Its error joins one error per problem, each
// "<key>: <problem>" with the key relative to the destination, and never shows a secret.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if !relay.ValidSourceName(c.Name) {
		bad("name", "%q must match [a-z0-9][a-z0-9_-]{0,62}", c.Name)
	}
	if u, err := url.Parse(c.URL); c.URL == "" {
		bad("url", "required")
	} else if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Fragment != "" {
		bad("url", "must be an absolute http or https URL without a fragment")
	}
	for i, s := range c.Sources {
		if !relay.ValidSourceName(s) {
			bad(fmt.Sprintf("sources[%d]", i), "%q is not a source name", s)
		}
	}
	for i, t := range c.Types {
		if t == "" {
			bad(fmt.Sprintf("types[%d]", i), "empty type glob")
		}
	}
	if len(c.Filter) > relay.MaxFilterLen {
		bad("filter", "at most %d bytes", relay.MaxFilterLen)
	}
	if len(c.Secrets) == 0 {
		bad("secrets", "at least one signing secret (whsec_<base64>) is required")
	}
	for i, s := range c.Secrets {
		if _, err := signingKey(s.Value); err != nil {
			bad(fmt.Sprintf("secrets[%d]", i), "%v", err)
		}
	}
	for name, v := range c.Headers {
		lower := strings.ToLower(name)
		switch {
		case !validHeaderName(name):
			bad("headers", "%q is not a valid header name", name)
		case strings.ContainsAny(v, "\r\n\x00"):
			bad("headers."+name, "value must not contain CR, LF or NUL")
		case strings.HasPrefix(lower, "eventrelay-") || slices.Contains(reservedHeaders, lower):
			bad("headers."+name, "set by the relay on every POST; cannot be replaced")
		case strings.HasPrefix(lower, "webhook-"):
			bad("headers."+name, "webhook-* names are reserved for the Standard Webhooks headers; cannot be set")
		}
	}
	if c.Timeout < 100*time.Millisecond || c.Timeout > 5*time.Minute {
		bad("timeout", "must be 100ms to 5m, got %s", c.Timeout)
	}
	if c.MaxInFlight < 1 || c.MaxInFlight > MaxInFlight {
		bad("max_in_flight", "must be 1 to %d, got %d", MaxInFlight, c.MaxInFlight)
	}
	if c.Ordering != OrderingNone && c.Ordering != OrderingPartitionKey {
		bad("ordering", "must be none or partition_key, got %q", c.Ordering)
	}
	r := c.Retry
	if r.Initial < time.Millisecond {
		bad("retry.initial", "must be at least 1ms, got %s", r.Initial)
	}
	if r.Max < r.Initial || r.Max > relay.MaxAckDeadline {
		bad("retry.max", "must be retry.initial (%s) to %s, got %s", r.Initial, relay.MaxAckDeadline, r.Max)
	}
	if r.Multiplier < 1 || math.IsNaN(r.Multiplier) || math.IsInf(r.Multiplier, 0) {
		bad("retry.multiplier", "must be at least 1")
	}
	if r.MaxAttempts < 1 || r.MaxAttempts > MaxAttempts {
		bad("retry.max_attempts", "must be 1 to %d, got %d", MaxAttempts, r.MaxAttempts)
	}
	if r.MaxAge < time.Second {
		bad("retry.max_age", "must be at least 1s, got %s", r.MaxAge)
	}
	if c.RateLimit.RPS < 0 || math.IsNaN(c.RateLimit.RPS) || math.IsInf(c.RateLimit.RPS, 0) {
		bad("rate_limit.rps", "must be a non-negative number")
	}
	if c.RateLimit.Burst < 0 {
		bad("rate_limit.burst", "must not be negative")
	}
	if c.Breaker.Failures < 1 {
		bad("breaker.failures", "must be at least 1, got %d", c.Breaker.Failures)
	}
	if c.Breaker.Cooldown < 10*time.Millisecond {
		bad("breaker.cooldown", "must be at least 10ms, got %s", c.Breaker.Cooldown)
	}
	return errors.Join(errs...)
}

// signingKey decodes a Standard Webhooks secret: "whsec_" (optional) and base64 of 24 to 64
// bytes. The error never shows the secret.
func signingKey(secret []byte) ([]byte, error) {
	s := strings.TrimPrefix(string(secret), "whsec_")
	key, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, errors.New("must be whsec_ followed by standard base64")
	}
	if len(key) < 24 || len(key) > 64 {
		return nil, fmt.Errorf("key must be 24 to 64 bytes, got %d", len(key))
	}
	return key, nil
}

func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r > 0x7e || r <= ' ' || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r) {
			return false
		}
	}
	return true
}

// redactURL hides the URL's user information and query values, which may carry credentials.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "<invalid url>"
	}
	if u.User != nil {
		u.User = url.User("redacted")
	}
	if u.RawQuery != "" {
		q := u.Query()
		for k := range q {
			q.Set(k, "redacted")
		}
		u.RawQuery = q.Encode()
	}
	return u.String()
}
