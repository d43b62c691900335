package verify

import (
	"fmt"
	"time"

	"github.com/eventrelay/eventrelay/relay"
)

// Options are a source's provider options: what New and Sign read besides the provider's
// name. A source carries them in relay.SourceConfig.Verify, which the domain holds without
// reading (see OptionsOf). Which options a provider reads is in docs/providers.md; New
// refuses an option the provider does not read.
type Options struct {
	// Secrets are the shared secrets or public keys; several = rotation.
	Secrets []relay.Secret `koanf:"secrets"`

	// Header overrides the provider's signature header (hmac default X-Signature; token scheme's header).
	Header string `koanf:"header"`
	// Tolerance for signed timestamps; 0 = the provider's default.
	Tolerance time.Duration `koanf:"tolerance"`
	// Generic hmac options.
	Algorithm       string `koanf:"algorithm"`        // sha1 | sha256 (default) | sha512
	Encoding        string `koanf:"encoding"`         // hex (default) | base64
	Prefix          string `koanf:"prefix"`           // e.g. "sha256="
	Template        string `koanf:"template"`         // signed payload template over {body} {timestamp} {id} {url} {method}; default "{body}"
	TimestampHeader string `koanf:"timestamp_header"` // header carrying the signed timestamp
	IDHeader        string `koanf:"id_header"`        // header carrying the event id
	IDField         string `koanf:"id_field"`         // JSON field (dotted path) carrying the event id; default "id"
	TypeField       string `koanf:"type_field"`       // JSON field (dotted path) carrying the event type; default "type"
	TypeHeader      string `koanf:"type_header"`      // header carrying the event type
	SubjectField    string `koanf:"subject_field"`    // JSON field (dotted path) carrying the subject
	TimeField       string `koanf:"time_field"`       // JSON field carrying the event time (unix seconds, ms or RFC 3339)
	// QueryParam names the query parameter carrying the token for the token scheme.
	QueryParam string `koanf:"query_param"`
	// BodyFormat (body_format) is the one body format the source accepts, for providers
	// that offer a choice: json, form, multipart, xml or raw (any content type, fields read
	// only from a JSON body). A request in another format gets 415: the signature covers the
	// body bytes, not the Content-Type, so the format must not decide how they are read.
	// Empty: the provider's default (see verify.BodyFormats).
	BodyFormat string `koanf:"body_format"`
	// UnsignedID (unsigned_id) accepts an id_header the signature does not cover (generic
	// hmac with a template without {id}): anyone replaying a captured request with another
	// id then gets it stored again. Without it such a configuration is refused.
	UnsignedID bool `koanf:"unsigned_id"`
	// VerifyToken answers Meta's GET hub.verify_token challenge.
	VerifyToken *relay.Secret `koanf:"verify_token"`
}

// OptionsOf returns cfg's provider options, setting cfg.Verify to empty Options first when it
// holds none (so the result can be filled in). It panics when cfg.Verify holds anything but
// *Options.
func OptionsOf(cfg *relay.SourceConfig) *Options {
	if cfg.Verify == nil {
		cfg.Verify = &Options{}
	}
	return cfg.Verify.(*Options)
}

// view is what the package reads of a source: the domain's settings (name, provider) and
// the provider options, each field by its own name.
type view struct {
	*relay.SourceConfig
	*Options
}

// viewOf returns cfg's view; cfg.Verify must be nil (no options) or *Options.
func viewOf(cfg *relay.SourceConfig) (view, error) {
	if cfg == nil {
		return view{}, fmt.Errorf("provider: no source configuration")
	}
	switch o := cfg.Verify.(type) {
	case nil:
		return view{cfg, &Options{}}, nil
	case *Options:
		if o == nil {
			o = &Options{}
		}
		return view{cfg, o}, nil
	}
	return view{}, fmt.Errorf("source %q: provider options of type %T, want *verify.Options", cfg.Name, cfg.Verify)
}

// Clone returns a copy of o that shares nothing with it (a relay.SourceConfig copied by value
// shares its Options: clone them before changing the copy's).
func (o *Options) Clone() *Options {
	c := *o
	c.Secrets = append([]relay.Secret(nil), o.Secrets...)
	if o.VerifyToken != nil {
		t := *o.VerifyToken
		c.VerifyToken = &t
	}
	return &c
}
