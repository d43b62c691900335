package verify

import (
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/eventrelay/eventrelay/relay"
)

// provider is one entry of the registry: a signature scheme (build) plus what the relay reads
// from the provider's deliveries (extract, keep, handshake).
type provider struct {
	// media is the set of content types the provider sends.
	media media
	// formats are the body formats a source may choose with body_format (0: the provider
	// sends one, media); format is the default among them.
	formats, format media
	// opts are the source options the provider reads besides the secrets and the extraction
	// fields (id_header, id_field, type_header, type_field, subject_field, time_field).
	opts option
	// build returns the authenticator of a source.
	build func(b *builder) (authenticator, error)
	// extract fills the event attributes (ID, Type, Subject, Time) of a verified request.
	extract func(r *request, v *relay.Verified)
	// genericFields makes the extraction fields default to id_field "id" and type_field "type".
	genericFields bool
	// handshake returns the response to a provider handshake, nil for an ordinary event.
	handshake func(r *request, v *relay.Verified, k *key) *relay.Handshake
	// keep lists the headers copied into Verified.Headers when present.
	keep []string
	// secret lists the headers that carry signatures or credentials: never kept.
	secret []string
	// urlSigned marks schemes that sign the public URL (a start-up warning when it is unset).
	urlSigned bool
	// challenger marks Meta: the verifier implements relay.EndpointChallenger.
	challenger bool
}

// registry maps every provider name, aliases included, to its provider. The named providers
// are presets of the one signature engine (engine.go) wherever the scheme fits.
var registry = map[string]*provider{
	"hmac":             genericHMAC,
	"stripe":           stripe,
	"standardwebhooks": standardWebhooks,
	"svix":             svix,
	"github":           github,
	"gitlab":           gitlab,
	"bitbucket":        bitbucket,
	"slack":            slack,
	"twilio":           twilio,
	"shopify":          shopify,
	"square":           square,
	"zoom":             zoom,
	"twitch":           twitch,
	"linear":           linear,
	"paddle":           paddle,
	"hubspot":          hubspot,
	"intercom":         intercom,
	"discord":          discord,
	"sendgrid":         sendgrid,
	"mailgun":          mailgun,
	"meta":             meta,
	"facebook":         meta,
	"instagram":        meta,
	"whatsapp":         meta,
	"basic":            basicAuth,
	"token":            tokenProvider,
}

// Providers returns the names New accepts as SourceConfig.Provider, aliases included
// (svix, facebook, instagram, whatsapp), sorted.
func Providers() []string { return slices.Sorted(maps.Keys(registry)) }

// bodyFormat returns the one body format a source of p reads: its body_format when p offers
// a choice, else what p sends.
func bodyFormat(cfg view, p *provider, name string) (media, error) {
	if cfg.BodyFormat == "" {
		if p.formats != 0 {
			return p.format, nil
		}
		return p.media, nil
	}
	m, ok := formatOf(cfg.BodyFormat)
	switch {
	case !ok:
		return 0, fmt.Errorf("body_format: unknown %q (want json, form, multipart, xml or raw)", cfg.BodyFormat)
	case p.formats == 0 && m == p.media:
		return m, nil // the one format it sends, spelled out
	case p.formats == 0:
		return 0, fmt.Errorf("body_format: provider %q sends only %s", name, p.media.formats())
	case p.formats&m == 0:
		return 0, fmt.Errorf("body_format: provider %q sends %s, not %s", name, p.formats.formats(), cfg.BodyFormat)
	}
	return m, nil
}

// BodyFormats returns the body_format values provider accepts and its default ("" when the
// provider sends one format, which is then the default).
func BodyFormats(provider string) (choices []string, def string) {
	p, ok := registry[normalize(provider)]
	if !ok {
		return nil, ""
	}
	if p.formats == 0 {
		return nil, p.media.formats()
	}
	return strings.Split(p.formats.formats(), "|"), p.format.formats()
}

