package server

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	eventrelayv1 "github.com/eventrelay/eventrelay/gen/eventrelay/v1"
	"github.com/eventrelay/eventrelay/relay"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Token values of the scope tests; none may reach a log line.
const (
	readerToken   = "tok-reader-orders-3c9d"
	producerToken = "tok-producer-orders-b71e"
	allToken      = "tok-all-sources-0aa4"
)

var scopeTokens = []Token{
	{Name: "reader", Value: []byte(readerToken), Sources: []string{"orders"}},
	{Name: "producer", Value: []byte(producerToken), Sources: []string{"orders"}, Publish: true},
	{Name: "all", Value: []byte(allToken)},
	{Name: "workers", Value: []byte(workersToken), Sources: []string{"orders", "billing"}, Groups: []string{"work-*", "audit"}},
}

// workersToken reads orders and billing and may use the groups work-* and audit only.
const workersToken = "workers-token-0c6e8d2a"

func TestCanUseGroup(t *testing.T) {
	a := NewAuth(AuthOptions{Tokens: append(slices.Clone(scopeTokens),
		Token{Name: "star", Value: []byte("star-token-77"), Sources: []string{"*"}},
		Token{Name: "star-listed", Value: []byte("star-listed-token-78"), Sources: []string{"*"}, Groups: []string{"g?"}})})
	for _, tc := range []struct {
		token, group string
		want         bool
	}{
		{readerToken, "g", false},        // restricted to sources, no groups: none
		{readerToken, "work-1", false},   //
		{allToken, "g", true},            // unrestricted, no groups: every group
		{allToken, "billing", true},      //
		{workersToken, "work-1", true},   // glob
		{workersToken, "work-", true},    // "*" matches the empty run
		{workersToken, "audit", true},    // exact name
		{workersToken, "audit2", false},  //
		{workersToken, "billing", false}, //
		{workersToken, "xwork-1", false}, // globs are anchored
		{"star-token-77", "any", true},   // sources "*" is no restriction
		{"star-listed-token-78", "g1", true},
		{"star-listed-token-78", "g12", false}, // a list restricts even an all-sources token
	} {
		t.Run(tc.token+"/"+tc.group, func(t *testing.T) {
			p, err := a.Authenticate(metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+tc.token)))
			if err != nil {
				t.Fatal(err)
			}
			if got := p.CanUseGroup(tc.group); got != tc.want {
				t.Fatalf("CanUseGroup(%q) = %v, want %v", tc.group, got, tc.want)
			}
		})
	}
}

func TestAuthenticate(t *testing.T) {
	a := NewAuth(AuthOptions{Tokens: scopeTokens})
	for _, tc := range []struct {
		name   string
		values []string // authorization metadata
		want   string   // principal name, "" = unauthenticated
	}{
		{"no metadata", nil, ""},
		{"empty", []string{""}, ""},
		{"bearer without token", []string{"Bearer "}, ""},
		{"basic scheme", []string{"Basic " + readerToken}, ""},
		{"raw token without scheme", []string{readerToken}, ""},
		{"wrong token", []string{"Bearer nope"}, ""},
		{"prefix of a token", []string{"Bearer " + readerToken[:len(readerToken)-1]}, ""},
		{"token with a suffix", []string{"Bearer " + readerToken + "x"}, ""},
		{"reader", []string{"Bearer " + readerToken}, "reader"},
		{"scheme is case-insensitive", []string{"bEARER " + readerToken}, "reader"},
		{"surrounding spaces", []string{"Bearer   " + producerToken + " "}, "producer"},
		{"second value is a bearer", []string{"Basic x", "Bearer " + allToken}, "all"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			if tc.values != nil {
				md := metadata.MD{"authorization": tc.values}
				ctx = metadata.NewIncomingContext(ctx, md)
			}
			p, err := a.Authenticate(ctx)
			if tc.want == "" {
				if relay.ErrorCode(err) != relay.CodeUnauthenticated {
					t.Fatalf("got %v, %v", p, err)
				}
				return
			}
			if err != nil || p.Name != tc.want {
				t.Fatalf("got %v, %v; want %s", p, err, tc.want)
			}
		})
	}
	p, _ := a.Authenticate(metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+readerToken)))
	if !p.CanRead("orders") || p.CanRead("billing") || p.CanPublish("orders") {
		t.Errorf("reader scopes: %+v", p)
	}
	p, _ = a.Authenticate(metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+allToken)))
	if !p.CanRead("billing") || p.CanPublish("billing") {
		t.Errorf("all scopes: %+v", p)
	}
	if open, _ := NewAuth(AuthOptions{}).Authenticate(context.Background()); !open.CanPublish("anything") {
		t.Errorf("no tokens: everything is allowed")
	}
}

