package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	eventrelayv1 "github.com/eventrelay/eventrelay/gen/eventrelay/v1"
	"github.com/eventrelay/eventrelay/relay/verify"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"
)

// sendCase is one provider's signed webhook.
type sendCase struct {
	provider string
	secret   string // the source's secret (relayd side)
	signWith []string
	body     string
	args     []string
	yaml     string // more source options, ", key: value" each
	// wantID and wantType, when set, are checked on the stored event.
	wantID, wantType string
}

// providerCases returns a case for every provider relayd supports, shared-secret and
// public-key, with fresh keys for the public-key ones.
func providerCases(t *testing.T) []sendCase {
	t.Helper()
	swSecret := "whsec_" + base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	edPub, edPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	discordPub, _ := verify.EncodePublicKey("discord", edPub)
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sendgridPub, _ := verify.EncodePublicKey("sendgrid", &ecKey.PublicKey)
	der, err := x509.MarshalPKCS8PrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	cases := []sendCase{
		{provider: "hmac", secret: "hmac-secret", body: `{"id":"h-1","type":"order.created"}`, wantID: "h-1", wantType: "order.created"},
		{provider: "stripe", secret: "whsec_test_secret", body: `{"id":"evt_s1","object":"event","type":"payment_intent.succeeded","created":1700000000}`, wantID: "evt_s1", wantType: "payment_intent.succeeded"},
		{provider: "standardwebhooks", secret: swSecret, body: `{"type":"invoice.paid","timestamp":"2026-01-02T03:04:05Z","data":{}}`, args: []string{"--id", "msg_sw1"}, wantID: "msg_sw1", wantType: "invoice.paid"},
		{provider: "svix", secret: swSecret, body: `{"type":"user.created","data":{}}`, args: []string{"--id", "msg_svix1"}, wantID: "msg_svix1", wantType: "user.created"},
		{provider: "github", secret: "gh-secret", body: `{"action":"opened","issue":{"number":1}}`, args: []string{"--type", "issues", "--id", "gh-delivery-1"}, wantID: "gh-delivery-1", wantType: "issues.opened"},
		{provider: "gitlab", secret: "gl-token", body: `{"object_kind":"push"}`, args: []string{"--type", "Push Hook", "--id", "gl-1"}, wantID: "gl-1", wantType: "Push Hook"},
		{provider: "bitbucket", secret: "bb-secret", body: `{"push":{}}`, args: []string{"--type", "repo:push", "--id", "bb-1"}, wantID: "bb-1", wantType: "repo:push"},
		{provider: "slack", secret: "slack-secret", body: `{"type":"event_callback","event_id":"Ev1","event":{"type":"app_mention"}}`, wantID: "Ev1", wantType: "app_mention"},
		{provider: "twilio", secret: "twilio-token", body: `{"id":"tw-body","type":"sms.received"}`, args: []string{"--id", "tw-1", "--body-format", "json"},
			yaml: ", body_format: json", wantID: "tw-1", wantType: "sms.received"},
		{provider: "shopify", secret: "shop-secret", body: `{"id":820982911946154508,"admin_graphql_api_id":"gid://shopify/Order/1"}`, args: []string{"--type", "orders/create", "--id", "shop-1"}, wantID: "shop-1", wantType: "orders/create"},
		{provider: "square", secret: "square-key", body: `{"event_id":"sq-1","type":"payment.created","data":{"id":"p1"}}`, wantID: "sq-1", wantType: "payment.created"},
		{provider: "zoom", secret: "zoom-secret", body: `{"event":"meeting.started","payload":{"object":{"id":"m1"}}}`, wantType: "meeting.started"},
		{provider: "twitch", secret: "twitch-secret", body: `{"subscription":{"type":"channel.follow"},"event":{"broadcaster_user_id":"1"}}`, args: []string{"--id", "twitch-1"}, wantID: "twitch-1", wantType: "channel.follow"},
		{provider: "linear", secret: "linear-secret", body: `{"type":"Issue","action":"create","data":{"id":"l1"}}`, args: []string{"--id", "lin-1"}, wantID: "lin-1", wantType: "Issue.create"},
		{provider: "paddle", secret: "paddle-secret", body: `{"event_id":"evt_p1","event_type":"transaction.completed","data":{"id":"txn_1"}}`, wantID: "evt_p1", wantType: "transaction.completed"},
		{provider: "hubspot", secret: "hubspot-secret", body: `{"eventId":42,"subscriptionType":"contact.creation"}`, wantID: "42", wantType: "contact.creation"},
		{provider: "intercom", secret: "intercom-secret", body: `{"id":"notif_1","topic":"conversation.user.created"}`, wantID: "notif_1", wantType: "conversation.user.created"},
		{provider: "mailgun", secret: "mailgun-key", body: `{"event-data":{"event":"delivered","id":"mg1"}}`, wantType: "delivered"},
		{provider: "meta", secret: "meta-app-secret", body: `{"object":"page","entry":[]}`, wantType: "page"},
		{provider: "facebook", secret: "fb-app-secret", body: `{"object":"page","entry":[]}`, wantType: "page"},
		{provider: "instagram", secret: "ig-app-secret", body: `{"object":"instagram","entry":[]}`, wantType: "instagram"},
		{provider: "whatsapp", secret: "wa-app-secret", body: `{"object":"whatsapp_business_account","entry":[]}`, wantType: "whatsapp_business_account"},
		{provider: "basic", secret: "user:pass", body: `{"id":"basic-1","type":"ping"}`, wantID: "basic-1", wantType: "ping"},
		{provider: "token", secret: "static-token", body: `{"id":"token-1","type":"ping"}`, wantID: "token-1", wantType: "ping"},
		{provider: "discord", secret: discordPub, signWith: []string{"--private-key", hex.EncodeToString(edPriv.Seed())}, body: `{"type":2,"id":"discord-1"}`, wantID: "discord-1"},
		{provider: "sendgrid", secret: sendgridPub, signWith: []string{"--private-key", base64.StdEncoding.EncodeToString(der)}, body: `[{"email":"a@example.com","event":"delivered","sg_event_id":"sg1"}]`},
	}
	for i := range cases {
		if cases[i].signWith == nil {
			cases[i].signWith = []string{"--secret", cases[i].secret}
		}
	}
	return cases
}