// AcceptsContentType reports whether provider sends bodies of contentType (parameters such as
// charset are ignored). Verify answers a request of any other content type with
// CodeUnsupportedMedia. Unknown providers accept nothing.
func AcceptsContentType(provider, contentType string) bool {
	p, ok := registry[normalize(provider)]
	return ok && p.media.accepts(contentType)
}

// SourceAccepts reports whether the source reads bodies of contentType: the one format of
// its body_format (or its provider's default). An invalid configuration accepts nothing.
func SourceAccepts(cfg *relay.SourceConfig, contentType string) bool {
	p, ok := registry[normalize(cfg.Provider)]
	if !ok {
		return false
	}
	v, err := viewOf(cfg)
	if err != nil {
		return false
	}
	m, err := bodyFormat(v, p, normalize(cfg.Provider))
	return err == nil && m.accepts(contentType)
}

// New builds the Verifier of a source from cfg.Provider (empty means "hmac") and the options
// the provider reads. An option the provider does not read, or an invalid one, is an error
// naming the option (for example `algorithm: unknown "md5" (want sha1, sha256 or sha512)`); an
// unknown provider is an error listing the known ones.
//
// Secrets are not an error: a source whose secrets are all missing, empty or unparseable still
// builds, and its verifier refuses every request with relay.Unauthenticated(ReasonNoSecret).
// Problems reports such sources so the caller can warn at start-up.
//
// The verifier of meta (and its aliases) also implements relay.EndpointChallenger.
func New(cfg *relay.SourceConfig) (relay.Verifier, error) {
	v, err := verifierOf(cfg)
	if err != nil {
		return nil, err
	}
	if v.p.challenger {
		return &challengeVerifier{v}, nil
	}
	return v, nil
}

// verifierOf builds the verifier of cfg.
func verifierOf(cfg *relay.SourceConfig) (*verifier, error) {
	c, err := viewOf(cfg)
	if err != nil {
		return nil, err
	}
	return build(c)
}

// Problems returns start-up warnings about cfg, each a sentence naming the source: secrets
// that cannot be used (and, when none can, that every request is refused), a URL-signing
// provider without url, a meta source without verify_token, a secret with surrounding
// whitespace. When New would fail, Problems returns that error's text.
func Problems(cfg *relay.SourceConfig) []string {
	c, err := viewOf(cfg)
	if err != nil {
		return []string{err.Error()}
	}
	v, err := build(c)
	if err != nil {
		return []string{fmt.Sprintf("source %q: %v", cfg.Name, err)}
	}
	return v.problems
}

func normalize(name string) string {
	name = strings.ToLower(strings.TrimSpace(name))
	if name == "" {
		return "hmac"
	}
	return name
}

// option is a bit set of the provider-specific Options.
type option uint16

const (
	optHeader option = 1 << iota
	optTolerance
	optURL
	optAlgorithm
	optEncoding
	optPrefix
	optTemplate
	optTimestampHeader
	optQueryParam
	optVerifyToken
	optUnsignedID
)

// options names each provider-specific option as configured and says whether cfg sets it.
var options = []struct {
	opt  option
	name string
	set  func(c view) bool
}{
	{optHeader, "header", func(c view) bool { return c.Header != "" }},
	{optTolerance, "tolerance", func(c view) bool { return c.Tolerance != 0 }},
	{optURL, "url", func(c view) bool { return c.URL != "" }},
	{optAlgorithm, "algorithm", func(c view) bool { return c.Algorithm != "" }},
	{optEncoding, "encoding", func(c view) bool { return c.Encoding != "" }},
	{optPrefix, "prefix", func(c view) bool { return c.Prefix != "" }},
	{optTemplate, "template", func(c view) bool { return c.Template != "" }},
	{optTimestampHeader, "timestamp_header", func(c view) bool { return c.TimestampHeader != "" }},
	{optQueryParam, "query_param", func(c view) bool { return c.QueryParam != "" }},
	{optVerifyToken, "verify_token", func(c view) bool { return c.VerifyToken != nil }},
	{optUnsignedID, "unsigned_id", func(c view) bool { return c.UnsignedID }},
}

// builder carries a source's configuration into a provider's build function.
type builder struct {
	cfg  view
	name string
}

