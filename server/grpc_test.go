package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	eventrelayv1 "github.com/eventrelay/eventrelay/gen/eventrelay/v1"
	"github.com/eventrelay/eventrelay/relay"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
)

// serveGRPC serves s on a loopback port for the test and returns a client connection.
func serveGRPC(t *testing.T, s *grpc.Server) *grpc.ClientConn {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(func() { GracefulStop(s, time.Second) })
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// TestRecovery: a handler that panics answers INTERNAL and logs one line with the method, the
// panic and the request id; the server keeps serving.
func TestRecovery(t *testing.T) {
	logs := &logBuffer{}
	log := slog.New(LogHandler(slog.NewJSONHandler(logs, nil)))
	// An EventServer without a service panics (nil pointer) in every RPC.
	hs := health.NewServer()
	s := NewGRPCServer(GRPCOptions{Health: hs, Logger: log, Events: NewEventServer(nil, EventServerOptions{Logger: log})})
	conn := serveGRPC(t, s)
	c := eventrelayv1.NewEventServiceClient(conn)

	for _, tc := range []struct {
		name, method, id string
		call             func(ctx context.Context) error
	}{
		{"unary", "/eventrelay.v1.EventService/Publish", "req-unary-1", func(ctx context.Context) error {
			_, err := c.Publish(ctx, &eventrelayv1.PublishRequest{Source: "orders"})
			return err
		}},
		{"stream", "/eventrelay.v1.EventService/Subscribe", "req-stream-1", func(ctx context.Context) error {
			st, err := c.Subscribe(ctx, &eventrelayv1.SubscribeRequest{})
			if err != nil {
				return err
			}
			_, err = st.Recv()
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			ctx = metadata.AppendToOutgoingContext(ctx, "x-request-id", tc.id)
			err := tc.call(ctx)
			if st := status.Convert(err); st.Code() != codes.Internal || st.Message() != "internal error" {
				t.Fatalf("got %v, want INTERNAL with a generic message", err)
			}
			lines := logs.lines(tc.method)
			if len(lines) != 1 {
				t.Fatalf("log lines for %s: %q", tc.method, lines)
			}
			var rec map[string]any
			if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
				t.Fatal(err)
			}
			if rec["msg"] != "panic in gRPC handler" || rec["level"] != "ERROR" || rec["request_id"] != tc.id ||
				!strings.Contains(rec["panic"].(string), "nil pointer") || rec["stack"] == "" {
				t.Fatalf("log line %v", rec)
			}
		})
	}
	// Still serving.
	resp, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("after the panics: %v %v", resp, err)
	}
}

// TestHTTPRecovery: a panic behind the HTTP middleware is a 500 in the error shape and a log
// line with the request id.
func TestHTTPRecovery(t *testing.T) {
	logs := &logBuffer{}
	log := slog.New(LogHandler(slog.NewJSONHandler(logs, nil)))
	h := withRequestID(log, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") }))
	rec := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodGet, "/v1/sources/x/events", nil)
	r.Header.Set("X-Request-Id", "req-http-1")
	h.ServeHTTP(rec, r)
	if rec.Code != 500 || !strings.Contains(rec.Body.String(), "internal error") || rec.Header().Get("X-Request-Id") != "req-http-1" {
		t.Fatalf("%d %s %v", rec.Code, rec.Body, rec.Header())
	}
	if l := logs.lines("panic in HTTP handler"); len(l) != 1 || !strings.Contains(l[0], `"request_id":"req-http-1"`) {
		t.Fatalf("log: %q", logs.String())
	}
}

func TestRequestID(t *testing.T) {
	for _, tc := range []struct {
		in   string
		keep bool
	}{
		{"abc-123", true}, {"", false}, {"with space", false}, {"tab\t", false}, {"nl\n", false},
		{strings.Repeat("x", 128), true}, {strings.Repeat("x", 129), false}, {"ünï", false},
	} {
		got := saneRequestID(tc.in)
		if (got == tc.in) != tc.keep || got == "" {
			t.Errorf("saneRequestID(%q) = %q", tc.in, got)
		}
	}
	// Over gRPC the id is echoed; without one a new id is made.
	logs := &logBuffer{}
	log := slog.New(LogHandler(slog.NewJSONHandler(logs, nil)))
	conn := serveGRPC(t, NewGRPCServer(GRPCOptions{Health: health.NewServer(), Logger: log, Events: NewEventServer(nil, EventServerOptions{Logger: log})}))
	for _, sent := range []string{"req-echo-1", ""} {
		ctx := context.Background()
		if sent != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "x-request-id", sent)
		}
		var hdr metadata.MD
		if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Header(&hdr)); err != nil {
			t.Fatal(err)
		}
		got := hdr.Get("x-request-id")
		if len(got) != 1 || (sent != "" && got[0] != sent) || got[0] == "" {
			t.Fatalf("sent %q, got %q", sent, got)
		}
	}
}

func TestReflection(t *testing.T) {
	for _, on := range []bool{true, false} {
		t.Run(map[bool]string{true: "on", false: "off"}[on], func(t *testing.T) {
			s := NewGRPCServer(GRPCOptions{Reflection: on, Health: health.NewServer(), Events: NewEventServer(nil, EventServerOptions{})})
			conn := serveGRPC(t, s)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			st, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
			if err == nil {
				// Send returns io.EOF when the server has already ended the stream (its
				// UNIMPLEMENTED can arrive first); the stream's status is then Recv's.
				err = st.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}})
				if errors.Is(err, io.EOF) {
					err = nil
				}
			}
			var resp *reflectionpb.ServerReflectionResponse
			if err == nil {
				resp, err = st.Recv()
			}
			if !on {
				if status.Code(err) != codes.Unimplemented {
					t.Fatalf("reflection off: got %v %v", resp, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, s := range resp.GetListServicesResponse().GetService() {
				names = append(names, s.GetName())
			}
			for _, want := range []string{"eventrelay.v1.EventService", "grpc.health.v1.Health"} {
				if !slices.Contains(names, want) {
					t.Errorf("%s not listed: %v", want, names)
				}
			}
		})
	}
}

// TestKeepalivePolicy: the enforcement lets clients ping as often as grpc-go clients can
// (every 10s) and below the default heartbeat, and the server's own pings come only after a
// connection was silent for longer than a default heartbeat interval.
func TestKeepalivePolicy(t *testing.T) {
	if KeepaliveEnforcement.MinTime > 10*time.Second || KeepaliveEnforcement.MinTime >= relay.DefaultHeartbeat {
		t.Errorf("MinTime %s: clients pinging every 10s or every heartbeat would be refused", KeepaliveEnforcement.MinTime)
	}
	if !KeepaliveEnforcement.PermitWithoutStream {
		t.Errorf("idle clients (between subscriptions) must be allowed to ping")
	}
	if KeepaliveServer.Time <= relay.DefaultHeartbeat || KeepaliveServer.Timeout <= 0 || KeepaliveServer.Timeout >= KeepaliveServer.Time {
		t.Errorf("server keepalive %+v against heartbeat %s", KeepaliveServer, relay.DefaultHeartbeat)
	}
}