// sourcesYAML configures one source per case, named after its provider.
func sourcesYAML(cases []sendCase) string {
	var b strings.Builder
	b.WriteString("sources:\n")
	for _, c := range cases {
		secret, _ := json.Marshal(c.secret)
		fmt.Fprintf(&b, "  - {name: %s, provider: %s, secrets: [%s]%s}\n", c.provider, c.provider, secret, c.yaml)
	}
	return b.String()
}

// TestSendEveryProvider signs a webhook as each provider would with relayctl send, checks that
// relayd stores it (with the id and type the provider's headers or payload carry), and reads
// them all back with tail --from-start in each output format.
func TestSendEveryProvider(t *testing.T) {
	cases := providerCases(t)
	var covered []string
	for _, c := range cases {
		covered = append(covered, c.provider)
	}
	slices.Sort(covered)
	if want := verify.Providers(); !slices.Equal(covered, want) {
		t.Fatalf("cases cover %v, relayd's providers are %v: add the new provider (and its id/type headers to headerCarried)", covered, want)
	}
	r := startRelayd(t, sourcesYAML(cases))
	ids := map[string]string{} // source -> stored event id
	for _, c := range cases {
		t.Run(c.provider, func(t *testing.T) {
			args := append([]string{"send", "--url", "http://" + r.HTTP, "--source", c.provider, "--provider", c.provider, "--data", c.body}, c.signWith...)
			res := relayctl(t, nil, append(args, c.args...)...).ok(t)
			var id string
			if _, err := fmt.Sscanf(res.stdout, "200 OK event_id=%s duplicate=false\n", &id); err != nil {
				t.Fatalf("send printed %q: %v", res.stdout, err)
			}
			if c.wantID != "" && id != c.wantID {
				t.Errorf("event id %q, want %q", id, c.wantID)
			}
			ids[c.provider] = id
			got := relayctl(t, nil, "events", "get", "--addr", r.GRPC, "--source", c.provider, id).ok(t)
			var ev eventrelayv1.Event
			if err := protojson.Unmarshal([]byte(got.stdout), &ev); err != nil {
				t.Fatalf("events get printed %q: %v", got.stdout, err)
			}
			if c.wantType != "" && ev.GetType() != c.wantType {
				t.Errorf("event type %q, want %q", ev.GetType(), c.wantType)
			}
			if ev.GetVerification().GetProvider() != c.provider {
				t.Errorf("verified by %q", ev.GetVerification().GetProvider())
			}
			if c.provider != "mailgun" && c.provider != "linear" && string(ev.GetData()) != c.body {
				t.Errorf("stored payload %q, sent %q", ev.GetData(), c.body)
			}
			data := relayctl(t, nil, "events", "get", "--addr", r.GRPC, "--source", c.provider, "-o", "data", id).ok(t)
			if data.stdout != string(ev.GetData()) {
				t.Errorf("-o data printed %q, want the payload %q", data.stdout, ev.GetData())
			}
		})
	}
	if t.Failed() {
		return
	}

	// The same delivery again is a duplicate, stored once.
	c := cases[1] // stripe: its id is in the payload
	// (--type is not applied: Stripe carries the type in the payload, which is sent as is.)
	again := relayctl(t, nil, append([]string{"send", "--url", "http://" + r.HTTP + "/v1/webhooks/stripe", "--provider", "stripe",
		"--type", "other.type", "--data", c.body}, c.signWith...)...).ok(t)
	if want := "200 OK event_id=evt_s1 duplicate=true\n"; again.stdout != want {
		t.Errorf("resend printed %q, want %q", again.stdout, want)
	}
	if !strings.Contains(again.stderr, "note: stripe sends the event type in the payload, not in a header: --type is not applied") {
		t.Errorf("resend with --type: stderr %q", again.stderr)
	}

	// tail --from-start prints every stored event, in each format.
	n := fmt.Sprint(len(cases))
	text := relayctl(t, nil, "tail", "--addr", r.GRPC, "--from-start", "--count", n).ok(t)
	seen := map[string]bool{}
	for _, line := range text.lines() {
		f := textFields(t, line)
		if len(f) != 4 {
			t.Fatalf("text line %q: want time source type id", line)
		}
		if _, err := time.Parse(time.RFC3339, f[0]); err != nil {
			t.Errorf("text line %q: time: %v", line, err)
		}
		if ids[f[1]] != f[3] {
			t.Errorf("text line %q: source %s stored %s", line, f[1], ids[f[1]])
		}
		seen[f[1]] = true
	}
	if len(seen) != len(cases) {
		t.Errorf("tail printed %d sources, want %d:\n%s", len(seen), len(cases), text.stdout)
	}

	js := relayctl(t, nil, "tail", "--addr", r.GRPC, "--from-start", "--count", n, "-o", "json").ok(t)
	for _, line := range js.lines() {
		var d eventrelayv1.Delivery
		if err := protojson.Unmarshal([]byte(line), &d); err != nil {
			t.Fatalf("json line %q: %v", line, err)
		}
		if d.GetCursor() == "" || ids[d.GetEvent().GetSource()] != d.GetEvent().GetId() {
			t.Errorf("json line %q: want the stored event with a cursor", line)
		}
	}

	ce := relayctl(t, nil, "tail", "--addr", r.GRPC, "--from-start", "--count", n, "-o", "cloudevents").ok(t)
	for _, line := range ce.lines() {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("cloudevents line %q: %v", line, err)
		}
		src, _ := m["source"].(string)
		if m["specversion"] != "1.0" || m["id"] != ids[src] || m["type"] == "" || m["time"] == nil {
			t.Errorf("cloudevents line %q: want specversion 1.0, the stored id, a type and a time", line)
		}
		if _, inline := m["data"]; !inline || m["datacontenttype"] != "application/json" {
			t.Errorf("cloudevents line %q: want JSON data inline", line)
		}
	}
}

