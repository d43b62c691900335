package verify

import (
	"crypto"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"hash"
	"strconv"
	"strings"
	"time"

	"github.com/eventrelay/eventrelay/relay"
)

// This file is the one signature engine every signing provider is a preset of: where the
// signature (and the signed timestamp and id) are carried, which bytes are signed (a template
// over {body} {timestamp} {id} {url} {method}), the MAC (HMAC, a keyed hash, or a public-key
// signature), the timestamp's unit and tolerance, and which secrets may match.

// authenticator is a source's signature scheme.
type authenticator interface {
	// authenticate checks r at now and returns what matched, or an Unauthenticated error.
	authenticate(r *request, now time.Time) (match, error)
	// sign signs r at now with the first usable secret (priv == nil) or with priv.
	sign(r *request, now time.Time, priv crypto.Signer) error
	// keyProblems returns, per configured secret, why it is unusable ("" when usable).
	keyProblems() []string
}

// match is a successful authentication: the matching key, the scheme and the signed time.
type match struct {
	key    *key
	scheme string
	signed time.Time
}

// algorithm is a hash function selectable by name.
type algorithm struct {
	name string
	new  func() hash.Hash
}

var (
	sha1Alg   = algorithm{"sha1", sha1.New}
	sha256Alg = algorithm{"sha256", sha256.New}
	sha512Alg = algorithm{"sha512", sha512.New}
)

var algorithms = map[string]algorithm{"sha1": sha1Alg, "sha256": sha256Alg, "sha512": sha512Alg}

func (a algorithm) hmac(key, msg []byte) []byte {
	m := hmac.New(a.new, key)
	m.Write(msg)
	return m.Sum(nil)
}

// keyedHash is the plain hash of key followed by msg (HubSpot v1 and v2).
func (a algorithm) keyedHash(key, msg []byte) []byte {
	h := a.new()
	h.Write(key)
	h.Write(msg)
	return h.Sum(nil)
}

// encoding is how a signature is written in a header.
type encoding uint8

const (
	encHex encoding = iota
	encBase64
)

func (e encoding) encode(b []byte) string {
	if e == encBase64 {
		return base64.StdEncoding.EncodeToString(b)
	}
	return hex.EncodeToString(b)
}

// decode accepts hex in either case, or base64 in the standard or URL alphabet, padded or not.
func (e encoding) decode(s string) ([]byte, bool) {
	if s == "" {
		return nil, false
	}
	if e == encHex {
		b, err := hex.DecodeString(s)
		return b, err == nil
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return b, true
		}
	}
	return nil, false
}

// tvar is a template placeholder.
type tvar uint8

const (
	tLiteral tvar = iota
	tBody
	tTimestamp
	tID
	tURL
	tMethod
)

var tvarNames = map[string]tvar{"body": tBody, "timestamp": tTimestamp, "id": tID, "url": tURL, "method": tMethod}

// template is the signed payload: literals and placeholders.
type template []tpart

type tpart struct {
	v   tvar
	lit string
}

// tvals are the values of the placeholders.
type tvals struct {
	body                []byte
	ts, id, url, method string
}

// parseTemplate parses literals and {body} {timestamp} {id} {url} {method}. Braces are
// reserved: a literal brace cannot be expressed.
func parseTemplate(s string) (template, error) {
	var t template
	for s != "" {
		i := strings.IndexAny(s, "{}")
		if i < 0 {
			t = append(t, tpart{lit: s})
			break
		}
		if s[i] == '}' {
			return nil, fmt.Errorf("unmatched \"}\"")
		}
		if i > 0 {
			t = append(t, tpart{lit: s[:i]})
		}
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			return nil, fmt.Errorf("unclosed \"{\"")
		}
		v, ok := tvarNames[s[i+1:i+j]]
		if !ok {
			return nil, fmt.Errorf("unknown placeholder %q (want {body}, {timestamp}, {id}, {url} or {method})", s[i:i+j+1])
		}
		t = append(t, tpart{v: v})
		s = s[i+j+1:]
	}
	return t, nil
}

func mustTemplate(s string) template {
	t, err := parseTemplate(s)
	if err != nil {
		panic("verify: bad built-in template " + s + ": " + err.Error())
	}
	return t
}

func (t template) uses(v tvar) bool {
	for _, p := range t {
		if p.v == v {
			return true
		}
	}
	return false
}

