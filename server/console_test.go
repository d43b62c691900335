package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eventrelay/eventrelay/relay"
	"github.com/eventrelay/eventrelay/relay/redisstore"
	"github.com/eventrelay/eventrelay/relay/verify"
	"github.com/redis/go-redis/v9"
)

// consoleEnv is a relay with the console mounted on its own test server, the ingress counting
// into act and refused.
func consoleEnv(t testing.TB, url string, tokens []Token, sources []relay.SourceConfig) (*env, *httptest.Server) {
	t.Helper()
	act, refused := NewActivity(), NewRefusedLog(0)
	e := newEnv(t, envOptions{redisURL: url, tokens: tokens, sources: sources, ingress: IngressOptions{Activity: act, Refused: refused}})
	auth := NewAuth(AuthOptions{Tokens: tokens})
	h, err := NewConsoleHandler(t.Context(), ConsoleOptions{Service: e.svc, Auth: auth, Conn: e.conn,
		Events: EventRoutesOptions{Auth: auth}, Refused: refused, Activity: act, Ingress: e.handler, Logger: e.log})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return e, srv
}

type consoleCall struct {
	status int
	header http.Header
	body   string
}

func callConsole(t testing.TB, srv *httptest.Server, method, path, token, body string) consoleCall {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return consoleCall{resp.StatusCode, resp.Header, string(b)}
}

// Who may open the console and what each token sees: no token, a token without console
// access, a console token for one source, one for everything that may publish.
func TestConsoleAuth(t *testing.T) {
	tokens := []Token{
		{Name: "api", Value: []byte("api-token")},
		{Name: "viewer", Value: []byte("viewer-token"), Sources: []string{"orders"}, Console: true},
		{Name: "ops", Value: []byte("ops-token"), Publish: true, Console: true},
	}
	_, srv := consoleEnv(t, "", tokens, nil)
	tests := []struct {
		name, method, path, token, body string
		want                            int
		contains                        string
	}{
		{"page without a token: the sign-in form loads", "GET", "/", "", "", 200, "<main"},
		{"assets", "GET", "/console/app.js", "", "", 200, "sessionStorage"},
		{"session without a token", "GET", "/v1/console/session", "", "", 401, "missing bearer token"},
		{"session with a wrong token", "GET", "/v1/console/session", "nope", "", 401, "invalid token"},
		{"session without console access", "GET", "/v1/console/session", "api-token", "", 403, `may not open the console`},
		{"EventService routes without console access", "GET", "/v1/sources/orders/events", "api-token", "", 403, "may not open the console"},
		{"viewer's session", "GET", "/v1/console/session", "viewer-token", "", 200, `"sources":["orders"],"publish":[]`},
		{"ops' session", "GET", "/v1/console/session", "ops-token", "", 200, `"sources":["billing","orders","stripe"],"publish":["billing","orders","stripe"]`},
		{"viewer reads orders", "GET", "/v1/sources/orders/events", "viewer-token", "", 200, `"deliveries"`},
		{"viewer may not read billing", "GET", "/v1/sources/billing/events", "viewer-token", "", 403, "billing"},
		{"viewer: billing's refused requests are not found", "GET", "/v1/console/sources/billing/refused", "viewer-token", "", 404, `no source named \"billing\"`},
		{"viewer may not send", "POST", "/v1/console/sources/orders/send", "viewer-token", `{"body":"{}"}`, 403, "may not send webhooks to orders"},
		{"send: unknown field", "POST", "/v1/console/sources/orders/send", "ops-token", `{"bdy":"{}"}`, 400, "body: want"},
		{"send: unknown source", "POST", "/v1/console/sources/nope/send", "ops-token", `{"body":"{}"}`, 404, "no source"},
		{"send: too large", "POST", "/v1/console/sources/orders/send", "ops-token", `{"body":"` + strings.Repeat("x", MaxConsoleSendBytes+1) + `"}`, 413, "at most"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := callConsole(t, srv, tt.method, tt.path, tt.token, tt.body)
			if c.status != tt.want || !strings.Contains(c.body, tt.contains) {
				t.Errorf("%s %s = %d %s, want %d with %q", tt.method, tt.path, c.status, c.body, tt.want, tt.contains)
			}
			if csp := c.header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "script-src 'self'") {
				t.Errorf("Content-Security-Policy = %q", csp)
			}
		})
	}
	// The viewer's overview holds orders only.
	c := callConsole(t, srv, "GET", "/v1/console/overview", "viewer-token", "")
	var ov ConsoleOverview
	if err := json.Unmarshal([]byte(c.body), &ov); err != nil || len(ov.Sources) != 1 || ov.Sources[0].Name != "orders" {
		t.Errorf("viewer's overview = %s (%v)", c.body, err)
	}
}

