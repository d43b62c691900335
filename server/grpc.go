package server

import (
	"cmp"
	"context"
	"log/slog"
	"runtime/debug"
	"time"

	eventrelayv1 "github.com/eventrelay/eventrelay/gen/eventrelay/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
)

// GRPCOptions configure a gRPC server.
type GRPCOptions struct {
	// Creds are the transport credentials (TLS, mTLS); nil serves plaintext.
	Creds credentials.TransportCredentials
	// Reflection registers the gRPC reflection service.
	Reflection bool
	// Health is the grpc.health.v1 server to register (nil: none).
	Health *health.Server
	Logger *slog.Logger
	// MaxRecvMsgSize bounds a received message (http.max_request_bytes, the same bound as an
	// EventService request body over HTTP); 0: DefaultMaxRequestBytes.
	MaxRecvMsgSize int
	// MaxConcurrentStreams bounds the streams of one client connection (0: grpc-go's
	// default, unbounded).
	MaxConcurrentStreams int
	// MaxHeaderListSize bounds the metadata (headers) of a call (http.max_header_bytes, the
	// bound of an HTTP request's headers); 0: 64 KiB. grpc-go's own default is 16 MiB per
	// call, before any token is checked.
	MaxHeaderListSize int
	// Events is the EventService to serve (required).
	Events *EventServer
	// Webhooks, when set, also serves WebhookService to gRPC callers.
	Webhooks *WebhookServer
}

// Keepalive, consistent with the subscription heartbeats (relay.DefaultHeartbeat 15s,
// at least relay.MinHeartbeat): a Subscribe stream carries a heartbeat at least every
// heartbeat_interval, so an open stream is never idle at the HTTP/2 level. Clients may send
// keepalive pings every KeepaliveEnforcement.MinTime (10s, the smallest interval grpc-go
// clients use), also without a stream; a client pinging more often is sent GOAWAY
// (too_many_pings). The server pings a connection after KeepaliveServer.Time of silence
// (30s, twice the default heartbeat: it only fires for connections without streams or with
// a long heartbeat_interval) and closes it when the ping is not answered within Timeout.
var (
	KeepaliveEnforcement = keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}
	KeepaliveServer      = keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}
)

// NewGRPCServer returns a gRPC server serving EventService (and the webhook service for gRPC
// callers) with recovery and logging interceptors, keepalive enforcement consistent with the
// subscription heartbeats, health and reflection.
func NewGRPCServer(opts GRPCOptions) *grpc.Server {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	sopts := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(unaryRequestID(log), unaryRecovery(log)),
		grpc.ChainStreamInterceptor(streamRequestID(log), streamRecovery(log)),
		grpc.KeepaliveEnforcementPolicy(KeepaliveEnforcement),
		grpc.KeepaliveParams(KeepaliveServer),
		grpc.MaxRecvMsgSize(cmp.Or(opts.MaxRecvMsgSize, DefaultMaxRequestBytes)),
		grpc.MaxHeaderListSize(uint32(cmp.Or(opts.MaxHeaderListSize, 64<<10))),
	}
	if opts.Creds != nil {
		sopts = append(sopts, grpc.Creds(opts.Creds))
	}
	if opts.MaxConcurrentStreams > 0 {
		sopts = append(sopts, grpc.MaxConcurrentStreams(uint32(opts.MaxConcurrentStreams)))
	}
	s := grpc.NewServer(sopts...)
	eventrelayv1.RegisterEventServiceServer(s, opts.Events)
	if webhooks := opts.Webhooks; webhooks != nil {
		eventrelayv1.RegisterWebhookServiceServer(s, webhooks)
	}
	if opts.Health != nil {
		healthpb.RegisterHealthServer(s, opts.Health)
	}
	if opts.Reflection {
		reflection.Register(s)
	}
	return s
}

// requestIDOf returns the caller's x-request-id metadata when sane, else a new id.
func requestIDOf(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	id := ""
	if v := md.Get("x-request-id"); len(v) > 0 {
		id = v[0]
	}
	return saneRequestID(id)
}

// unaryRequestID gives every call a request id (the caller's x-request-id, as the HTTP
// gateway forwards it, or a new one) for the log lines of the call, echoes it as
// x-request-id response metadata, and logs the call at debug level (method, code, duration;
// never metadata, which carries the bearer token).
func unaryRequestID(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		id := requestIDOf(ctx)
		_ = grpc.SetHeader(ctx, metadata.Pairs("x-request-id", id))
		ctx = context.WithValue(ctx, requestIDKey{}, id)
		resp, err := handler(ctx, req)
		log.DebugContext(ctx, "grpc call", "method", info.FullMethod, "code", status.Code(err).String(), "duration", time.Since(start))
		return resp, err
	}
}

func streamRequestID(log *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		start := time.Now()
		id := requestIDOf(ss.Context())
		_ = ss.SetHeader(metadata.Pairs("x-request-id", id))
		ctx := context.WithValue(ss.Context(), requestIDKey{}, id)
		err := handler(srv, &ctxStream{ServerStream: ss, ctx: ctx})
		log.DebugContext(ctx, "grpc call", "method", info.FullMethod, "code", status.Code(err).String(), "duration", time.Since(start))
		return err
	}
}

// ctxStream is a ServerStream with another context.
type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *ctxStream) Context() context.Context { return s.ctx }

func recovered(ctx context.Context, log *slog.Logger, method string, p any) error {
	log.ErrorContext(ctx, "panic in gRPC handler", "method", method, "panic", p, "stack", string(debug.Stack()))
	return status.Error(codes.Internal, "internal error")
}

func unaryRecovery(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		defer func() {
			if p := recover(); p != nil {
				err = recovered(ctx, log, info.FullMethod, p)
			}
		}()
		return handler(ctx, req)
	}
}

func streamRecovery(log *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
		defer func() {
			if p := recover(); p != nil {
				err = recovered(ss.Context(), log, info.FullMethod, p)
			}
		}()
		return handler(srv, ss)
	}
}

// GracefulStop stops s gracefully, and forcefully after timeout (long streams would otherwise
// block shutdown).
func GracefulStop(s *grpc.Server, timeout time.Duration) {
	done := make(chan struct{})
	go func() {
		s.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(timeout):
		s.Stop()
		<-done
	}
}
