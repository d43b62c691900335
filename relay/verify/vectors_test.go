package verify_test

import (
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/eventrelay/eventrelay/relay"
	"github.com/eventrelay/eventrelay/relay/verify"
)

// vector is a published test vector (from the provider's documentation or SDK tests): a request as the provider sent it and
// the time it was verified at.
type vector struct {
	name    string
	cfg     relay.SourceConfig
	req     relay.WebhookRequest
	now     time.Time
	scheme  string
	wantID  string
	wantTyp string
}

func secrets(values ...string) []relay.Secret {
	out := make([]relay.Secret, len(values))
	for i, v := range values {
		out[i] = relay.Secret{ID: string(rune('a' + i)), Value: []byte(v)}
	}
	return out
}

func headers(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

const (
	slackVectorBody    = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
	sendgridVectorBody = `[{"email":"hello@world.com","event":"dropped","reason":"Bounced Address","sg_event_id":"ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA","sg_message_id":"LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0","smtp-id":"<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>","timestamp":1600112492}]` + "\r\n"
	twilioJSONBody     = `{"property": "value", "boolean": true}`
	twilioBodySHA      = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"
)

func twilioVectorForm() string {
	return url.Values{
		"Digits": {"1234"}, "CallSid": {"CA1234567890ABCDE"}, "To": {"+18005551212"},
		"Caller": {"+14158675309"}, "From": {"+14158675309"}, "ReasonConferenceEnded": {"test"},
		"Reason": {"Participant"},
	}.Encode()
}

func vectors() []vector {
	const form = "application/x-www-form-urlencoded"
	const json = "application/json"
	sw := func(provider, prefix string) vector {
		return vector{
			name: provider + " with " + prefix + "-* headers",
			cfg:  relay.SourceConfig{Name: "sw", Provider: provider, Verify: &verify.Options{Secrets: secrets("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")}},
			req: relay.WebhookRequest{Method: "POST", ContentType: json, Body: []byte(`{"test": 2432232314}`),
				Header: headers(prefix+"-id", "msg_p5jXN8AQM9LWM0D4loKWxJek", prefix+"-timestamp", "1614265330",
					prefix+"-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")},
			now: time.Unix(1614265330, 0), scheme: "hmac-sha256", wantID: "msg_p5jXN8AQM9LWM0D4loKWxJek",
		}
	}
	return []vector{
		sw("standardwebhooks", "webhook"),
		sw("svix", "svix"),
		sw("standardwebhooks", "svix"), // standardwebhooks also accepts the svix-* headers
		{
			name: "github docs",
			cfg:  relay.SourceConfig{Name: "gh", Provider: "github", Verify: &verify.Options{Secrets: secrets("It's a Secret to Everybody")}},
			req: relay.WebhookRequest{Method: "POST", ContentType: json, Body: []byte("Hello, World!"),
				Header: headers("X-Hub-Signature-256", "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")},
			now: time.Unix(1700000000, 0), scheme: "hmac-sha256",
		},
		{
			name: "github octokit",
			cfg:  relay.SourceConfig{Name: "gh", Provider: "github", Verify: &verify.Options{Secrets: secrets("mysecret")}},
			req: relay.WebhookRequest{Method: "POST", ContentType: json, Body: []byte(`{"foo":"bar"}`),
				Header: headers("X-Hub-Signature-256", "sha256=4864d2759938a15468b5df9ade20bf161da9b4f737ea61794142f3484236bda3",
					"X-GitHub-Event", "push", "X-GitHub-Delivery", "d-1")},
			now: time.Unix(1700000000, 0), scheme: "hmac-sha256", wantID: "d-1", wantTyp: "push",
		},
		{
			name: "slack docs",
			cfg:  relay.SourceConfig{Name: "sl", Provider: "slack", Verify: &verify.Options{Secrets: secrets("8f742231b10e8888abcd99yyyzzz85a5"), BodyFormat: "form"}},
			req: relay.WebhookRequest{Method: "POST", ContentType: form, Body: []byte(slackVectorBody),
				Header: headers("X-Slack-Signature", "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
					"X-Slack-Request-Timestamp", "1531420618")},
			now: time.Unix(1531420618, 0), scheme: "hmac-sha256", wantTyp: "slash_command",
			wantID: "398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c",
		},
		{
			name: "stripe",
			cfg:  relay.SourceConfig{Name: "st", Provider: "stripe", Verify: &verify.Options{Secrets: secrets("whsec_test_secret")}},
			req: relay.WebhookRequest{Method: "POST", ContentType: json, Body: []byte(`{"id":"evt_test_webhook","object":"event"}`),
				Header: headers("Stripe-Signature", "t=1614265330,v1=3c5817089d739023dd6190f70a3757e04f7a2fd8b5dab12c2e000f51970dccff")},
			now: time.Unix(1614265330, 0), scheme: "hmac-sha256", wantID: "evt_test_webhook",
		},
		{
			name: "twilio form, configured url",
			cfg:  relay.SourceConfig{Name: "tw", Provider: "twilio", URL: "https://mycompany.com/myapp.php", Verify: &verify.Options{Secrets: secrets("12345")}},
			req: relay.WebhookRequest{Method: "POST", ContentType: form, Body: []byte(twilioVectorForm()), RawQuery: "foo=1&bar=2",
				Header: headers("X-Twilio-Signature", "vOEb5UThFn24KEfnOFLQY2AE5FY=")},
			now: time.Unix(1700000000, 0), scheme: "hmac-sha1",
		},
		{
			name: "twilio form, request url with default port",
			cfg:  relay.SourceConfig{Name: "tw", Provider: "twilio", Verify: &verify.Options{Secrets: secrets("12345")}},
			req: relay.WebhookRequest{Method: "POST", ContentType: form, Body: []byte(twilioVectorForm()),
				URL: "https://mycompany.com:443/myapp.php?foo=1&bar=2", RawQuery: "foo=1&bar=2",
				Header: headers("X-Twilio-Signature", "vOEb5UThFn24KEfnOFLQY2AE5FY=")},
			now: time.Unix(1700000000, 0), scheme: "hmac-sha1",
		},
		{
			name: "twilio json",
			cfg:  relay.SourceConfig{Name: "tw", Provider: "twilio", URL: "https://mycompany.com/myapp.php", Verify: &verify.Options{Secrets: secrets("12345"), BodyFormat: "json"}},
			req: relay.WebhookRequest{Method: "POST", ContentType: json, Body: []byte(twilioJSONBody),
				RawQuery: "foo=1&bar=2&bodySHA256=" + twilioBodySHA,
				Header:   headers("X-Twilio-Signature", "a9nBmqA0ju/hNViExpshrM61xv4=")},
			now: time.Unix(1700000000, 0), scheme: "hmac-sha1",
		},
		{
			name: "square",
			cfg:  relay.SourceConfig{Name: "sq", Provider: "square", URL: "https://webhook.site/webhooks", Verify: &verify.Options{Secrets: secrets("signature-key")}},
			req: relay.WebhookRequest{Method: "POST", ContentType: json, Body: []byte(`{"data":{"type":"webhooks","id":"fake_id"}}`),
				Header: headers("X-Square-Hmacsha256-Signature", "W3FlCNk5IA3ZQ2LHTWoajvzfaDu/OwY2tNHIHC3IUOA=")},
			now: time.Unix(1700000000, 0), scheme: "hmac-sha256",
		},
		{
			name: "paddle",
			cfg:  relay.SourceConfig{Name: "pd", Provider: "paddle", Verify: &verify.Options{Secrets: secrets("VALID_SECRET")}},
			req: relay.WebhookRequest{Method: "POST", ContentType: json, Body: []byte(`{"data": ["1", "2"]}`),
				Header: headers("Paddle-Signature", "ts=1698796800;h1=a300428748dce5c70e4da19bffd60769591ea969c99dea3105d0ec9612cf43f9")},
			now: time.Unix(1698796800, 0), scheme: "hmac-sha256",
		},
		{
			name: "discord",
			cfg:  relay.SourceConfig{Name: "dc", Provider: "discord", Verify: &verify.Options{Secrets: secrets("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")}},
			req: relay.WebhookRequest{Method: "POST", ContentType: json, Body: []byte(`{"type":1}`),
				Header: headers("X-Signature-Ed25519", "1695961a47c91a1ec033b819b7e87e3dbc583dd0cee6d1fd0216f58ac87b6228ae531ddbf91fb7bc28d7edf7f08604da16f54624f38a6bc0614e4dc13cd47f0f",
					"X-Signature-Timestamp", "1700000000")},
			now: time.Unix(1700000000, 0), scheme: "ed25519", wantTyp: "PING",
		},
		{
			name: "sendgrid",
			cfg: relay.SourceConfig{
				Name:     "sg",
				Provider: "sendgrid",
				Verify: &verify.Options{Secrets: secrets(
					"MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g==")},
			},
			req: relay.WebhookRequest{Method: "POST", ContentType: json, Body: []byte(sendgridVectorBody),
				Header: headers("X-Twilio-Email-Event-Webhook-Signature", "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M15TluLtEZtM=",
					"X-Twilio-Email-Event-Webhook-Timestamp", "1600112502")},
			now: time.Unix(1600112502, 0), scheme: "ecdsa-p256-sha256",
		},
	}
}

func TestPublishedVectors(t *testing.T) {
	for _, tc := range vectors() {
		t.Run(tc.name, func(t *testing.T) {
			v, err := verify.New(&tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			got, err := v.Verify(&tc.req, tc.now)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if got.Scheme != tc.scheme || got.KeyIndex != 0 || got.KeyID != "a" || got.Provider != tc.cfg.Provider {
				t.Errorf("got provider %q scheme %q key %d %q, want %q %q 0 a", got.Provider, got.Scheme, got.KeyIndex, got.KeyID, tc.cfg.Provider, tc.scheme)
			}
			if tc.wantID != "" && got.ID != tc.wantID {
				t.Errorf("ID = %q, want %q", got.ID, tc.wantID)
			}
			if tc.wantTyp != "" && got.Type != tc.wantTyp {
				t.Errorf("Type = %q, want %q", got.Type, tc.wantTyp)
			}

			// One byte more of body, and the vector no longer verifies.
			tampered := tc.req
			tampered.Body = append([]byte(" "), tc.req.Body...)
			if tc.cfg.Provider == "twilio" && tc.req.ContentType == "application/x-www-form-urlencoded" {
				tampered.Body = append([]byte("Extra=1&"), tc.req.Body...)
			}
			if _, err := v.Verify(&tampered, tc.now); relay.ErrorCode(err) != relay.CodeUnauthenticated {
				t.Errorf("tampered body: got %v, want unauthenticated", err)
			}
		})
	}
}
