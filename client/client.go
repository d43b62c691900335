// Package client is the Go client of eventrelay: it consumes events with a handler, and
// resumes, acknowledges and bounds concurrency for you, so that a consumer is ten lines:
//
//	c, err := client.New("relayd:9090", client.WithToken(os.Getenv("RELAY_TOKEN")))
//	if err != nil {
//		return err
//	}
//	defer c.Close()
//	return c.Receive(ctx, client.Subscription{Sources: []string{"stripe"}, Group: "billing"},
//		func(ctx context.Context, m *client.Message) error {
//			var inv Invoice
//			if err := m.DecodeJSON(&inv); err != nil {
//				return err // nacked: redelivered with backoff, then dead-lettered
//			}
//			return bill(ctx, inv) // nil acknowledges
//		})
//
// Receive reconnects with exponential backoff and jitter whenever the stream breaks for a
// reason that resuming fixes (relayd restarting or unreachable, a dropped connection, a
// reader cut for falling behind, heartbeats missing for three intervals: the connection is
// then replaced, and the other Receive calls on the Client resume on the new one) and
// continues: a tail subscription after the last cursor it handed to a handler that returned
// (kept in a CursorStore across process restarts), a group subscription from the group's own
// position.
// OUT_OF_RANGE ends Receive with an *OutOfRangeError, and permission or argument errors
// with a *StatusError.
package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	eventrelayv1 "github.com/eventrelay/eventrelay/gen/eventrelay/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
)

// Client is a connection to relayd's EventService. It is safe for concurrent use.
type Client struct {
	target string
	dial   []grpc.DialOption
	opts   options

	mu     sync.Mutex
	conn   *grpc.ClientConn
	api    eventrelayv1.EventServiceClient
	closed bool
}

type options struct {
	tls      *tls.Config
	token    string
	dial     []grpc.DialOption
	log      *slog.Logger
	minDelay time.Duration
	maxDelay time.Duration
	err      error
}

// Option configures New.
type Option func(*options)

// WithTLS connects over TLS with cfg (nil: the system roots). For mutual TLS set
// cfg.Certificates, or use WithTLSFiles.
func WithTLS(cfg *tls.Config) Option {
	return func(o *options) {
		if cfg == nil {
			cfg = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		o.tls = cfg
	}
}

// WithTLSFiles connects over TLS trusting the CA certificates in caFile (PEM; "": the system
// roots) and, when certFile and keyFile are set, presenting that client certificate (mutual
// TLS).
func WithTLSFiles(caFile, certFile, keyFile string) Option {
	return func(o *options) {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if caFile != "" {
			pem, err := os.ReadFile(caFile)
			if err != nil {
				o.err = fmt.Errorf("client: CA file: %w", err)
				return
			}
			cfg.RootCAs = x509.NewCertPool()
			if !cfg.RootCAs.AppendCertsFromPEM(pem) {
				o.err = fmt.Errorf("client: no PEM certificate in %s", caFile)
				return
			}
		}
		if certFile != "" || keyFile != "" {
			cert, err := tls.LoadX509KeyPair(certFile, keyFile)
			if err != nil {
				o.err = fmt.Errorf("client: client certificate: %w", err)
				return
			}
			cfg.Certificates = []tls.Certificate{cert}
		}
		o.tls = cfg
	}
}

// WithToken sends token as the bearer token of every call (auth.tokens of relayd).
func WithToken(token string) Option { return func(o *options) { o.token = token } }

// WithDialOptions adds grpc.DialOptions (interceptors, keepalive, a custom dialer, ...).
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(o *options) { o.dial = append(o.dial, opts...) }
}

// WithLogger logs reconnections and failed acknowledgements to log (default: discarded).
func WithLogger(log *slog.Logger) Option { return func(o *options) { o.log = log } }

// WithBackoff sets the reconnection backoff: the first delay and the most (defaults 250ms
// and 10s), doubling in between, with jitter.
func WithBackoff(first, most time.Duration) Option {
	return func(o *options) { o.minDelay, o.maxDelay = first, most }
}

// New returns a Client for the relayd gRPC address target ("host:port" or any gRPC target).
// It does not connect until the first call. Without WithTLS or WithTLSFiles it connects in
// plaintext.
func New(target string, opts ...Option) (*Client, error) {
	o := options{minDelay: 250 * time.Millisecond, maxDelay: 10 * time.Second}
	for _, opt := range opts {
		opt(&o)
	}
	if o.err != nil {
		return nil, o.err
	}
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	if o.minDelay <= 0 || o.maxDelay < o.minDelay {
		return nil, fmt.Errorf("client: backoff: first %s, most %s: want 0 < first <= most", o.minDelay, o.maxDelay)
	}
	dial := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if o.tls != nil {
		dial[0] = grpc.WithTransportCredentials(credentials.NewTLS(o.tls))
	}
	if o.token != "" {
		dial = append(dial, grpc.WithPerRPCCredentials(bearer{token: o.token, secure: o.tls != nil}))
	}
	// Keepalive pings find a connection whose path died without a reset (relayd permits one
	// every 10s).
	dial = append(dial, grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 5 * time.Second, PermitWithoutStream: true}))
	dial = append(dial, o.dial...)
	conn, err := grpc.NewClient(target, dial...)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	return &Client{target: target, dial: dial, conn: conn, api: eventrelayv1.NewEventServiceClient(conn), opts: o}, nil
}

// current returns the connection and its API client.
func (c *Client) current() (*grpc.ClientConn, eventrelayv1.EventServiceClient) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.conn, c.api
}

// renew replaces the connection old (when it is still the current one) by a new one: a
// stream that went silent while its connection looks alive (a path that died without a
// reset) would otherwise be resubscribed over the same dead connection. Closing old breaks
// the streams of the other Receive calls still on it (with CANCELED): replaced tells them
// apart from a Close, and they resume on the new connection.
func (c *Client) renew(old *grpc.ClientConn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != old || c.closed {
		return
	}
	conn, err := grpc.NewClient(c.target, c.dial...)
	if err != nil {
		return // the same options worked before; keep the old connection
	}
	c.conn, c.api = conn, eventrelayv1.NewEventServiceClient(conn)
	_ = old.Close()
}

// replaced reports whether conn is no longer the client's connection because renew replaced
// it (not after Close, which keeps the closed one).
func (c *Client) replaced(conn *grpc.ClientConn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.conn != conn
}

// API returns the generated EventService client on the same connection, for the calls
// Receive does not cover (Publish, GetEvent, ListEvents, RedriveDeadLetters).
func (c *Client) API() eventrelayv1.EventServiceClient {
	_, api := c.current()
	return api
}

// Close closes the connection. Receive calls still running end with an error.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	return c.conn.Close()
}

// bearer is the per-call bearer token.
type bearer struct {
	token  string
	secure bool
}

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

// RequireTransportSecurity is false: relayd on a private network may run without TLS.
func (b bearer) RequireTransportSecurity() bool { return false }
