package verify

import (
	"crypto"
	"strings"
	"time"

	"github.com/eventrelay/eventrelay/relay"
)

// hubspot: v3 is X-HubSpot-Signature-v3, base64 HMAC-SHA256 over
// {METHOD}{url}{raw}{timestamp} with X-HubSpot-Request-Timestamp in ms, 300 s. Older apps send
// X-HubSpot-Signature with X-HubSpot-Signature-Version v1 (hex SHA-256 of secret+raw) or v2
// (hex SHA-256 of secret+METHOD+url+raw), which sign no timestamp. The URL is tried with
// HubSpot's decoding of %3A %2F %3F %40 %21 %24 %27 %28 %29 %2A %2C %3B, then as received.
var hubspot = &provider{
	media:     mediaJSON,
	opts:      optURL | optTolerance,
	build:     buildHubSpot,
	extract:   bodyFields{id: "eventId", typ: "subscriptionType", subject: "objectId", time: "occurredAt"}.extract, // single-event bodies; arrays are left to the relay
	keep:      []string{"X-HubSpot-Request-Timestamp", "X-HubSpot-Signature-Version"},
	secret:    []string{"X-HubSpot-Signature", "X-HubSpot-Signature-v3"},
	urlSigned: true,
}

var (
	hubspotV3 = &preset{
		alg:    sha256Alg,
		format: headerFormat{header: "X-HubSpot-Signature-v3", enc: encBase64},
		tmpl:   mustTemplate("{method}{url}{body}{timestamp}"),
		ts:     &tsSpec{header: "X-HubSpot-Request-Timestamp", unit: unitMillis, tolerance: 300 * time.Second},
		urls:   hubspotURLs,
	}
	hubspotV2 = &preset{
		alg:    sha256Alg,
		keyed:  true,
		format: headerFormat{header: "X-HubSpot-Signature", enc: encHex},
		tmpl:   mustTemplate("{method}{url}{body}"),
		urls:   hubspotURLs,
	}
	hubspotV1 = &preset{
		alg:    sha256Alg,
		keyed:  true,
		format: headerFormat{header: "X-HubSpot-Signature", enc: encHex},
		tmpl:   tmplBody,
	}
)

var hubspotDecode = strings.NewReplacer(
	"%3A", ":", "%3a", ":", "%2F", "/", "%2f", "/", "%3F", "?", "%3f", "?", "%40", "@",
	"%21", "!", "%24", "$", "%27", "'", "%28", "(", "%29", ")", "%2A", "*", "%2a", "*",
	"%2C", ",", "%2c", ",", "%3B", ";", "%3b", ";")

func hubspotURLs(r *request) []string {
	u := r.signedURL()
	if d := hubspotDecode.Replace(u); d != u {
		return []string{d, u}
	}
	return []string{u}
}

type hubspotAuth struct{ v1, v2, v3 *engine }

func buildHubSpot(b *builder) (authenticator, error) {
	return &hubspotAuth{v1: hubspotV1.engine(b), v2: hubspotV2.engine(b), v3: hubspotV3.engine(b)}, nil
}

// version picks the engine by the headers present: v3 when X-HubSpot-Signature-v3 is set,
// else X-HubSpot-Signature-Version v1 (the default) or v2.
func (a *hubspotAuth) version(r *request) (*engine, error) {
	if r.Header.Get("X-HubSpot-Signature-v3") != "" {
		return a.v3, nil
	}
	switch strings.ToLower(strings.TrimSpace(r.Header.Get("X-HubSpot-Signature-Version"))) {
	case "", "v1":
		return a.v1, nil
	case "v2":
		return a.v2, nil
	case "v3":
		return a.v3, nil
	}
	return nil, unauthenticated(relay.ReasonMalformed)
}

func (a *hubspotAuth) authenticate(r *request, now time.Time) (match, error) {
	if r.Header.Get("X-HubSpot-Signature-v3") == "" && r.Header.Get("X-HubSpot-Signature") == "" {
		return match{}, unauthenticated(relay.ReasonMissing)
	}
	e, err := a.version(r)
	if err != nil {
		return match{}, err
	}
	return e.authenticate(r, now)
}

// sign signs v3, or v1/v2 when the request already names that version.
func (a *hubspotAuth) sign(r *request, now time.Time, priv crypto.Signer) error {
	e := a.v3
	switch strings.ToLower(r.Header.Get("X-HubSpot-Signature-Version")) {
	case "v1":
		e = a.v1
	case "v2":
		e = a.v2
	}
	return e.sign(r, now, priv)
}

func (a *hubspotAuth) keyProblems() []string { return a.v3.keyProblems() }