func (t template) expand(v *tvals) []byte {
	n := 0
	for _, p := range t {
		switch p.v {
		case tLiteral:
			n += len(p.lit)
		case tBody:
			n += len(v.body)
		default:
			n += 64
		}
	}
	out := make([]byte, 0, n)
	for _, p := range t {
		switch p.v {
		case tLiteral:
			out = append(out, p.lit...)
		case tBody:
			out = append(out, v.body...)
		case tTimestamp:
			out = append(out, v.ts...)
		case tID:
			out = append(out, v.id...)
		case tURL:
			out = append(out, v.url...)
		case tMethod:
			out = append(out, v.method...)
		}
	}
	return out
}

// tsUnit is how a signed timestamp is written.
type tsUnit uint8

const (
	unitSeconds tsUnit = iota // unix seconds
	unitMillis                // unix milliseconds
	unitRFC3339               // RFC 3339, fractional seconds allowed
	unitAuto                  // unix seconds, unix ms (above 1e11) or RFC 3339
)

func digits(s string) bool {
	if s == "" || len(s) > 18 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func (u tsUnit) parse(s string) (time.Time, bool) {
	switch u {
	case unitSeconds, unitMillis:
		if !digits(s) {
			return time.Time{}, false
		}
		n, _ := strconv.ParseInt(s, 10, 64)
		if u == unitMillis {
			return time.UnixMilli(n).UTC(), true
		}
		return time.Unix(n, 0).UTC(), true
	case unitRFC3339:
		t, err := time.Parse(time.RFC3339Nano, s)
		return t.UTC(), err == nil
	}
	if digits(s) {
		n, _ := strconv.ParseInt(s, 10, 64)
		if n > 1e11 {
			return time.UnixMilli(n).UTC(), true
		}
		return time.Unix(n, 0).UTC(), true
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	return t.UTC(), err == nil
}

func (u tsUnit) format(t time.Time) string {
	switch u {
	case unitMillis:
		return strconv.FormatInt(t.UnixMilli(), 10)
	case unitRFC3339:
		return t.UTC().Format(time.RFC3339Nano)
	}
	return strconv.FormatInt(t.Unix(), 10)
}

// tsSpec says where a scheme's signed timestamp is and how old it may be.
type tsSpec struct {
	header    string // header carrying it; "" when the signature format carries it, or field
	field     string // top-level JSON body field carrying it (Linear)
	unit      tsUnit
	tolerance time.Duration // default; 0 = not checked unless the source sets one
}

// checkTime rejects a signed time further than tol from now, in either direction.
func checkTime(signed, now time.Time, tol time.Duration) error {
	if tol <= 0 {
		return nil
	}
	// Each difference is taken in the direction that makes it positive: time.Sub saturates
	// at the largest Duration instead of overflowing, so a timestamp millennia away is still
	// "more than tol" (negating a saturated negative difference would overflow and pass).
	if signed.Before(now) {
		if now.Sub(signed) > tol {
			return unauthenticated(relay.ReasonStale)
		}
		return nil
	}
	if signed.Sub(now) > tol {
		return unauthenticated(relay.ReasonFuture)
	}
	return nil
}

// sigValue is one candidate signature from a request: a MAC, or a public-key signature.
type sigValue struct {
	b    []byte
	asym bool
}

// maxSignatures bounds the candidate signatures of one request: each costs a comparison per
// key, or a public-key verification.
const maxSignatures = 16

// carried is what a signature format found: candidate signatures and, when the format
// carries them, the signed timestamp and id.
type carried struct {
	sigs         []sigValue
	ts, id       string
	hasTS, hasID bool
}

// sigFormat is how a scheme carries its signature.
type sigFormat interface {
	// parse extracts the candidate signatures (ReasonMissing, ReasonMalformed).
	parse(r *request) (carried, error)
	// write puts sig, and the timestamp and id when the format carries them, into r.
	write(r *request, c carried, sig sigValue) error
}

// headerFormat is one signature in one header: an optional prefix and hex or base64.
type headerFormat struct {
	header string
	prefix string // required prefix, e.g. "sha256=" (optional when lenient)
	// lenient makes prefix optional and also strips alt (the generic hmac scheme).
	lenient bool
	alt     string
	enc     encoding
	asym    bool
}

func (f headerFormat) parse(r *request) (carried, error) {
	v := strings.TrimSpace(r.Header.Get(f.header))
	if v == "" {
		return carried{}, unauthenticated(relay.ReasonMissing)
	}
	sig, ok := f.strip(v)
	if !ok {
		return carried{}, unauthenticated(relay.ReasonMalformed)
	}
	b, ok := f.enc.decode(sig)
	if !ok {
		return carried{}, unauthenticated(relay.ReasonMalformed)
	}
	return carried{sigs: []sigValue{{b: b, asym: f.asym}}}, nil
}

// strip removes the prefix of a header value.
func (f headerFormat) strip(v string) (string, bool) {
	if !f.lenient {
		s, ok := strings.CutPrefix(v, f.prefix)
		return s, ok
	}
	for _, p := range []string{f.prefix, f.alt} {
		if p != "" {
			if s, ok := strings.CutPrefix(v, p); ok {
				return s, true
			}
		}
	}
	return v, true
}

func (f headerFormat) write(r *request, _ carried, sig sigValue) error {
	r.Header.Set(f.header, f.prefix+f.enc.encode(sig.b))
	return nil
}

// key is one configured secret as a scheme uses it.
type key struct {
	index   int
	id      string
	raw     []byte          // the secret as configured
	mac     []byte          // MAC key (or the digest of a token); nil for a public key
	hm      *relay.KeyedMAC // mac as an HMAC key, where the scheme is an HMAC
	pub     publicKey       // public key of an asymmetric scheme
	problem string          // why the secret is unusable; "" when usable
}

// publicKey verifies public-key signatures.
type publicKey interface {
	verify(msg, sig []byte) bool
	scheme() string
}

// signer produces a signature for Sign.
type signer func(msg []byte) (sigValue, error)

// engine is the generic signature scheme.
type engine struct {
	scheme   string                          // Verified.Scheme when a MAC key matches
	mac      func(k *key, msg []byte) []byte // HMAC or keyed hash under k's MAC key
	keys     []key
	format   sigFormat
	tmpl     template
	ts       *tsSpec // nil: no signed timestamp
	idHeader string  // header carrying {id} unless the format carries it
	newID    func() string
	// urls returns the candidate values of {url}; nil means the exact signed URL.
	urls func(r *request) []string
	// messages, when set, builds the signed messages instead of the template (Twilio).
	messages func(r *request, v *tvals) ([][]byte, error)
	// prepare, when set, adjusts a request before Sign signs it (Twilio's bodySHA256).
	prepare func(r *request) error
	// privateKey converts a private key for SignWithKey; nil: the scheme has none.
	privateKey func(priv crypto.Signer) (signer, error)
}

func (e *engine) keyProblems() []string { return problemsOf(e.keys) }

func problemsOf(keys []key) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k.problem
	}
	return out
}

