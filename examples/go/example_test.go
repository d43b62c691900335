// Package examples_test shows how a Go service consumes and produces eventrelay events with
// the generated client (github.com/eventrelay/eventrelay/gen/eventrelay/v1). Each example
// starts an in-process relay (startRelay, in relay_test.go); against a real relayd, dial its
// gRPC address instead (localhost:9090 in the quick start) and, when relayd is configured with
// auth.tokens, add the token:
//
//	grpc.WithPerRPCCredentials(bearerToken(os.Getenv("RELAY_TOKEN")))
//
// where bearerToken returns map[string]string{"authorization": "Bearer " + token} from
// GetRequestMetadata (see cmd/relayctl/conn.go), and grpc.WithTransportCredentials(
// credentials.NewTLS(...)) when relayd serves TLS.
//
// Run them with: go test ./examples/go -v
package examples_test

import (
	"context"
	"fmt"
	"log"
	"time"

	eventrelayv1 "github.com/eventrelay/eventrelay/gen/eventrelay/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Example_subscribe replays a source from the beginning and follows it. Subscribe streams
// Deliveries (an event with its cursor) and, when no event flows, Heartbeats.
func Example_subscribe() {
	addr, stop := startRelay()
	defer stop()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	client := eventrelayv1.NewEventServiceClient(conn)
	publishOrders(client, "ord_1", "ord_2")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel() // ends the subscription
	stream, err := client.Subscribe(ctx, &eventrelayv1.SubscribeRequest{
		Sources: []string{"orders"},
		Types:   []string{"order.*"}, // globs on Event.type; empty: every type
		Start:   eventrelayv1.StartPosition_START_POSITION_EARLIEST,
	})
	if err != nil {
		log.Fatal(err)
	}
	for n := 0; n < 2; {
		msg, err := stream.Recv()
		if err != nil {
			log.Fatal(err) // see Example_resumeByCursor for resuming after UNAVAILABLE
		}
		d := msg.GetDelivery()
		if d == nil {
			continue // a heartbeat: it only carries the cursor
		}
		ev := d.GetEvent()
		fmt.Printf("%s %s %s %s\n", ev.GetSource(), ev.GetType(), ev.GetId(), ev.GetData())
		n++
	}
	// Output:
	// orders order.created ord_1 {"order":"ord_1"}
	// orders order.created ord_2 {"order":"ord_2"}
}

// Example_resumeByCursor stores the cursor of the last event it processed and resumes exactly
// after it: no gap, no repeat. Do the same when the stream fails with UNAVAILABLE (relayd
// restarting) or RESOURCE_EXHAUSTED (the consumer fell too far behind): resubscribe with
// after_cursor, after a backoff.
func Example_resumeByCursor() {
	addr, stop := startRelay()
	defer stop()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	client := eventrelayv1.NewEventServiceClient(conn)
	publishOrders(client, "ord_1", "ord_2")

	// read subscribes with req and processes n events, returning the last cursor.
	read := func(req *eventrelayv1.SubscribeRequest, n int) (cursor string) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		stream, err := client.Subscribe(ctx, req)
		if err != nil {
			log.Fatal(err)
		}
		for n > 0 {
			msg, err := stream.Recv()
			if err != nil {
				log.Fatal(err)
			}
			if d := msg.GetDelivery(); d != nil {
				fmt.Println("processed", d.GetEvent().GetId())
				n--
			}
			// Deliveries and heartbeats both carry the cursor: keep the latest (persist it
			// with your processing's results, e.g. in the same database transaction).
			if c := msg.GetDelivery().GetCursor() + msg.GetHeartbeat().GetCursor(); c != "" {
				cursor = c
			}
		}
		return cursor
	}

	cursor := read(&eventrelayv1.SubscribeRequest{
		Sources: []string{"orders"},
		Start:   eventrelayv1.StartPosition_START_POSITION_EARLIEST,
	}, 1)
	fmt.Println("stopped")
	publishOrders(client, "ord_3") // appended while the consumer was away

	read(&eventrelayv1.SubscribeRequest{Sources: []string{"orders"}, AfterCursor: cursor}, 2)
	// Output:
	// processed ord_1
	// stopped
	// processed ord_2
	// processed ord_3
}

// Example_consumerGroup consumes as a member of a durable consumer group: the group keeps its
// position in the relay, each event goes to one member, and a member acknowledges each event
// once processed. An event not acknowledged within ack_deadline is redelivered (with a higher
// delivery_attempt), and after max_delivery_attempts moves to the dead letters.
func Example_consumerGroup() {
	addr, stop := startRelay()
	defer stop()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	client := eventrelayv1.NewEventServiceClient(conn)
	publishOrders(client, "ord_1", "ord_2")

	// consume processes n events as member consumer of group "billing", acknowledging each.
	consume := func(consumer string, n int) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		stream, err := client.Subscribe(ctx, &eventrelayv1.SubscribeRequest{
			Sources: []string{"orders"},
			Group:   "billing",
			// Stable per worker: after a reconnect it gets its own unacknowledged events first.
			Consumer: consumer,
			// Where a new group starts (an existing group resumes from its own position).
			Start: eventrelayv1.StartPosition_START_POSITION_EARLIEST,
		})
		if err != nil {
			log.Fatal(err)
		}
		for n > 0 {
			msg, err := stream.Recv()
			if err != nil {
				log.Fatal(err)
			}
			d := msg.GetDelivery()
			if d == nil {
				continue
			}
			fmt.Println(consumer, "processed", d.GetEvent().GetId())
			// Acknowledge after processing (any relayd replica accepts the ack id). Nack
			// instead hands it back for redelivery, optionally after a delay.
			resp, err := client.Acknowledge(ctx, &eventrelayv1.AcknowledgeRequest{AckIds: []string{d.GetAckId()}})
			if err != nil {
				log.Fatal(err)
			}
			if len(resp.GetUnknownAckIds()) > 0 {
				fmt.Println("too late: the ack deadline passed and the event will be redelivered")
			}
			n--
		}
	}

	consume("worker-1", 2)
	publishOrders(client, "ord_3")
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
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	client := eventrelayv1.NewEventServiceClient(conn)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for range 2 {
		resp, err := client.Publish(ctx, &eventrelayv1.PublishRequest{
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

	got, err := client.GetEvent(ctx, &eventrelayv1.GetEventRequest{Source: "orders", Id: "ord_1001"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(got.GetEvent().GetType(), got.GetEvent().GetSubject(), got.GetEvent().GetDataContentType())
	// Output:
	// ord_1001 duplicate: false
	// ord_1001 duplicate: true
	// order.created cus_42 application/json
}
