// Command relayd is the eventrelay server: it receives webhooks over HTTP, verifies them,
// appends them to Redis Streams and serves them to consumers over gRPC.
//
//	relayd [-config relay.yaml] [-http-addr :8080] [-grpc-addr :9090] [-admin-addr :9091]
//	       [-redis-url redis://...] [-log-level info] [-log-format json]
//
// With no configuration at all it serves a "demo" source on the embedded in-process store.
// The daemon lives in internal/daemon, its configuration in internal/config
// (docs/configuration.md).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/eventrelay/eventrelay/internal/daemon"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := daemon.Command(ctx, os.Args[1:], os.Environ(), os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
