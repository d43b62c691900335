package verify

import (
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/eventrelay/eventrelay/relay"
)

// The generic "hmac" scheme and the named providers that are plain presets of it.

// DefaultTolerance is the tolerance of a generic hmac source with a timestamp_header.
const DefaultTolerance = 5 * time.Minute

// genericHMAC is the scheme of hand-written senders, entirely configured by the source.
var genericHMAC = &provider{
	media:   mediaAny,
	formats: mediaJSON | mediaForm | mediaAny,
	format:  mediaJSON,
	opts: optHeader | optTolerance | optURL | optAlgorithm | optEncoding | optPrefix |
		optTemplate | optTimestampHeader | optUnsignedID,
	build:         buildGeneric,
	genericFields: true,
	secret:        []string{"X-Signature"},
}

func buildGeneric(b *builder) (authenticator, error) {
	c := b.cfg
	alg := sha256Alg
	if c.Algorithm != "" {
		a, ok := algorithms[strings.ToLower(c.Algorithm)]
		if !ok {
			return nil, fmt.Errorf("algorithm: unknown %q (want sha1, sha256 or sha512)", c.Algorithm)
		}
		alg = a
	}
	enc := encHex
	switch strings.ToLower(c.Encoding) {
	case "", "hex":
	case "base64":
		enc = encBase64
	default:
		return nil, fmt.Errorf("encoding: unknown %q (want hex or base64)", c.Encoding)
	}
	if !validPrefix(c.Prefix) {
		return nil, fmt.Errorf("prefix: %q begins with whitespace or holds control characters, which a header value cannot", c.Prefix)
	}
	header := c.Header
	if header == "" {
		header = "X-Signature"
	}
	src := c.Template
	if src == "" {
		src = "{body}"
		if c.TimestampHeader != "" {
			src = "{timestamp}.{body}"
		}
	}
	tmpl, err := parseTemplate(src)
	if err != nil {
		return nil, fmt.Errorf("template: %w", err)
	}
	switch {
	case !tmpl.uses(tBody):
		return nil, fmt.Errorf("template: %q does not sign {body}: the body would not be authenticated", src)
	case tmpl.uses(tTimestamp) && c.TimestampHeader == "":
		return nil, fmt.Errorf("template: {timestamp} needs timestamp_header")
	case c.TimestampHeader != "" && !tmpl.uses(tTimestamp):
		return nil, fmt.Errorf("timestamp_header: set but the template does not sign {timestamp}")
	case tmpl.uses(tID) && c.IDHeader == "":
		return nil, fmt.Errorf("template: {id} needs id_header")
	case c.Tolerance != 0 && c.TimestampHeader == "":
		return nil, fmt.Errorf("tolerance: set but no timestamp_header")
	case c.URL != "" && !tmpl.uses(tURL):
		return nil, fmt.Errorf("url: set but the template does not sign {url}")
	case c.IDHeader != "" && !tmpl.uses(tID) && !c.UnsignedID:
		return nil, fmt.Errorf("id_header: %s is not covered by the signature (the template %q does not sign {id}): "+
			"a captured request replayed with another id would be stored again; sign {id} in the template, "+
			"or set unsigned_id: true to accept that", c.IDHeader, src)
	case c.UnsignedID && (c.IDHeader == "" || tmpl.uses(tID)):
		return nil, fmt.Errorf("unsigned_id: set but there is no unsigned id_header")
	}
	p := &preset{
		alg:      alg,
		format:   headerFormat{header: header, prefix: c.Prefix, lenient: true, alt: alg.name + "=", enc: enc},
		tmpl:     tmpl,
		idHeader: c.IDHeader,
	}
	if c.TimestampHeader != "" {
		p.ts = &tsSpec{header: c.TimestampHeader, unit: unitAuto, tolerance: DefaultTolerance}
	}
	return p.build(b)
}

