package server

import (
	"bytes"
	"io"
	"net/http"
	"testing"
	"time"
)

// TestWebhookDirectMatchesGateway sends the same webhooks through the direct path (the
// default) and through the grpc-gateway route (IngressOptions.ViaGateway): status, content
// type and body must be identical, and both must store the event.
func TestWebhookDirectMatchesGateway(t *testing.T) {
	direct := newEnv(t, envOptions{})
	gateway := newEnv(t, envOptions{ingress: IngressOptions{ViaGateway: true}})
	now := time.Now()
	body := []byte("{\n  \"id\": \"evt_gw\",\n  \"type\": \"order.created\",\n  \"note\": \"Grüße\"\n}\n")
	cases := []struct {
		name   string
		req    func(e *env) *http.Request
		status int
	}{
		{"stored", func(e *env) *http.Request { return e.signedRequest("orders", body, now) }, 200},
		{"duplicate", func(e *env) *http.Request { return e.signedRequest("orders", body, now) }, 200},
		{"tampered", func(e *env) *http.Request {
			r := e.signedRequest("orders", body, now)
			r.Body = io.NopCloser(bytes.NewReader(append([]byte(nil), append(body, ' ')...)))
			r.ContentLength++
			return r
		}, 401},
		{"unsigned", func(e *env) *http.Request {
			r := e.signedRequest("orders", body, now)
			r.Header.Del("X-Signature")
			return r
		}, 401},
		{"malformed JSON id", func(e *env) *http.Request { return e.signedRequest("orders", []byte(`{"id":"a b"}`), now) }, 400},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var answers [2]struct {
				status int
				ct     string
				body   string
			}
			for i, e := range []*env{direct, gateway} {
				resp, err := http.DefaultClient.Do(tc.req(e))
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				answers[i].status, answers[i].ct, answers[i].body = resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
			}
			if answers[0] != answers[1] {
				t.Fatalf("direct %+v\ngateway %+v", answers[0], answers[1])
			}
			if answers[0].status != tc.status {
				t.Fatalf("status %d, want %d: %s", answers[0].status, tc.status, answers[0].body)
			}
		})
	}
}
