package verify_test

import (
	"slices"
	"testing"

	"github.com/eventrelay/eventrelay/relay"
	"github.com/eventrelay/eventrelay/relay/verify"
)

// TestCredentialHeaders: the headers that carry a source's credential or a signature made
// with its secret, by provider (from each provider's documentation); never the timestamp or
// id headers, which the refused-requests log keeps showing.
func TestCredentialHeaders(t *testing.T) {
	for _, tc := range []struct {
		provider, header string
		want             []string
	}{
		{"hmac", "", []string{"X-Signature"}},
		{"hmac", "X-Acme-Sig", []string{"X-Acme-Sig"}},
		{"token", "X-Hook-Pass", []string{"X-Hook-Pass"}},
		{"gitlab", "", []string{"X-Gitlab-Token"}},
		{"stripe", "", []string{"Stripe-Signature"}},
		{"github", "", []string{"X-Hub-Signature-256"}},
		{"slack", "", []string{"X-Slack-Signature"}},                  // not X-Slack-Request-Timestamp
		{"shopify", "", []string{"X-Shopify-Hmac-Sha256"}},            // not X-Shopify-Webhook-Id
		{"twitch", "", []string{"Twitch-Eventsub-Message-Signature"}}, // not the message id or timestamp
		{"mailgun", "", nil},                                          // signed in the body
		{"discord", "", nil},                                          // an Ed25519 signature: no shared secret
	} {
		t.Run(tc.provider+tc.header, func(t *testing.T) {
			secret := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
			if tc.provider == "discord" {
				secret = "e421dceefff3a9d008b7898fcc0974813201800419d72f36d51e010d6a0acb71"
			}
			o := &verify.Options{Secrets: []relay.Secret{{Value: []byte(secret)}}, Header: tc.header}
			src := relay.SourceConfig{Name: "s", Provider: tc.provider, Verify: o}
			src.SetDefaults()
			if got := verify.CredentialHeaders(&src); !slices.Equal(got, tc.want) {
				t.Fatalf("CredentialHeaders = %q, want %q", got, tc.want)
			}
		})
	}
}
