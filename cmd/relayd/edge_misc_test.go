package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	eventrelayv1 "github.com/eventrelay/eventrelay/gen/eventrelay/v1"
	"github.com/eventrelay/eventrelay/internal/redistest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestEightMegabyteEvent: the 8 MB event (a 5 MB header value, a 2 MB subject, a 1 MB
// partition key, 2 bytes of data) sent to a source with max_body_bytes 100 through a relayd
// whose transports would carry it (http.max_request_bytes 16 MiB) is refused by the event
// bounds themselves, over gRPC (INVALID_ARGUMENT) and HTTP (400), naming the field; each
// oversized field alone is refused the same way, and nothing is stored.
func TestEightMegabyteEvent(t *testing.T) {
	onBothStores(t, runEightMegabyteEvent)
}

func runEightMegabyteEvent(t *testing.T, url string) {
	cfg := testConfig(url)
	cfg.Sources[0].MaxBodyBytes = 100
	cfg.HTTP.MaxRequestBytes = 16 << 20
	m := startMain(t, cfg)
	rdb := redisClient(t, url)
	c := client(t, m)
	before := secStore(t, rdb, cfg)
	x := func(n int) string { return strings.Repeat("x", n) }
	for _, tc := range []struct {
		name, subject, key string
		headers            map[string]string
		field              string // what the answer names
	}{
		{"the 8 MB event", x(2 << 20), x(1 << 20), map[string]string{"x-big": x(5 << 20)}, "subject:"},
		{"a 5 MB header value", "", "", map[string]string{"x-big": x(5 << 20)}, `headers["x-big"]:`},
		{"a 2 MB subject", x(2 << 20), "", nil, "subject:"},
		{"a 1 MB partition key", "", x(1 << 20), nil, "partition_key:"},
	} {
		t.Run(tc.name+" over gRPC", func(t *testing.T) {
			_, err := c.Publish(context.Background(), &eventrelayv1.PublishRequest{Source: "orders", Type: "t", Data: []byte(`{}`),
				Subject: tc.subject, PartitionKey: tc.key, Headers: tc.headers})
			if status.Code(err) != codes.InvalidArgument || !strings.HasPrefix(status.Convert(err).Message(), tc.field) {
				t.Fatalf("Publish = %v, want INVALID_ARGUMENT starting %q", err, tc.field)
			}
		})
		t.Run(tc.name+" over HTTP", func(t *testing.T) {
			b, err := json.Marshal(map[string]any{"source": "orders", "type": "t", "data": base64.StdEncoding.EncodeToString([]byte(`{}`)),
				"subject": tc.subject, "partitionKey": tc.key, "headers": tc.headers})
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.Post("http://"+m.HTTPAddr+"/v1/events", "application/json", bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			answer, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var st struct {
				Code    int32
				Message string
			}
			_ = json.Unmarshal(answer, &st)
			if resp.StatusCode != http.StatusBadRequest || st.Code != int32(codes.InvalidArgument) || !strings.HasPrefix(st.Message, tc.field) {
				t.Fatalf("POST /v1/events: %d %s, want 400 INVALID_ARGUMENT naming %q", resp.StatusCode, answer, tc.field)
			}
		})
	}
	if after := secStore(t, rdb, cfg); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("store changed: %v -> %v", before, after)
	}
}

// TestRedisPasswordNeverShown: relayd on a Redis that requires a password, once with the
// right one (events flow) and once with a wrong one (go-redis logs its failures): neither
// password appears in the log, /v1/admin/sources, /metrics or an answer, and every log line,
// go-redis's own included, is one JSON object.
func TestRedisPasswordNeverShown(t *testing.T) {
	const right, wrong, gone = "pw-live-q7", "pw-wrong-r8", "pw-gone-s9"
	srv := redistest.StartWith(t, "--requirepass", right)
	for _, tc := range []struct {
		name, url string
		want      int    // the webhook's answer
		trace     string // what the log must hold
	}{
		{"right password", "redis://:" + right + "@" + srv.Addr() + "/0", http.StatusOK, `"msg":"relayd listening"`},
		{"wrong password", "redis://default:" + wrong + "@" + srv.Addr() + "/0", http.StatusServiceUnavailable, "WRONGPASS"},
		// Nothing listens on port 1: go-redis logs its failed dials itself, through slog.
		{"unreachable", "redis://:" + gone + "@127.0.0.1:1/0", http.StatusServiceUnavailable, `"msg":"redis client"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs syncLog
			m := secStart(t, testConfig(tc.url), secLogger(&logs))
			body := []byte(`{"id":"evt_pw","type":"t"}`)
			r := post(t, m, "orders", body, sign(testSecret, body))
			if r.status != tc.want {
				t.Fatalf("webhook: %d %s, want %d", r.status, r.body, tc.want)
			}
			shown := logs.String() + string(r.body)
			for _, path := range []string{"/v1/admin/sources", "/metrics", "/readyz"} {
				_, b := secGet(t, "http://"+m.AdminAddr+path)
				shown += b
			}
			_ = m.Close()
			for _, s := range []string{right, wrong, gone} {
				if strings.Contains(shown, s) {
					t.Errorf("%q is shown:\n%s", s, shown)
				}
			}
			lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
			for _, line := range lines {
				if !json.Valid([]byte(line)) {
					t.Errorf("log line is not JSON: %s", line)
				}
			}
			if !strings.Contains(logs.String(), tc.trace) {
				t.Errorf("the log has no %s:\n%s", tc.trace, logs.String())
			}
		})
	}
}
