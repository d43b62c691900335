package verify

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"

	"github.com/eventrelay/eventrelay/relay"
)

// mailgun: the signature is in the body: JSON {"signature": {"timestamp", "token",
// "signature"}, "event-data": {...}} (webhooks), or the form fields timestamp, token and
// signature (legacy webhooks, urlencoded or multipart, and routes). signature is hex
// HMAC-SHA256 of {timestamp}{token} with the HTTP webhook signing key. The body itself is not
// signed; the token is the dedupe key, so a replayed signature is caught by the relay's dedupe.
var mailgun = &provider{
	media:   mediaJSON | mediaForm | mediaMultipart,
	formats: mediaJSON | mediaForm | mediaMultipart, // webhooks: json; legacy and routes: form, multipart
	format:  mediaJSON,
	opts:    optTolerance,
	build: (&preset{
		alg:    sha256Alg,
		format: mailgunFormat{},
		tmpl:   mustTemplate("{timestamp}{id}"),
		ts:     &tsSpec{unit: unitSeconds},
		newID:  mailgunToken,
	}).build,
	extract: extractMailgun,
}

func mailgunToken() string { return randomHex() + randomHex()[:18] }

func extractMailgun(r *request, v *relay.Verified) {
	if r.isForm() {
		v.ID, _ = r.field("token")
		v.Type, _ = r.field("event")
		v.Subject, _ = r.field("Message-Id")
		v.Time, _ = r.fieldTime("timestamp")
		return
	}
	v.ID, _ = r.field("signature.token")
	v.Type, _ = r.field("event-data.event")
	v.Subject, _ = r.field("event-data.message.headers.message-id")
	v.Time, _ = r.fieldTime("event-data.timestamp")
}

type mailgunFormat struct{}

// mailgunSignature returns timestamp, token and signature from a Mailgun body.
func mailgunSignature(r *request) (ts, token, sig string, err error) {
	if r.isForm() {
		vals, ferr := r.form()
		if ferr != nil {
			return "", "", "", unauthenticated(relay.ReasonMalformed)
		}
		return vals.Get("timestamp"), vals.Get("token"), vals.Get("signature"), nil
	}
	obj, ok := r.field("signature")
	if !ok {
		return "", "", "", unauthenticated(relay.ReasonMissing)
	}
	ts, _ = relay.JSONLookup([]byte(obj), "timestamp")
	token, _ = relay.JSONLookup([]byte(obj), "token")
	sig, _ = relay.JSONLookup([]byte(obj), "signature")
	return ts, token, sig, nil
}

func (mailgunFormat) parse(r *request) (carried, error) {
	ts, token, sig, err := mailgunSignature(r)
	if err != nil {
		return carried{}, err
	}
	if sig == "" || ts == "" || token == "" {
		return carried{}, unauthenticated(relay.ReasonMissing)
	}
	b, err := hex.DecodeString(sig)
	if err != nil || len(b) == 0 {
		return carried{}, unauthenticated(relay.ReasonMalformed)
	}
	return carried{sigs: []sigValue{{b: b}}, ts: ts, id: token, hasTS: true, hasID: true}, nil
}

// write sets the signature into the body: the "signature" object of a JSON body, or the
// timestamp, token and signature fields of a urlencoded form body.
func (mailgunFormat) write(r *request, c carried, sig sigValue) error {
	s := hex.EncodeToString(sig.b)
	switch mediaOf(r.ContentType) {
	case mediaJSON:
		obj, _ := json.Marshal(map[string]string{"timestamp": c.ts, "token": c.id, "signature": s})
		b, err := setTopLevel(r.Body, "signature", obj)
		if err != nil {
			return err
		}
		r.setBody(b)
	case mediaForm:
		names := []string{"timestamp", "token", "signature"}
		body := setPairs(string(r.Body), names, map[string]string{"timestamp": c.ts, "token": c.id, "signature": s})
		r.setBody([]byte(strings.TrimPrefix(body, "&")))
	default:
		return errors.New("sign: mailgun: only JSON and urlencoded form bodies can be signed")
	}
	return nil
}