// A test webhook is signed with the source's own scheme and secret and goes through the
// ingress: stored, counted, readable; a provider whose secret is a public key cannot be sent.
func TestConsoleSend(t *testing.T) {
	srcs := append(testSources(), relay.SourceConfig{Name: "discord", Provider: "discord",
		Verify: &verify.Options{Secrets: []relay.Secret{{Value: []byte(strings.Repeat("ab", 32))}}}})
	srcs[len(srcs)-1].SetDefaults()
	e, srv := consoleEnv(t, "", nil, srcs)
	for src, provider := range map[string]string{"orders": "hmac", "stripe": "stripe"} {
		body := `{"id":"evt_console_` + src + `","type":"invoice.paid","object":"event"}`
		c := callConsole(t, srv, "POST", "/v1/console/sources/"+src+"/send", "", `{"body":`+jsonString(body)+`}`)
		var sent ConsoleSent
		if err := json.Unmarshal([]byte(c.body), &sent); err != nil || c.status != 200 || sent.Status != 200 ||
			sent.Body != `{"event_id":"evt_console_`+src+`","duplicate":false}` {
			t.Fatalf("send to %s = %d %s", src, c.status, c.body)
		}
		ev, err := e.svc.GetEvent(context.Background(), src, "evt_console_"+src)
		if err != nil || string(ev.Data) != body || ev.Verification.GetProvider() != provider {
			t.Errorf("stored %s event: %v %v", src, ev, err)
		}
	}
	c := callConsole(t, srv, "POST", "/v1/console/sources/discord/send", "", `{"body":"{}"}`)
	if c.status != http.StatusPreconditionFailed || !strings.Contains(c.body, "private key relayd does not hold") {
		t.Errorf("send to discord = %d %s", c.status, c.body)
	}
	var ov ConsoleOverview
	c = callConsole(t, srv, "GET", "/v1/console/overview", "", "")
	if err := json.Unmarshal([]byte(c.body), &ov); err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(ov.Sources, func(s ConsoleSource) bool { return s.Name == "orders" })
	if i < 0 || ov.Sources[i].Activity.Accepted != 1 || ov.Sources[i].Length != 1 || ov.Sources[i].LastEvent.IsZero() {
		t.Errorf("orders in the overview after one send: %+v", ov.Sources[i])
	}
}

func jsonString(s string) string { b, _ := json.Marshal(s); return string(b) }

