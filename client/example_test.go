package client_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/eventrelay/eventrelay/client"
	eventrelayv1 "github.com/eventrelay/eventrelay/gen/eventrelay/v1"
	"github.com/eventrelay/eventrelay/internal/e2e"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// relaydAddr is the gRPC address of a relayd the examples use (started by TestMain).
func relaydAddr() string { return shared.GRPC }

// post sends a signed webhook to the examples' relayd, as a provider would.
func post(source, body string) {
	if code, err := e2e.Post(context.Background(), shared.HTTP, source, []byte(body)); err != nil || code != 200 {
		fmt.Println("post:", code, err)
	}
}

// A tail consumer: every invoice event from the beginning of the retained history, decoded
// from its JSON payload.
func Example() {
	post("stripe", `{"id":"evt_ex1","type":"invoice.paid","amount_paid":1200,"currency":"eur"}`)

	c, err := client.New(relaydAddr(), client.WithToken(os.Getenv("RELAY_TOKEN")))
	if err != nil {
		panic(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err = c.Receive(ctx, client.Subscription{Sources: []string{"stripe"}, Types: []string{"invoice.*"}, Start: client.StartEarliest},
		func(ctx context.Context, m *client.Message) error {
			var inv struct {
				AmountPaid int    `json:"amount_paid"`
				Currency   string `json:"currency"`
			}
			if err := m.DecodeJSON(&inv); err != nil {
				return err
			}
			fmt.Println(m.Event.GetType(), inv.AmountPaid, inv.Currency)
			cancel() // one is enough for the example
			return nil
		})
	fmt.Println("err:", err)
	// Output:
	// invoice.paid 1200 eur
	// err: <nil>
}

// A consumer group: a nil return acknowledges, an error nacks (the event comes back with
// a higher attempt), and a filter keeps only large orders.
func ExampleClient_Receive_group() {
	post("orders", `{"id":"ord_ex1","type":"order.created","total":12}`)
	post("orders", `{"id":"ord_ex2","type":"order.created","total":1500}`)

	c, err := client.New(relaydAddr())
	if err != nil {
		panic(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sub := client.Subscription{
		Sources: []string{"orders"}, Group: "example-fulfilment", Start: client.StartEarliest,
		Filter:    `event.type == "order.created" && data.total > 1000`,
		NackDelay: func(int) time.Duration { return 10 * time.Millisecond },
	}
	err = c.Receive(ctx, sub, func(ctx context.Context, m *client.Message) error {
		fmt.Println(m.Event.GetId(), "attempt", m.Attempt)
		if m.Attempt == 1 {
			return fmt.Errorf("warehouse busy") // nacked: redelivered
		}
		cancel()
		return nil // acknowledged
	})
	fmt.Println("err:", err)
	// Output:
	// ord_ex2 attempt 1
	// ord_ex2 attempt 2
	// err: <nil>
}

// An event in the CloudEvents JSON format.
func ExampleToCloudEvent() {
	ev := &eventrelayv1.Event{
		Id: "evt_1", Source: "stripe", Type: "invoice.paid",
		Time:            timestamppb.New(time.Date(2026, 12, 5, 6, 0, 0, 0, time.UTC)),
		DataContentType: "application/json", Data: []byte(`{"amount_paid":1200}`),
	}
	b, err := client.MarshalCloudEvent(ev)
	if err != nil {
		panic(err)
	}
	fmt.Print(string(b))
	// Output:
	// {"specversion":"1.0","id":"evt_1","source":"stripe","type":"invoice.paid","time":"2026-12-05T06:00:00Z","datacontenttype":"application/json","data":{"amount_paid":1200}}
}
