package verify_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/eventrelay/eventrelay/relay"
	"github.com/eventrelay/eventrelay/relay/verify"
)

var testNow = time.Unix(1700000000, 0).UTC()

// fixture describes one provider (or one mode of it) for the matrix of TestProviders. Every
// body contains "original", which the default tampering replaces.
type fixture struct {
	name     string
	provider string
	base     relay.SourceConfig // options besides the secrets
	// secret returns the i-th test secret (0 and 1 are configured, 2 is the wrong one).
	secret func(i int) string
	// keys are the private keys of public-key schemes (secrets are their public keys).
	keys []crypto.Signer

	req func() *relay.WebhookRequest

	missing   []string                      // headers whose removal is ReasonMissing
	strip     func(r *relay.WebhookRequest) // or: how to remove the signature
	tsHeader  string                        // header whose removal is ReasonMissing
	malform   func(r *relay.WebhookRequest) // makes the signature unparseable
	tamper    func(r *relay.WebhookRequest) // default: "original" → "tampered" in the body
	tolerance time.Duration                 // the provider's default, 0 = none
	signsTime bool                          // the scheme signs a timestamp
	check     func(t *testing.T, v *relay.Verified)
	scheme    string
}

func plainSecret(i int) string { return "test-secret-" + string(rune('A'+i)) + "-9f8e7d6c5b4a" }
func standardSecret(i int) string {
	return "whsec_" + base64.StdEncoding.EncodeToString([]byte(plainSecret(i)))
}

func (f fixture) secretFn() func(int) string {
	if f.secret != nil {
		return f.secret
	}
	return plainSecret
}

// config returns the source configuration with the given secrets (by test index).
func (f fixture) config(idx ...int) *relay.SourceConfig {
	c := f.base
	c.Verify = verify.OptionsOf(&f.base).Clone()
	c.Name = "src"
	c.Provider = f.provider
	verify.OptionsOf(&c).Secrets = nil
	for _, i := range idx {
		verify.OptionsOf(&c).Secrets = append(verify.OptionsOf(&c).Secrets, relay.Secret{ID: string(rune('a' + i)), Value: []byte(f.secretFn()(i))})
	}
	return &c
}

// sign returns a fresh request signed at ts with test secret i.
func (f fixture) sign(t testing.TB, i int, ts time.Time) *relay.WebhookRequest {
	t.Helper()
	r := f.req()
	var err error
	if f.keys != nil {
		err = verify.SignWithKey(f.config(0), f.keys[i], r, ts)
	} else {
		err = verify.Sign(f.config(i), r, ts)
	}
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return r
}

func jsonReq(body string, kv ...string) func() *relay.WebhookRequest {
	return func() *relay.WebhookRequest {
		return &relay.WebhookRequest{Method: "POST", ContentType: "application/json", Body: []byte(body),
			Header: headers(kv...), URL: "https://relay.example.com/v1/webhooks/src"}
	}
}

func formReq(body string, kv ...string) func() *relay.WebhookRequest {
	return func() *relay.WebhookRequest {
		r := jsonReq(body, kv...)()
		r.ContentType = "application/x-www-form-urlencoded"
		return r
	}
}

func setHeader(name, value string) func(r *relay.WebhookRequest) {
	return func(r *relay.WebhookRequest) { r.Header.Set(name, value) }
}

func replaceBody(old, new string) func(r *relay.WebhookRequest) {
	return func(r *relay.WebhookRequest) { r.Body = bytes.Replace(r.Body, []byte(old), []byte(new), 1) }
}

func ed25519Keys(t testing.TB, n int) []crypto.Signer {
	keys := make([]crypto.Signer, n)
	for i := range keys {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		keys[i] = priv
	}
	return keys
}

func p256Keys(t testing.TB, n int) []crypto.Signer {
	keys := make([]crypto.Signer, n)
	for i := range keys {
		priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		keys[i] = priv
	}
	return keys
}

