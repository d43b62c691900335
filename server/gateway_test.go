package server

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/eventrelay/eventrelay/relay"
)

// TestWebhookDirectMatchesGateway sends the same webhooks through the direct path (the
// default) and through the grpc-gateway route (IngressOptions.ViaGateway): status, content
// type and body must be identical, and both must store the event: once, byte for byte, with
// the second delivery answered as a duplicate.
func TestWebhookDirectMatchesGateway(t *testing.T) {
	direct := newEnv(t, envOptions{})
	gateway := newEnv(t, envOptions{ingress: IngressOptions{ViaGateway: true}})
	now := time.Now()
	body := []byte("{\n  \"id\": \"evt_gw\",\n  \"type\": \"order.created\",\n  \"note\": \"Grüße\"\n}\n")
	cases := []struct {
		name   string
		req    func(e *env) *http.Request
		status int
		answer string // the exact body of a 200
	}{
		{"stored", func(e *env) *http.Request { return e.signedRequest("orders", body, now) }, 200, `{"event_id":"evt_gw","duplicate":false}`},
		{"duplicate", func(e *env) *http.Request { return e.signedRequest("orders", body, now) }, 200, `{"event_id":"evt_gw","duplicate":true}`},
		{"tampered", func(e *env) *http.Request {
			r := e.signedRequest("orders", body, now)
			r.Body = io.NopCloser(bytes.NewReader(append([]byte(nil), append(body, ' ')...)))
			r.ContentLength++
			return r
		}, 401, ""},
		{"unsigned", func(e *env) *http.Request {
			r := e.signedRequest("orders", body, now)
			r.Header.Del("X-Signature")
			return r
		}, 401, ""},
		{"malformed JSON id", func(e *env) *http.Request { return e.signedRequest("orders", []byte(`{"id":"a b"}`), now) }, 400, ""},
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
			if tc.answer != "" && strings.TrimSpace(answers[0].body) != tc.answer {
				t.Fatalf("answer %s, want %s", answers[0].body, tc.answer)
			}
			// After every case each relay holds the one event, stored by the first.
			for i, e := range []*env{direct, gateway} {
				es, err := e.store.Range(context.Background(), relay.Partition{Source: "orders"}, relay.ID{}, relay.MaxID, 10, false)
				if err != nil {
					t.Fatal(err)
				}
				if len(es) != 1 {
					t.Fatalf("%s: %d entries, want 1", [2]string{"direct", "gateway"}[i], len(es))
				}
				ev, err := relay.DecodeEvent(es[0].Event)
				if err != nil || ev.Id != "evt_gw" || !bytes.Equal(ev.Data, body) {
					t.Fatalf("%s: stored %v %q, want evt_gw with the body byte for byte (%v)", [2]string{"direct", "gateway"}[i], ev.GetId(), ev.GetData(), err)
				}
			}
		})
	}
}

// TestHTTPStatusesFromTheTable: the answers grpc-gateway makes itself follow relayd's code
// table too: an error ending an HTTP Subscribe before its first message (FAILED_PRECONDITION:
// 412, where grpc-gateway's table says 400), and a method a route does not take (405, where
// grpc-gateway answers 501 UNIMPLEMENTED).
func TestHTTPStatusesFromTheTable(t *testing.T) {
	e := newEnv(t, envOptions{})
	do := func(method, path string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, e.http.URL+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return resp.StatusCode, string(b)
	}
	// The group is created with a 30s ack deadline; a member asking for 60s is refused.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.http.URL+"/v1/events:subscribe?sources=orders&group=g&ack_deadline=30s&heartbeat_interval=1s", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("first member: %v %v", resp, err)
	}
	defer resp.Body.Close()
	if code, body := do(http.MethodGet, "/v1/events:subscribe?sources=orders&group=g&ack_deadline=60s"); code != http.StatusPreconditionFailed || !strings.Contains(body, "ack_deadline") {
		t.Errorf("member asking for another ack_deadline: %d %s, want 412", code, body)
	}
	for _, c := range []struct{ method, path string }{
		{http.MethodDelete, "/v1/events:acknowledge"},
		{http.MethodPut, "/v1/events"},
		{http.MethodPost, "/v1/sources/orders/events"},
	} {
		if code, body := do(c.method, c.path); code != http.StatusMethodNotAllowed || !strings.Contains(body, "not allowed") {
			t.Errorf("%s %s: %d %s, want 405", c.method, c.path, code, body)
		}
	}
}

// TestEventIDWithSlash: an event id may hold "/" (it is printable); GetEvent over HTTP reads it
// with the slash percent-encoded in the path (/v1/sources/orders/events/a%2Fb), as the console
// and encodeURIComponent write it.
func TestEventIDWithSlash(t *testing.T) {
	e := newEnv(t, envOptions{})
	if _, err := e.svc.Publish(context.Background(), relay.PublishInput{Source: "orders", ID: "a/b", Type: "t", Data: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(e.http.URL + "/v1/sources/orders/events/a%2Fb")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"id":"a/b"`) {
		t.Fatalf("GET .../events/a%%2Fb: %d %s", resp.StatusCode, b)
	}
}
