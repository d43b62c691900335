// Package examples_test shows how a Go service consumes and produces eventrelay events with
// the client library (github.com/eventrelay/eventrelay/client), which resumes, acknowledges
// and bounds concurrency for you; Client.API is the generated EventService client for the
// other calls. Each example starts an in-process relay (startRelay, in relay_test.go);
// against a real relayd, use its gRPC address instead (localhost:9090 in the quick start),
// with client.WithToken when relayd is configured with auth.tokens and client.WithTLS or
// client.WithTLSFiles when it serves TLS.
//
// Run them with: go test ./examples/go -v
package examples_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/eventrelay/eventrelay/client"
	eventrelayv1 "github.com/eventrelay/eventrelay/gen/eventrelay/v1"
)

// Example_subscribe replays a source from the beginning and follows it: the handler gets
// each event; Receive reconnects and resumes by itself when the stream breaks (relayd
// restarting, a dropped connection).
func Example_subscribe() {
	addr, stop := startRelay()
	defer stop()
	c, err := client.New(addr)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	publishOrders(c.API(), "ord_1", "ord_2")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel() // ends Receive
	n := 0
	err = c.Receive(ctx, client.Subscription{
		Sources: []string{"orders"},
		Types:   []string{"order.*"}, // globs on Event.type; empty: every type
		Start:   client.StartEarliest,
	}, func(ctx context.Context, m *client.Message) error {
		ev := m.Event
		fmt.Printf("%s %s %s %s\n", ev.GetSource(), ev.GetType(), ev.GetId(), ev.GetData())
		if n++; n == 2 {
			cancel()
		}
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	// Output:
	// orders order.created ord_1 {"order":"ord_1"}
	// orders order.created ord_2 {"order":"ord_2"}
}

// Example_resumeByCursor keeps the position in a CursorStore: a consumer that stops and
// starts again goes on exactly after the last event its handler finished, with no gap and no
// repeat. client.FileCursorStore keeps it in a file across process restarts; implement
// CursorStore to keep it with your processing's results (e.g. in the same database
// transaction).
func Example_resumeByCursor() {
	addr, stop := startRelay()
	defer stop()
	c, err := client.New(addr)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	publishOrders(c.API(), "ord_1", "ord_2")
	store := &client.MemoryCursorStore{}

	// run processes n events and stops.
	run := func(n int) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		sub := client.Subscription{Sources: []string{"orders"}, Start: client.StartEarliest, CursorStore: store}
		err := c.Receive(ctx, sub, func(ctx context.Context, m *client.Message) error {
			fmt.Println("processed", m.Event.GetId())
			if n--; n == 0 {
				cancel()
			}
			return nil
		})
		if err != nil {
			log.Fatal(err)
		}
	}
	run(1)
	fmt.Println("stopped")
	publishOrders(c.API(), "ord_3") // appended while the consumer was away
	run(2)
	// Output:
	// processed ord_1
	// stopped
	// processed ord_2
	// processed ord_3
}

// Example_consumerGroup consumes as a member of a durable consumer group: the group keeps its
// position in the relay and each event goes to one member. A handler's nil acknowledges the
// event; an error nacks it (redelivered with backoff and a higher Attempt, moved to the dead
// letters after max_delivery_attempts).
func Example_consumerGroup() {
	addr, stop := startRelay()
	defer stop()
	c, err := client.New(addr)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	publishOrders(c.API(), "ord_1", "ord_2")

	// consume processes n events as member consumer of group "billing".
	consume := func(consumer string, n int) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err := c.Receive(ctx, client.Subscription{
			Sources: []string{"orders"},
			Group:   "billing",
			// Stable per worker: after a reconnect it gets its own unacknowledged events first.
			Consumer: consumer,
			// Where a new group starts (an existing group resumes from its own position).
			Start: client.StartEarliest,
		}, func(ctx context.Context, m *client.Message) error {
			fmt.Println(consumer, "processed", m.Event.GetId())
			if n--; n == 0 {
				cancel()
			}
			return nil // acknowledged
		})
		if err != nil {
			log.Fatal(err)
		}
	}

	consume("worker-1", 2)
	publishOrders(c.API(), "ord_3")
	// The group resumes where it was: another member gets only what was not acknowledged.
	consume("worker-2", 1)
	// Output:
	// worker-1 processed ord_1
	// worker-1 processed ord_2
	// worker-2 processed ord_3
}

// Example_publish appends events from a Go producer (no webhook signature; with auth.tokens
// the token needs publish: true). The id is the dedupe key: publishing it again within the
// source's dedupe window stores nothing and answers duplicate.
func Example_publish() {
	addr, stop := startRelay()
	defer stop()
	c, err := client.New(addr)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	api := c.API() // the generated EventService client

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for range 2 {
		resp, err := api.Publish(ctx, &eventrelayv1.PublishRequest{
			Source:  "orders",
			Id:      "ord_1001",
			Type:    "order.created",
			Subject: "cus_42",
			// data_content_type defaults to application/json.
			Data: []byte(`{"order":"ord_1001","total":4200}`),
			// Events with the same partition key keep their order (sources with partitions > 1).
			PartitionKey: "cus_42",
		})
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(resp.GetEventId(), "duplicate:", resp.GetDuplicate())
	}

	got, err := api.GetEvent(ctx, &eventrelayv1.GetEventRequest{Source: "orders", Id: "ord_1001"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(got.GetEvent().GetType(), got.GetEvent().GetSubject(), got.GetEvent().GetDataContentType())
	// Output:
	// ord_1001 duplicate: false
	// ord_1001 duplicate: true
	// order.created cus_42 application/json
}
