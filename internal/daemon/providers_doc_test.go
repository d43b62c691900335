package daemon

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eventrelay/eventrelay/internal/config"
	"github.com/eventrelay/eventrelay/relay"
	"github.com/eventrelay/eventrelay/relay/verify"
)

// The provider configuration examples of docs/providers.md ("Providers") live in
// interop/providers/examples.yaml. Every example must load, build its verifier without a
// start-up warning, and verify a request signed for it; every provider name has an example
// (aliases are named in docs/providers.md); and docs/providers.md carries every example verbatim.

const (
	providersExamples = "../../interop/providers/examples.yaml"
	providersReadme   = "../../docs/providers.md"
)

// providerAliases are the provider names that are another provider under a second name.
var providerAliases = map[string]string{"facebook": "meta", "instagram": "meta", "whatsapp": "meta"}

func TestProvidersDocExamples(t *testing.T) {
	_, discordPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sendgridPriv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	discordPub, err := verify.EncodePublicKey("discord", discordPriv.Public())
	if err != nil {
		t.Fatal(err)
	}
	sendgridPub, err := verify.EncodePublicKey("sendgrid", &sendgridPriv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	whsec := func(s string) string { return "whsec_" + base64.StdEncoding.EncodeToString([]byte(s)) }
	// The variables the examples reference, with values of each provider's format.
	environ := []string{
		"ORDERS_SECRET=orders-current-secret", "ORDERS_SECRET_OLD=orders-previous-secret",
		"ACME_SIGNING_SECRET=acme-signing-secret",
		"STRIPE_WEBHOOK_SECRET=whsec_doc_current", "STRIPE_WEBHOOK_SECRET_OLD=whsec_doc_previous",
		"BILLING_WEBHOOK_SECRET=" + whsec("billing-secret-bytes"),
		"CLERK_WEBHOOK_SECRET=" + whsec("clerk-secret-bytes"),
		"GITHUB_WEBHOOK_SECRET=It's a Secret to Everybody",
		"GITLAB_WEBHOOK_TOKEN=gitlab-secret-token",
		"BITBUCKET_WEBHOOK_SECRET=bitbucket-secret",
		"SLACK_SIGNING_SECRET=8f742231b10e8888abcd99yyyzzz85a5",
		"TWILIO_AUTH_TOKEN=12345", "TWILIO_AUTH_TOKEN_SECONDARY=67890",
		"SHOPIFY_CLIENT_SECRET=shopify-client-secret",
		"SQUARE_SIGNATURE_KEY=signature-key",
		"ZOOM_SECRET_TOKEN=zoom-secret-token",
		"TWITCH_EVENTSUB_SECRET=twitch-eventsub-secret",
		"LINEAR_WEBHOOK_SECRET=lin_wh_doc",
		"PADDLE_WEBHOOK_SECRET=pdl_ntfset_doc",
		"HUBSPOT_CLIENT_SECRET=hubspot-client-secret",
		"INTERCOM_CLIENT_SECRET=intercom-client-secret",
		"DISCORD_PUBLIC_KEY=" + discordPub,
		"SENDGRID_VERIFICATION_KEY=" + sendgridPub,
		"MAILGUN_SIGNING_KEY=key-mailgun-signing",
		"META_APP_SECRET=meta-app-secret", "META_VERIFY_TOKEN=meta-verify-token",
		"CRM_BASIC_CREDENTIALS=crm:correct horse battery staple",
		"ERP_WEBHOOK_TOKEN=erp-token",
		"LEGACY_CRM_TOKEN=legacy-crm-token",
	}
	privateKeys := map[string]crypto.Signer{"discord": discordPriv, "sendgrid": sendgridPriv}

	cfg, err := config.Load(providersExamples, environ, nil)
	if err != nil {
		t.Fatalf("config.Load(%s): %v", providersExamples, err)
	}
	now := time.Now()
	used := map[string]bool{}
	for i := range cfg.Sources {
		s := &cfg.Sources[i]
		used[s.Provider] = true
		t.Run(s.Name, func(t *testing.T) {
			v, err := verify.New(s)
			if err != nil {
				t.Fatalf("verify.New: %v", err)
			}
			if p := verify.Problems(s); len(p) > 0 {
				t.Errorf("start-up warnings: %q", p)
			}
			req := &relay.WebhookRequest{
				Method:      http.MethodPost,
				URL:         "https://hooks.example.com/v1/webhooks/" + s.Name,
				Path:        "/v1/webhooks/" + s.Name,
				Header:      http.Header{},
				ContentType: "application/json",
				Body:        []byte(`{"id":"evt_doc_1","type":"doc.tested","event":"doc.tested","customer":{"id":"cus_1"},"created_at":1700000000}`),
			}
			if _, def := verify.BodyFormats(s.Provider); verify.OptionsOf(s).BodyFormat == "form" || verify.OptionsOf(s).BodyFormat == "" && def == "form" {
				req.ContentType, req.Body = "application/x-www-form-urlencoded", []byte("MessageSid=SM1&type=doc.tested&id=evt_doc_1")
			}
			if k := privateKeys[s.Provider]; k != nil {
				err = verify.SignWithKey(s, k, req, now)
			} else {
				err = verify.Sign(s, req, now)
			}
			if err != nil {
				t.Fatalf("sign: %v", err)
			}
			got, err := v.Verify(req, now)
			if err != nil {
				t.Fatalf("Verify of a request signed for the example: %v", err)
			}
			if got.Provider != s.Provider || got.KeyIndex != 0 {
				t.Errorf("verified provider %q key %d, want %q key 0", got.Provider, got.KeyIndex, s.Provider)
			}
			if ch, ok := v.(relay.EndpointChallenger); ok {
				h, err := ch.Challenge(map[string][]string{
					"hub.mode": {"subscribe"}, "hub.verify_token": {"meta-verify-token"}, "hub.challenge": {"1158201444"},
				})
				if err != nil || string(h.Body) != "1158201444" {
					t.Errorf("Challenge = %v, %v; want the challenge echoed", h, err)
				}
			}
		})
	}
	for _, p := range verify.Providers() {
		if _, alias := providerAliases[p]; !alias && !used[p] {
			t.Errorf("provider %q has no example in %s", p, providersExamples)
		}
	}
	for alias, of := range providerAliases {
		if !slices.Contains(verify.Providers(), alias) || !slices.Contains(verify.Providers(), of) {
			t.Errorf("alias %q of %q: not a provider name (update providerAliases)", alias, of)
		}
	}
}

func TestProvidersDocReadme(t *testing.T) {
	readme, err := os.ReadFile(providersReadme)
	if err != nil {
		t.Fatal(err)
	}
	section := string(readme)
	start := strings.Index(section, "\n## Providers\n")
	if start < 0 {
		t.Fatal(`docs/providers.md has no "## Providers" section`)
	}
	section = section[start+1:]
	if end := strings.Index(section, "\n## "); end >= 0 {
		section = section[:end]
	}
	// The table names every provider, aliases included.
	for _, p := range verify.Providers() {
		if !strings.Contains(section, "`"+p+"`") {
			t.Errorf("docs/providers.md Providers section does not name provider `%s`", p)
		}
	}
	// Every example block appears verbatim, unindented by two spaces.
	examples, err := os.ReadFile(providersExamples)
	if err != nil {
		t.Fatal(err)
	}
	_, body, ok := strings.Cut(string(examples), "\nsources:\n")
	if !ok {
		t.Fatalf("%s: no sources: list", providersExamples)
	}
	n := 0
	for block := range strings.SplitSeq(strings.TrimSpace(body), "\n\n") {
		var lines []string
		for l := range strings.SplitSeq(strings.TrimRight(block, "\n"), "\n") {
			lines = append(lines, strings.TrimPrefix(l, "  "))
		}
		want := strings.Join(lines, "\n") + "\n"
		n++
		if !strings.Contains(section, want) {
			first := lines[0]
			for _, l := range lines {
				if strings.HasPrefix(l, "- name:") {
					first = l
				}
			}
			t.Errorf("docs/providers.md Providers section lacks the example %q of %s (or it differs)", first, providersExamples)
		}
	}
	if n < len(verify.Providers())-len(providerAliases) {
		t.Errorf("%d example blocks, want at least one per provider", n)
	}
}