// scopeEnv is a relay with the scope tokens, one event in orders and one in billing, and a
// pending group delivery of billing (its ack id) taken with the all-sources token.
func scopeEnv(t *testing.T, url string) (*env, string, string) {
	e := newEnv(t, envOptions{redisURL: url, tokens: scopeTokens})
	for _, src := range []string{"orders", "billing"} {
		if a := e.do(e.signedRequest(src, []byte(`{"id":"evt_`+src+`","type":"t"}`), time.Now())); a.status != 200 {
			t.Fatalf("seed %s: %d %s", src, a.status, a.body)
		}
	}
	ctx, cancel := context.WithCancel(bearer(context.Background(), allToken))
	defer cancel()
	st, err := e.events.Subscribe(ctx, &eventrelayv1.SubscribeRequest{Sources: []string{"billing"}, Group: "g",
		Start: eventrelayv1.StartPosition_START_POSITION_EARLIEST})
	if err != nil {
		t.Fatal(err)
	}
	var ackID string
	for ackID == "" {
		m, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if d := m.GetDelivery(); d != nil {
			ackID = d.AckId
		}
	}
	list, err := e.events.ListEvents(bearer(context.Background(), allToken), &eventrelayv1.ListEventsRequest{Source: "billing"})
	if err != nil || len(list.Deliveries) == 0 {
		t.Fatalf("%v %v", list, err)
	}
	return e, ackID, list.Deliveries[0].Cursor
}

func TestTokenScopesGRPC(t *testing.T) { eachStore(t, testTokenScopesGRPC) }

