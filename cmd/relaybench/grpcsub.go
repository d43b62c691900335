package main

import (
	"context"
	"errors"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
)

// subClient chooses the subscriber of the stream phases (-client): "h2", the minimal HTTP/2
// client that measures relayd alone, or "grpc-go", a stock grpc-go client (raw codec, no proto
// decode), which is what users run and what they see.
var subClient = "h2"

// subscribe opens a Subscribe stream with the client -client chose.
func subscribe(addr string, req []byte, onMsg func([]byte)) (*h2sub, error) {
	if subClient == "grpc-go" {
		return dialSubscribeGRPC(addr, req, onMsg)
	}
	return dialSubscribe(addr, req, onMsg)
}

// bytesCodec sends and receives serialized messages as they are.
type bytesCodec struct{}

func (bytesCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*[]byte))}, nil
}

func (bytesCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}

func (bytesCodec) Name() string { return "proto" }

// dialRaw is a grpc-go connection to addr whose messages are sent and received as bytes.
// With -grpc-window its flow-control windows are fixed (no bandwidth-estimation pings).
func dialRaw(addr string) (*grpc.ClientConn, error) {
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(bytesCodec{}))}
	if grpcWindow > 0 {
		opts = append(opts, grpc.WithInitialWindowSize(int32(grpcWindow)), grpc.WithInitialConnWindowSize(int32(grpcWindow)))
	}
	return grpc.NewClient("passthrough:///"+addr, opts...)
}

// openSubscribe opens a Subscribe stream on cc with the serialized request req.
func openSubscribe(ctx context.Context, cc *grpc.ClientConn, req []byte) (grpc.ClientStream, error) {
	st, err := cc.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, "/eventrelay.v1.EventService/Subscribe")
	if err == nil {
		err = st.SendMsg(&req)
	}
	if err == nil {
		err = st.CloseSend()
	}
	return st, err
}

// dialSubscribeGRPC opens a Subscribe stream with grpc-go on a connection of its own and
// counts its messages as h2sub does; onMsg gets each delivery's serialized SubscribeResponse.
func dialSubscribeGRPC(addr string, req []byte, onMsg func([]byte)) (*h2sub, error) {
	cc, err := dialRaw(addr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	st, err := openSubscribe(ctx, cc, req)
	if err != nil {
		cancel()
		cc.Close()
		return nil, err
	}
	s := &h2sub{onMsg: onMsg, headers: make(chan struct{}), done: make(chan struct{})}
	s.stop = func() {
		cancel()
		cc.Close()
	}
	go func() {
		defer close(s.done)
		for {
			var msg []byte
			if err := st.RecvMsg(&msg); err != nil {
				if !errors.Is(err, io.EOF) && status.Code(err) != codes.Canceled {
					s.fail(err)
				}
				return
			}
			if n := eachDelivery(msg, s.onMsg); n > 0 { // a delivery or a batch
				s.deliveries.Add(int64(n))
			} else {
				s.heartbeats.Add(1)
			}
		}
	}()
	return s, nil
}
