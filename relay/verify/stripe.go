package verify

import (
	"encoding/hex"
	"strings"
	"time"

	"github.com/eventrelay/eventrelay/relay"
)

// Stripe and Paddle carry the timestamp and one or more signatures as key=value pairs in one
// header: "t=..,v1=..,v1=.." and "ts=..;h1=..;h1=..".

// stripe: Stripe-Signature over {t}.{raw}, HMAC-SHA256 hex, several v1 (rotation), v0 and
// unknown keys ignored; the key is the whole whsec_... string as bytes; 300 s.
var stripe = &provider{
	media: mediaJSON,
	opts:  optTolerance,
	build: (&preset{
		alg:    sha256Alg,
		format: kvFormat{header: "Stripe-Signature", sep: ",", tsKey: "t", sigKey: "v1"},
		tmpl:   mustTemplate("{timestamp}.{body}"),
		ts:     &tsSpec{unit: unitSeconds, tolerance: 300 * time.Second},
	}).build,
	extract: bodyFields{id: "id", typ: "type", subject: "data.object.id", time: "created"}.extract,
	secret:  []string{"Stripe-Signature"},
}

// DefaultPaddleTolerance is Paddle's tolerance (its SDK's): set the source's tolerance to
// allow for clock skew and queueing.
const DefaultPaddleTolerance = 5 * time.Second

// paddle: Paddle-Signature "ts=..;h1=.." over {ts}:{raw}, HMAC-SHA256 hex, several h1.
var paddle = &provider{
	media: mediaJSON,
	opts:  optTolerance,
	build: (&preset{
		alg:    sha256Alg,
		format: kvFormat{header: "Paddle-Signature", sep: ";", tsKey: "ts", sigKey: "h1"},
		tmpl:   mustTemplate("{timestamp}:{body}"),
		ts:     &tsSpec{unit: unitSeconds, tolerance: DefaultPaddleTolerance},
	}).build,
	extract: bodyFields{id: "event_id", typ: "event_type", subject: "data.id", time: "occurred_at"}.extract,
	secret:  []string{"Paddle-Signature"},
}

// kvFormat is a header of sep-separated key=value pairs: one timestamp, several hex signatures.
type kvFormat struct {
	header        string
	sep           string
	tsKey, sigKey string
}

func (f kvFormat) parse(r *request) (carried, error) {
	v := r.Header.Get(f.header)
	if strings.TrimSpace(v) == "" {
		return carried{}, unauthenticated(relay.ReasonMissing)
	}
	return parseKV(v, f.sep, f.tsKey, f.sigKey)
}

// parseKV parses "t=123,v1=abc,v1=def,v0=..": exactly one timestamp and at least one
// signature that is hex, at most maxSignatures; pairs of other keys are ignored.
func parseKV(v, sep, tsKey, sigKey string) (carried, error) {
	var c carried
	for item := range strings.SplitSeq(v, sep) {
		k, val, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok {
			continue
		}
		switch k {
		case tsKey:
			if c.hasTS {
				return carried{}, unauthenticated(relay.ReasonMalformed)
			}
			c.ts, c.hasTS = val, true
		case sigKey:
			b, err := hex.DecodeString(val)
			if err != nil || len(b) == 0 {
				continue
			}
			if len(c.sigs) == maxSignatures {
				return carried{}, unauthenticated(relay.ReasonMalformed)
			}
			c.sigs = append(c.sigs, sigValue{b: b})
		}
	}
	if !c.hasTS || len(c.sigs) == 0 {
		return carried{}, unauthenticated(relay.ReasonMalformed)
	}
	return c, nil
}

func (f kvFormat) write(r *request, c carried, sig sigValue) error {
	r.Header.Set(f.header, f.tsKey+"="+c.ts+f.sep+f.sigKey+"="+hex.EncodeToString(sig.b))
	return nil
}
