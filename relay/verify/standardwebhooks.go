package verify

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"strings"
	"time"

	"github.com/eventrelay/eventrelay/relay"
)

// Standard Webhooks (https://www.standardwebhooks.com), Svix's scheme under its own header
// names: webhook-id, webhook-timestamp and webhook-signature, a space-separated list of
// "v1,<base64 HMAC-SHA256>" and "v1a,<base64 Ed25519>" over {id}.{timestamp}.{raw}, ±5 min.
// Secrets are "whsec_" + base64 (the HMAC key is the decoded bytes) or "whpk_" + base64 (an
// Ed25519 public key, for v1a).

var (
	swHeaders   = swFormat{id: "Webhook-Id", ts: "Webhook-Timestamp", sig: "Webhook-Signature"}
	svixHeaders = swFormat{id: "Svix-Id", ts: "Svix-Timestamp", sig: "Svix-Signature"}
)

// standardWebhooksPreset returns the scheme under headers f, falling back to alt.
func standardWebhooksPreset(f swFormat, alt *swFormat) *preset {
	f.alt = alt
	return &preset{
		alg:        sha256Alg,
		keys:       keyStandard,
		format:     f,
		tmpl:       mustTemplate("{id}.{timestamp}.{body}"),
		ts:         &tsSpec{unit: unitSeconds, tolerance: 5 * time.Minute},
		idHeader:   f.id,
		newID:      func() string { return "msg_" + rand.Text() },
		privateKey: ed25519Signer,
	}
}

var standardWebhooks = &provider{
	media:   mediaJSON,
	opts:    optTolerance,
	build:   standardWebhooksPreset(swHeaders, &svixHeaders).build,
	extract: extractStandardWebhooks,
	keep:    []string{"Webhook-Id", "Webhook-Timestamp", "Svix-Id", "Svix-Timestamp"},
	secret:  []string{"Webhook-Signature", "Svix-Signature"},
}

var svix = &provider{
	media:   mediaJSON,
	opts:    optTolerance,
	build:   standardWebhooksPreset(svixHeaders, &swHeaders).build,
	extract: extractStandardWebhooks,
	keep:    []string{"Svix-Id", "Svix-Timestamp", "Webhook-Id", "Webhook-Timestamp"},
	secret:  []string{"Webhook-Signature", "Svix-Signature"},
}

// extractStandardWebhooks: id from the id header, type and timestamp from the body.
func extractStandardWebhooks(r *request, v *relay.Verified) {
	v.ID = r.Header.Get("Webhook-Id")
	if v.ID == "" {
		v.ID = r.Header.Get("Svix-Id")
	}
	v.Type, _ = r.field("type")
	v.Time, _ = r.fieldTime("timestamp")
}

// swFormat carries id, timestamp and a signature list in three headers.
type swFormat struct {
	id, ts, sig string
	alt         *swFormat // the other header names, used when these carry no signature
}

func (f swFormat) parse(r *request) (carried, error) {
	h := f
	if r.Header.Get(f.sig) == "" && f.alt != nil && r.Header.Get(f.alt.sig) != "" {
		h = *f.alt
	}
	id, ts, list := r.Header.Get(h.id), strings.TrimSpace(r.Header.Get(h.ts)), r.Header.Get(h.sig)
	if id == "" || ts == "" || strings.TrimSpace(list) == "" {
		return carried{}, unauthenticated(relay.ReasonMissing)
	}
	sigs, err := parseSignatureList(list)
	if err != nil {
		return carried{}, err
	}
	return carried{sigs: sigs, ts: ts, id: id, hasTS: true, hasID: true}, nil
}

// parseSignatureList parses "v1,<b64> v1a,<b64> ...": v1 entries are MACs, v1a public-key
// signatures, other versions are ignored. At least one entry must be usable.
func parseSignatureList(list string) ([]sigValue, error) {
	var sigs []sigValue
	for entry := range strings.FieldsSeq(list) {
		version, val, ok := strings.Cut(entry, ",")
		if !ok || version != "v1" && version != "v1a" {
			continue
		}
		b, err := base64.StdEncoding.DecodeString(val)
		if err != nil || len(b) == 0 {
			continue
		}
		if len(sigs) == maxSignatures {
			return nil, unauthenticated(relay.ReasonMalformed)
		}
		sigs = append(sigs, sigValue{b: b, asym: version == "v1a"})
	}
	if len(sigs) == 0 {
		return nil, unauthenticated(relay.ReasonMalformed)
	}
	return sigs, nil
}

func (f swFormat) write(r *request, c carried, sig sigValue) error {
	version := "v1,"
	if sig.asym {
		version = "v1a,"
	}
	r.Header.Set(f.id, c.id)
	r.Header.Set(f.ts, c.ts)
	r.Header.Set(f.sig, version+base64.StdEncoding.EncodeToString(sig.b))
	return nil
}

// parseStandardKey reads "whsec_<base64>" (HMAC key; the prefix is optional) or
// "whpk_<base64>" (Ed25519 public key).
func parseStandardKey(s string) (mac []byte, pub publicKey, problem string) {
	if rest, ok := strings.CutPrefix(s, "whpk_"); ok {
		b, err := base64.StdEncoding.DecodeString(rest)
		if err != nil || len(b) != ed25519.PublicKeySize {
			return nil, nil, "not a Standard Webhooks public key (want whpk_ + base64 of 32 bytes)"
		}
		return nil, ed25519Key(b), ""
	}
	b, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, "whsec_"))
	if err != nil || len(b) == 0 {
		return nil, nil, "not a Standard Webhooks secret (want whsec_ + base64, or whpk_ + base64 for a public key)"
	}
	return b, nil, ""
}
