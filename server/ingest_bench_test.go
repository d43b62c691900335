package server

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/eventrelay/eventrelay/relay"
	"github.com/eventrelay/eventrelay/relay/verify"
)

// ackStore acknowledges every append at once, so that BenchmarkWebhookHandler measures the
// HTTP layer and the domain, not Redis.
type ackStore struct{ relay.Store }

func (ackStore) Append(_ context.Context, req relay.AppendRequest) (relay.AppendResult, error) {
	return relay.AppendResult{ID: relay.ID{Ms: 1, Seq: uint64(len(req.Event))}}, nil
}

// BenchmarkWebhookHandler is one signed webhook through the public HTTP handler (request
// id, ingress checks, verify, Event, append, answer) on a store that acknowledges at once.
// The request and recorder built per iteration are part of the figures; the refused-requests
// log and the activity counts are on, as relayd has them.
func BenchmarkWebhookHandler(b *testing.B) {
	cfg := relay.SourceConfig{Name: "orders", Provider: "hmac", Verify: &verify.Options{Secrets: []relay.Secret{{Value: []byte("bench-secret")}}}}
	cfg.SetDefaults()
	v, err := verify.New(&cfg)
	if err != nil {
		b.Fatal(err)
	}
	svc, err := relay.NewService(ackStore{}, []*relay.Source{{Config: cfg, Verifier: v}}, relay.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer svc.Close()
	log := slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	m := NewMetrics()
	h, err := NewHTTPHandler(b.Context(), svc, HTTPOptions{Webhooks: NewWebhookServer(svc, WebhookServerOptions{Logger: log, Metrics: m}), Logger: log, Metrics: m,
		Ingress: IngressOptions{MaxConcurrent: 1024, Refused: NewRefusedLog(0), Activity: NewActivity(), ContentTypes: func(src *relay.SourceConfig, ct string) bool {
			return verify.SourceAccepts(src, ct)
		}}})
	if err != nil {
		b.Fatal(err)
	}
	type signed struct {
		body []byte
		sig  string
	}
	reqs := make([]signed, 1024)
	for i := range reqs {
		body := []byte(`{"id":"evt_` + strconv.Itoa(i) + `","type":"order.created","created":1700000000,"data":{"object":{"id":"ord_1","amount":1999,"currency":"usd","customer":"cus_42"}}}`)
		mac := hmac.New(sha256.New, []byte("bench-secret"))
		mac.Write(body)
		reqs[i] = signed{body, "sha256=" + hex.EncodeToString(mac.Sum(nil))}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		s := reqs[i%len(reqs)]
		i++
		r := httptest.NewRequest(http.MethodPost, "http://relay.example/v1/webhooks/orders", bytes.NewReader(s.body))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("X-Signature", s.sig)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
}
