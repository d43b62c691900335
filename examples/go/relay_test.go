package examples_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"time"

	eventrelayv1 "github.com/eventrelay/eventrelay/gen/eventrelay/v1"
	"github.com/eventrelay/eventrelay/relay"
	"github.com/eventrelay/eventrelay/relay/embedded"
	"github.com/eventrelay/eventrelay/relay/redisstore"
	"github.com/eventrelay/eventrelay/relay/verify"
	"github.com/eventrelay/eventrelay/server"
)

// startRelay starts an in-process relay for the examples, as relayd would serve it: the
// embedded store, one hmac source "orders", and EventService on a loopback gRPC listener. It
// returns the listener's address (in your code, relayd's: localhost:9090 in the quick start)
// and a function that stops everything. It panics on failure: it is test scaffolding.
func startRelay() (addr string, stop func()) {
	must := func(err error) {
		if err != nil {
			panic(err)
		}
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	emb, err := embedded.Start()
	must(err)
	store, err := redisstore.Open(emb.URL(), false, "", redisstore.Options{})
	must(err)
	src := relay.SourceConfig{Name: "orders", Provider: "hmac", Verify: &verify.Options{Secrets: []relay.Secret{{Value: []byte("example-secret")}}}}
	src.SetDefaults()
	v, err := verify.New(&src)
	must(err)
	svc, err := relay.NewService(store, []*relay.Source{{Config: src, Verifier: v}}, relay.Options{Logger: quiet})
	must(err)
	grpcServer := server.NewGRPCServer(server.GRPCOptions{Logger: quiet, Events: server.NewEventServer(svc, server.EventServerOptions{Logger: quiet})})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	must(err)
	go func() { _ = grpcServer.Serve(lis) }()
	return lis.Addr().String(), func() {
		_ = svc.Close()
		server.GracefulStop(grpcServer, time.Second)
		_ = store.Close()
		emb.Close()
	}
}

// publishOrders appends order events with the given ids (type order.created) to "orders".
func publishOrders(client eventrelayv1.EventServiceClient, ids ...string) {
	for _, id := range ids {
		_, err := client.Publish(context.Background(), &eventrelayv1.PublishRequest{
			Source: "orders", Id: id, Type: "order.created", Data: []byte(`{"order":"` + id + `"}`),
		})
		if err != nil {
			panic(err)
		}
	}
}