// publicSecrets returns a secret function giving the encoded public keys of keys.
func publicSecrets(t testing.TB, provider string, keys []crypto.Signer) func(int) string {
	enc := make([]string, len(keys))
	for i, k := range keys {
		s, err := verify.EncodePublicKey(provider, k.Public())
		if err != nil {
			t.Fatal(err)
		}
		enc[i] = s
	}
	return func(i int) string { return enc[i] }
}

func want(id, typ, subject string, at time.Time) func(t *testing.T, v *relay.Verified) {
	return func(t *testing.T, v *relay.Verified) {
		t.Helper()
		if id != "*" && v.ID != id {
			t.Errorf("ID = %q, want %q", v.ID, id)
		}
		if id == "*" && v.ID == "" {
			t.Errorf("ID is empty")
		}
		if v.Type != typ {
			t.Errorf("Type = %q, want %q", v.Type, typ)
		}
		if v.Subject != subject {
			t.Errorf("Subject = %q, want %q", v.Subject, subject)
		}
		if !v.Time.Equal(at) {
			t.Errorf("Time = %v, want %v", v.Time, at)
		}
	}
}

func fixtures(t testing.TB) []fixture {
	at := time.Date(2023, 11, 14, 22, 13, 20, 0, time.UTC) // == testNow
	const generic = `{"id":"g1","type":"thing.created","note":"original"}`
	edKeys, swKeys, p256 := ed25519Keys(t, 3), ed25519Keys(t, 3), p256Keys(t, 3)
	meta := func(name string) fixture {
		return fixture{
			name: name, provider: name, req: jsonReq(`{"object":"page","entry":[{"note":"original"}]}`),
			missing: []string{"X-Hub-Signature-256"}, malform: setHeader("X-Hub-Signature-256", "sha256=zz"),
			check: want("", "page", "", time.Time{}), scheme: "hmac-sha256",
		}
	}
	return []fixture{
		{
			name: "hmac", provider: "hmac", req: jsonReq(generic),
			missing: []string{"X-Signature"}, malform: setHeader("X-Signature", "zz"),
			check: want("g1", "thing.created", "", time.Time{}), scheme: "hmac-sha256",
		},
		{
			name: "hmac sha512 base64 prefix timestamp", provider: "hmac",
			base: relay.SourceConfig{
				URL: "https://relay.example.com/v1/webhooks/src", Verify: &verify.Options{Algorithm: "sha512", Encoding: "base64", Prefix: "v1=", Header: "X-Sig", TimestampHeader: "X-Time", Template: "{method} {url}\n{timestamp}.{body}", IDHeader: "X-Event-Id", TypeHeader: "X-Event", SubjectField: "data.user", TimeField: "at", UnsignedID: true},
			},
			req:     jsonReq(`{"at":"2023-11-14T22:13:20Z","data":{"user":"u1"},"note":"original"}`, "X-Event-Id", "e-9", "X-Event", "user.updated"),
			missing: []string{"X-Sig"}, tsHeader: "X-Time", malform: setHeader("X-Sig", "v1=!!!"),
			tolerance: verify.DefaultTolerance, signsTime: true,
			check: want("e-9", "user.updated", "u1", at), scheme: "hmac-sha512",
		},
		{
			name: "stripe", provider: "stripe",
			secret:  func(i int) string { return "whsec_" + plainSecret(i) },
			req:     jsonReq(`{"id":"evt_1","object":"event","type":"invoice.paid","created":1700000000,"data":{"object":{"id":"in_1","note":"original"}}}`),
			missing: []string{"Stripe-Signature"}, malform: setHeader("Stripe-Signature", "v1=abc"),
			tolerance: 300 * time.Second, signsTime: true,
			check: want("evt_1", "invoice.paid", "in_1", at), scheme: "hmac-sha256",
		},
		{
			name: "standardwebhooks", provider: "standardwebhooks", secret: standardSecret,
			req:     jsonReq(`{"type":"user.created","timestamp":"2023-11-14T22:13:20Z","data":{"note":"original"}}`, "Webhook-Id", "msg_1"),
			missing: []string{"Webhook-Signature"}, tsHeader: "Webhook-Timestamp", malform: setHeader("Webhook-Signature", "v1,@@@ v2,abc"),
			tolerance: 5 * time.Minute, signsTime: true,
			check: want("msg_1", "user.created", "", at), scheme: "hmac-sha256",
		},
		{
			name: "standardwebhooks v1a", provider: "standardwebhooks", keys: swKeys,
			secret:  publicSecrets(t, "standardwebhooks", swKeys),
			req:     jsonReq(`{"type":"user.created","data":{"note":"original"}}`),
			missing: []string{"Webhook-Signature"}, tsHeader: "Webhook-Timestamp", malform: setHeader("Webhook-Signature", "v1a,@@@"),
			tolerance: 5 * time.Minute, signsTime: true,
			check: want("*", "user.created", "", time.Time{}), scheme: "ed25519",
		},
		{
			name: "svix", provider: "svix", secret: standardSecret,
			req:     jsonReq(`{"type":"user.created","data":{"note":"original"}}`, "Svix-Id", "msg_2"),
			missing: []string{"Svix-Signature"}, tsHeader: "Svix-Timestamp", malform: setHeader("Svix-Signature", "v1,!"),
			tolerance: 5 * time.Minute, signsTime: true,
			check: want("msg_2", "user.created", "", time.Time{}), scheme: "hmac-sha256",
		},
		{
			name: "github", provider: "github",
			req:     jsonReq(`{"action":"opened","issue":{"title":"original"}}`, "X-GitHub-Event", "issues", "X-GitHub-Delivery", "d-1"),
			missing: []string{"X-Hub-Signature-256"}, malform: setHeader("X-Hub-Signature-256", "sha1=abcd"),
			check: want("d-1", "issues.opened", "", time.Time{}), scheme: "hmac-sha256",
		},
		{
			name: "github form", provider: "github", base: relay.SourceConfig{Verify: &verify.Options{BodyFormat: "form"}},
			req: formReq("payload="+url.QueryEscape(`{"action":"closed","note":"original"}`),
				"X-GitHub-Event", "pull_request", "X-GitHub-Delivery", "d-2"),
			missing: []string{"X-Hub-Signature-256"}, malform: setHeader("X-Hub-Signature-256", "sha256=xyz"),
			check: want("d-2", "pull_request.closed", "", time.Time{}), scheme: "hmac-sha256",
		},
		{
			name: "gitlab token", provider: "gitlab",
			req:     jsonReq(`{"object_kind":"push","note":"original"}`, "X-Gitlab-Event", "Push Hook", "Idempotency-Key", "ik-1"),
			missing: []string{"X-Gitlab-Token"}, tamper: setHeader("X-Gitlab-Token", "nope"),
			check: want("ik-1", "Push Hook", "", time.Time{}), scheme: "token",
		},
		{
			name: "bitbucket", provider: "bitbucket",
			req:     jsonReq(`{"push":{"note":"original"}}`, "X-Event-Key", "repo:push", "X-Request-UUID", "u-1"),
			missing: []string{"X-Hub-Signature"}, malform: setHeader("X-Hub-Signature", "sha256=q"),
			check: want("u-1", "repo:push", "", time.Time{}), scheme: "hmac-sha256",
		},
		{
			name: "slack events", provider: "slack",
			req:     jsonReq(`{"type":"event_callback","event_id":"Ev1","event_time":1700000000,"event":{"type":"app_mention","text":"original"}}`),
			missing: []string{"X-Slack-Signature"}, tsHeader: "X-Slack-Request-Timestamp", malform: setHeader("X-Slack-Signature", "v1=abcd"),
			tolerance: 5 * time.Minute, signsTime: true,
			check: want("Ev1", "app_mention", "", at), scheme: "hmac-sha256",
		},
		{
			name: "slack slash command", provider: "slack", base: relay.SourceConfig{Verify: &verify.Options{BodyFormat: "form"}},
			req:     formReq("command=%2Fdeploy&text=original&trigger_id=tr1"),
			missing: []string{"X-Slack-Signature"}, tsHeader: "X-Slack-Request-Timestamp", malform: setHeader("X-Slack-Request-Timestamp", "yesterday"),
			tolerance: 5 * time.Minute, signsTime: true,
			check: want("tr1", "slash_command", "/deploy", time.Time{}), scheme: "hmac-sha256",
		},
		{
			name: "twilio form", provider: "twilio", base: relay.SourceConfig{URL: "https://relay.example.com/v1/webhooks/src", Verify: &verify.Options{}},
			req:     formReq("MessageSid=SM1&Body=original&From=%2B15550001111&To=%2B15550002222", "I-Twilio-Idempotency-Token", "idem-1"),
			missing: []string{"X-Twilio-Signature"}, malform: setHeader("X-Twilio-Signature", "!!!"),
			check: want("idem-1", "", "SM1", time.Time{}), scheme: "hmac-sha1",
		},
		{
			name: "twilio json", provider: "twilio", base: relay.SourceConfig{URL: "https://relay.example.com/v1/webhooks/src", Verify: &verify.Options{BodyFormat: "json"}},
			req:     jsonReq(`{"id":"e1","type":"com.twilio.messaging.inbound-message.received","note":"original"}`),
			missing: []string{"X-Twilio-Signature"}, malform: setHeader("X-Twilio-Signature", "@"),
			check: want("e1", "com.twilio.messaging.inbound-message.received", "", time.Time{}), scheme: "hmac-sha1",
		},
		{
			name: "shopify", provider: "shopify",
			req: jsonReq(`{"id":1,"admin_graphql_api_id":"gid://shopify/Order/1","note":"original"}`,
				"X-Shopify-Topic", "orders/create", "X-Shopify-Webhook-Id", "w-1", "X-Shopify-Triggered-At", "2023-11-14T22:13:20Z"),
			missing: []string{"X-Shopify-Hmac-Sha256"}, malform: setHeader("X-Shopify-Hmac-Sha256", "%%%"),
			check: want("w-1", "orders/create", "gid://shopify/Order/1", at), scheme: "hmac-sha256",
		},
		{
			name: "square", provider: "square", base: relay.SourceConfig{URL: "https://relay.example.com/v1/webhooks/src", Verify: &verify.Options{}},
			req:     jsonReq(`{"event_id":"sq1","type":"payment.created","created_at":"2023-11-14T22:13:20Z","data":{"id":"p1","note":"original"}}`),
			missing: []string{"X-Square-Hmacsha256-Signature"}, malform: setHeader("X-Square-Hmacsha256-Signature", "!!!"),
			check: want("sq1", "payment.created", "p1", at), scheme: "hmac-sha256",
		},
		{
			name: "zoom", provider: "zoom",
			req:     jsonReq(`{"event":"meeting.started","event_ts":1700000000000,"payload":{"object":{"id":"m1","topic":"original"}}}`),
			missing: []string{"X-Zm-Signature"}, tsHeader: "X-Zm-Request-Timestamp", malform: setHeader("X-Zm-Signature", "v0=zz"),
			signsTime: true,
			check:     want("", "meeting.started", "m1", at), scheme: "hmac-sha256",
		},
		{
			name: "twitch", provider: "twitch",
			req: jsonReq(`{"subscription":{"type":"channel.follow"},"event":{"broadcaster_user_id":"b1","note":"original"}}`,
				"Twitch-Eventsub-Message-Type", "notification"),
			missing: []string{"Twitch-Eventsub-Message-Signature"}, tsHeader: "Twitch-Eventsub-Message-Timestamp",
			malform:   setHeader("Twitch-Eventsub-Message-Timestamp", "1700000000"),
			tolerance: 10 * time.Minute, signsTime: true,
			check: want("*", "channel.follow", "b1", time.Time{}), scheme: "hmac-sha256",
		},
		{
			name: "linear", provider: "linear",
			req: jsonReq(`{"action":"create","type":"Issue","createdAt":"2023-11-14T22:13:20.000Z","data":{"id":"i1","title":"original"},"webhookId":"wh1"}`,
				"Linear-Delivery", "del-1", "Linear-Event", "Issue"),
			missing: []string{"Linear-Signature"}, malform: setHeader("Linear-Signature", "zz"),
			tolerance: time.Minute, signsTime: true,
			check: want("del-1", "Issue.create", "i1", at), scheme: "hmac-sha256",
		},
		{
			name: "paddle", provider: "paddle",
			req:     jsonReq(`{"event_id":"evt_p1","event_type":"transaction.completed","occurred_at":"2023-11-14T22:13:20Z","data":{"id":"txn_1","note":"original"}}`),
			missing: []string{"Paddle-Signature"}, malform: setHeader("Paddle-Signature", "ts=1700000000;h2=abc"),
			tolerance: verify.DefaultPaddleTolerance, signsTime: true,
			check: want("evt_p1", "transaction.completed", "txn_1", at), scheme: "hmac-sha256",
		},
		{
			name: "hubspot v3", provider: "hubspot", base: relay.SourceConfig{URL: "https://relay.example.com/v1/webhooks/src", Verify: &verify.Options{}},
			req:     jsonReq(`{"eventId":123,"subscriptionType":"contact.creation","objectId":5,"occurredAt":1700000000000,"note":"original"}`),
			missing: []string{"X-HubSpot-Signature-v3"}, tsHeader: "X-HubSpot-Request-Timestamp", malform: setHeader("X-HubSpot-Signature-v3", "!!!"),
			tolerance: 300 * time.Second, signsTime: true,
			check: want("123", "contact.creation", "5", at), scheme: "hmac-sha256",
		},
		{
			name: "hubspot v2", provider: "hubspot", base: relay.SourceConfig{URL: "https://relay.example.com/v1/webhooks/src", Verify: &verify.Options{}},
			req:     jsonReq(`[{"eventId":1,"note":"original"}]`, "X-HubSpot-Signature-Version", "v2"),
			missing: []string{"X-HubSpot-Signature"}, malform: setHeader("X-HubSpot-Signature-Version", "v9"),
			check: want("", "", "", time.Time{}), scheme: "sha256",
		},
		{
			name: "hubspot v1", provider: "hubspot",
			req:     jsonReq(`[{"eventId":1,"note":"original"}]`, "X-HubSpot-Signature-Version", "v1"),
			missing: []string{"X-HubSpot-Signature"}, malform: setHeader("X-HubSpot-Signature", "zz"),
			check: want("", "", "", time.Time{}), scheme: "sha256",
		},
		{
			name: "intercom", provider: "intercom",
			req:     jsonReq(`{"type":"notification_event","id":"notif_1","topic":"conversation.user.created","created_at":1700000000,"data":{"item":{"id":"c1","body":"original"}}}`),
			missing: []string{"X-Hub-Signature"}, malform: setHeader("X-Hub-Signature", "sha256=abcd"),
			check: want("notif_1", "conversation.user.created", "c1", at), scheme: "hmac-sha1",
		},
		{
			name: "discord", provider: "discord", keys: edKeys, secret: publicSecrets(t, "discord", edKeys),
			req:     jsonReq(`{"id":"i1","type":2,"data":{"name":"original"}}`),
			missing: []string{"X-Signature-Ed25519"}, tsHeader: "X-Signature-Timestamp", malform: setHeader("X-Signature-Ed25519", "zz"),
			signsTime: true,
			check:     want("i1", "APPLICATION_COMMAND", "", time.Time{}), scheme: "ed25519",
		},
		{
			name: "sendgrid", provider: "sendgrid", keys: p256, secret: publicSecrets(t, "sendgrid", p256),
			req:     jsonReq(`[{"event":"delivered","note":"original"}]`),
			missing: []string{"X-Twilio-Email-Event-Webhook-Signature"}, tsHeader: "X-Twilio-Email-Event-Webhook-Timestamp",
			malform:   setHeader("X-Twilio-Email-Event-Webhook-Signature", "!!!"),
			signsTime: true,
			check:     want("", "", "", time.Time{}), scheme: "ecdsa-p256-sha256",
		},
		{
			name: "mailgun json", provider: "mailgun",
			req:   jsonReq(`{"event-data":{"event":"delivered","timestamp":1700000000,"note":"original"}}`),
			strip: func(r *relay.WebhookRequest) { r.Body = []byte(`{"event-data":{"event":"delivered"}}`) },
			malform: func(r *relay.WebhookRequest) {
				r.Body = []byte(`{"signature":{"timestamp":"1","token":"t","signature":"zz"}}`)
			},
			tamper: func(r *relay.WebhookRequest) {
				r.Body = bytes.Replace(r.Body, []byte(`"token":"`), []byte(`"token":"x`), 1)
			},
			signsTime: true,
			check:     want("*", "delivered", "", at), scheme: "hmac-sha256",
		},
		{
			name: "mailgun form", provider: "mailgun", base: relay.SourceConfig{Verify: &verify.Options{BodyFormat: "form"}},
			req:       formReq("event=delivered&note=original"),
			strip:     func(r *relay.WebhookRequest) { r.Body = []byte("event=delivered&note=original") },
			malform:   func(r *relay.WebhookRequest) { r.Body = []byte("timestamp=1&token=t&signature=%zz") },
			tamper:    replaceBody("token=", "token=x"),
			signsTime: true,
			check:     want("*", "delivered", "", at), scheme: "hmac-sha256",
		},
		meta("meta"), meta("facebook"), meta("instagram"), meta("whatsapp"),
		{
			name: "basic", provider: "basic",
			secret:  func(i int) string { return "user" + string(rune('a'+i)) + ":" + plainSecret(i) },
			req:     jsonReq(generic),
			missing: []string{"Authorization"}, malform: setHeader("Authorization", "Bearer abc"),
			tamper: setHeader("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("usera:nope"))),
			check:  want("g1", "thing.created", "", time.Time{}), scheme: "basic",
		},
		{
			name: "token bearer", provider: "token",
			req:     jsonReq(generic),
			missing: []string{"Authorization"}, tamper: setHeader("Authorization", "Bearer nope"),
			check: want("g1", "thing.created", "", time.Time{}), scheme: "token",
		},
		{
			name: "token query", provider: "token", base: relay.SourceConfig{Verify: &verify.Options{QueryParam: "key"}},
			req:    jsonReq(generic),
			strip:  func(r *relay.WebhookRequest) { r.RawQuery = "other=1" },
			tamper: func(r *relay.WebhookRequest) { r.RawQuery = "key=nope" },
			check:  want("g1", "thing.created", "", time.Time{}), scheme: "token",
		},
	}
}

func TestProviders(t *testing.T) {
	covered := map[string]bool{}
	for _, f := range fixtures(t) {
		covered[f.provider] = true
		t.Run(f.name, func(t *testing.T) { testProvider(t, f) })
	}
	for _, p := range verify.Providers() {
		if !covered[p] {
			t.Errorf("provider %s has no fixture", p)
		}
	}
}

func wantReason(t *testing.T, err error, reason string) {
	t.Helper()
	if relay.ErrorCode(err) != relay.CodeUnauthenticated || relay.ErrorReason(err) != reason {
		t.Fatalf("got %v, want unauthenticated (%s)", err, reason)
	}
	if msg := relay.ErrorMessage(err); msg != "signature verification failed" {
		t.Errorf("client message %q is not the generic one", msg)
	}
}

func mustNew(t *testing.T, cfg *relay.SourceConfig) relay.Verifier {
	t.Helper()
	v, err := verify.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return v
}

func testProvider(t *testing.T, f fixture) {
	v := mustNew(t, f.config(0))

	t.Run("valid", func(t *testing.T) {
		r := f.sign(t, 0, testNow)
		got, err := v.Verify(r, testNow)
		if err != nil {
			t.Fatalf("Verify: %v", err)
		}
		if got.Provider != f.provider || got.Scheme != f.scheme || got.KeyIndex != 0 || got.KeyID != "a" {
			t.Errorf("got %s %s key %d %q, want %s %s key 0 a", got.Provider, got.Scheme, got.KeyIndex, got.KeyID, f.provider, f.scheme)
		}
		if f.signsTime != !got.SignedTime.IsZero() {
			t.Errorf("SignedTime = %v, scheme signs time: %v", got.SignedTime, f.signsTime)
		}
		if f.signsTime && !got.SignedTime.Equal(testNow) {
			t.Errorf("SignedTime = %v, want %v", got.SignedTime, testNow)
		}
		if got.Handshake != nil {
			t.Errorf("unexpected handshake %+v", got.Handshake)
		}
		for name := range got.Headers {
			if name != strings.ToLower(name) {
				t.Errorf("header name %q is not lower case", name)
			}
			for _, s := range f.missing {
				if strings.EqualFold(name, s) {
					t.Errorf("signature header %q kept", name)
				}
			}
		}
		if f.check != nil {
			f.check(t, got)
		}
	})

	t.Run("tampered", func(t *testing.T) {
		r := f.sign(t, 0, testNow)
		before := string(r.Body) + r.Header.Get("Authorization")
		if f.tamper != nil {
			f.tamper(r)
		} else {
			replaceBody("original", "tampered")(r)
		}
		if string(r.Body)+r.Header.Get("Authorization") == before && f.tamper == nil {
			t.Fatal("fixture body has no \"original\"")
		}
		_, err := v.Verify(r, testNow)
		wantReason(t, err, relay.ReasonMismatch)
		if strings.Contains(err.Error(), plainSecret(0)) {
			t.Errorf("error %q shows the secret", err)
		}
	})

	t.Run("wrong secret", func(t *testing.T) {
		_, err := v.Verify(f.sign(t, 2, testNow), testNow)
		wantReason(t, err, relay.ReasonMismatch)
	})

	t.Run("missing signature", func(t *testing.T) {
		r := f.sign(t, 0, testNow)
		for _, h := range f.missing {
			r.Header.Del(h)
		}
		if f.strip != nil {
			f.strip(r)
		}
		_, err := v.Verify(r, testNow)
		wantReason(t, err, relay.ReasonMissing)
	})

	if f.tsHeader != "" {
		t.Run("missing timestamp", func(t *testing.T) {
			r := f.sign(t, 0, testNow)
			r.Header.Del(f.tsHeader)
			_, err := v.Verify(r, testNow)
			wantReason(t, err, relay.ReasonMissing)
		})
	}

	if f.malform != nil {
		t.Run("malformed", func(t *testing.T) {
			r := f.sign(t, 0, testNow)
			f.malform(r)
			_, err := v.Verify(r, testNow)
			wantReason(t, err, relay.ReasonMalformed)
		})
	}

	if f.signsTime {
		tol, vt := f.tolerance, v
		if tol == 0 {
			// No default tolerance: the old signature is accepted until the source sets one.
			if _, err := v.Verify(f.sign(t, 0, testNow.Add(-24*time.Hour)), testNow); err != nil {
				t.Errorf("day-old signature without tolerance: %v", err)
			}
			tol = time.Minute
			c := f.config(0)
			verify.OptionsOf(c).Tolerance = tol
			vt = mustNew(t, c)
		}
		t.Run("stale", func(t *testing.T) {
			_, err := vt.Verify(f.sign(t, 0, testNow.Add(-tol-time.Second)), testNow)
			wantReason(t, err, relay.ReasonStale)
			if _, err := vt.Verify(f.sign(t, 0, testNow.Add(-tol+time.Second)), testNow); err != nil {
				t.Errorf("within tolerance: %v", err)
			}
		})
		t.Run("future", func(t *testing.T) {
			_, err := vt.Verify(f.sign(t, 0, testNow.Add(tol+time.Second)), testNow)
			wantReason(t, err, relay.ReasonFuture)
			if _, err := vt.Verify(f.sign(t, 0, testNow.Add(tol-time.Second)), testNow); err != nil {
				t.Errorf("within tolerance: %v", err)
			}
		})
		// Far away signed times, correctly signed, beyond any Duration from now (the
		// difference saturates): Stripe's t=99999999999, year 9999's last second, and now's
		// milliseconds where seconds are expected. What each is read as depends on the
		// provider's timestamp format; none may pass.
		auto := f.provider == "hmac" || f.provider == "zoom" // seconds, or milliseconds above 1e11
		rfc3339 := f.provider == "twitch"
		for _, far := range []struct {
			name string
			at   time.Time
			want string // "" = accepted
		}{
			{"far future: 99999999999 s", time.Unix(99999999999, 0), relay.ReasonFuture},
			// Written as 253402300799 by an auto-unit scheme, that reads as milliseconds (1978).
			{"far future: 9999-12-31T23:59:59Z", time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC),
				map[bool]string{false: relay.ReasonFuture, true: relay.ReasonStale}[auto]},
			// Written as 1700000000000: an auto-unit scheme reads milliseconds (now, accepted),
			// RFC 3339 has no five-digit years.
			{"far future: now in milliseconds read as seconds", time.Unix(testNow.UnixMilli(), 0),
				map[bool]string{false: relay.ReasonFuture, true: ""}[auto]},
		} {
			if rfc3339 && strings.HasSuffix(far.name, "read as seconds") {
				far.want = relay.ReasonMalformed
			}
			t.Run(far.name, func(t *testing.T) {
				_, err := vt.Verify(f.sign(t, 0, far.at), testNow)
				if far.want == "" {
					if err != nil {
						t.Fatalf("Verify: %v", err)
					}
					return
				}
				wantReason(t, err, far.want)
			})
		}
		t.Run("tolerance override", func(t *testing.T) {
			c := f.config(0)
			verify.OptionsOf(c).Tolerance = 48 * time.Hour
			if _, err := mustNew(t, c).Verify(f.sign(t, 0, testNow.Add(-24*time.Hour)), testNow); err != nil {
				t.Errorf("day-old signature with 48h tolerance: %v", err)
			}
		})
	}

	t.Run("rotated", func(t *testing.T) {
		got, err := mustNew(t, f.config(0, 1)).Verify(f.sign(t, 1, testNow), testNow)
		if err != nil {
			t.Fatalf("Verify: %v", err)
		}
		if got.KeyIndex != 1 || got.KeyID != "b" {
			t.Errorf("key %d %q, want 1 b", got.KeyIndex, got.KeyID)
		}
	})

	t.Run("no usable secret", func(t *testing.T) {
		c := f.config()
		verify.OptionsOf(c).Secrets = []relay.Secret{{ID: "empty"}}
		_, err := mustNew(t, c).Verify(f.sign(t, 0, testNow), testNow)
		wantReason(t, err, relay.ReasonNoSecret)
		ps := verify.Problems(c)
		if len(ps) == 0 || !strings.Contains(strings.Join(ps, "\n"), "no usable secret") {
			t.Errorf("Problems = %q", ps)
		}
		if ps := verify.Problems(f.config(0, 1)); len(ps) != 0 && f.base.URL != "" {
			t.Errorf("Problems of a good source = %q", ps)
		}
	})

	if !verify.AcceptsContentType(f.provider, "text/csv") {
		t.Run("unsupported media", func(t *testing.T) {
			r := f.sign(t, 0, testNow)
			r.ContentType = "text/csv"
			_, err := v.Verify(r, testNow)
			if relay.ErrorCode(err) != relay.CodeUnsupportedMedia {
				t.Fatalf("got %v, want unsupported media", err)
			}
		})
	}
}
