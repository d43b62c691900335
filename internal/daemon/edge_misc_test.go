package daemon

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	neturl "net/url"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	eventrelayv1 "github.com/eventrelay/eventrelay/gen/eventrelay/v1"
	"github.com/eventrelay/eventrelay/internal/config"
	"github.com/eventrelay/eventrelay/internal/e2e"
	"github.com/eventrelay/eventrelay/internal/redistest"
	"github.com/eventrelay/eventrelay/relay"
	"github.com/eventrelay/eventrelay/relay/verify"
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
			r := post(t, m, "orders", body, e2e.Sign(testSecret, body))
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

// TestBodyFormatPerProvider: for each provider offering a choice of body format (slack,
// twilio, generic hmac), a source of either format stores a signed webhook in its format and
// answers 415 to the very same signed request sent with the other format's content type,
// storing nothing; the smuggled-form JSON body, sent as JSON, is stored with the id it
// carries as JSON.
func TestBodyFormatPerProvider(t *testing.T) {
	onBothStores(t, runBodyFormatPerProvider)
}

func runBodyFormatPerProvider(t *testing.T, storeURL string) {
	const slackSecret, twilioSecret = "slack-format-secret", "twilio-format-token"
	twilioURL := func(s *relay.SourceConfig) { s.URL = "https://relay.example.com/v1/webhooks/" + s.Name }
	format := func(f string) func(*relay.SourceConfig) {
		return func(s *relay.SourceConfig) { verify.OptionsOf(s).BodyFormat = f }
	}
	cfg := testConfig(storeURL)
	cfg.Sources = append(cfg.Sources,
		secSource("slack", "slack", slackSecret),
		secSource("slackform", "slack", slackSecret, format("form")),
		secSource("twilio", "twilio", twilioSecret, twilioURL),
		secSource("twiliojson", "twilio", twilioSecret, twilioURL, format("json")),
		secSource("hmacform", "hmac", testSecret, format("form")),
	)
	m := startMain(t, cfg)
	rdb := redisClient(t, storeURL)
	base := "http://" + m.HTTPAddr
	const (
		jsonCT = "application/json"
		formCT = "application/x-www-form-urlencoded"
	)
	jsonBody := func(id string) []byte { return []byte(`{"id":"` + id + `","type":"t","event_id":"` + id + `"}`) }
	formBody := func(id string) []byte { return []byte("id=" + id + "&type=t&MessageSid=" + id) }
	for _, tc := range []struct {
		source, own, other string
		body               func(string) []byte
	}{
		{"orders", jsonCT, formCT, jsonBody},
		{"hmacform", formCT, jsonCT, formBody},
		{"slack", jsonCT, formCT, jsonBody},
		{"slackform", formCT, jsonCT, formBody},
		{"twilio", formCT, jsonCT, formBody},
		{"twiliojson", jsonCT, formCT, jsonBody},
	} {
		t.Run(tc.source, func(t *testing.T) {
			before := secStore(t, rdb, cfg)
			signed := func() *http.Request {
				b := tc.body("evt_" + tc.source)
				r := secSigned(t, cfg, base, tc.source, b, time.Now())
				if tc.source == "twiliojson" {
					// Twilio signs a JSON body's SHA-256 as the URL's bodySHA256 parameter.
					sum := sha256.Sum256(b)
					r.URL.RawQuery = "bodySHA256=" + hex.EncodeToString(sum[:])
				}
				return r
			}
			req := signed()
			req.Header.Set("Content-Type", tc.other)
			if got := edgeDo(http.DefaultClient, req); got != http.StatusUnsupportedMediaType {
				t.Fatalf("signed %s request sent as %s: %d, want 415", tc.own, tc.other, got)
			}
			if after := secStore(t, rdb, cfg); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Fatalf("store changed: %v -> %v", before, after)
			}
			req = signed()
			req.Header.Set("Content-Type", tc.own)
			if got := edgeDo(http.DefaultClient, req); got != http.StatusOK {
				t.Fatalf("signed %s request: %d, want 200", tc.own, got)
			}
			if after := secStore(t, rdb, cfg); after[tc.source] != before[tc.source]+1 {
				t.Fatalf("not stored: %v -> %v", before, after)
			}
		})
	}
	t.Run("smuggled form fields read as JSON", func(t *testing.T) {
		b := []byte(`{"id":"evt_1","note":"x&type=refund.issued&id=evt_forged"}`)
		if r := post(t, m, "orders", b, e2e.Sign(testSecret, b)); r.status != http.StatusOK {
			t.Fatalf("as JSON: %d %s", r.status, r.body)
		}
		if ids := streamEventIDs(t, rdb, "orders"); fmt.Sprint(ids) != "[evt_orders evt_1]" {
			t.Fatalf("stored ids %v, want [evt_orders evt_1]", ids)
		}
		ev, err := client(t, m).GetEvent(context.Background(), &eventrelayv1.GetEventRequest{Source: "orders", Id: "evt_1"})
		if err != nil || ev.GetEvent().GetId() != "evt_1" || ev.GetEvent().GetType() == "refund.issued" {
			t.Fatalf("GetEvent = %v, %v: want evt_1 without the smuggled type", ev, err)
		}
	})
}

