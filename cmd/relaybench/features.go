package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// The features a run may turn on, to measure what they cost beside a plain run:
//
//	-filter EXPR     every subscriber of the e2e, fanout, trickle and replay phases asks for
//	                 this CEL filter (choose one every event matches, so the figures compare)
//	-destination     the started relayd pushes every event of the source to a receiver in this
//	                 process (a push destination, max_in_flight 64), during every phase

// subFilter is -filter.
var subFilter string

// subBatch is -batch: SubscribeRequest.max_batch of the stream phases' subscribers.
var subBatch int

// grpcWindow is -grpc-window: the grpc-go subscribers' fixed flow-control window per stream
// and per connection, in bytes (0: grpc-go's default, which estimates the bandwidth with a
// ping whenever data arrives and none is outstanding).
var grpcWindow int

// pushReceiver answers every POST 204 and counts them: the push destination's receiver.
type pushReceiver struct {
	srv  *http.Server
	url  string
	hits atomic.Int64
}

func startPushReceiver() (*pushReceiver, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &pushReceiver{url: "http://" + lis.Addr().String() + "/hook"}
	r.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		_, _ = io.Copy(io.Discard, req.Body)
		r.hits.Add(1)
		w.WriteHeader(http.StatusNoContent)
	})}
	go func() { _ = r.srv.Serve(lis) }()
	return r, nil
}

func (r *pushReceiver) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = r.srv.Shutdown(ctx)
}

// destinationYAML is the destinations: section of the started relayd for the receiver at url.
func destinationYAML(url string) string {
	return fmt.Sprintf(`destinations:
  - name: bench
    url: %q
    secrets: ["whsec_MDEyMzQ1Njc4OWFiY2RlZmdoaWprbG1u"]
    allow_private: true
    max_in_flight: 64
`, url)
}