func testTokenScopesGRPC(t *testing.T, url string) {
	e, billingAck, billingCursor := scopeEnv(t, url)
	c := e.events
	subscribe := func(req *eventrelayv1.SubscribeRequest) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			if req.HeartbeatInterval == nil {
				req.HeartbeatInterval = durationpb.New(100 * time.Millisecond)
			}
			st, err := c.Subscribe(ctx, req)
			if err != nil {
				return err
			}
			_, err = st.Recv() // the first message: a delivery, a heartbeat, or the error
			return err
		}
	}
	publish := func(source string) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			_, err := c.Publish(ctx, &eventrelayv1.PublishRequest{Source: source, Type: "t", Data: []byte(`{}`)})
			return err
		}
	}
	for _, tc := range []struct {
		name  string
		token string // "" = none
		call  func(ctx context.Context) error
		want  codes.Code
	}{
		{"subscribe without token", "", subscribe(&eventrelayv1.SubscribeRequest{}), codes.Unauthenticated},
		{"subscribe with an unknown token", "nope", subscribe(&eventrelayv1.SubscribeRequest{}), codes.Unauthenticated},
		{"subscribe to a source outside the list", readerToken, subscribe(&eventrelayv1.SubscribeRequest{Sources: []string{"billing"}}), codes.PermissionDenied},
		{"subscribe to an allowed and a forbidden source", readerToken, subscribe(&eventrelayv1.SubscribeRequest{Sources: []string{"orders", "billing"}}), codes.PermissionDenied},
		{"after_cursor naming a forbidden source", readerToken, subscribe(&eventrelayv1.SubscribeRequest{AfterCursor: billingCursor}), codes.PermissionDenied},
		{"after_cursor of a forbidden source with allowed sources", readerToken, subscribe(&eventrelayv1.SubscribeRequest{Sources: []string{"orders"}, AfterCursor: billingCursor}), codes.PermissionDenied},
		{"dead letters of a forbidden source", readerToken, subscribe(&eventrelayv1.SubscribeRequest{Sources: []string{"billing"}, DeadLetters: true}), codes.PermissionDenied},
		{"group on a forbidden source", readerToken, subscribe(&eventrelayv1.SubscribeRequest{Sources: []string{"billing"}, Group: "g"}), codes.PermissionDenied},
		{"group with a token that lists no groups", readerToken, subscribe(&eventrelayv1.SubscribeRequest{Sources: []string{"orders"}, Group: "g"}), codes.PermissionDenied},
		{"group outside the token's groups", workersToken, subscribe(&eventrelayv1.SubscribeRequest{Sources: []string{"billing"}, Group: "g"}), codes.PermissionDenied},
		{"group matching the token's glob", workersToken, subscribe(&eventrelayv1.SubscribeRequest{Sources: []string{"billing"}, Group: "work-1"}), codes.OK},
		{"acknowledge an ack id of a group outside the token's groups", workersToken, func(ctx context.Context) error {
			_, err := c.Acknowledge(ctx, &eventrelayv1.AcknowledgeRequest{AckIds: []string{billingAck}})
			return err
		}, codes.PermissionDenied},
		{"modify the deadline of a group outside the token's groups", workersToken, func(ctx context.Context) error {
			_, err := c.ModifyAckDeadline(ctx, &eventrelayv1.ModifyAckDeadlineRequest{AckIds: []string{billingAck}, AckDeadline: durationpb.New(time.Minute)})
			return err
		}, codes.PermissionDenied},
		{"modify the deadline of a forbidden source", readerToken, func(ctx context.Context) error {
			_, err := c.ModifyAckDeadline(ctx, &eventrelayv1.ModifyAckDeadlineRequest{AckIds: []string{billingAck}, AckDeadline: durationpb.New(time.Minute)})
			return err
		}, codes.PermissionDenied},
		{"acknowledge a forged ack id", allToken, func(ctx context.Context) error {
			_, err := c.Acknowledge(ctx, &eventrelayv1.AcknowledgeRequest{AckIds: []string{forge(billingAck)}})
			return err
		}, codes.InvalidArgument},
		{"subscribe to the allowed source", readerToken, subscribe(&eventrelayv1.SubscribeRequest{Sources: []string{"orders"}}), codes.OK},
		{"all-sources token reads billing", allToken, subscribe(&eventrelayv1.SubscribeRequest{Sources: []string{"billing"}}), codes.OK},
		{"get a forbidden event", readerToken, func(ctx context.Context) error {
			_, err := c.GetEvent(ctx, &eventrelayv1.GetEventRequest{Source: "billing", Id: "evt_billing"})
			return err
		}, codes.PermissionDenied},
		{"get an allowed event", readerToken, func(ctx context.Context) error {
			_, err := c.GetEvent(ctx, &eventrelayv1.GetEventRequest{Source: "orders", Id: "evt_orders"})
			return err
		}, codes.OK},
		{"list a forbidden source", readerToken, func(ctx context.Context) error {
			_, err := c.ListEvents(ctx, &eventrelayv1.ListEventsRequest{Source: "billing"})
			return err
		}, codes.PermissionDenied},
		{"list without token", "", func(ctx context.Context) error {
			_, err := c.ListEvents(ctx, &eventrelayv1.ListEventsRequest{Source: "orders"})
			return err
		}, codes.Unauthenticated},
		{"acknowledge an ack id of a forbidden source", readerToken, func(ctx context.Context) error {
			_, err := c.Acknowledge(ctx, &eventrelayv1.AcknowledgeRequest{AckIds: []string{billingAck}})
			return err
		}, codes.PermissionDenied},
		{"nack an ack id of a forbidden source", readerToken, func(ctx context.Context) error {
			_, err := c.Nack(ctx, &eventrelayv1.NackRequest{AckIds: []string{billingAck}})
			return err
		}, codes.PermissionDenied},
		{"publish without publish: true", readerToken, publish("orders"), codes.PermissionDenied},
		{"publish outside the list", producerToken, publish("billing"), codes.PermissionDenied},
		{"publish without token", "", publish("orders"), codes.Unauthenticated},
		{"publish", producerToken, publish("orders"), codes.OK},
		{"dead letters of a group outside the token's groups", workersToken, func(ctx context.Context) error {
			_, err := c.ListEvents(ctx, &eventrelayv1.ListEventsRequest{Source: "orders", DeadLetters: true, Group: "other"})
			return err
		}, codes.PermissionDenied},
		{"dead letters of the token's group", workersToken, func(ctx context.Context) error {
			_, err := c.ListEvents(ctx, &eventrelayv1.ListEventsRequest{Source: "orders", DeadLetters: true, Group: "audit"})
			return err
		}, codes.OK},
		{"dead-letter stream of a group outside the token's groups", workersToken,
			subscribe(&eventrelayv1.SubscribeRequest{Sources: []string{"orders"}, DeadLetters: true, Group: "other"}), codes.PermissionDenied},
		{"redrive without publish", readerToken, func(ctx context.Context) error {
			_, err := c.RedriveDeadLetters(ctx, &eventrelayv1.RedriveDeadLettersRequest{Source: "orders"})
			return err
		}, codes.PermissionDenied},
		{"redrive outside the list", producerToken, func(ctx context.Context) error {
			_, err := c.RedriveDeadLetters(ctx, &eventrelayv1.RedriveDeadLettersRequest{Source: "billing"})
			return err
		}, codes.PermissionDenied},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if tc.token != "" {
				ctx = bearer(ctx, tc.token)
			}
			if got := status.Code(tc.call(ctx)); got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}

	t.Run("empty sources means the allowed ones only", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(bearer(context.Background(), readerToken), 10*time.Second)
		defer cancel()
		st, err := c.Subscribe(ctx, &eventrelayv1.SubscribeRequest{HeartbeatInterval: durationpb.New(100 * time.Millisecond)})
		if err != nil {
			t.Fatal(err)
		}
		m, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		cur, err := relay.DecodeCursor(m.GetHeartbeat().GetCursor())
		if err != nil {
			t.Fatalf("first message %v: %v", m, err)
		}
		var sources []string
		for p := range cur.Positions {
			sources = append(sources, p.Source)
		}
		if !slices.Equal(sources, []string{"orders"}) {
			t.Fatalf("the subscription reads %v", sources)
		}
	})
	t.Run("the ack id still works for its owner", func(t *testing.T) {
		resp, err := c.Acknowledge(bearer(context.Background(), allToken), &eventrelayv1.AcknowledgeRequest{AckIds: []string{billingAck}})
		if err != nil || len(resp.UnknownAckIds) != 0 {
			t.Fatalf("%v %v", resp, err)
		}
	})
	for _, tok := range []string{readerToken, producerToken, allToken} {
		if strings.Contains(e.logs.String(), tok) {
			t.Fatalf("a token value is in the logs")
		}
	}
}

