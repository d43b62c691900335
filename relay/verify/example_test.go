package verify_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"time"

	"github.com/eventrelay/eventrelay/relay"
	"github.com/eventrelay/eventrelay/relay/verify"
)

// A hand-written sender signs the raw body with HMAC-SHA256 in X-Signature; the source keeps
// the id and type from the JSON body.
func ExampleNew() {
	cfg := &relay.SourceConfig{
		Name:     "orders",
		Provider: "hmac",
		Verify:   &verify.Options{Secrets: []relay.Secret{{ID: "2024", Value: []byte("shared-secret")}}},
	}
	v, err := verify.New(cfg)
	if err != nil {
		panic(err)
	}

	body := []byte(`{"id":"ord_1","type":"order.paid"}`)
	mac := hmac.New(sha256.New, []byte("shared-secret"))
	mac.Write(body)
	req := &relay.WebhookRequest{
		Method:      "POST",
		ContentType: "application/json",
		Header:      http.Header{"X-Signature": {"sha256=" + hex.EncodeToString(mac.Sum(nil))}},
		Body:        body,
	}

	got, err := v.Verify(req, time.Now())
	if err != nil {
		panic(err)
	}
	fmt.Println(got.Scheme, got.KeyID, got.ID, got.Type)

	req.Body = []byte(`{"id":"ord_1","type":"order.refunded"}`)
	_, err = v.Verify(req, time.Now())
	fmt.Println(relay.ErrorCode(err), relay.ErrorReason(err))
	// Output:
	// hmac-sha256 2024 ord_1 order.paid
	// unauthenticated mismatch
}

// Stripe's published vector, verified at the time it was signed (the verifier's clock is a
// parameter) and five minutes and one second later.
func ExampleNew_stripe() {
	v, err := verify.New(&relay.SourceConfig{
		Name:     "billing",
		Provider: "stripe",
		Verify:   &verify.Options{Secrets: []relay.Secret{{Value: []byte("whsec_test_secret")}}},
	})
	if err != nil {
		panic(err)
	}
	req := &relay.WebhookRequest{
		Method:      "POST",
		ContentType: "application/json",
		Header: http.Header{"Stripe-Signature": {
			"t=1614265330,v1=3c5817089d739023dd6190f70a3757e04f7a2fd8b5dab12c2e000f51970dccff"}},
		Body: []byte(`{"id":"evt_test_webhook","object":"event"}`),
	}
	signed := time.Unix(1614265330, 0)

	got, err := v.Verify(req, signed)
	if err != nil {
		panic(err)
	}
	fmt.Println(got.Provider, got.Scheme, got.ID, got.SignedTime.Format(time.RFC3339))

	_, err = v.Verify(req, signed.Add(5*time.Minute+time.Second))
	fmt.Println(relay.ErrorReason(err))
	// Output:
	// stripe hmac-sha256 evt_test_webhook 2021-02-25T15:02:10Z
	// stale
}

// Sign writes what the provider would, so a test (or relayctl send) can produce deliveries
// the verifier accepts.
func ExampleSign() {
	cfg := &relay.SourceConfig{
		Name:     "chat",
		Provider: "slack",
		Verify:   &verify.Options{Secrets: []relay.Secret{{Value: []byte("8f742231b10e8888abcd99yyyzzz85a5")}}},
	}
	req := &relay.WebhookRequest{Body: []byte(`{"type":"url_verification","challenge":"3eZbrw1aB"}`)}
	now := time.Unix(1531420618, 0)
	if err := verify.Sign(cfg, req, now); err != nil {
		panic(err)
	}
	fmt.Println(req.ContentType, req.Header.Get("X-Slack-Request-Timestamp"))

	v, _ := verify.New(cfg)
	got, err := v.Verify(req, now)
	if err != nil {
		panic(err)
	}
	fmt.Println(got.Handshake.ContentType, string(got.Handshake.Body))
	// Output:
	// application/json 1531420618
	// application/json {"challenge":"3eZbrw1aB"}
}

// A source without a usable secret builds, refuses every request, and is reported.
func ExampleProblems() {
	cfg := &relay.SourceConfig{Name: "bot", Provider: "discord", Verify: &verify.Options{Secrets: []relay.Secret{{Value: []byte("not-a-key")}}}}
	for _, p := range verify.Problems(cfg) {
		fmt.Println(p)
	}
	v, _ := verify.New(cfg)
	_, err := v.Verify(&relay.WebhookRequest{ContentType: "application/json"}, time.Now())
	fmt.Println(relay.ErrorReason(err))
	// Output:
	// source "bot": secret 0 is unusable: not an Ed25519 public key (want 64 hex digits)
	// source "bot" has no usable secret: every request is refused
	// no_secret
}