// tolerance returns the source's tolerance, or def when the source sets none.
func (b *builder) tolerance(def time.Duration) time.Duration {
	if b.cfg.Tolerance > 0 {
		return b.cfg.Tolerance
	}
	return def
}

// verifier is the relay.Verifier of one source: the provider's authenticator plus extraction.
type verifier struct {
	name        string
	p           *provider
	media       media // the one body format of the source (body_format)
	auth        authenticator
	usable      bool
	cfgURL      string
	fields      fields
	keep        []string
	verifyToken []byte
	problems    []string
}

func build(cfg view) (*verifier, error) {
	name := normalize(cfg.Provider)
	p, ok := registry[name]
	if !ok {
		return nil, fmt.Errorf("provider: unknown %q (known: %s)", cfg.Provider, strings.Join(Providers(), ", "))
	}
	for _, o := range options {
		if o.set(cfg) && p.opts&o.opt == 0 {
			return nil, fmt.Errorf("%s: not used by provider %q", o.name, name)
		}
	}
	if cfg.Tolerance < 0 {
		return nil, fmt.Errorf("tolerance: must not be negative, got %s", cfg.Tolerance)
	}
	if cfg.URL != "" {
		if err := checkURL(cfg.URL); err != nil {
			return nil, fmt.Errorf("url: %w", err)
		}
	}
	for _, h := range []struct{ name, value string }{
		{"header", cfg.Header}, {"timestamp_header", cfg.TimestampHeader},
		{"id_header", cfg.IDHeader}, {"type_header", cfg.TypeHeader},
	} {
		if h.value != "" && !validHeaderName(h.value) {
			return nil, fmt.Errorf("%s: %q is not a valid header name", h.name, h.value)
		}
	}
	format, err := bodyFormat(cfg, p, name)
	if err != nil {
		return nil, err
	}
	auth, err := p.build(&builder{cfg: cfg, name: name})
	if err != nil {
		return nil, err
	}
	v := &verifier{name: name, p: p, media: format, auth: auth, cfgURL: cfg.URL}
	v.fields = fields{
		idHeader: cfg.IDHeader, idField: cfg.IDField,
		typeHeader: cfg.TypeHeader, typeField: cfg.TypeField,
		subjectField: cfg.SubjectField, timeField: cfg.TimeField,
	}
	if p.genericFields {
		if v.fields.idField == "" {
			v.fields.idField = "id"
		}
		if v.fields.typeField == "" {
			v.fields.typeField = "type"
		}
	}
	v.keep = keepList(cfg, p)
	if cfg.VerifyToken != nil {
		v.verifyToken = slices.Clone(cfg.VerifyToken.Value)
	}
	v.problems, v.usable = problems(cfg, p, auth)
	return v, nil
}

func problems(cfg view, p *provider, auth authenticator) (out []string, usable bool) {
	for i, problem := range auth.keyProblems() {
		s := cfg.Secrets[i]
		label := fmt.Sprintf("secret %d", i)
		if s.ID != "" {
			label += fmt.Sprintf(" (%q)", s.ID)
		}
		if problem != "" {
			out = append(out, fmt.Sprintf("source %q: %s is unusable: %s", cfg.Name, label, problem))
			continue
		}
		usable = true
		if t := strings.TrimSpace(string(s.Value)); len(t) != len(s.Value) {
			out = append(out, fmt.Sprintf("source %q: %s has leading or trailing whitespace (a newline from a file?): it is used as is", cfg.Name, label))
		}
	}
	if !usable {
		out = append(out, fmt.Sprintf("source %q has no usable secret: every request is refused", cfg.Name))
	}
	if p.urlSigned && cfg.URL == "" {
		out = append(out, fmt.Sprintf("source %q: url is not set: the request URL as received is verified, which fails behind a proxy that rewrites scheme, host or path", cfg.Name))
	}
	if p.challenger && (cfg.VerifyToken == nil || len(cfg.VerifyToken.Value) == 0) {
		out = append(out, fmt.Sprintf("source %q: verify_token is not set: GET subscription challenges are refused", cfg.Name))
	}
	return out, usable
}