// TestBodyFormatConfig: body_format and unsigned_id come from YAML, RELAY_* variables and
// flags; a format the provider does not send, or an hmac id_header outside the signature
// without unsigned_id, is refused when the configuration loads, with a message naming the
// key and where its value came from.
func TestBodyFormatConfig(t *testing.T) {
	path := writeYAML(t, "http: {addr: \"127.0.0.1:0\"}\ngrpc: {addr: \"127.0.0.1:0\"}\nadmin: {addr: \"127.0.0.1:0\"}\n"+
		"sources:\n  - {name: orders, secrets: [s1], id_header: X-Delivery-Id}\n  - {name: gh, provider: github, secrets: [s2]}\n")
	for _, tc := range []struct {
		name  string
		env   []string
		flags map[string]string
		want  []string // substrings of the configuration's error; none: it loads and starts
	}{
		{"unsigned id_header", nil, nil, []string{"sources[0].id_header", "unsigned_id", "relay.yaml:5"}},
		{"unsigned_id from env", []string{"RELAY_SOURCES_ORDERS_UNSIGNED_ID=true"}, nil, nil},
		{"unsigned_id from a flag", nil, map[string]string{"sources.orders.unsigned_id": "true"}, nil},
		{"form from env", []string{"RELAY_SOURCES_ORDERS_UNSIGNED_ID=true", "RELAY_SOURCES_GH_BODY_FORMAT=form"}, nil, nil},
		{"xml for github", []string{"RELAY_SOURCES_ORDERS_UNSIGNED_ID=true"}, map[string]string{"sources.gh.body_format": "xml"},
			[]string{"sources[1].body_format", "xml", "(flag sources.gh.body_format)"}},
		{"an unknown format", []string{"RELAY_SOURCES_ORDERS_UNSIGNED_ID=true", "RELAY_SOURCES_GH_BODY_FORMAT=yaml"}, nil,
			[]string{"sources[1].body_format", `"yaml"`, "(RELAY_SOURCES_GH_BODY_FORMAT)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := config.Load(path, tc.env, tc.flags)
			if len(tc.want) > 0 {
				if err == nil {
					t.Fatal("config.Load: accepted")
				}
				for _, w := range tc.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("config.Load: %v, want it to name %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("config.Load: %v", err)
			}
			m := NewMain(cfg, nil)
			err = m.Run(context.Background())
			_ = m.Close()
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
		})
	}
}

// TestEmbeddedStoreClosed: relayd with no redis.url runs the embedded store on a loopback
// port that requires a random password: another local process connecting without it gets
// NOAUTH for XADD, XRANGE and the rest (with a wrong password, or through HELLO, too), no
// forged event is stored or delivered, and the password appears in no log line and no admin
// answer.
func TestEmbeddedStoreClosed(t *testing.T) {
	var logs syncLog
	m := secStart(t, testConfig(""), secLogger(&logs))
	u, err := neturl.Parse(m.embedded.URL())
	if err != nil {
		t.Fatal(err)
	}
	password, _ := u.User.Password()
	if len(password) < 32 {
		t.Fatalf("embedded password %q: want at least 32 random characters", password)
	}
	body := []byte(`{"id":"evt_real","type":"t"}`)
	if r := post(t, m, "orders", body, e2e.Sign(testSecret, body)); r.status != http.StatusOK {
		t.Fatalf("webhook: %d %s", r.status, r.body)
	}
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rd := bufio.NewReader(conn)
	// cmd sends one RESP command and returns the first line of the answer.
	cmd := func(args ...string) string {
		t.Helper()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(conn, "*%d\r\n", len(args))
		for _, a := range args {
			fmt.Fprintf(conn, "$%d\r\n%s\r\n", len(a), a)
		}
		line, err := rd.ReadString('\n')
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		return strings.TrimSpace(line)
	}
	forged := []string{"XADD", "relay:{orders:0}:s", "*", "e", `{"id":"evt_forged","type":"refund.issued"}`}
	for _, tc := range []struct {
		name string
		args []string
		want string // prefix of the answer
	}{
		{"XADD a forged event", forged, "-NOAUTH"},
		{"XRANGE every event", []string{"XRANGE", "relay:{orders:0}:s", "-", "+"}, "-NOAUTH"},
		{"KEYS", []string{"KEYS", "*"}, "-NOAUTH"},
		{"AUTH with a guessed password", []string{"AUTH", "relay"}, "-"},
		{"AUTH default with a guessed password", []string{"AUTH", "default", ""}, "-"},
		{"HELLO with a guessed password", []string{"HELLO", "3", "AUTH", "default", "relay"}, "-"},
		{"XADD after the failed AUTHs", forged, "-NOAUTH"},
		{"XRANGE after the failed AUTHs", []string{"XRANGE", "relay:{orders:0}:s", "-", "+"}, "-NOAUTH"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := cmd(tc.args...); !strings.HasPrefix(got, tc.want) {
				t.Fatalf("%v = %q, want %q...", tc.args, got, tc.want)
			}
		})
	}
	resp, err := client(t, m).ListEvents(context.Background(), &eventrelayv1.ListEventsRequest{Source: "orders", PageSize: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Deliveries) != 1 || resp.Deliveries[0].GetEvent().GetId() != "evt_real" {
		t.Fatalf("events of orders: %v, want evt_real alone", resp.Deliveries)
	}
	shown := logs.String()
	for _, path := range []string{"/v1/admin/sources", "/metrics", "/readyz"} {
		_, b := secGet(t, "http://"+m.AdminAddr+path)
		shown += b
	}
	if strings.Contains(shown, password) {
		t.Fatalf("the embedded store's password is shown:\n%s", shown)
	}
}
