package verify

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"

	"github.com/eventrelay/eventrelay/relay"
)

// Provider handshakes. Each runs only after the request's signature verified; the relay
// answers with the Handshake and stores nothing.

const (
	contentJSON = "application/json"
	contentText = "text/plain; charset=utf-8"
)

// slackHandshake answers url_verification with {"challenge": ...} and the ssl_check of
// slash commands with an empty 200.
func slackHandshake(r *request, _ *relay.Verified, _ *key) *relay.Handshake {
	if r.isForm() {
		if s, _ := r.field("ssl_check"); s == "1" {
			return &relay.Handshake{ContentType: contentText}
		}
		return nil
	}
	if t, _ := r.field("type"); t != "url_verification" {
		return nil
	}
	c, _ := r.field("challenge")
	b, _ := json.Marshal(map[string]string{"challenge": c})
	return &relay.Handshake{ContentType: contentJSON, Body: b}
}

// twitchHandshake echoes the challenge of webhook_callback_verification as text/plain.
func twitchHandshake(r *request, _ *relay.Verified, _ *key) *relay.Handshake {
	if r.Header.Get("Twitch-Eventsub-Message-Type") != "webhook_callback_verification" {
		return nil
	}
	c, _ := r.field("challenge")
	return &relay.Handshake{ContentType: contentText, Body: []byte(c)}
}

// zoomHandshake answers endpoint.url_validation with the plainToken and its hex
// HMAC-SHA256 under the matching secret.
func zoomHandshake(r *request, _ *relay.Verified, k *key) *relay.Handshake {
	if e, _ := r.field("event"); e != "endpoint.url_validation" {
		return nil
	}
	plain, _ := r.field("payload.plainToken")
	b, _ := json.Marshal(struct {
		PlainToken     string `json:"plainToken"`
		EncryptedToken string `json:"encryptedToken"`
	}{plain, hex.EncodeToString(sha256Alg.hmac(k.raw, []byte(plain)))})
	return &relay.Handshake{ContentType: contentJSON, Body: b}
}

// discordHandshake answers an interactions PING (type 1, no event; real interactions carry
// "version": 1 too) with {"type":1}. A webhook-events PING (type 0 with a version) gets a
// Handshake with no body: answer 204 No Content. Webhook events of type 1 carry an event.
func discordHandshake(r *request, _ *relay.Verified, _ *key) *relay.Handshake {
	if _, ok := r.field("event"); ok {
		return nil
	}
	t, _ := r.field("type")
	_, events := r.field("version")
	switch {
	case t == "1":
		return &relay.Handshake{ContentType: contentJSON, Body: []byte(`{"type":1}`)}
	case t == "0" && events:
		return &relay.Handshake{}
	}
	return nil
}

// challengeVerifier is the verifier of Meta sources: a verifier that also answers the GET
// subscription challenge.
type challengeVerifier struct{ *verifier }

// Challenge implements relay.EndpointChallenger for Meta (facebook, instagram, whatsapp):
// hub.mode=subscribe with hub.verify_token equal (in constant time) to the source's
// verify_token is answered with hub.challenge as text/plain. Anything else is
// Unauthenticated: no verify_token configured (no_secret), a parameter absent (missing),
// another mode (malformed), another token (mismatch).
func (v *challengeVerifier) Challenge(query map[string][]string) (*relay.Handshake, error) {
	if len(v.verifyToken) == 0 {
		return nil, unauthenticated(relay.ReasonNoSecret)
	}
	get := func(name string) string {
		if vs := query[name]; len(vs) > 0 {
			return vs[0]
		}
		return ""
	}
	mode, token, challenge := get("hub.mode"), get("hub.verify_token"), get("hub.challenge")
	switch {
	case mode == "" || token == "" || challenge == "":
		return nil, unauthenticated(relay.ReasonMissing)
	case mode != "subscribe":
		return nil, unauthenticated(relay.ReasonMalformed)
	}
	got, want := sha256.Sum256([]byte(token)), sha256.Sum256(v.verifyToken)
	if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
		return nil, unauthenticated(relay.ReasonMismatch)
	}
	return &relay.Handshake{ContentType: contentText, Body: []byte(challenge)}, nil
}
