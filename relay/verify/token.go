package verify

import (
	"crypto"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/url"
	"strings"
	"time"

	"github.com/eventrelay/eventrelay/relay"
)

// Static credentials: a token in a header or query parameter, HTTP Basic, GitLab's
// X-Gitlab-Token. They authenticate the sender, not the body. Comparisons are of SHA-256
// digests, in constant time, so neither the content nor the length of a secret leaks.

// tokenProvider: the token is in cfg.Header (default Authorization, where "Bearer <token>"
// is accepted too) or in the query parameter cfg.QueryParam; with both set, either may carry it.
var tokenProvider = &provider{
	media:         mediaAny,
	formats:       mediaJSON | mediaForm | mediaAny,
	format:        mediaAny, // the token proves the sender, not the body
	opts:          optHeader | optQueryParam,
	build:         buildToken,
	genericFields: true,
}

// basicAuth: Authorization: Basic; each secret is "user:password".
var basicAuth = &provider{
	media:   mediaAny,
	formats: mediaJSON | mediaForm | mediaAny,
	format:  mediaAny,
	build: func(b *builder) (authenticator, error) {
		return &tokenAuth{scheme: "basic", header: "Authorization", basic: true,
			keys: parseKeys(b.cfg.Secrets, keyBasic)}, nil
	},
	genericFields: true,
}

func buildToken(b *builder) (authenticator, error) {
	a := &tokenAuth{scheme: "token", header: b.cfg.Header, query: b.cfg.QueryParam,
		keys: parseKeys(b.cfg.Secrets, keyToken)}
	if a.header == "" && a.query == "" {
		a.header = "Authorization"
	}
	return a, nil
}

// gitlab: X-Gitlab-Token (the webhook's secret token) or, for webhooks with a signing
// token, the Standard Webhooks headers (webhook-id = Idempotency-Key). Either proves the
// sender; each secret is tried as both.
var gitlab = &provider{
	media: mediaJSON,
	opts:  optTolerance,
	build: func(b *builder) (authenticator, error) {
		sw := standardWebhooksPreset(swHeaders, nil).engine(b)
		sw.privateKey = nil
		tok := &tokenAuth{scheme: "token", header: "X-Gitlab-Token", keys: parseKeys(b.cfg.Secrets, keyToken)}
		return anyOf{tok, sw}, nil
	},
	extract: func(r *request, v *relay.Verified) {
		v.Type = r.Header.Get("X-Gitlab-Event")
		v.ID = r.Header.Get("Idempotency-Key")
		if v.ID == "" {
			v.ID = r.Header.Get("X-Gitlab-Event-UUID")
		}
	},
	keep: []string{"X-Gitlab-Event", "X-Gitlab-Instance", "X-Gitlab-Webhook-UUID", "X-Gitlab-Event-UUID",
		"Idempotency-Key", "Webhook-Id", "Webhook-Timestamp"},
	secret: []string{"X-Gitlab-Token", "Webhook-Signature"},
}

type tokenAuth struct {
	scheme string // "token" or "basic"
	header string // header carrying the token ("" for query only)
	query  string // query parameter carrying the token
	basic  bool   // Authorization: Basic base64(user:password)
	keys   []key
}

func (a *tokenAuth) keyProblems() []string { return problemsOf(a.keys) }

// presented returns the credential the request carries.
func (a *tokenAuth) presented(r *request) (string, error) {
	if a.basic {
		h := strings.TrimSpace(r.Header.Get("Authorization"))
		if h == "" {
			return "", unauthenticated(relay.ReasonMissing)
		}
		scheme, cred, _ := strings.Cut(h, " ")
		if !strings.EqualFold(scheme, "Basic") {
			return "", unauthenticated(relay.ReasonMalformed)
		}
		b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
		if err != nil || !strings.Contains(string(b), ":") {
			return "", unauthenticated(relay.ReasonMalformed)
		}
		return string(b), nil
	}
	if a.header != "" {
		if v := strings.TrimSpace(r.Header.Get(a.header)); v != "" {
			if strings.EqualFold(a.header, "Authorization") {
				scheme, tok, ok := strings.Cut(v, " ")
				if ok && strings.EqualFold(scheme, "Bearer") {
					v = strings.TrimSpace(tok)
				}
			}
			return v, nil
		}
	}
	if a.query != "" {
		vals, _ := url.ParseQuery(r.RawQuery)
		if v := vals.Get(a.query); v != "" {
			return v, nil
		}
	}
	return "", unauthenticated(relay.ReasonMissing)
}

func (a *tokenAuth) authenticate(r *request, _ time.Time) (match, error) {
	p, err := a.presented(r)
	if err != nil {
		return match{}, err
	}
	d := sha256.Sum256([]byte(p))
	var found *key
	for i := range a.keys {
		k := &a.keys[i]
		if k.problem == "" && subtle.ConstantTimeCompare(d[:], k.mac) == 1 && found == nil {
			found = k
		}
	}
	if found == nil {
		return match{}, unauthenticated(relay.ReasonMismatch)
	}
	return match{key: found, scheme: a.scheme}, nil
}

// sign sets the first usable secret as the credential: the header (Bearer for
// Authorization), else the query parameter.
func (a *tokenAuth) sign(r *request, _ time.Time, priv crypto.Signer) error {
	if priv != nil {
		return errNoPrivateKey
	}
	for _, k := range a.keys {
		if k.problem != "" {
			continue
		}
		tok := string(k.raw)
		switch {
		case a.basic:
			r.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString(k.raw))
		case a.header != "":
			if strings.EqualFold(a.header, "Authorization") {
				tok = "Bearer " + tok
			}
			r.Header.Set(a.header, tok)
		default:
			setQuery(r, setPairs(r.RawQuery, []string{a.query}, map[string]string{a.query: tok}))
		}
		return nil
	}
	return errNoSecret
}

// anyOf accepts a request any of its authenticators accepts; the first signs.
type anyOf []authenticator

func (as anyOf) authenticate(r *request, now time.Time) (match, error) {
	var first error
	for _, a := range as {
		m, err := a.authenticate(r, now)
		if err == nil {
			return m, nil
		}
		if first == nil || relay.ErrorReason(first) == relay.ReasonMissing {
			first = err
		}
	}
	if first == nil {
		first = unauthenticated(relay.ReasonMissing)
	}
	return match{}, first
}

func (as anyOf) sign(r *request, now time.Time, priv crypto.Signer) error {
	if len(as) == 0 {
		return errors.New("sign: no scheme")
	}
	return as[0].sign(r, now, priv)
}

// keyProblems: a secret is usable when any authenticator can use it.
func (as anyOf) keyProblems() []string {
	var out []string
	for i, a := range as {
		ps := a.keyProblems()
		if i == 0 {
			out = ps
			continue
		}
		for j := range out {
			if ps[j] == "" {
				out[j] = ""
			}
		}
	}
	return out
}