// TestSendPrint checks that --print prints a curl command that relayd accepts.
func TestSendPrint(t *testing.T) {
	r := startRelayd(t, "sources:\n  - {name: gh, provider: github, secrets: [\"s3cret\"]}\n")
	body := `{"zen":"It's not fully shipped until it's fast.","hook_id":1}`
	res := relayctl(t, nil, "send", "--url", "http://"+r.HTTP, "--source", "gh", "--provider", "github",
		"--secret", "s3cret", "--type", "ping", "--id", "print-1", "--data", body, "--print").ok(t)
	for _, want := range []string{
		"curl -sS -X POST 'http://" + r.HTTP + "/v1/webhooks/gh'",
		"-H 'X-Github-Event: ping'", "-H 'X-Github-Delivery: print-1'", "-H 'X-Hub-Signature-256: sha256=",
		"-H 'Content-Type: application/json'", `--data-binary '{"zen":"It'\''s not fully shipped until it'\''s fast.","hook_id":1}'`,
	} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("--print output lacks %q:\n%s", want, res.stdout)
		}
	}
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed: the printed command is not run")
	}
	out, err := exec.Command("sh", "-c", res.stdout).CombinedOutput()
	if err != nil {
		t.Fatalf("running the printed command: %v\n%s", err, out)
	}
	if want := `{"event_id":"print-1","duplicate":false}`; strings.TrimSpace(string(out)) != want {
		t.Errorf("curl printed %q, want %q", out, want)
	}
}

