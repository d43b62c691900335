package relay_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strconv"
	"testing"

	"github.com/eventrelay/eventrelay/relay"
	"github.com/eventrelay/eventrelay/relay/verify"
)

// nullStore acknowledges every append at once: BenchmarkIngest measures the domain's share of
// an ingest (verify, extract, build and marshal the Event), not Redis.
type nullStore struct{ relay.Store }

func (nullStore) Append(_ context.Context, req relay.AppendRequest) (relay.AppendResult, error) {
	return relay.AppendResult{ID: relay.ID{Ms: 1, Seq: uint64(len(req.Event))}}, nil
}

// BenchmarkIngest is Service.Ingest of a signed ~160-byte JSON webhook (hmac source, id and
// type read from the body) on a store that acknowledges at once.
func BenchmarkIngest(b *testing.B) {
	cfg := relay.SourceConfig{Name: "orders", Provider: "hmac", Verify: &verify.Options{Secrets: []relay.Secret{{Value: []byte("bench-secret")}}}}
	cfg.SetDefaults()
	v, err := verify.New(&cfg)
	if err != nil {
		b.Fatal(err)
	}
	svc, err := relay.NewService(nullStore{}, []*relay.Source{{Config: cfg, Verifier: v}}, relay.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer svc.Close()
	// A ring of signed requests (the null store does not dedupe, so reuse is fine).
	reqs := make([]*relay.WebhookRequest, 1024)
	for i := range reqs {
		body := []byte(`{"id":"evt_` + strconv.Itoa(i) + `","type":"order.created","created":1700000000,"data":{"object":{"id":"ord_1","amount":1999,"currency":"usd","customer":"cus_42"}}}`)
		mac := hmac.New(sha256.New, []byte("bench-secret"))
		mac.Write(body)
		reqs[i] = &relay.WebhookRequest{Method: http.MethodPost, Path: "/v1/webhooks/orders", ContentType: "application/json",
			Header: http.Header{"Content-Type": {"application/json"}, "X-Signature": {"sha256=" + hex.EncodeToString(mac.Sum(nil))}},
			Body:   body}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := svc.Ingest(context.Background(), "orders", reqs[i%len(reqs)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
