package verify_test

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"hash"
	"net/http"
	"testing"
	"time"

	"github.com/eventrelay/eventrelay/relay"
	"github.com/eventrelay/eventrelay/relay/verify"
)

// Independent oracles for the providers that publish no test vector and whose SDK is not in
// the interop check (docs/providers.md has the table). Every signature below is computed in
// the test with crypto/hmac (or crypto/sha256, or base64 for credentials) over the byte
// layout the provider documents, written out by hand: never through verify.Sign or the
// signature engine, which would only check the engine against itself.

func macHex(h func() hash.Hash, key, msg string) string {
	m := hmac.New(h, []byte(key))
	m.Write([]byte(msg))
	return hex.EncodeToString(m.Sum(nil))
}

func macB64(h func() hash.Hash, key, msg string) string {
	m := hmac.New(h, []byte(key))
	m.Write([]byte(msg))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

func sha256Hex(msg string) string {
	d := sha256.Sum256([]byte(msg))
	return hex.EncodeToString(d[:])
}

// oracle is one request as the provider sends it, signed by hand.
type oracle struct {
	name    string
	cfg     relay.SourceConfig
	req     relay.WebhookRequest
	now     time.Time
	scheme  string // "" = not checked
	wantID  string
	wantTyp string
}

func oracles() []oracle {
	const json = "application/json"
	now := time.Unix(1700000000, 0).UTC()
	ts := "1700000000"
	post := func(ct, body string, hdr ...string) relay.WebhookRequest {
		return relay.WebhookRequest{Method: "POST", ContentType: ct, Body: []byte(body), Header: headers(hdr...)}
	}
	src := func(provider string, secret ...string) relay.SourceConfig {
		return relay.SourceConfig{Name: "o", Provider: provider, Verify: &verify.Options{Secrets: secrets(secret...)}}
	}

	// generic hmac: hex HMAC-SHA256 of the raw body in X-Signature (prefix optional), or of
	// "{timestamp}.{body}" with a timestamp header.
	const hmacKey, hmacBody = "orders-secret-6c1f", `{"id":"ord_1","type":"order.created"}`
	hmacTS := src("hmac", hmacKey)
	verify.OptionsOf(&hmacTS).TimestampHeader, verify.OptionsOf(&hmacTS).Prefix = "X-Timestamp", "sha256="
	hmacB64 := src("hmac", hmacKey)
	verify.OptionsOf(&hmacB64).Algorithm, verify.OptionsOf(&hmacB64).Encoding, verify.OptionsOf(&hmacB64).Header = "sha1", "base64", "X-Sig"

	// gitlab: the secret token verbatim, or (signing tokens) Standard Webhooks: base64
	// HMAC-SHA256 of "{webhook-id}.{webhook-timestamp}.{body}" keyed with the base64-decoded
	// part after "whsec_".
	const gitlabRaw = "gitlab-signing-key-0123456789ab"
	gitlabSigning := "whsec_" + base64.StdEncoding.EncodeToString([]byte(gitlabRaw))
	const gitlabBody = `{"object_kind":"push","ref":"refs/heads/main"}`

	// zoom: "v0=" + hex HMAC-SHA256 of "v0:{x-zm-request-timestamp}:{body}".
	const zoomKey, zoomBody = "zoom-secret-token-ab12", `{"event":"meeting.started","event_ts":1700000000000,"payload":{"object":{"id":"85743"}}}`

	// twitch: "sha256=" + hex HMAC-SHA256 of message id + message timestamp + body, in that
	// order (Twitch's EventSub guide, "Verifying the event message").
	const twitchKey, twitchID, twitchTS = "twitch-eventsub-secret-77", "e76c6bd4-55c9-4987-8304-da1588d8988b", "2023-11-14T22:13:20.123456789Z"
	const twitchBody = `{"subscription":{"type":"channel.follow","version":"2"},"event":{"broadcaster_user_id":"1337"}}`

	// linear: hex HMAC-SHA256 of the body; webhookTimestamp (ms) in the body within 60 s.
	const linearKey, linearBody = "lin_wh_secret_55aa", `{"action":"create","type":"Issue","data":{"id":"iss_1"},"webhookTimestamp":1700000000000}`

	// hubspot v3: base64 HMAC-SHA256 of method + URL + body + timestamp (ms); v2: hex SHA-256
	// of secret + method + URL + body; v1: hex SHA-256 of secret + body.
	const hubKey, hubURL, hubTS = "hubspot-client-secret-9d", "https://hooks.example.com/v1/webhooks/hubspot", "1700000000000"
	const hubBody = `[{"eventId":101,"subscriptionType":"contact.creation","objectId":512}]`
	hub := src("hubspot", hubKey)
	hub.URL = hubURL

	// mailgun: hex HMAC-SHA256 of timestamp + token, in the body.
	const mgKey, mgToken = "key-mailgun-signing-3b7", "4f2a09c1e8b7d6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8"
	mgSig := macHex(sha256.New, mgKey, ts+mgToken)
	mgBody := `{"signature":{"timestamp":"` + ts + `","token":"` + mgToken + `","signature":"` + mgSig + `"},"event-data":{"event":"delivered","timestamp":1700000000.1}}`
	mgForm := "timestamp=" + ts + "&token=" + mgToken + "&signature=" + mgSig + "&event=opened"

	tokenHeader := src("token", "erp-token-31f")
	verify.OptionsOf(&tokenHeader).Header = "X-Api-Token"
	tokenQuery := src("token", "legacy-token-8c2")
	verify.OptionsOf(&tokenQuery).QueryParam = "token"

	return []oracle{
		{name: "hmac: hex sha256 of the body", cfg: src("hmac", hmacKey), now: now, scheme: "hmac-sha256", wantID: "ord_1", wantTyp: "order.created",
			req: post(json, hmacBody, "X-Signature", macHex(sha256.New, hmacKey, hmacBody))},
		{name: "hmac: timestamp.body with prefix", cfg: hmacTS, now: now, scheme: "hmac-sha256",
			req: post(json, hmacBody, "X-Timestamp", ts, "X-Signature", "sha256="+macHex(sha256.New, hmacKey, ts+"."+hmacBody))},
		{name: "hmac: base64 sha1 in another header", cfg: hmacB64, now: now, scheme: "hmac-sha1",
			req: post(json, hmacBody, "X-Sig", macB64(sha1.New, hmacKey, hmacBody))},
		{name: "gitlab: secret token", cfg: src("gitlab", "glpat-webhook-token-1"), now: now, scheme: "token", wantTyp: "Push Hook", wantID: "idem-1",
			req: post(json, gitlabBody, "X-Gitlab-Token", "glpat-webhook-token-1", "X-Gitlab-Event", "Push Hook", "Idempotency-Key", "idem-1")},
		{name: "gitlab: signing token (standard webhooks)", cfg: src("gitlab", gitlabSigning), now: now, scheme: "hmac-sha256", wantID: "msg_gl_1",
			req: post(json, gitlabBody, "Webhook-Id", "msg_gl_1", "Webhook-Timestamp", ts,
				"Webhook-Signature", "v1,"+macB64(sha256.New, gitlabRaw, "msg_gl_1."+ts+"."+gitlabBody), "Idempotency-Key", "msg_gl_1")},
		{name: "bitbucket", cfg: src("bitbucket", "bb-secret-42"), now: now, scheme: "hmac-sha256", wantID: "uuid-1", wantTyp: "repo:push",
			req: post(json, `{"push":{"changes":[]}}`, "X-Hub-Signature", "sha256="+macHex(sha256.New, "bb-secret-42", `{"push":{"changes":[]}}`),
				"X-Event-Key", "repo:push", "X-Request-UUID", "uuid-1")},
		{name: "shopify", cfg: src("shopify", "shpss_client_secret_1"), now: now, scheme: "hmac-sha256", wantID: "b54557e4", wantTyp: "orders/create",
			req: post(json, `{"id":820982911946154500,"email":"jon@example.com"}`,
				"X-Shopify-Hmac-Sha256", macB64(sha256.New, "shpss_client_secret_1", `{"id":820982911946154500,"email":"jon@example.com"}`),
				"X-Shopify-Topic", "orders/create", "X-Shopify-Webhook-Id", "b54557e4")},
		{name: "zoom", cfg: src("zoom", zoomKey), now: now, scheme: "hmac-sha256", wantTyp: "meeting.started",
			req: post(json, zoomBody, "X-Zm-Request-Timestamp", ts, "X-Zm-Signature", "v0="+macHex(sha256.New, zoomKey, "v0:"+ts+":"+zoomBody))},
		{name: "twitch", cfg: src("twitch", twitchKey), now: now, scheme: "hmac-sha256", wantID: twitchID, wantTyp: "channel.follow",
			req: post(json, twitchBody, "Twitch-Eventsub-Message-Id", twitchID, "Twitch-Eventsub-Message-Timestamp", twitchTS,
				"Twitch-Eventsub-Message-Type", "notification",
				"Twitch-Eventsub-Message-Signature", "sha256="+macHex(sha256.New, twitchKey, twitchID+twitchTS+twitchBody))},
		{name: "linear", cfg: src("linear", linearKey), now: now, scheme: "hmac-sha256", wantID: "dlv-1", wantTyp: "Issue.create",
			req: post(json, linearBody, "Linear-Signature", macHex(sha256.New, linearKey, linearBody), "Linear-Delivery", "dlv-1")},
		{name: "hubspot v3", cfg: hub, now: now,
			req: relay.WebhookRequest{Method: "POST", ContentType: json, Body: []byte(hubBody), RawQuery: "portalId=62515",
				Header: headers("X-HubSpot-Request-Timestamp", hubTS,
					"X-HubSpot-Signature-v3", macB64(sha256.New, hubKey, "POST"+hubURL+"?portalId=62515"+hubBody+hubTS))}},
		{name: "hubspot v2", cfg: hub, now: now,
			req: post(json, hubBody, "X-HubSpot-Signature-Version", "v2", "X-HubSpot-Signature", sha256Hex(hubKey+"POST"+hubURL+hubBody))},
		{name: "hubspot v1", cfg: hub, now: now,
			req: post(json, hubBody, "X-HubSpot-Signature-Version", "v1", "X-HubSpot-Signature", sha256Hex(hubKey+hubBody))},
		{name: "intercom", cfg: src("intercom", "intercom-client-secret"), now: now, scheme: "hmac-sha1", wantID: "notif_1", wantTyp: "conversation.user.created",
			req: post(json, `{"type":"notification_event","id":"notif_1","topic":"conversation.user.created"}`,
				"X-Hub-Signature", "sha1="+macHex(sha1.New, "intercom-client-secret", `{"type":"notification_event","id":"notif_1","topic":"conversation.user.created"}`))},
		{name: "mailgun json", cfg: src("mailgun", mgKey), now: now, scheme: "hmac-sha256", wantID: mgToken, wantTyp: "delivered",
			req: post(json, mgBody)},
		{name: "mailgun form", cfg: withFormat(src("mailgun", mgKey), "form"), now: now, scheme: "hmac-sha256", wantID: mgToken, wantTyp: "opened",
			req: post("application/x-www-form-urlencoded", mgForm)},
		{name: "meta", cfg: src("meta", "meta-app-secret-0e"), now: now, scheme: "hmac-sha256", wantTyp: "whatsapp_business_account",
			req: post(json, `{"object":"whatsapp_business_account","entry":[]}`,
				"X-Hub-Signature-256", "sha256="+macHex(sha256.New, "meta-app-secret-0e", `{"object":"whatsapp_business_account","entry":[]}`))},
		{name: "basic", cfg: src("basic", "crm:pa55-w0rd"), now: now, scheme: "basic",
			req: post(json, `{}`, "Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("crm:pa55-w0rd")))},
		{name: "token in a header", cfg: tokenHeader, now: now, scheme: "token",
			req: post(json, `{}`, "X-Api-Token", "erp-token-31f")},
		{name: "token as a bearer", cfg: src("token", "erp-token-31f"), now: now, scheme: "token",
			req: post(json, `{}`, "Authorization", "Bearer erp-token-31f")},
		{name: "token in the query", cfg: tokenQuery, now: now, scheme: "token",
			req: relay.WebhookRequest{Method: "POST", ContentType: json, Body: []byte(`{}`), RawQuery: "token=legacy-token-8c2", Header: http.Header{}}},
	}
}

// TestIndependentOracles verifies a request signed by hand per the provider's documentation
// for each provider without a published vector, and checks that a changed byte of what is
// signed (or of the credential) is refused.
func TestIndependentOracles(t *testing.T) {
	for _, tc := range oracles() {
		t.Run(tc.name, func(t *testing.T) {
			v, err := verify.New(&tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			got, err := v.Verify(&tc.req, tc.now)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if got.Provider != tc.cfg.Provider || got.KeyID != "a" || (tc.scheme != "" && got.Scheme != tc.scheme) {
				t.Errorf("got provider %q scheme %q key %q, want %q %q a", got.Provider, got.Scheme, got.KeyID, tc.cfg.Provider, tc.scheme)
			}
			if tc.wantID != "" && got.ID != tc.wantID {
				t.Errorf("ID = %q, want %q", got.ID, tc.wantID)
			}
			if tc.wantTyp != "" && got.Type != tc.wantTyp {
				t.Errorf("Type = %q, want %q", got.Type, tc.wantTyp)
			}
			// The same request under another secret is refused.
			wrong := tc.cfg
			wrong.Verify = verify.OptionsOf(&tc.cfg).Clone()
			verify.OptionsOf(&wrong).Secrets = secrets("another-secret:entirely")
			if tc.cfg.Provider == "gitlab" {
				verify.OptionsOf(&wrong).Secrets = secrets("whsec_" + base64.StdEncoding.EncodeToString([]byte("another-secret-entirely")))
			}
			wv, err := verify.New(&wrong)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := wv.Verify(&tc.req, tc.now); relay.ErrorCode(err) != relay.CodeUnauthenticated {
				t.Errorf("another secret: got %v, want unauthenticated", err)
			}
		})
	}
}

// TestTwitchSignedOrder pins Twitch's signed string, message id + timestamp + body: the
// same HMAC over timestamp + id + body (the order a mistaken template would use) is refused.
func TestTwitchSignedOrder(t *testing.T) {
	const key, id, ts, body = "twitch-order-secret", "msg-1", "2023-11-14T22:13:20Z", `{"subscription":{"type":"channel.follow"}}`
	cfg := relay.SourceConfig{Name: "tw", Provider: "twitch", Verify: &verify.Options{Secrets: secrets(key)}}
	v, err := verify.New(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		signed string
		ok     bool
	}{{id + ts + body, true}, {ts + id + body, false}, {body + id + ts, false}} {
		r := relay.WebhookRequest{Method: "POST", ContentType: "application/json", Body: []byte(body),
			Header: headers("Twitch-Eventsub-Message-Id", id, "Twitch-Eventsub-Message-Timestamp", ts,
				"Twitch-Eventsub-Message-Signature", "sha256="+macHex(sha256.New, key, tc.signed))}
		_, err := v.Verify(&r, time.Unix(1700000000, 0))
		if (err == nil) != tc.ok {
			t.Errorf("signed %q: err %v, want ok=%v", tc.signed, err, tc.ok)
		}
	}
}

// withFormat returns c with body_format set.
func withFormat(c relay.SourceConfig, format string) relay.SourceConfig {
	verify.OptionsOf(&c).BodyFormat = format
	return c
}