// validPrefix reports whether a signature prefix can begin a header value: HTTP strips
// leading whitespace from values, and values hold no control characters but tab.
func validPrefix(p string) bool {
	if strings.TrimLeftFunc(p, unicode.IsSpace) != p {
		return false
	}
	for _, c := range p {
		if c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

var tmplBody = mustTemplate("{body}")

// hubSignature256 is the "X-Hub-Signature-256: sha256=<hex>" scheme of GitHub and Meta.
var hubSignature256 = &preset{
	alg:    sha256Alg,
	format: headerFormat{header: "X-Hub-Signature-256", prefix: "sha256=", enc: encHex},
	tmpl:   tmplBody,
}

var github = &provider{
	media:   mediaJSON | mediaForm,
	formats: mediaJSON | mediaForm, // the webhook's "Content type" setting
	format:  mediaJSON,
	build:   hubSignature256.build,
	extract: extractGitHub,
	keep: []string{"X-GitHub-Event", "X-GitHub-Delivery", "X-GitHub-Hook-ID",
		"X-GitHub-Hook-Installation-Target-ID", "X-GitHub-Hook-Installation-Target-Type"},
	secret: []string{"X-Hub-Signature-256", "X-Hub-Signature"},
}

// extractGitHub: type X-GitHub-Event, plus "." + the body's action when present
// ("issues.opened"); id X-GitHub-Delivery.
func extractGitHub(r *request, v *relay.Verified) {
	v.ID = r.Header.Get("X-GitHub-Delivery")
	v.Type = dotted(r.Header.Get("X-GitHub-Event"), r, "action")
}

// dotted returns base + "." + the body field when both are present, else base.
func dotted(base string, r *request, field string) string {
	if a, ok := r.field(field); ok && a != "" && base != "" {
		return base + "." + a
	}
	return base
}

var meta = &provider{
	media:      mediaJSON,
	opts:       optVerifyToken,
	build:      hubSignature256.build,
	extract:    bodyFields{typ: "object"}.extract,
	secret:     []string{"X-Hub-Signature-256", "X-Hub-Signature"},
	challenger: true,
}

var bitbucket = &provider{
	media: mediaJSON,
	build: (&preset{
		alg:    sha256Alg,
		format: headerFormat{header: "X-Hub-Signature", prefix: "sha256=", enc: encHex},
		tmpl:   tmplBody,
	}).build,
	extract: func(r *request, v *relay.Verified) {
		v.ID = r.Header.Get("X-Request-UUID")
		v.Type = r.Header.Get("X-Event-Key")
	},
	keep:   []string{"X-Event-Key", "X-Request-UUID", "X-Hook-UUID", "X-Attempt-Number"},
	secret: []string{"X-Hub-Signature"},
}

var intercom = &provider{
	media: mediaJSON,
	build: (&preset{
		alg:    sha1Alg,
		format: headerFormat{header: "X-Hub-Signature", prefix: "sha1=", enc: encHex},
		tmpl:   tmplBody,
	}).build,
	extract: bodyFields{id: "id", typ: "topic", subject: "data.item.id", time: "created_at"}.extract,
	secret:  []string{"X-Hub-Signature"},
}

var shopify = &provider{
	media:   mediaJSON | mediaXML,
	formats: mediaJSON | mediaXML, // the webhook's format setting
	format:  mediaJSON,
	build: (&preset{
		alg:    sha256Alg,
		format: headerFormat{header: "X-Shopify-Hmac-Sha256", enc: encBase64},
		tmpl:   tmplBody,
	}).build,
	extract: func(r *request, v *relay.Verified) {
		v.ID = r.Header.Get("X-Shopify-Webhook-Id")
		v.Type = r.Header.Get("X-Shopify-Topic")
		if t, ok := unitRFC3339.parse(r.Header.Get("X-Shopify-Triggered-At")); ok {
			v.Time = t
		}
		v.Subject, _ = r.field("admin_graphql_api_id")
	},
	keep: []string{"X-Shopify-Topic", "X-Shopify-Webhook-Id", "X-Shopify-Event-Id", "X-Shopify-Shop-Domain",
		"X-Shopify-API-Version", "X-Shopify-Triggered-At"},
	secret: []string{"X-Shopify-Hmac-Sha256"},
}

var square = &provider{
	media: mediaJSON,
	opts:  optURL,
	build: (&preset{
		alg:    sha256Alg,
		format: headerFormat{header: "X-Square-Hmacsha256-Signature", enc: encBase64},
		tmpl:   mustTemplate("{url}{body}"),
	}).build,
	extract: bodyFields{id: "event_id", typ: "type", subject: "data.id", time: "created_at"}.extract,
	keep: []string{"Square-Environment", "Square-Initial-Delivery-Timestamp", "Square-Retry-Number",
		"Square-Retry-Reason"},
	secret:    []string{"X-Square-Hmacsha256-Signature", "X-Square-Signature"},
	urlSigned: true,
}

var slack = &provider{
	media:   mediaJSON | mediaForm,
	formats: mediaJSON | mediaForm, // Events API: json; slash commands and interactivity: form
	format:  mediaJSON,
	opts:    optTolerance,
	build: (&preset{
		alg:    sha256Alg,
		format: headerFormat{header: "X-Slack-Signature", prefix: "v0=", enc: encHex},
		tmpl:   mustTemplate("v0:{timestamp}:{body}"),
		ts:     &tsSpec{header: "X-Slack-Request-Timestamp", unit: unitSeconds, tolerance: 5 * time.Minute},
	}).build,
	extract:   extractSlack,
	handshake: slackHandshake,
	keep:      []string{"X-Slack-Request-Timestamp", "X-Slack-Retry-Num", "X-Slack-Retry-Reason"},
	secret:    []string{"X-Slack-Signature"},
}

// extractSlack: Events API (event_id, event.type or type, event_time), interactivity
// (payload's type and trigger_id) and slash commands (type "slash_command", trigger_id).
func extractSlack(r *request, v *relay.Verified) {
	if id, ok := r.field("event_id"); ok {
		v.ID = id
	} else {
		v.ID, _ = r.field("trigger_id")
	}
	switch t, ok := r.field("event.type"); {
	case ok:
		v.Type = t
	case r.isForm() && formHas(r, "command"):
		v.Type = "slash_command"
		v.Subject, _ = r.field("command")
	default:
		v.Type, _ = r.field("type")
	}
	v.Time, _ = r.fieldTime("event_time")
}

func formHas(r *request, name string) bool {
	vals, _ := r.form()
	_, ok := vals[name]
	return ok
}

var zoom = &provider{
	media: mediaJSON,
	opts:  optTolerance,
	build: (&preset{
		alg:    sha256Alg,
		format: headerFormat{header: "X-Zm-Signature", prefix: "v0=", enc: encHex},
		tmpl:   mustTemplate("v0:{timestamp}:{body}"),
		ts:     &tsSpec{header: "X-Zm-Request-Timestamp", unit: unitAuto},
	}).build,
	extract:   bodyFields{typ: "event", subject: "payload.object.id", time: "event_ts"}.extract,
	handshake: zoomHandshake,
	keep:      []string{"X-Zm-Request-Timestamp", "X-Zm-Trackingid"},
	secret:    []string{"X-Zm-Signature"},
}

var twitch = &provider{
	media: mediaJSON,
	opts:  optTolerance,
	build: (&preset{
		alg:      sha256Alg,
		format:   headerFormat{header: "Twitch-Eventsub-Message-Signature", prefix: "sha256=", enc: encHex},
		tmpl:     mustTemplate("{id}{timestamp}{body}"),
		ts:       &tsSpec{header: "Twitch-Eventsub-Message-Timestamp", unit: unitRFC3339, tolerance: 10 * time.Minute},
		idHeader: "Twitch-Eventsub-Message-Id",
		newID:    randomUUID,
	}).build,
	extract: func(r *request, v *relay.Verified) {
		v.ID = r.Header.Get("Twitch-Eventsub-Message-Id")
		if t, ok := r.field("subscription.type"); ok {
			v.Type = t
		} else {
			v.Type = r.Header.Get("Twitch-Eventsub-Subscription-Type")
		}
		v.Subject, _ = r.field("event.broadcaster_user_id")
	},
	handshake: twitchHandshake,
	keep: []string{"Twitch-Eventsub-Message-Id", "Twitch-Eventsub-Message-Timestamp", "Twitch-Eventsub-Message-Type",
		"Twitch-Eventsub-Message-Retry", "Twitch-Eventsub-Subscription-Type", "Twitch-Eventsub-Subscription-Version"},
	secret: []string{"Twitch-Eventsub-Message-Signature"},
}

// linear: the signed timestamp is the body's webhookTimestamp (ms); the delivery id is the
// Linear-Delivery header (webhookId names the webhook, not the delivery).
var linear = &provider{
	media: mediaJSON,
	opts:  optTolerance,
	build: (&preset{
		alg:    sha256Alg,
		format: headerFormat{header: "Linear-Signature", enc: encHex},
		tmpl:   tmplBody,
		ts:     &tsSpec{field: "webhookTimestamp", unit: unitMillis, tolerance: time.Minute},
	}).build,
	extract: func(r *request, v *relay.Verified) {
		v.ID = r.Header.Get("Linear-Delivery")
		t, _ := r.field("type")
		v.Type = dotted(t, r, "action")
		v.Subject, _ = r.field("data.id")
		v.Time, _ = r.fieldTime("createdAt")
	},
	keep:   []string{"Linear-Delivery", "Linear-Event"},
	secret: []string{"Linear-Signature"},
}
