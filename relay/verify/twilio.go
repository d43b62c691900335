package verify

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"maps"
	"net/url"
	"slices"
	"strings"

	"github.com/eventrelay/eventrelay/relay"
)

// twilio: X-Twilio-Signature, base64 HMAC-SHA1 (key: the auth token; configure the primary
// and the secondary token for rotation) over the full URL followed, for form bodies, by every
// POST parameter sorted by name as name+value. For JSON bodies only the URL is signed; it
// carries bodySHA256=<hex SHA-256 of the body>, which must match the body. The URL is tried
// as configured and with the default port added or removed (:443, :80), as Twilio's SDKs do.
var twilio = &provider{
	media:   mediaForm | mediaJSON,
	formats: mediaForm | mediaJSON, // status callbacks: form; Event Streams and some products: json
	format:  mediaForm,
	opts:    optURL,
	build: (&preset{
		alg:      sha1Alg,
		format:   headerFormat{header: "X-Twilio-Signature", enc: encBase64},
		messages: twilioMessages,
		prepare:  twilioPrepare,
	}).build,
	extract:   extractTwilio,
	keep:      []string{"I-Twilio-Idempotency-Token", "X-Home-Region"},
	secret:    []string{"X-Twilio-Signature"},
	urlSigned: true,
}

// twilioSubjects are the form fields naming what a Twilio callback is about, in preference order.
var twilioSubjects = []string{"MessageSid", "SmsSid", "CallSid", "ConferenceSid", "RecordingSid"}

// extractTwilio: id I-Twilio-Idempotency-Token; form bodies: type EventType, subject the first
// *Sid of twilioSubjects; JSON bodies: id, type.
func extractTwilio(r *request, v *relay.Verified) {
	v.ID = r.Header.Get("I-Twilio-Idempotency-Token")
	if !r.isForm() {
		if v.ID == "" {
			v.ID, _ = r.field("id")
		}
		v.Type, _ = r.field("type")
		return
	}
	v.Type, _ = r.field("EventType")
	for _, f := range twilioSubjects {
		if s, ok := r.field(f); ok && s != "" {
			v.Subject = s
			break
		}
	}
}

func twilioMessages(r *request, _ *tvals) ([][]byte, error) {
	u := r.signedURL()
	if u == "" {
		return nil, unauthenticated(relay.ReasonMissing)
	}
	var params []byte
	if r.isForm() {
		vals, err := r.form()
		if err != nil {
			return nil, unauthenticated(relay.ReasonMalformed)
		}
		params = twilioParams(vals)
	} else {
		want, ok := queryParam(u, "bodySHA256")
		if !ok {
			return nil, unauthenticated(relay.ReasonMissing)
		}
		wantB, err := hex.DecodeString(want)
		if err != nil {
			return nil, unauthenticated(relay.ReasonMalformed)
		}
		got := sha256.Sum256(r.Body)
		if !hmac.Equal(got[:], wantB) {
			return nil, unauthenticated(relay.ReasonMismatch)
		}
	}
	variants := portVariants(u)
	msgs := make([][]byte, len(variants))
	for i, v := range variants {
		msgs[i] = append([]byte(v), params...)
	}
	return msgs, nil
}

// twilioParams concatenates the parameters sorted by name, each value (sorted, duplicates
// once) as name+value, as Twilio's SDKs do.
func twilioParams(vals url.Values) []byte {
	var b []byte
	for _, name := range slices.Sorted(maps.Keys(vals)) {
		vs := slices.Compact(slices.Sorted(slices.Values(vals[name])))
		for _, v := range vs {
			b = append(b, name...)
			b = append(b, v...)
		}
	}
	return b
}

// queryParam returns the first value of a query parameter of a URL.
func queryParam(rawURL, name string) (string, bool) {
	_, q, ok := strings.Cut(rawURL, "?")
	if !ok {
		return "", false
	}
	q, _, _ = strings.Cut(q, "#")
	vals, _ := url.ParseQuery(q)
	v, ok := vals[name]
	if !ok || len(v) == 0 {
		return "", false
	}
	return v[0], true
}

// portVariants returns raw and, for http and https URLs, raw with the default port added
// when it has none or removed when it has the default one. Other bytes are kept as they are.
func portVariants(raw string) []string {
	i := strings.Index(raw, "://")
	if i < 0 {
		return []string{raw}
	}
	var def string
	switch strings.ToLower(raw[:i]) {
	case "https":
		def = "443"
	case "http":
		def = "80"
	default:
		return []string{raw}
	}
	start := i + 3
	end := len(raw)
	if j := strings.IndexAny(raw[start:], "/?#"); j >= 0 {
		end = start + j
	}
	authority := raw[start:end]
	hostStart := start
	if at := strings.LastIndexByte(authority, '@'); at >= 0 {
		hostStart += at + 1
	}
	host := raw[hostStart:end]
	if host == "" {
		return []string{raw}
	}
	if c := strings.LastIndexByte(host, ':'); c >= 0 && c > strings.LastIndexByte(host, ']') {
		if host[c+1:] != def {
			return []string{raw}
		}
		return []string{raw, raw[:hostStart] + host[:c] + raw[end:]}
	}
	return []string{raw, raw[:end] + ":" + def + raw[end:]}
}

// twilioPrepare appends bodySHA256 to the query of a JSON request before Sign signs it.
func twilioPrepare(r *request) error {
	if r.isForm() {
		return nil
	}
	sum := sha256.Sum256(r.Body)
	q := setPairs(r.RawQuery, []string{"bodySHA256"}, map[string]string{"bodySHA256": hex.EncodeToString(sum[:])})
	setQuery(r, q)
	return nil
}