func (e *engine) authenticate(r *request, now time.Time) (match, error) {
	c, err := e.format.parse(r)
	if err != nil {
		return match{}, err
	}
	v := tvals{body: r.Body, method: r.Method, ts: c.ts, id: c.id}
	var signed time.Time
	if e.ts != nil {
		if !c.hasTS {
			switch {
			case e.ts.header != "":
				v.ts = strings.TrimSpace(r.Header.Get(e.ts.header))
			case e.ts.field != "":
				v.ts, _ = r.field(e.ts.field)
			}
			if v.ts == "" {
				return match{}, unauthenticated(relay.ReasonMissing)
			}
		}
		var ok bool
		if signed, ok = e.ts.unit.parse(v.ts); !ok {
			return match{}, unauthenticated(relay.ReasonMalformed)
		}
	}
	if e.tmpl.uses(tID) && !c.hasID {
		if v.id = r.Header.Get(e.idHeader); v.id == "" {
			return match{}, unauthenticated(relay.ReasonMissing)
		}
	}
	msgs, err := e.messagesFor(r, &v)
	if err != nil {
		return match{}, err
	}
	k, scheme := e.find(msgs, c.sigs)
	if k == nil {
		return match{}, unauthenticated(relay.ReasonMismatch)
	}
	if e.ts != nil {
		if err := checkTime(signed, now, e.ts.tolerance); err != nil {
			return match{}, err
		}
	}
	return match{key: k, scheme: scheme, signed: signed}, nil
}

// find returns the first key that produced one of sigs over one of msgs.
func (e *engine) find(msgs [][]byte, sigs []sigValue) (*key, string) {
	for i := range e.keys {
		k := &e.keys[i]
		if k.problem != "" {
			continue
		}
		for _, m := range msgs {
			if k.pub != nil {
				for _, s := range sigs {
					if s.asym && k.pub.verify(m, s.b) {
						return k, k.pub.scheme()
					}
				}
				continue
			}
			var mac []byte
			for _, s := range sigs {
				if s.asym {
					continue
				}
				if mac == nil {
					mac = e.mac(k, m)
				}
				if hmac.Equal(mac, s.b) {
					return k, e.scheme
				}
			}
		}
	}
	return nil, ""
}

