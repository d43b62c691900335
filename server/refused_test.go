package server

import (
	"net/http"
	"testing"
)

// TestRedactedHeaders: the refused-requests log keeps headers, but never a credential: by
// name (Authorization, cookies, anything naming a token, secret, key, password, auth,
// signature or hmac: GitHub's older X-Hub-Signature is an HMAC-SHA1 under the source's
// secret) and the source's own credential headers whatever their names.
func TestRedactedHeaders(t *testing.T) {
	h := http.Header{}
	for name, value := range map[string]string{
		"Authorization":         "Bearer abc",
		"Cookie":                "s=1",
		"X-Api-Key":             "k",
		"X-Hub-Signature":       "sha1=0123",
		"X-Shopify-Hmac-Sha256": "c2ln",
		"X-Hook-Pass":           "Sup3rS3cret",
		"X-Github-Event":        "push",
		"Content-Type":          "application/json",
	} {
		h.Set(name, value)
	}
	got := redactedHeaders(h, []string{"X-Hook-Pass"})
	for name, want := range map[string]string{
		"Authorization": "redacted", "Cookie": "redacted", "X-Api-Key": "redacted", "X-Hub-Signature": "redacted",
		"X-Shopify-Hmac-Sha256": "redacted", "X-Hook-Pass": "redacted",
		"X-Github-Event": "push", "Content-Type": "application/json",
	} {
		if got[name] != want {
			t.Errorf("%s: %q, want %q", name, got[name], want)
		}
	}
}