// Activity counts outcomes per source and accepted requests per minute over the last hour.
func TestActivity(t *testing.T) {
	a := NewActivity()
	t0 := time.Date(2026, 12, 5, 10, 0, 30, 0, time.UTC)
	a.record("orders", 200, "", t0)
	a.record("orders", 200, "", t0.Add(10*time.Second))
	a.record("orders", 200, "", t0.Add(2*time.Minute))
	a.record("orders", 401, "signature", t0)
	a.record("orders", 401, "signature", t0)
	a.record("orders", 413, "size", t0)
	a.record("orders", 503, "unavailable", t0)
	a.record("orders", 200, "", t0.Add(-2*time.Hour)) // an hour and more before: not in the minutes

	got := a.Snapshot("orders", t0.Add(2*time.Minute))
	if got.Accepted != 4 || got.Failed != 1 || got.Refused["signature"] != 2 || got.Refused["size"] != 1 || len(got.Refused) != 2 {
		t.Errorf("counts = %+v", got)
	}
	if !got.LastAccepted.Equal(t0.Add(2 * time.Minute)) {
		t.Errorf("last accepted %v", got.LastAccepted)
	}
	want := make([]int64, ActivityMinutes)
	want[57], want[59] = 2, 1 // 10:00 two, 10:02 one; the last minute is 10:02
	if !slices.Equal(got.PerMinute, want) {
		t.Errorf("per minute = %v, want %v", got.PerMinute, want)
	}
	// An hour later the minutes have rolled off.
	if later := a.Snapshot("orders", t0.Add(63*time.Minute)); slices.Max(later.PerMinute) != 0 {
		t.Errorf("an hour later: %v", later.PerMinute)
	}
	if none := a.Snapshot("nope", t0); none.Accepted != 0 || len(none.PerMinute) != ActivityMinutes {
		t.Errorf("unknown source: %+v", none)
	}
	var nilA *Activity
	nilA.record("x", 200, "", t0) // a nil Activity counts nothing and does not panic
}

// BenchmarkConsoleOverview measures GET /v1/console/overview with 50 sources of 2 partitions
// holding 1,000,000 events in a real redis-server, each source with a consumer group part way
// through: "refresh" recomputes the store's numbers on every call (the worst case, once per
// StatsTTL in use); "cached" is every other call.
func BenchmarkConsoleOverview(b *testing.B) {
	const sources, perSource = 50, 20000
	var srcs []relay.SourceConfig
	for i := range sources {
		s := relay.SourceConfig{Name: fmt.Sprintf("src-%02d", i), Provider: "hmac", Partitions: 2,
			Verify: &verify.Options{Secrets: []relay.Secret{{Value: []byte("s")}}}}
		s.SetDefaults()
		srcs = append(srcs, s)
	}
	url := redisURL(b)
	e, _ := consoleEnv(b, url, nil, srcs)
	ctx := context.Background()
	payload := strings.Repeat("x", 200)
	for _, s := range srcs {
		for p := range 2 {
			key := redisstore.StreamKey(relay.Partition{Source: s.Name, Index: p})
			pipe := e.rdb.Pipeline()
			for i := range perSource / 2 {
				pipe.XAdd(ctx, &redis.XAddArgs{Stream: key, Values: []any{redisstore.FieldEvent, payload + fmt.Sprint(i)}})
			}
			if _, err := pipe.Exec(ctx); err != nil {
				b.Fatal(err)
			}
			part := relay.Partition{Source: s.Name, Index: p}
			if err := e.store.EnsureGroup(ctx, part, "workers", relay.ID{}); err != nil {
				b.Fatal(err)
			}
			if _, err := e.store.ReadGroup(ctx, part, "workers", "c1", false, 100, 0); err != nil {
				b.Fatal(err)
			}
		}
	}
	stats, err := e.svc.Stats(ctx)
	if err != nil {
		b.Fatal(err)
	}
	var total int64
	for _, s := range stats {
		total += s.Length
	}
	if total != sources*perSource {
		b.Fatalf("%d events stored, want %d", total, sources*perSource)
	}
	// The baseline: the store's numbers alone (Service.Stats), which any such page needs.
	b.Run("stats-only", func(b *testing.B) {
		for b.Loop() {
			if _, err := e.svc.Stats(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, mode := range []struct {
		name string
		ttl  time.Duration
	}{{"refresh", time.Nanosecond}, {"cached", time.Hour}} {
		b.Run(mode.name, func(b *testing.B) {
			h, err := NewConsoleHandler(ctx, ConsoleOptions{Service: e.svc, Auth: NewAuth(AuthOptions{}), StatsTTL: mode.ttl, Logger: e.log})
			if err != nil {
				b.Fatal(err)
			}
			req := httptest.NewRequest(http.MethodGet, "/v1/console/overview", nil)
			for b.Loop() {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"src-49"`) {
					b.Fatalf("overview: %d %.200s", w.Code, w.Body.String())
				}
			}
		})
	}
}