// send sends an hmac-signed event to source "orders" of r.
func send(t *testing.T, r *relayd, id, typ string) {
	t.Helper()
	relayctl(t, nil, "send", "--url", "http://"+r.HTTP, "--source", "orders", "--secret", "orders-secret",
		"--data", fmt.Sprintf(`{"id":%q,"type":%q}`, id, typ)).ok(t)
}

const ordersYAML = "sources:\n  - {name: orders, provider: hmac, secrets: [\"orders-secret\"]}\n"

// textFields splits a text output line into its fields, unquoting quoted ones.
func textFields(t *testing.T, line string) []string {
	t.Helper()
	var out []string
	for line != "" {
		line = strings.TrimLeft(line, " ")
		if strings.HasPrefix(line, `"`) {
			q, err := strconv.QuotedPrefix(line)
			if err != nil {
				t.Fatalf("line %q: %v", line, err)
			}
			s, _ := strconv.Unquote(q)
			out = append(out, s)
			line = line[len(q):]
			continue
		}
		f, rest, _ := strings.Cut(line, " ")
		out = append(out, f)
		line = rest
	}
	return out
}

// ids returns the ids of text tail lines.
func ids(t *testing.T, r result) []string {
	t.Helper()
	var out []string
	for _, line := range r.lines() {
		if f := textFields(t, line); len(f) == 4 {
			out = append(out, f[3])
		}
	}
	return out
}

// TestTailGroup consumes as a consumer group: relayctl acknowledges what it printed, so a later
// member of the group gets only new events; relayctl sources reports the group's lag.
func TestTailGroup(t *testing.T) {
	r := startRelayd(t, ordersYAML)
	for _, id := range []string{"o-1", "o-2", "o-3"} {
		send(t, r, id, "order.created")
	}
	first := relayctl(t, nil, "tail", "--addr", r.GRPC, "--group", "billing", "--from-start", "--count", "3").ok(t)
	if got := ids(t, first); !slices.Equal(got, []string{"o-1", "o-2", "o-3"}) {
		t.Fatalf("first member printed %v", got)
	}

	// A second member (another process: another consumer name) gets only what comes next.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	second := make(chan result, 1)
	go func() {
		second <- relayctlContext(ctx, nil, "tail", "--addr", r.GRPC, "--group", "billing", "--consumer", "second", "--count", "1", "-o", "json")
	}()
	send(t, r, "o-4", "order.paid")
	res := (<-second).ok(t)
	var d eventrelayv1.Delivery
	if err := protojson.Unmarshal([]byte(res.stdout), &d); err != nil {
		t.Fatalf("second member printed %q: %v", res.stdout, err)
	}
	// (delivery_attempt may be 2: the first member's last blocking read can take o-4 as it
	// exits; relayd then releases it to the group.)
	if d.GetEvent().GetId() != "o-4" || d.GetAckId() == "" {
		t.Errorf("second member got %v, want o-4 with an ack id", d.String())
	}

	// Everything printed was acknowledged; a new event is lag 1, or pending 1 when a member's
	// last blocking read took it as the member exited.
	send(t, r, "o-5", "order.paid")
	out := relayctl(t, nil, "sources", "--admin", r.Admin, "-o", "json").ok(t)
	var sources []sourceStatus
	if err := json.Unmarshal([]byte(out.stdout), &sources); err != nil {
		t.Fatalf("sources -o json: %v\n%s", err, out.stdout)
	}
	if len(sources) != 1 || sources[0].Name != "orders" || sources[0].Provider != "hmac" || sources[0].Length != 5 ||
		len(sources[0].Groups) != 1 || sources[0].Groups[0].Name != "billing" || sources[0].Groups[0].Lag+sources[0].Groups[0].Pending != 1 {
		t.Errorf("sources: %s", out.stdout)
	}
	g := sources[0].Groups[0]
	table := relayctl(t, nil, "sources", "--admin", "http://"+r.Admin).ok(t)
	want := fmt.Sprintf("orders hmac 1 5 0 billing %d %d", g.Lag, g.Pending)
	if lines := table.lines(); len(lines) != 2 || strings.Join(strings.Fields(lines[1]), " ") != want {
		t.Errorf("sources table, want %q:\n%s", want, table.stdout)
	}
}

