package push_test

import (
	"strings"
	"testing"

	"github.com/eventrelay/eventrelay/relay"
	"github.com/eventrelay/eventrelay/relay/push"
)

// The headers of a destination may not use a webhook-* name, set by the relay or not
// (docs/configuration.md, destinations[].headers).
func TestConfigValidateHeaders(t *testing.T) {
	tests := []struct {
		name    string
		headers map[string]string
		want    string // "": valid
	}{
		{"ordinary headers", map[string]string{"Authorization": "Bearer x", "X-Team": "pay", "Webhooks": "x", "X-Webhook-Version": "1"}, ""},
		{"webhook-version", map[string]string{"webhook-version": "sneaky"}, "headers.webhook-version: webhook-* names are reserved for the Standard Webhooks headers; cannot be set"},
		{"Webhook-Version", map[string]string{"Webhook-Version": "sneaky"}, "headers.Webhook-Version: webhook-* names are reserved for the Standard Webhooks headers; cannot be set"},
		{"WEBHOOK-X", map[string]string{"WEBHOOK-X": "y"}, "headers.WEBHOOK-X: webhook-* names are reserved for the Standard Webhooks headers; cannot be set"},
		{"webhook-signature", map[string]string{"webhook-signature": "v1,x"}, "headers.webhook-signature: set by the relay on every POST; cannot be replaced"},
		{"Webhook-Timestamp", map[string]string{"Webhook-Timestamp": "1"}, "headers.Webhook-Timestamp: set by the relay on every POST; cannot be replaced"},
		{"eventrelay-", map[string]string{"eventrelay-attempt": "1"}, "headers.eventrelay-attempt: set by the relay on every POST; cannot be replaced"},
		{"traceparent", map[string]string{"Traceparent": "x"}, "headers.Traceparent: set by the relay on every POST; cannot be replaced"},
		{"content-type", map[string]string{"Content-Type": "text/plain"}, "headers.Content-Type: set by the relay on every POST; cannot be replaced"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := push.Config{Name: "hooks", URL: "https://example.com/in", Secrets: []relay.Secret{{Value: []byte(secret1)}}, Headers: tt.headers}
			c.SetDefaults()
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			if err == nil || err.Error() != tt.want {
				t.Fatalf("Validate = %v\nwant %s", err, tt.want)
			}
			if strings.Contains(err.Error(), "sneaky") {
				t.Error("the error shows the header's value")
			}
		})
	}
}
