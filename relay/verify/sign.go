package verify

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/eventrelay/eventrelay/relay"
)

// ErrPrivateKeyRequired is returned by Sign for a source whose secrets are public keys
// (discord, sendgrid, and standardwebhooks or svix with only whpk_ keys): use SignWithKey.
var ErrPrivateKeyRequired = errors.New("verify: the provider signs with a private key: use SignWithKey")

var (
	errNoPrivateKey = errors.New("verify: the provider signs with shared secrets: use Sign")
	errNoSecret     = errors.New("verify: the source has no usable secret to sign with")
)

// Sign signs req as the source's provider would, so that New(cfg).Verify(req, now) accepts
// it: it is the signer of tests and of `relayctl send`. It signs with the first usable secret
// of cfg and writes what the provider writes:
//
//   - the signature header, and the timestamp and id headers the scheme signs (an id header
//     already set on req is kept, else a random id is generated: webhook-id, Twitch message
//     id);
//   - for URL-signing schemes (twilio, square, hubspot, hmac with {url}) it signs cfg.URL plus
//     req.RawQuery, or req.URL when cfg.URL is empty; for twilio with a JSON body it first
//     appends bodySHA256=<hex> to req.RawQuery (and req.URL), as Twilio does;
//   - hubspot: v3, or v1/v2 when req already carries X-HubSpot-Signature-Version: v1 or v2;
//   - body-signed schemes rewrite req.Body: mailgun sets the top-level "signature" object
//     {timestamp, token, signature} of a JSON body (or the timestamp, token and signature
//     fields of a urlencoded form body; multipart bodies are refused) and writes no header;
//     linear sets the top-level "webhookTimestamp" (ms) of the JSON body, then signs it;
//   - token and basic set the credential (header, or query parameter in req.RawQuery/req.URL);
//     gitlab sets X-Gitlab-Token.
//
// A request without ContentType gets the provider's primary one (and the Content-Type
// header), without Method "POST". For providers whose secrets are public keys, Sign returns
// ErrPrivateKeyRequired.
func Sign(cfg *relay.SourceConfig, req *relay.WebhookRequest, now time.Time) error {
	return sign(cfg, req, now, nil)
}

// SignWithKey signs req like Sign, with the private key of a public-key scheme:
// an ed25519.PrivateKey for discord and for the v1a signatures of standardwebhooks and svix, an
// ECDSA P-256 *ecdsa.PrivateKey for sendgrid. Options.Secrets are not used (they hold the public
// keys the verifier checks against). See ParsePrivateKey and EncodePublicKey.
func SignWithKey(cfg *relay.SourceConfig, key crypto.Signer, req *relay.WebhookRequest, now time.Time) error {
	if key == nil {
		return errors.New("verify: SignWithKey: nil key")
	}
	return sign(cfg, req, now, key)
}

func sign(src *relay.SourceConfig, req *relay.WebhookRequest, now time.Time, priv crypto.Signer) error {
	v, err := verifierOf(src)
	if err != nil {
		return err
	}
	if req == nil {
		return errors.New("verify: Sign: nil request")
	}
	if req.Header == nil {
		req.Header = http.Header{}
	}
	if req.Method == "" {
		req.Method = http.MethodPost
	}
	if req.ContentType == "" {
		if ct := v.media.primary(); ct != "" {
			req.ContentType = ct
			req.Header.Set("Content-Type", ct)
		}
	}
	if !v.media.accepts(req.ContentType) {
		return fmt.Errorf("verify: Sign: source of provider %s reads %s, not %q", v.name, v.media, req.ContentType)
	}
	return v.auth.sign(&request{WebhookRequest: req, cfgURL: v.cfgURL}, now, priv)
}

// randomHex returns 32 random hex digits.
func randomHex() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// randomUUID returns a random (version 4) UUID.
func randomUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// setTopLevel sets the top-level member name of a JSON object body to the raw JSON value,
// replacing its value where it is or inserting it first, and leaves every other byte as is.
// name is valid UTF-8 (callers pass constants).
func setTopLevel(body []byte, name string, value []byte) ([]byte, error) {
	errNotObject := errors.New("sign: the body is not a JSON object")
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
	}
	if !json.Valid(body) {
		return nil, errNotObject
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errNotObject
	}
	members := 0
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, errNotObject
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, errNotObject
		}
		members++
		if tok == name {
			end := int(dec.InputOffset())
			start := end - len(raw)
			return concat(body[:start], value, body[end:]), nil
		}
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return nil, errNotObject
	}
	open := bytes.IndexByte(body, '{') + 1
	k, _ := json.Marshal(name)
	member := concat(k, []byte(":"), value)
	if members > 0 {
		member = append(member, ',')
	}
	return concat(body[:open], member, body[open:]), nil
}

func concat(parts ...[]byte) []byte {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	out := make([]byte, 0, n)
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// setPairs returns a urlencoded string without the pairs named in set, followed by set's
// pairs in the order of names. Other pairs keep their bytes and order.
func setPairs(raw string, names []string, set map[string]string) string {
	var out []string
	for pair := range strings.SplitSeq(raw, "&") {
		if pair == "" {
			continue
		}
		k, _, _ := strings.Cut(pair, "=")
		if uk, err := url.QueryUnescape(k); err == nil {
			if _, replaced := set[uk]; replaced {
				continue
			}
		}
		out = append(out, pair)
	}
	for _, n := range names {
		out = append(out, url.QueryEscape(n)+"="+url.QueryEscape(set[n]))
	}
	return strings.Join(out, "&")
}

// setQuery sets req.RawQuery to q and keeps req.URL's query in step.
func setQuery(r *request, q string) {
	r.RawQuery = q
	if r.URL != "" {
		base, _, _ := strings.Cut(r.URL, "?")
		r.URL = base + "?" + q
	}
}

// CredentialHeaders returns the names (canonical) of the request headers that carry cfg's
// credential or a signature made with its shared secret, as Sign writes them: the token, the
// HMAC signature headers. The signed timestamp and id headers are not among them, nor are
// signatures made with a private key (a source whose secrets are public keys returns none),
// nor credentials carried in the query or the body (mailgun). The ingress redacts these
// headers in what it records of refused requests, whatever their names.
func CredentialHeaders(cfg *relay.SourceConfig) []string {
	v, err := verifierOf(cfg)
	if err != nil {
		return nil
	}
	req := &relay.WebhookRequest{Header: http.Header{}, URL: "https://relay.invalid/v1/webhooks/" + cfg.Name, Body: []byte("{}")}
	if sign(cfg, req, time.Now(), nil) != nil {
		return nil
	}
	visible := map[string]bool{"Content-Type": true}
	var engines []*engine
	switch a := v.auth.(type) {
	case *engine:
		engines = []*engine{a}
	case *hubspotAuth:
		engines = []*engine{a.v1, a.v2, a.v3}
	}
	for _, e := range engines {
		if e.ts != nil && e.ts.header != "" {
			visible[http.CanonicalHeaderKey(e.ts.header)] = true
		}
		if e.idHeader != "" {
			visible[http.CanonicalHeaderKey(e.idHeader)] = true
		}
	}
	var out []string
	for name := range req.Header {
		if !visible[name] {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}