// TestTailFilter: relayctl tail --filter prints only the events the CEL expression
// matches; a bad expression is reported with CEL's position and exit status 1.
func TestTailFilter(t *testing.T) {
	r := startRelayd(t, ordersYAML)
	for _, e := range [][2]string{{"f-1", "order.created"}, {"f-2", "order.paid"}, {"f-3", "order.created"}} {
		send(t, r, e[0], e[1])
	}
	out := relayctl(t, nil, "tail", "--addr", r.GRPC, "--from-start", "--count", "2",
		"--filter", `event.type == "order.created" && event.id.startsWith("f-")`).ok(t)
	if got := ids(t, out); !slices.Equal(got, []string{"f-1", "f-3"}) {
		t.Fatalf("filtered tail printed %v, want [f-1 f-3]", got)
	}
	bad := relayctl(t, nil, "tail", "--addr", r.GRPC, "--from-start", "--count", "1", "--filter", `event.type ==`)
	if bad.code != 1 || !strings.Contains(bad.stderr, "InvalidArgument") || !strings.Contains(bad.stderr, "1:14") {
		t.Errorf("bad filter: exit %d, stderr %q", bad.code, bad.stderr)
	}
}

// TestTailCursorFile resumes a tail from the cursor file the previous run left.
func TestTailCursorFile(t *testing.T) {
	r := startRelayd(t, ordersYAML)
	send(t, r, "c-1", "order.created")
	send(t, r, "c-2", "order.created")
	file := filepath.Join(t.TempDir(), "cursor")
	first := relayctl(t, nil, "tail", "--addr", r.GRPC, "--from-start", "--count", "2", "--cursor-file", file).ok(t)
	if got := ids(t, first); !slices.Equal(got, []string{"c-1", "c-2"}) {
		t.Fatalf("first run printed %v", got)
	}
	saved, err := os.ReadFile(file)
	if err != nil || len(strings.TrimSpace(string(saved))) == 0 {
		t.Fatalf("cursor file: %q, %v", saved, err)
	}
	send(t, r, "c-3", "order.paid")
	// --from-start is overridden by the saved cursor: nothing is printed twice.
	second := relayctl(t, nil, "tail", "--addr", r.GRPC, "--from-start", "--count", "1", "--cursor-file", file).ok(t)
	if got := ids(t, second); !slices.Equal(got, []string{"c-3"}) {
		t.Fatalf("resumed run printed %v, want [c-3]", got)
	}
	if again, _ := os.ReadFile(file); string(again) == string(saved) {
		t.Error("the cursor file was not advanced")
	}
	// The cursor of the last json line is the file's content.
	third := relayctl(t, nil, "tail", "--addr", r.GRPC, "--after", strings.TrimSpace(string(saved)), "--count", "1", "-o", "json").ok(t)
	if !strings.Contains(third.stdout, `"id":"c-3"`) {
		t.Errorf("--after the saved cursor printed %q", third.stdout)
	}
	// --type filters.
	typed := relayctl(t, nil, "tail", "--addr", r.GRPC, "--from-start", "--type", "order.p*", "--count", "1").ok(t)
	if got := ids(t, typed); !slices.Equal(got, []string{"c-3"}) {
		t.Errorf("--type order.p* printed %v", got)
	}
}