func (e *engine) messagesFor(r *request, v *tvals) ([][]byte, error) {
	if e.messages != nil {
		return e.messages(r, v)
	}
	if !e.tmpl.uses(tURL) {
		return [][]byte{e.tmpl.expand(v)}, nil
	}
	urls := []string{r.signedURL()}
	if e.urls != nil {
		urls = e.urls(r)
	}
	if len(urls) == 0 || urls[0] == "" {
		return nil, unauthenticated(relay.ReasonMissing)
	}
	msgs := make([][]byte, 0, len(urls))
	for _, u := range urls {
		v.url = u
		msgs = append(msgs, e.tmpl.expand(v))
	}
	return msgs, nil
}

func (e *engine) sign(r *request, now time.Time, priv crypto.Signer) error {
	s, err := e.signer(priv)
	if err != nil {
		return err
	}
	if e.prepare != nil {
		if err := e.prepare(r); err != nil {
			return err
		}
	}
	var c carried
	if e.ts != nil {
		c.ts, c.hasTS = e.ts.unit.format(now), true
		switch {
		case e.ts.header != "":
			r.Header.Set(e.ts.header, c.ts)
		case e.ts.field != "":
			b, err := setTopLevel(r.Body, e.ts.field, []byte(c.ts))
			if err != nil {
				return err
			}
			r.setBody(b)
		}
	}
	if e.tmpl.uses(tID) {
		if e.idHeader != "" {
			c.id = r.Header.Get(e.idHeader)
		}
		if c.id == "" {
			c.id = e.newID()
		}
		c.hasID = true
		if e.idHeader != "" {
			r.Header.Set(e.idHeader, c.id)
		}
	}
	v := tvals{body: r.Body, method: r.Method, ts: c.ts, id: c.id}
	msgs, err := e.messagesFor(r, &v)
	if err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	sig, err := s(msgs[0])
	if err != nil {
		return err
	}
	return e.format.write(r, c, sig)
}

// signer returns the signer of Sign (priv == nil: the first usable MAC secret) or SignWithKey.
func (e *engine) signer(priv crypto.Signer) (signer, error) {
	if priv != nil {
		if e.privateKey == nil {
			return nil, errNoPrivateKey
		}
		return e.privateKey(priv)
	}
	for _, k := range e.keys {
		if k.problem == "" && k.mac != nil {
			return func(msg []byte) (sigValue, error) { return sigValue{b: e.mac(&k, msg)}, nil }, nil
		}
	}
	if e.privateKey != nil {
		return nil, ErrPrivateKeyRequired
	}
	return nil, errNoSecret
}

// preset is the declarative form of an engine: a named provider's fixed settings.
type preset struct {
	alg        algorithm
	keyed      bool // plain hash of secret||message instead of HMAC
	keys       keyKind
	format     sigFormat
	tmpl       template
	ts         *tsSpec
	idHeader   string
	newID      func() string
	urls       func(r *request) []string
	messages   func(r *request, v *tvals) ([][]byte, error)
	prepare    func(r *request) error
	privateKey func(priv crypto.Signer) (signer, error)
}

// engine instantiates the preset for a source: its secrets and tolerance.
func (p *preset) engine(b *builder) *engine {
	e := &engine{
		scheme:     "hmac-" + p.alg.name,
		mac:        func(k *key, msg []byte) []byte { return k.hm.Sum(nil, msg) },
		keys:       parseKeys(b.cfg.Secrets, p.keys),
		format:     p.format,
		tmpl:       p.tmpl,
		idHeader:   p.idHeader,
		newID:      p.newID,
		urls:       p.urls,
		messages:   p.messages,
		prepare:    p.prepare,
		privateKey: p.privateKey,
	}
	if p.keyed {
		e.scheme = p.alg.name
		e.mac = func(k *key, msg []byte) []byte { return p.alg.keyedHash(k.mac, msg) }
	} else {
		for i := range e.keys {
			if k := &e.keys[i]; k.mac != nil {
				k.hm = relay.NewKeyedMAC(p.alg.new, k.mac)
			}
		}
	}
	if e.newID == nil {
		e.newID = randomHex
	}
	if p.ts != nil {
		ts := *p.ts
		ts.tolerance = b.tolerance(ts.tolerance)
		e.ts = &ts
	}
	return e
}

func (p *preset) build(b *builder) (authenticator, error) { return p.engine(b), nil }