// Verify implements relay.Verifier.
func (v *verifier) Verify(req *relay.WebhookRequest, now time.Time) (*relay.Verified, error) {
	if !v.usable {
		return nil, relay.Unauthenticated(relay.ReasonNoSecret)
	}
	if req == nil {
		return nil, relay.Unauthenticated(relay.ReasonMissing)
	}
	if !v.media.accepts(req.ContentType) {
		return nil, &relay.Error{Code: relay.CodeUnsupportedMedia,
			Message: fmt.Sprintf("content type not read by this source (want %s; body_format)", v.media)}
	}
	r := &request{WebhookRequest: req, cfgURL: v.cfgURL, jsonOnly: v.media == mediaAny}
	m, err := v.auth.authenticate(r, now)
	if err != nil {
		return nil, err
	}
	out := &relay.Verified{
		Provider:   v.name,
		Scheme:     m.scheme,
		KeyIndex:   m.key.index,
		KeyID:      m.key.id,
		SignedTime: m.signed,
	}
	if v.p.extract != nil {
		v.p.extract(r, out)
	}
	v.fields.apply(r, out)
	for _, h := range v.keep {
		if val := req.Header.Get(h); val != "" {
			if out.Headers == nil {
				out.Headers = make(map[string]string, len(v.keep))
			}
			out.Headers[strings.ToLower(h)] = val
		}
	}
	if v.p.handshake != nil {
		out.Handshake = v.p.handshake(r, out, m.key)
	}
	return out, nil
}

// keepList returns the headers a source keeps: the provider's list plus the configured
// id, type and timestamp headers, never a header that carries a signature or credential.
func keepList(cfg view, p *provider) []string {
	deny := map[string]bool{"Authorization": true, "Proxy-Authorization": true, "Cookie": true}
	for _, h := range p.secret {
		deny[http.CanonicalHeaderKey(h)] = true
	}
	if cfg.Header != "" {
		deny[http.CanonicalHeaderKey(cfg.Header)] = true
	}
	seen := map[string]bool{}
	var keep []string
	for _, h := range append(slices.Clone(p.keep), cfg.IDHeader, cfg.TypeHeader, cfg.TimestampHeader) {
		c := http.CanonicalHeaderKey(h)
		if h == "" || deny[c] || seen[c] {
			continue
		}
		seen[c] = true
		keep = append(keep, c)
	}
	return keep
}

// fields are the extraction options of a source: where ID, Type, Subject and Time come from
// when the source configures them (they override what the provider's extraction found).
type fields struct {
	idHeader, idField     string
	typeHeader, typeField string
	subjectField          string
	timeField             string
}

func (f fields) apply(r *request, v *relay.Verified) {
	if s := firstOf(r, f.idHeader, f.idField); s != "" {
		v.ID = s
	}
	if s := firstOf(r, f.typeHeader, f.typeField); s != "" {
		v.Type = s
	}
	if f.subjectField != "" {
		if s, ok := r.field(f.subjectField); ok {
			v.Subject = s
		}
	}
	if f.timeField != "" {
		if t, ok := r.fieldTime(f.timeField); ok {
			v.Time = t
		}
	}
}

// firstOf returns the value of header, else of the body field, else "".
func firstOf(r *request, header, field string) string {
	if header != "" {
		if s := r.Header.Get(header); s != "" {
			return s
		}
	}
	if field != "" {
		if s, ok := r.field(field); ok {
			return s
		}
	}
	return ""
}

func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("not a URL: %v", err)
	}
	if u.Scheme != "https" && u.Scheme != "http" || u.Host == "" {
		return fmt.Errorf("%q is not an absolute http(s) URL", raw)
	}
	if strings.ContainsAny(raw, "?#") {
		return fmt.Errorf("%q must not carry a query or fragment: the request's query is appended", raw)
	}
	return nil
}

// validHeaderName reports whether s is an HTTP header field name (an RFC 9110 token).
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

// unauthenticated is shorthand for relay.Unauthenticated.
func unauthenticated(reason string) error { return relay.Unauthenticated(reason) }
