package verify_test

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eventrelay/eventrelay/relay"
	"github.com/eventrelay/eventrelay/relay/verify"
)

func TestProvidersList(t *testing.T) {
	got := verify.Providers()
	if !slices.IsSorted(got) {
		t.Errorf("not sorted: %v", got)
	}
	for _, name := range []string{"hmac", "stripe", "standardwebhooks", "svix", "github", "gitlab", "bitbucket",
		"slack", "twilio", "shopify", "square", "zoom", "twitch", "linear", "paddle", "hubspot", "intercom",
		"discord", "sendgrid", "mailgun", "meta", "facebook", "instagram", "whatsapp", "basic", "token"} {
		if !slices.Contains(got, name) {
			t.Errorf("missing %s", name)
		}
	}
}

func TestNewErrors(t *testing.T) {
	s := secrets("k")
	tests := []struct {
		name string
		cfg  relay.SourceConfig
		want string
	}{
		{"unknown provider", relay.SourceConfig{Provider: "acme", Verify: &verify.Options{Secrets: s}}, `provider: unknown "acme" (known: basic, bitbucket,`},
		{"unknown algorithm", relay.SourceConfig{Verify: &verify.Options{Algorithm: "md5", Secrets: s}}, `algorithm: unknown "md5" (want sha1, sha256 or sha512)`},
		{"unknown encoding", relay.SourceConfig{Verify: &verify.Options{Encoding: "base32", Secrets: s}}, `encoding: unknown "base32" (want hex or base64)`},
		{"option of another provider", relay.SourceConfig{Provider: "stripe", Verify: &verify.Options{Algorithm: "sha1", Secrets: s}}, `algorithm: not used by provider "stripe"`},
		{"tolerance without timestamp", relay.SourceConfig{Provider: "github", Verify: &verify.Options{Tolerance: time.Minute, Secrets: s}}, `tolerance: not used by provider "github"`},
		{"generic tolerance without header", relay.SourceConfig{Verify: &verify.Options{Tolerance: time.Minute, Secrets: s}}, `tolerance: set but no timestamp_header`},
		{"negative tolerance", relay.SourceConfig{Provider: "stripe", Verify: &verify.Options{Tolerance: -time.Second, Secrets: s}}, `tolerance: must not be negative`},
		{"unknown placeholder", relay.SourceConfig{Verify: &verify.Options{Template: "{body}{nonce}", Secrets: s}}, `template: unknown placeholder "{nonce}"`},
		{"unclosed placeholder", relay.SourceConfig{Verify: &verify.Options{Template: "{body", Secrets: s}}, `template: unclosed "{"`},
		{"template without body", relay.SourceConfig{Verify: &verify.Options{Template: "{method}", Secrets: s}}, `does not sign {body}`},
		{"timestamp without header", relay.SourceConfig{Verify: &verify.Options{Template: "{timestamp}{body}", Secrets: s}}, `template: {timestamp} needs timestamp_header`},
		{"timestamp header unsigned", relay.SourceConfig{Verify: &verify.Options{Template: "{body}", TimestampHeader: "X-T", Secrets: s}}, `timestamp_header: set but the template does not sign {timestamp}`},
		{"id without header", relay.SourceConfig{Verify: &verify.Options{Template: "{id}{body}", Secrets: s}}, `template: {id} needs id_header`},
		{"url unsigned", relay.SourceConfig{URL: "https://x.example/h", Verify: &verify.Options{Secrets: s}}, `url: set but the template does not sign {url}`},
		{"url relative", relay.SourceConfig{Provider: "square", URL: "/hooks", Verify: &verify.Options{Secrets: s}}, `url: "/hooks" is not an absolute http(s) URL`},
		{"url with query", relay.SourceConfig{Provider: "twilio", URL: "https://x.example/h?a=1", Verify: &verify.Options{Secrets: s}}, `url: "https://x.example/h?a=1" must not carry a query`},
		{"prefix with leading space", relay.SourceConfig{Verify: &verify.Options{Prefix: " v1=", Secrets: s}}, `prefix: " v1=" begins with whitespace or holds control characters`},
		{"bad header name", relay.SourceConfig{Verify: &verify.Options{Header: "X Sig", Secrets: s}}, `header: "X Sig" is not a valid header name`},
		{"verify token elsewhere", relay.SourceConfig{Provider: "github", Verify: &verify.Options{VerifyToken: &relay.Secret{Value: []byte("v")}, Secrets: s}}, `verify_token: not used by provider "github"`},
		{"query param elsewhere", relay.SourceConfig{Provider: "hmac", Verify: &verify.Options{QueryParam: "k", Secrets: s}}, `query_param: not used by provider "hmac"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := verify.New(&tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want %q", err, tc.want)
			}
			if err := verify.Sign(&tc.cfg, &relay.WebhookRequest{}, testNow); err == nil {
				t.Error("Sign accepted an invalid configuration")
			}
			if ps := verify.Problems(&tc.cfg); len(ps) != 1 || !strings.Contains(ps[0], tc.want) {
				t.Errorf("Problems = %q", ps)
			}
		})
	}
}

func TestProblems(t *testing.T) {
	tests := []struct {
		name string
		cfg  relay.SourceConfig
		want []string
	}{
		{"good", relay.SourceConfig{Name: "s", Provider: "github", Verify: &verify.Options{Secrets: secrets("k")}}, nil},
		{"no secrets", relay.SourceConfig{Name: "s", Provider: "github"}, []string{`source "s" has no usable secret: every request is refused`}},
		{"one bad key", relay.SourceConfig{Name: "s", Provider: "discord", Verify: &verify.Options{Secrets: secrets("zz", strings.Repeat("ab", 32))}},
			[]string{`source "s": secret 0 ("a") is unusable: not an Ed25519 public key (want 64 hex digits)`}},
		{"bad sendgrid key", relay.SourceConfig{Name: "s", Provider: "sendgrid", Verify: &verify.Options{Secrets: secrets("MFkw")}},
			[]string{`secret 0 ("a") is unusable: not an ECDSA P-256 public key`, `has no usable secret`}},
		{"bad standard secret", relay.SourceConfig{Name: "s", Provider: "svix", Verify: &verify.Options{Secrets: secrets("whsec_!!")}},
			[]string{`not a Standard Webhooks secret`, `has no usable secret`}},
		{"basic without colon", relay.SourceConfig{Name: "s", Provider: "basic", Verify: &verify.Options{Secrets: secrets("alice")}},
			[]string{`not "user:password"`, `has no usable secret`}},
		{"whitespace", relay.SourceConfig{Name: "s", Provider: "github", Verify: &verify.Options{Secrets: secrets("k\n")}},
			[]string{`secret 0 ("a") has leading or trailing whitespace`}},
		{"url not set", relay.SourceConfig{Name: "s", Provider: "twilio", Verify: &verify.Options{Secrets: secrets("k")}}, []string{`url is not set`}},
		{"verify token not set", relay.SourceConfig{Name: "s", Provider: "whatsapp", Verify: &verify.Options{Secrets: secrets("k")}}, []string{`verify_token is not set`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := verify.Problems(&tc.cfg)
			if len(got) != len(tc.want) {
				t.Fatalf("Problems = %q, want %d", got, len(tc.want))
			}
			for i := range got {
				if !strings.Contains(got[i], tc.want[i]) {
					t.Errorf("problem %d = %q, want %q", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestAcceptsContentType(t *testing.T) {
	tests := []struct {
		provider, contentType string
		want                  bool
	}{
		{"stripe", "application/json; charset=utf-8", true},
		{"stripe", "application/x-www-form-urlencoded", false},
		{"stripe", "", false},
		{"github", "application/x-www-form-urlencoded", true},
		{"slack", "Application/X-WWW-Form-Urlencoded", true},
		{"twilio", "application/x-www-form-urlencoded; charset=utf-8", true},
		{"twilio", "multipart/form-data; boundary=x", false},
		{"mailgun", "multipart/form-data; boundary=x", true},
		{"shopify", "application/xml", true},
		{"hmac", "text/csv", true},
		{"hmac", "", true},
		{"token", "application/octet-stream", true},
		{"discord", "application/cloudevents+json", true},
		{"nope", "application/json", false},
	}
	for _, tc := range tests {
		if got := verify.AcceptsContentType(tc.provider, tc.contentType); got != tc.want {
			t.Errorf("AcceptsContentType(%q, %q) = %v", tc.provider, tc.contentType, got)
		}
	}
}

func hexHMAC(key, msg string) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(msg))
	return hex.EncodeToString(m.Sum(nil))
}

func TestHandshakes(t *testing.T) {
	edKeys := ed25519Keys(t, 1)
	discordPub, _ := verify.EncodePublicKey("discord", edKeys[0].Public())
	tests := []struct {
		name     string
		cfg      relay.SourceConfig
		req      *relay.WebhookRequest
		key      bool
		wantType string // "" = no handshake
		wantBody string
	}{
		{"slack url_verification", relay.SourceConfig{Provider: "slack", Verify: &verify.Options{Secrets: secrets("k")}},
			jsonReq(`{"token":"t","challenge":"3eZbrw1aB","type":"url_verification"}`)(), false,
			"application/json", `{"challenge":"3eZbrw1aB"}`},
		{"slack ssl_check", relay.SourceConfig{Provider: "slack", Verify: &verify.Options{Secrets: secrets("k"), BodyFormat: "form"}},
			formReq("ssl_check=1&token=t")(), false, "text/plain; charset=utf-8", ``},
		{"slack event", relay.SourceConfig{Provider: "slack", Verify: &verify.Options{Secrets: secrets("k")}},
			jsonReq(`{"type":"event_callback","event":{"type":"message"}}`)(), false, "", ""},
		{"twitch verification", relay.SourceConfig{Provider: "twitch", Verify: &verify.Options{Secrets: secrets("k")}},
			jsonReq(`{"challenge":"pogchamp-kappa-360noscope-vohiyo","subscription":{"type":"channel.follow"}}`,
				"Twitch-Eventsub-Message-Type", "webhook_callback_verification")(), false,
			"text/plain; charset=utf-8", "pogchamp-kappa-360noscope-vohiyo"},
		{"twitch notification", relay.SourceConfig{Provider: "twitch", Verify: &verify.Options{Secrets: secrets("k")}},
			jsonReq(`{"challenge":"x"}`, "Twitch-Eventsub-Message-Type", "notification")(), false, "", ""},
		{"zoom url_validation", relay.SourceConfig{Provider: "zoom", Verify: &verify.Options{Secrets: secrets("zoom-secret")}},
			jsonReq(`{"payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"},"event_ts":1654503849680,"event":"endpoint.url_validation"}`)(), false,
			"application/json", `{"plainToken":"qgg8vlvZRS6UYooatFL8Aw","encryptedToken":"` + hexHMAC("zoom-secret", "qgg8vlvZRS6UYooatFL8Aw") + `"}`},
		{"discord interaction ping", relay.SourceConfig{Provider: "discord", Verify: &verify.Options{Secrets: secrets(discordPub)}},
			jsonReq(`{"id":"1","type":1,"application_id":"2"}`)(), true, "application/json", `{"type":1}`},
		{"discord interaction ping with its version", relay.SourceConfig{Provider: "discord", Verify: &verify.Options{Secrets: secrets(discordPub)}},
			jsonReq(`{"id":"1","type":1,"application_id":"2","token":"t","version":1}`)(), true, "application/json", `{"type":1}`},
		{"discord webhook event ping", relay.SourceConfig{Provider: "discord", Verify: &verify.Options{Secrets: secrets(discordPub)}},
			jsonReq(`{"version":1,"application_id":"2","type":0}`)(), true, "-", ``},
		{"discord webhook event", relay.SourceConfig{Provider: "discord", Verify: &verify.Options{Secrets: secrets(discordPub)}},
			jsonReq(`{"version":1,"application_id":"2","type":1,"event":{"type":"APPLICATION_AUTHORIZED","timestamp":"2024-10-18T14:42:53.064834"}}`)(), true, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Name = "h"
			v := mustNew(t, &tc.cfg)
			unsigned := *tc.req
			unsigned.Header = tc.req.Header.Clone()
			var err error
			if tc.key {
				err = verify.SignWithKey(&tc.cfg, edKeys[0], tc.req, testNow)
			} else {
				err = verify.Sign(&tc.cfg, tc.req, testNow)
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := v.Verify(tc.req, testNow)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.wantType == "" && got.Handshake != nil:
				t.Fatalf("unexpected handshake %+v", got.Handshake)
			case tc.wantType == "":
			case got.Handshake == nil:
				t.Fatal("no handshake")
			case tc.wantType == "-" && (got.Handshake.ContentType != "" || len(got.Handshake.Body) != 0):
				t.Errorf("handshake %+v, want empty (204)", got.Handshake)
			case tc.wantType != "-" && (got.Handshake.ContentType != tc.wantType || string(got.Handshake.Body) != tc.wantBody):
				t.Errorf("handshake %q %q, want %q %q", got.Handshake.ContentType, got.Handshake.Body, tc.wantType, tc.wantBody)
			}
			// A handshake is answered only after the signature verifies.
			if _, err := v.Verify(&unsigned, testNow); relay.ErrorCode(err) != relay.CodeUnauthenticated {
				t.Errorf("unsigned handshake: %v", err)
			}
		})
	}
}

func TestMetaChallenge(t *testing.T) {
	cfg := &relay.SourceConfig{
		Name:     "m",
		Provider: "whatsapp",
		Verify:   &verify.Options{Secrets: secrets("app-secret"), VerifyToken: &relay.Secret{Value: []byte("my-verify-token")}},
	}
	q := func(mode, token, challenge string) map[string][]string {
		m := map[string][]string{}
		for k, v := range map[string]string{"hub.mode": mode, "hub.verify_token": token, "hub.challenge": challenge} {
			if v != "" {
				m[k] = []string{v}
			}
		}
		return m
	}
	tests := []struct {
		name   string
		cfg    *relay.SourceConfig
		query  map[string][]string
		reason string
	}{
		{"ok", cfg, q("subscribe", "my-verify-token", "1158201444"), ""},
		{"wrong token", cfg, q("subscribe", "my-verify-tokem", "1158201444"), relay.ReasonMismatch},
		{"no token", cfg, q("subscribe", "", "1158201444"), relay.ReasonMissing},
		{"no challenge", cfg, q("subscribe", "my-verify-token", ""), relay.ReasonMissing},
		{"other mode", cfg, q("unsubscribe", "my-verify-token", "1"), relay.ReasonMalformed},
		{"no verify token configured", &relay.SourceConfig{Name: "m", Provider: "meta", Verify: &verify.Options{Secrets: secrets("s")}},
			q("subscribe", "x", "1"), relay.ReasonNoSecret},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ch, ok := mustNew(t, tc.cfg).(relay.EndpointChallenger)
			if !ok {
				t.Fatal("meta verifier is not an EndpointChallenger")
			}
			hs, err := ch.Challenge(tc.query)
			if tc.reason != "" {
				wantReason(t, err, tc.reason)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if hs.ContentType != "text/plain; charset=utf-8" || string(hs.Body) != "1158201444" {
				t.Errorf("got %q %q", hs.ContentType, hs.Body)
			}
		})
	}
	if _, ok := mustNew(t, &relay.SourceConfig{Provider: "github", Verify: &verify.Options{Secrets: secrets("k")}}).(relay.EndpointChallenger); ok {
		t.Error("github verifier implements EndpointChallenger")
	}
}

// verifyOK signs nothing: it verifies a hand-built request and returns the result.
func verifyOK(t *testing.T, cfg *relay.SourceConfig, r *relay.WebhookRequest) *relay.Verified {
	t.Helper()
	got, err := mustNew(t, cfg).Verify(r, testNow)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return got
}

func TestGenericPrefixes(t *testing.T) {
	body := `{"id":"1"}`
	sig := hexHMAC("k", body)
	tests := []struct {
		name, prefix, header string
		ok                   bool
	}{
		{"bare", "", sig, true},
		{"algorithm prefix not configured", "", "sha256=" + sig, true},
		{"configured prefix", "hmac ", "hmac " + sig, true},
		{"configured prefix absent", "hmac ", sig, true},
		{"other algorithm prefix", "", "sha1=" + sig, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &relay.SourceConfig{Verify: &verify.Options{Prefix: tc.prefix, Secrets: secrets("k")}}
			_, err := mustNew(t, cfg).Verify(jsonReq(body, "X-Signature", tc.header)(), testNow)
			if (err == nil) != tc.ok {
				t.Errorf("Verify: %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestSeveralSignatures(t *testing.T) {
	body := `{"id":"evt"}`
	stripeSig := hexHMAC("whsec_k", "1700000000."+body)
	swKey := "whsec_" + base64.StdEncoding.EncodeToString([]byte("k"))
	swSig := func(key string) string {
		m := hmac.New(sha256.New, []byte(key))
		m.Write([]byte("msg_1.1700000000." + body))
		return base64.StdEncoding.EncodeToString(m.Sum(nil))
	}
	tests := []struct {
		name string
		cfg  relay.SourceConfig
		req  *relay.WebhookRequest
	}{
		{"stripe v0, unknown keys and a second v1", relay.SourceConfig{Provider: "stripe", Verify: &verify.Options{Secrets: secrets("whsec_k")}},
			jsonReq(body, "Stripe-Signature", "t=1700000000, v1="+hexHMAC("whsec_other", "x")+", v0=abcd, x=y, v1="+stripeSig)()},
		{"paddle second h1", relay.SourceConfig{Provider: "paddle", Verify: &verify.Options{Secrets: secrets("k")}},
			jsonReq(body, "Paddle-Signature", "ts=1700000000;h1=00ff;h1="+hexHMAC("k", "1700000000:"+body))()},
		{"standard webhooks list", relay.SourceConfig{Provider: "standardwebhooks", Verify: &verify.Options{Secrets: secrets(swKey)}},
			jsonReq(body, "Webhook-Id", "msg_1", "Webhook-Timestamp", "1700000000",
				"Webhook-Signature", "v2,abc v1,"+swSig("other")+" v1a,AAAA  v1,"+swSig("k"))()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { verifyOK(t, &tc.cfg, tc.req) })
	}
}

func TestTwilioDetails(t *testing.T) {
	const token = "12345"
	sign := func(u, params string) string {
		m := hmac.New(sha1New, []byte(token))
		m.Write([]byte(u + params))
		return base64.StdEncoding.EncodeToString(m.Sum(nil))
	}
	t.Run("configured default port, signed without", func(t *testing.T) {
		cfg := &relay.SourceConfig{Provider: "twilio", URL: "https://relay.example.com:443/tw", Verify: &verify.Options{Secrets: secrets(token)}}
		r := formReq("B=2&A=1", "X-Twilio-Signature", sign("https://relay.example.com/tw", "A1B2"))()
		verifyOK(t, cfg, r)
	})
	t.Run("repeated parameters sorted", func(t *testing.T) {
		cfg := &relay.SourceConfig{Provider: "twilio", URL: "http://relay.example.com/tw", Verify: &verify.Options{Secrets: secrets(token)}}
		r := formReq("To=b&To=a&From=c", "X-Twilio-Signature", sign("http://relay.example.com:80/tw", "FromcToaTob"))()
		verifyOK(t, cfg, r)
	})
	t.Run("json body hash mismatch", func(t *testing.T) {
		cfg := &relay.SourceConfig{Provider: "twilio", URL: "https://relay.example.com/tw", Verify: &verify.Options{Secrets: secrets(token), BodyFormat: "json"}}
		q := "bodySHA256=" + strings.Repeat("0", 64)
		r := jsonReq(`{}`, "X-Twilio-Signature", sign("https://relay.example.com/tw?"+q, ""))()
		r.RawQuery = q
		_, err := mustNew(t, cfg).Verify(r, testNow)
		wantReason(t, err, relay.ReasonMismatch)
	})
	t.Run("json body without bodySHA256", func(t *testing.T) {
		cfg := &relay.SourceConfig{Provider: "twilio", URL: "https://relay.example.com/tw", Verify: &verify.Options{Secrets: secrets(token), BodyFormat: "json"}}
		r := jsonReq(`{}`, "X-Twilio-Signature", sign("https://relay.example.com/tw", ""))()
		_, err := mustNew(t, cfg).Verify(r, testNow)
		wantReason(t, err, relay.ReasonMissing)
	})
	t.Run("sign json appends bodySHA256", func(t *testing.T) {
		cfg := &relay.SourceConfig{Provider: "twilio", Verify: &verify.Options{Secrets: secrets(token), BodyFormat: "json"}}
		r := jsonReq(twilioJSONBody)()
		r.URL, r.RawQuery = "https://mycompany.com/myapp.php?foo=1&bar=2", "foo=1&bar=2"
		if err := verify.Sign(cfg, r, testNow); err != nil {
			t.Fatal(err)
		}
		if want := "foo=1&bar=2&bodySHA256=" + twilioBodySHA; r.RawQuery != want || !strings.HasSuffix(r.URL, want) {
			t.Errorf("RawQuery %q URL %q", r.RawQuery, r.URL)
		}
		if got := r.Header.Get("X-Twilio-Signature"); got != "a9nBmqA0ju/hNViExpshrM61xv4=" {
			t.Errorf("signature %q, want the published one", got)
		}
	})
}

func TestHubSpotURLDecoding(t *testing.T) {
	const secret = "hubspot-secret"
	signed := "POST" + "https://relay.example.com/hs?path=a/b:c" + `{"x":1}` + "1700000000000"
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(signed))
	cfg := &relay.SourceConfig{Provider: "hubspot", URL: "https://relay.example.com/hs", Verify: &verify.Options{Secrets: secrets(secret)}}
	r := jsonReq(`{"x":1}`, "X-HubSpot-Signature-v3", base64.StdEncoding.EncodeToString(m.Sum(nil)),
		"X-HubSpot-Request-Timestamp", "1700000000000")()
	r.RawQuery = "path=a%2Fb%3Ac"
	verifyOK(t, cfg, r)
}

func TestGitLabSigningToken(t *testing.T) {
	key := "whsec_" + base64.StdEncoding.EncodeToString([]byte("gitlab-signing-token"))
	r := jsonReq(`{"object_kind":"push"}`, "Webhook-Id", "ik-7", "Idempotency-Key", "ik-7", "X-Gitlab-Event", "Push Hook")()
	if err := verify.Sign(&relay.SourceConfig{Provider: "standardwebhooks", Verify: &verify.Options{Secrets: secrets(key)}}, r, testNow); err != nil {
		t.Fatal(err)
	}
	cfg := &relay.SourceConfig{Provider: "gitlab", Verify: &verify.Options{Secrets: secrets("plain-token", key)}}
	got := verifyOK(t, cfg, r)
	if got.Scheme != "hmac-sha256" || got.KeyIndex != 1 || got.ID != "ik-7" || got.Type != "Push Hook" {
		t.Errorf("got %+v", got)
	}
	r.Header.Set("Webhook-Timestamp", "1600000000")
	_, err := mustNew(t, cfg).Verify(r, testNow)
	wantReason(t, err, relay.ReasonMismatch)
	r.Header.Set("X-Gitlab-Token", "plain-token") // a valid token alongside suffices
	if got := verifyOK(t, cfg, r); got.Scheme != "token" || got.KeyIndex != 0 {
		t.Errorf("got %+v", got)
	}
}

func TestFieldOverridesAndHeaders(t *testing.T) {
	cfg := &relay.SourceConfig{
		Provider: "stripe",
		Verify:   &verify.Options{Secrets: secrets("whsec_k"), SubjectField: "data.object.customer", TypeHeader: "X-Kind", IDField: "request.idempotency_key"},
	}
	r := jsonReq(`{"id":"evt_1","type":"invoice.paid","request":{"idempotency_key":"ik"},"data":{"object":{"id":"in_1","customer":"cus_1"}}}`, "X-Kind", "custom")()
	if err := verify.Sign(cfg, r, testNow); err != nil {
		t.Fatal(err)
	}
	got := verifyOK(t, cfg, r)
	if got.ID != "ik" || got.Type != "custom" || got.Subject != "cus_1" {
		t.Errorf("got id %q type %q subject %q", got.ID, got.Type, got.Subject)
	}
	if got.Headers["x-kind"] != "custom" || len(got.Headers) != 1 {
		t.Errorf("headers %v", got.Headers)
	}

	// Configured header names never expose a credential.
	cfg = &relay.SourceConfig{Provider: "hmac", Verify: &verify.Options{Header: "X-Sig", Secrets: secrets("k"), IDHeader: "X-Sig", TypeHeader: "Authorization", UnsignedID: true}}
	r = jsonReq(`{"type":"t"}`, "Authorization", "Bearer x")()
	if err := verify.Sign(cfg, r, testNow); err != nil {
		t.Fatal(err)
	}
	if got := verifyOK(t, cfg, r); len(got.Headers) != 0 {
		t.Errorf("headers %v", got.Headers)
	}
}

func TestSignKeys(t *testing.T) {
	if err := verify.Sign(&relay.SourceConfig{Provider: "discord", Verify: &verify.Options{Secrets: secrets(strings.Repeat("ab", 32))}}, jsonReq(`{}`)(), testNow); !errors.Is(err, verify.ErrPrivateKeyRequired) {
		t.Errorf("Sign discord: %v", err)
	}
	if err := verify.SignWithKey(&relay.SourceConfig{Provider: "github", Verify: &verify.Options{Secrets: secrets("k")}}, ed25519Keys(t, 1)[0], jsonReq(`{}`)(), testNow); err == nil {
		t.Error("SignWithKey github succeeded")
	}
	if err := verify.SignWithKey(&relay.SourceConfig{Provider: "sendgrid"}, ed25519Keys(t, 1)[0], jsonReq(`{}`)(), testNow); err == nil {
		t.Error("SignWithKey sendgrid with an Ed25519 key succeeded")
	}
	// RFC 8032 test 1: the Discord vector's key.
	priv, err := verify.ParsePrivateKey("discord", "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
	if err != nil {
		t.Fatal(err)
	}
	if pub, _ := verify.EncodePublicKey("discord", priv.Public()); pub != "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a" {
		t.Errorf("public key %s", pub)
	}
	r := jsonReq(`{"type":1}`)()
	if err := verify.SignWithKey(&relay.SourceConfig{Provider: "discord"}, priv, r, time.Unix(1700000000, 0)); err != nil {
		t.Fatal(err)
	}
	if got := r.Header.Get("X-Signature-Ed25519"); got != "1695961a47c91a1ec033b819b7e87e3dbc583dd0cee6d1fd0216f58ac87b6228ae531ddbf91fb7bc28d7edf7f08604da16f54624f38a6bc0614e4dc13cd47f0f" {
		t.Errorf("signature %s, want the published one", got)
	}
	swPriv, err := verify.ParsePrivateKey("svix", "whsk_"+base64.StdEncoding.EncodeToString(make([]byte, 32)))
	if err != nil {
		t.Fatal(err)
	}
	swPub, _ := verify.EncodePublicKey("svix", swPriv.Public())
	cfg := &relay.SourceConfig{Provider: "svix", Verify: &verify.Options{Secrets: secrets(swPub)}}
	r = jsonReq(`{}`)()
	if err := verify.SignWithKey(cfg, swPriv, r, testNow); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(r.Header.Get("Svix-Signature"), "v1a,") {
		t.Errorf("svix signature %q", r.Header.Get("Svix-Signature"))
	}
	verifyOK(t, cfg, r)
	for _, bad := range [][2]string{{"discord", "zz"}, {"svix", "whsec_AAAA"}, {"sendgrid", "AAAA"}, {"github", "k"}} {
		if _, err := verify.ParsePrivateKey(bad[0], bad[1]); err == nil {
			t.Errorf("ParsePrivateKey(%q, %q) succeeded", bad[0], bad[1])
		}
	}
}

func TestSignDefaultsAndBodies(t *testing.T) {
	r := &relay.WebhookRequest{Body: []byte(`{"note":"x"}`)}
	cfg := &relay.SourceConfig{Provider: "linear", Verify: &verify.Options{Secrets: secrets("k")}}
	if err := verify.Sign(cfg, r, testNow); err != nil {
		t.Fatal(err)
	}
	if r.Method != "POST" || r.ContentType != "application/json" || r.Header.Get("Content-Type") != "application/json" {
		t.Errorf("defaults: %q %q", r.Method, r.ContentType)
	}
	if want := `{"webhookTimestamp":1700000000000,"note":"x"}`; string(r.Body) != want {
		t.Errorf("body %s, want %s", r.Body, want)
	}
	if err := verify.Sign(cfg, r, testNow.Add(time.Second)); err != nil { // re-signing replaces it
		t.Fatal(err)
	}
	if want := `{"webhookTimestamp":1700000001000,"note":"x"}`; string(r.Body) != want {
		t.Errorf("body %s, want %s", r.Body, want)
	}
	if err := verify.Sign(cfg, &relay.WebhookRequest{Body: []byte(`[1]`)}, testNow); err == nil {
		t.Error("linear Sign of an array body succeeded")
	}
	if err := verify.Sign(&relay.SourceConfig{Provider: "mailgun", Verify: &verify.Options{Secrets: secrets("k")}},
		&relay.WebhookRequest{ContentType: "multipart/form-data; boundary=b", Body: []byte("--b--")}, testNow); err == nil {
		t.Error("mailgun Sign of a multipart body succeeded")
	}
	if err := verify.Sign(&relay.SourceConfig{Provider: "stripe", Verify: &verify.Options{Secrets: secrets("k")}},
		&relay.WebhookRequest{ContentType: "text/plain"}, testNow); err == nil {
		t.Error("Sign of a content type the provider never sends succeeded")
	}
}

func TestMailgunMultipart(t *testing.T) {
	const boundary = "xYzZY"
	sig := hexHMAC("key-1", "1700000000"+"tok123")
	part := func(name, value string) string {
		return "--" + boundary + "\r\nContent-Disposition: form-data; name=\"" + name + "\"\r\n\r\n" + value + "\r\n"
	}
	body := part("timestamp", "1700000000") + part("token", "tok123") + part("signature", sig) + part("event", "stored") +
		"--" + boundary + "\r\nContent-Disposition: form-data; name=\"attachment-1\"; filename=\"a.txt\"\r\n\r\nfile body\r\n" +
		"--" + boundary + "--\r\n"
	r := &relay.WebhookRequest{Method: "POST", ContentType: "multipart/form-data; boundary=" + boundary, Body: []byte(body)}
	got := verifyOK(t, &relay.SourceConfig{Provider: "mailgun", Verify: &verify.Options{Secrets: secrets("key-1"), BodyFormat: "multipart"}}, r)
	if got.ID != "tok123" || got.Type != "stored" || !got.SignedTime.Equal(testNow) {
		t.Errorf("got %+v", got)
	}
}

func TestConcurrentVerify(t *testing.T) {
	for _, f := range fixtures(t) {
		v := mustNew(t, f.config(0, 1))
		reqs := []*relay.WebhookRequest{f.sign(t, 0, testNow), f.sign(t, 1, testNow)}
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Go(func() {
				// Each goroutine verifies its own copy: requests are per call, verifiers shared.
				r := *reqs[i%2]
				if got, err := v.Verify(&r, testNow); err != nil || got.KeyIndex != i%2 {
					t.Errorf("%s: %v %v", f.name, got, err)
				}
			})
		}
		wg.Wait()
	}
}

var sha1New = sha1.New
