package server

import (
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
}

// NewGRPCServer returns a gRPC server serving EventService (and the webhook service for gRPC
// callers) with recovery and logging interceptors, keepalive enforcement consistent with the
// subscription heartbeats, health and reflection.
func NewGRPCServer(opts GRPCOptions, events *EventServer, webhooks *WebhookServer) *grpc.Server {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	sopts := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(unaryRecovery(log)),
		grpc.ChainStreamInterceptor(streamRecovery(log)),
		// Clients may ping every 10s at most; heartbeats (default 15s) keep streams alive
		// through proxies, and the server pings idle connections every 30s.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.MaxRecvMsgSize(16 << 20),
	}
	if opts.Creds != nil {
		sopts = append(sopts, grpc.Creds(opts.Creds))
	}
	s := grpc.NewServer(sopts...)
	eventrelayv1.RegisterEventServiceServer(s, events)
	if webhooks != nil {
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
