package relay

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strings"
	"time"
)

// Defaults applied by SourceConfig.SetDefaults.
const (
	DefaultMaxBodyBytes = 1 << 20 // 1 MiB
	// DefaultSourceMaxConcurrent is a source's default max_concurrent: a quarter of the
	// listener's default http.max_concurrent.
	DefaultSourceMaxConcurrent = 256
	DefaultRetention           = 7 * 24 * time.Hour
	DefaultDedupeWindow        = 72 * time.Hour
	DefaultPartitions          = 1
	MaxPartitions              = 1024
)

// ValidSourceName reports whether name can be a source name: the URL path segment of
// POST /v1/webhooks/{source}, [a-z0-9][a-z0-9_-]{0,62}.
func ValidSourceName(name string) bool {
	return validName(name, 63, "_-", false)
}

// validName reports whether name is 1 to max bytes of lower-case ASCII letters (and upper
// case with upper) and digits, with the bytes of other too after the first. It is
// ValidSourceName's and ValidGroupName's pattern without a regular expression, which took
// more time than anything else in decoding an ack id.
func validName(name string, max int, other string, upper bool) bool {
	if len(name) == 0 || len(name) > max {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', upper && 'A' <= c && c <= 'Z':
		case i > 0 && strings.IndexByte(other, c) >= 0:
		default:
			return false
		}
	}
	return true
}

// Secret is one configured secret or key of a source. Several secrets mean rotation: any may
// match. Value holds the resolved secret bytes (never logged); ID is the optional configured
// id recorded in Event.verification when this secret matched.
type Secret struct {
	ID    string
	Value []byte
}

// String hides the value so a Secret can never be logged by accident.
func (s Secret) String() string { return "Secret{" + s.ID + ":<redacted>}" }

// GoString hides the value from %#v too.
func (s Secret) GoString() string { return s.String() }

// RateLimit is a token bucket: rps tokens per second, up to burst.
type RateLimit struct {
	RPS   float64 `koanf:"rps"`
	Burst int     `koanf:"burst"`
}

// SourceConfig is the configuration of one source, as read from the sources: list of the
// configuration file. Provider-specific options are documented in docs/providers.md.
type SourceConfig struct {
	// Name is the URL path segment and the stream name.
	Name string `koanf:"name"`
	// Provider is the signature scheme, e.g. "hmac", "stripe", "github" (see relay/verify).
	Provider string `koanf:"provider"`
	// URL is the public URL the provider calls, and signs for URL-signing providers (twilio,
	// square, hubspot, hmac with {url}); empty: the URL of the request as received.
	URL string `koanf:"url"`
	// Verify holds the provider's options (secrets, header, tolerance, url, ...): a
	// *verify.Options of relay/verify, which reads them. The domain never does.
	Verify any `koanf:"-"`

	// Limits.
	MaxBodyBytes int64          `koanf:"max_body_bytes"`
	AllowIPs     []netip.Prefix `koanf:"allow_ips"`
	// RateLimit bounds the verified webhooks of the source; requests that fail verification
	// never spend it (they draw from a per-client-address budget of the ingress).
	RateLimit RateLimit `koanf:"rate_limit"`
	// MaxConcurrent bounds the webhooks of this source verified and stored at once (beyond:
	// 503 with Retry-After), so one flooded source cannot take every slot of the listener.
	// Default DefaultSourceMaxConcurrent.
	MaxConcurrent int `koanf:"max_concurrent"`
	// MaxGroups bounds the consumer groups of the source (FAILED_PRECONDITION for one more),
	// default DefaultMaxGroups.
	MaxGroups int `koanf:"max_groups"`

	// Storage.
	Partitions   int    `koanf:"partitions"`
	PartitionKey string `koanf:"partition_key"` // JSON path into the payload, or "header:Name"
	// UnsignedPartitionKey (unsigned_partition_key) accepts a "header:Name" partition key on
	// a source of several partitions. No provider signs such a header, and redeliveries are
	// recognised within a partition, so a captured webhook replayed with another value of the
	// header is stored again in another partition; without it such a source is refused.
	UnsignedPartitionKey bool          `koanf:"unsigned_partition_key"`
	Retention            time.Duration `koanf:"retention"`
	MaxLen               int64         `koanf:"max_len"`
	DedupeWindow         time.Duration `koanf:"dedupe_window"`
}

// SetDefaults fills zero values with the documented defaults.
func (c *SourceConfig) SetDefaults() {
	if c.Provider == "" {
		c.Provider = "hmac"
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.Partitions == 0 {
		c.Partitions = DefaultPartitions
	}
	if c.Retention == 0 && c.MaxLen == 0 {
		c.Retention = DefaultRetention
	}
	if c.DedupeWindow == 0 {
		c.DedupeWindow = DefaultDedupeWindow
	}
	if c.MaxConcurrent == 0 {
		c.MaxConcurrent = DefaultSourceMaxConcurrent
	}
}

// Validate checks the provider-independent settings. Provider options are checked by the
// verifier registry when it builds the source's Verifier. The error joins one error per
// problem, each "<key>: <problem>" with the key relative to the source (as in the
// configuration file), so that a caller can add where the source is.
func (c *SourceConfig) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	switch {
	case c.Name == "":
		bad("name", "required")
	case !ValidSourceName(c.Name):
		bad("name", "%q must match [a-z0-9][a-z0-9_-]{0,62} (it is the URL path segment)", c.Name)
	}
	if c.MaxBodyBytes < 0 {
		bad("max_body_bytes", "must be positive, got %d", c.MaxBodyBytes)
	}
	if c.Partitions < 1 || c.Partitions > MaxPartitions {
		bad("partitions", "must be 1..%d, got %d", MaxPartitions, c.Partitions)
	}
	if name, ok := strings.CutPrefix(c.PartitionKey, "header:"); ok && c.Partitions > 1 && !c.UnsignedPartitionKey {
		bad("partition_key", "header:%s is not covered by the signature, and redeliveries are recognised within a partition: "+
			"a captured webhook replayed with another %s would be stored again; use a JSON path into the signed body, "+
			"or set unsigned_partition_key: true to accept that", name, name)
	}
	if c.Retention < 0 {
		bad("retention", "must not be negative")
	}
	if c.MaxLen < 0 {
		bad("max_len", "must not be negative")
	}
	if c.DedupeWindow < time.Second {
		bad("dedupe_window", "must be at least 1s, got %s", c.DedupeWindow)
	}
	if c.MaxGroups < 0 {
		bad("max_groups", "must not be negative, got %d", c.MaxGroups)
	}
	if c.MaxConcurrent < 0 {
		bad("max_concurrent", "must not be negative, got %d", c.MaxConcurrent)
	}
	if c.RateLimit.RPS < 0 || math.IsNaN(c.RateLimit.RPS) || math.IsInf(c.RateLimit.RPS, 0) {
		bad("rate_limit.rps", "must be a non-negative number")
	}
	if c.RateLimit.Burst < 0 {
		bad("rate_limit.burst", "must not be negative")
	}
	for i, p := range c.AllowIPs {
		if !p.IsValid() {
			bad(fmt.Sprintf("allow_ips[%d]", i), "invalid prefix")
		}
	}
	return errors.Join(errs...)
}

// ValidGroupName reports whether name can be a consumer group or consumer name:
// [A-Za-z0-9][A-Za-z0-9._:-]{0,127}.
func ValidGroupName(name string) bool {
	return validName(name, 128, "._:-", true)
}