// TestEventsAndDeadLetters lists history and moves a dead letter back.
func TestEventsAndDeadLetters(t *testing.T) {
	r := startRelayd(t, ordersYAML)
	for _, id := range []string{"e-1", "e-2", "e-3"} {
		send(t, r, id, "order.created")
	}
	list := relayctl(t, nil, "events", "list", "--addr", r.GRPC, "--source", "orders", "--newest-first", "--limit", "2").ok(t)
	if got := ids(t, list); !slices.Equal(got, []string{"e-3", "e-2"}) {
		t.Errorf("events list --newest-first --limit 2: %v", got)
	}
	all := relayctl(t, nil, "events", "list", "--addr", r.GRPC, "--source", "orders", "--since", "1h", "--limit", "0", "-o", "cloudevents").ok(t)
	if n := len(all.lines()); n != 3 {
		t.Errorf("events list --since 1h: %d lines:\n%s", n, all.stdout)
	}
	none := relayctl(t, nil, "events", "list", "--addr", r.GRPC, "--source", "orders", "--until", "2000-01-01").ok(t)
	if none.stdout != "" {
		t.Errorf("events list --until 2000-01-01 printed %q", none.stdout)
	}

	// A group member that never acknowledges, with one delivery allowed: e-1 moves to the dead
	// letters when a second member reclaims it after the ack deadline.
	conn, err := grpc.NewClient(r.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := eventrelayv1.NewEventServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	group := &eventrelayv1.SubscribeRequest{Sources: []string{"orders"}, Group: "flaky", Consumer: "stuck",
		Start: eventrelayv1.StartPosition_START_POSITION_EARLIEST, AckDeadline: durationpb.New(100 * time.Millisecond),
		MaxDeliveryAttempts: 1, MaxOutstanding: 1}
	stuck, err := client.Subscribe(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	if msg, err := stuck.Recv(); err != nil || msg.GetDelivery().GetEvent().GetId() != "e-1" {
		t.Fatalf("first delivery: %v, %v", msg, err)
	}
	group.Consumer, group.MaxOutstanding = "reclaimer", 0
	reclaimer, err := client.Subscribe(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	go func() { // acknowledges what it gets (e-2, e-3) and reclaims e-1, dead-lettering it
		for {
			msg, err := reclaimer.Recv()
			if err != nil {
				return
			}
			if id := msg.GetDelivery().GetAckId(); id != "" {
				_, _ = client.Acknowledge(ctx, &eventrelayv1.AcknowledgeRequest{AckIds: []string{id}})
			}
		}
	}()
	var dlq result
	for ctx.Err() == nil {
		if dlq = relayctl(t, nil, "dlq", "list", "--addr", r.GRPC, "--source", "orders", "--group", "flaky").ok(t); dlq.stdout != "" {
			break
		}
		time.Sleep(20 * time.Millisecond) // waiting for the reclaimer, not a timed assertion
	}
	if got := ids(t, dlq); !slices.Equal(got, []string{"e-1"}) {
		t.Fatalf("dlq list: %v", got)
	}
	redrive := relayctl(t, nil, "dlq", "redrive", "--addr", r.GRPC, "--source", "orders", "--group", "flaky", "--id", "e-1").ok(t)
	if redrive.stdout != "redriven 1\n" {
		t.Errorf("dlq redrive printed %q", redrive.stdout)
	}
	if left := relayctl(t, nil, "dlq", "list", "--addr", r.GRPC, "--source", "orders", "--group", "flaky").ok(t); left.stdout != "" {
		t.Errorf("dlq list after redrive: %q", left.stdout)
	}
}

// TestSubscribeHTTP streams the events as newline-delimited JSON over plain HTTP, as
// curl -N http://localhost:8080/v1/events:subscribe?sources=orders&start=START_POSITION_EARLIEST does.
func TestSubscribeHTTP(t *testing.T) {
	r := startRelayd(t, ordersYAML)
	send(t, r, "n-1", "order.created")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		"http://"+r.HTTP+"/v1/events:subscribe?sources=orders&start=START_POSITION_EARLIEST&heartbeat_interval=1s", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %s", resp.Status)
	}
	lines := bufio.NewScanner(resp.Body)
	next := func() *eventrelayv1.SubscribeResponse {
		t.Helper()
		for lines.Scan() {
			var line struct {
				Result json.RawMessage `json:"result"`
				Error  json.RawMessage `json:"error"`
			}
			if err := json.Unmarshal(lines.Bytes(), &line); err != nil || line.Error != nil {
				t.Fatalf("line %q: %v", lines.Bytes(), err)
			}
			var msg eventrelayv1.SubscribeResponse
			if err := protojson.Unmarshal(line.Result, &msg); err != nil {
				t.Fatalf("line %q: %v", lines.Bytes(), err)
			}
			if msg.GetDelivery() != nil {
				return &msg
			}
		}
		t.Fatalf("stream ended: %v", lines.Err())
		return nil
	}
	if d := next().GetDelivery(); d.GetEvent().GetId() != "n-1" || string(d.GetEvent().GetData()) != `{"id":"n-1","type":"order.created"}` || d.GetCursor() == "" {
		t.Errorf("first line: %v", d)
	}
	// A live event arrives on the open stream.
	send(t, r, "n-2", "order.paid")
	if d := next().GetDelivery(); d.GetEvent().GetId() != "n-2" {
		t.Errorf("second line: %v", d)
	}
}

// TestOpenAPI checks that relayd serves the OpenAPI document, with the webhook route and its
// error answers, on the admin port.
func TestOpenAPI(t *testing.T) {
	r := startRelayd(t, ordersYAML)
	resp, err := http.Get("http://" + r.Admin + "/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc struct {
		Paths map[string]map[string]struct {
			Responses map[string]any `json:"responses"`
		} `json:"paths"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	post, ok := doc.Paths["/v1/webhooks/{source}"]["post"]
	if !ok {
		t.Fatalf("no POST /v1/webhooks/{source} in %v", doc.Paths)
	}
	for _, code := range []string{"200", "400", "401", "403", "404", "405", "413", "415", "429", "503"} {
		if post.Responses[code] == nil {
			t.Errorf("POST /v1/webhooks/{source}: no %s response", code)
		}
	}
	for path, ops := range doc.Paths {
		for method, op := range ops {
			if op.Responses["401"] == nil && path != "/v1/webhooks/{source}" {
				t.Errorf("%s %s: no 401 response", method, path)
			}
		}
	}
}

// selfSigned writes a self-signed certificate for 127.0.0.1 and its key into dir.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "relayd test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestTLSAndToken runs relayctl against a relayd serving TLS on both listeners and requiring
// a bearer token for EventService.
func TestTLSAndToken(t *testing.T) {
	cert, key := selfSigned(t, t.TempDir())
	r := startRelayd(t, ordersYAML+"auth:\n  tokens:\n    - {name: ops, token: \"ops-token\", sources: [\"*\"], publish: true}\n",
		"RELAY_HTTP_TLS_CERT_FILE="+cert, "RELAY_HTTP_TLS_KEY_FILE="+key,
		"RELAY_GRPC_TLS_CERT_FILE="+cert, "RELAY_GRPC_TLS_KEY_FILE="+key)
	sendArgs := []string{"send", "--url", "https://" + r.HTTP, "--source", "orders", "--secret", "orders-secret", "--data", `{"id":"tls-1","type":"order.created"}`}
	if res := relayctl(t, nil, sendArgs...); res.code != 1 || !strings.Contains(res.stderr, "certificate") {
		t.Errorf("send to an unknown CA: exit %d, %q", res.code, res.stderr)
	}
	relayctl(t, nil, append(sendArgs, "--ca", cert)...).ok(t)

	list := []string{"events", "list", "--addr", r.GRPC, "--source", "orders"}
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		code int
		want string // in stdout (status 0) or stderr
	}{
		{"plaintext to TLS", []string{"RELAY_TOKEN=ops-token"}, nil, 1, "(Unavailable)"},
		{"no token", nil, []string{"--ca", cert}, 1, "(Unauthenticated)"},
		{"wrong token", nil, []string{"--ca", cert, "--token", "nope"}, 1, "(Unauthenticated)"},
		{"--token", nil, []string{"--ca", cert, "--token", "ops-token"}, 0, "tls-1"},
		{"RELAY_TOKEN", []string{"RELAY_TOKEN=ops-token"}, []string{"--ca", cert}, 0, "tls-1"},
		{"--tls with the system roots", []string{"RELAY_TOKEN=ops-token"}, []string{"--tls"}, 1, "certificate"},
		{"--insecure-skip-verify", []string{"RELAY_TOKEN=ops-token"}, []string{"--insecure-skip-verify"}, 0, "tls-1"},
	} {
		res := relayctl(t, tc.env, append(list, tc.args...)...)
		out := res.stderr
		if tc.code == 0 {
			out = res.stdout
		}
		if res.code != tc.code || !strings.Contains(out, tc.want) {
			t.Errorf("%s: exit %d (want %d), output lacks %q:\nstdout: %s\nstderr: %s", tc.name, res.code, tc.code, tc.want, res.stdout, res.stderr)
		}
	}
	tail := relayctl(t, []string{"RELAY_TOKEN=ops-token"}, "tail", "--addr", r.GRPC, "--ca", cert, "--from-start", "--count", "1").ok(t)
	if got := ids(t, tail); !slices.Equal(got, []string{"tls-1"}) {
		t.Errorf("tail over TLS printed %v", got)
	}
}

// TestRefusedAndDestinations: relayctl refused shows a webhook signed with the wrong secret
// with reason "signature"; relayctl destinations list and resume read the admin listener.
func TestRefusedAndDestinations(t *testing.T) {
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	t.Cleanup(rcv.Close)
	r := startRelayd(t, ordersYAML+"destinations:\n  - {name: hooks, url: \""+rcv.URL+"\", secrets: [whsec_MDEyMzQ1Njc4OWFiY2RlZmdoaWprbG1u], allow_private: true}\n")
	bad := relayctl(t, nil, "send", "--url", "http://"+r.HTTP, "--source", "orders", "--secret", "wrong-secret", "--data", `{"id":"x-1"}`)
	if bad.code == 0 {
		t.Fatalf("a webhook with the wrong secret was accepted: %s", bad.stdout)
	}
	out := relayctl(t, nil, "refused", "orders", "--admin", r.Admin, "-v").ok(t)
	lines := out.lines()
	if len(lines) < 2 || !strings.Contains(lines[1], " 401 ") || !strings.Contains(lines[1], "signature") || !strings.Contains(lines[1], "127.0.0.1") {
		t.Errorf("relayctl refused:\n%s", out.stdout)
	}
	if !strings.Contains(out.stdout, "X-Signature:") {
		t.Errorf("relayctl refused -v shows no headers:\n%s", out.stdout)
	}
	if res := relayctl(t, nil, "refused", "nope", "--admin", r.Admin); res.code != 1 || !strings.Contains(res.stderr, "404") {
		t.Errorf("refused of an unknown source: exit %d, %s", res.code, res.stderr)
	}

	list := relayctl(t, nil, "destinations", "list", "--admin", r.Admin).ok(t)
	if l := list.lines(); len(l) != 2 || strings.Join(strings.Fields(l[1])[:3], " ") != "hooks running closed" {
		t.Errorf("destinations list:\n%s", list.stdout)
	}
	if res := relayctl(t, nil, "destinations", "resume", "hooks", "--admin", r.Admin).ok(t); strings.TrimSpace(res.stdout) != "resumed hooks" {
		t.Errorf("destinations resume: %q", res.stdout)
	}
	if res := relayctl(t, nil, "destinations", "resume", "nope", "--admin", r.Admin); res.code != 1 || !strings.Contains(res.stderr, "not configured") {
		t.Errorf("resume of an unknown destination: exit %d, %s", res.code, res.stderr)
	}
}

// TestAdminToken: against a relayd with auth.tokens, the admin commands send --token (or
// $RELAY_TOKEN) as a bearer token; without one relayd answers 401 and relayctl exits 1.
func TestAdminToken(t *testing.T) {
	r := startRelayd(t, ordersYAML+"auth:\n  tokens:\n    - {name: ops, token: \"ops-token\", sources: [\"*\"], console: true}\n")
	if res := relayctl(t, nil, "sources", "--admin", r.Admin); res.code != 1 || !strings.Contains(res.stderr, "401") {
		t.Errorf("sources without a token: exit %d, %s", res.code, res.stderr)
	}
	if out := relayctl(t, nil, "sources", "--admin", r.Admin, "--token", "ops-token").ok(t); !strings.Contains(out.stdout, "orders") {
		t.Errorf("sources --token:\n%s", out.stdout)
	}
	relayctl(t, []string{"RELAY_TOKEN=ops-token"}, "refused", "orders", "--admin", r.Admin).ok(t)
	relayctl(t, []string{"RELAY_TOKEN=ops-token"}, "destinations", "list", "--admin", r.Admin).ok(t)
}