func TestTokenScopesHTTP(t *testing.T) { eachStore(t, testTokenScopesHTTP) }

func testTokenScopesHTTP(t *testing.T, url string) {
	e, billingAck, _ := scopeEnv(t, url)
	type call struct {
		method, path, body string
	}
	for _, tc := range []struct {
		name  string
		token string
		call  call
		want  int
		check func(t *testing.T, line string) // the first NDJSON line of a stream
	}{
		{"list without token", "", call{"GET", "/v1/sources/orders/events", ""}, 401, nil},
		{"list with an unknown token", "nope", call{"GET", "/v1/sources/orders/events", ""}, 401, nil},
		{"list a forbidden source", readerToken, call{"GET", "/v1/sources/billing/events", ""}, 403, nil},
		{"list the allowed source", readerToken, call{"GET", "/v1/sources/orders/events", ""}, 200, nil},
		{"get a forbidden event", readerToken, call{"GET", "/v1/sources/billing/events/evt_billing", ""}, 403, nil},
		{"subscribe without token", "", call{"GET", "/v1/events:subscribe", ""}, 401, nil},
		{"subscribe to a forbidden source", readerToken, call{"GET", "/v1/events:subscribe?sources=billing", ""}, 403, nil},
		{"subscribe to allowed and forbidden", readerToken, call{"GET", "/v1/events:subscribe?sources=orders&sources=billing", ""}, 403, nil},
		{"subscribe with empty sources reads the allowed ones", readerToken,
			call{"GET", "/v1/events:subscribe?start=START_POSITION_EARLIEST&heartbeat_interval=0.2s", ""}, 200,
			func(t *testing.T, line string) {
				var m struct {
					Result struct {
						Delivery struct {
							Event struct{ Source, ID string }
						}
					}
				}
				if err := json.Unmarshal([]byte(line), &m); err != nil || m.Result.Delivery.Event.Source != "orders" {
					t.Fatalf("first line %s (%v)", line, err)
				}
			}},
		{"publish without publish: true", readerToken, call{"POST", "/v1/events", `{"source":"orders","type":"t","data":"e30="}`}, 403, nil},
		{"publish without token", "", call{"POST", "/v1/events", `{"source":"orders","type":"t","data":"e30="}`}, 401, nil},
		{"publish outside the list", producerToken, call{"POST", "/v1/events", `{"source":"billing","type":"t","data":"e30="}`}, 403, nil},
		{"publish", producerToken, call{"POST", "/v1/events", `{"source":"orders","type":"t","data":"e30="}`}, 200, nil},
		{"acknowledge an ack id of a forbidden source", readerToken, call{"POST", "/v1/events:acknowledge", `{"ack_ids":["` + billingAck + `"]}`}, 403, nil},
		{"acknowledge an ack id of a forbidden group", workersToken, call{"POST", "/v1/events:acknowledge", `{"ack_ids":["` + billingAck + `"]}`}, 403, nil},
		{"nack an ack id of a forbidden group", workersToken, call{"POST", "/v1/events:nack", `{"ack_ids":["` + billingAck + `"]}`}, 403, nil},
		{"modify the deadline of a forbidden group", workersToken, call{"POST", "/v1/events:modifyAckDeadline", `{"ack_ids":["` + billingAck + `"],"ack_deadline":"60s"}`}, 403, nil},
		{"subscribe with a forbidden group", workersToken, call{"GET", "/v1/events:subscribe?sources=billing&group=g", ""}, 403, nil},
		{"acknowledge a garbage ack id", allToken, call{"POST", "/v1/events:acknowledge", `{"ack_ids":["garbage"]}`}, 400, nil},
		{"redrive without publish", readerToken, call{"POST", "/v1/sources/orders:redrive", `{}`}, 403, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, tc.call.method, e.http.URL+tc.call.path, strings.NewReader(tc.call.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tc.want {
				b, _ := io.ReadAll(resp.Body)
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.want, b)
			}
			if tc.want == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("401 without WWW-Authenticate: Bearer")
			}
			if tc.check != nil {
				line, err := bufio.NewReader(resp.Body).ReadString('\n')
				if err != nil {
					t.Fatal(err)
				}
				tc.check(t, line)
			}
		})
	}
}

// forge alters the last two characters (the end of the HMAC) of an ack id, into something
// else than they were.
func forge(ackID string) string {
	end := "AA"
	if strings.HasSuffix(ackID, end) {
		end = "BA"
	}
	return ackID[:len(ackID)-2] + end
}
