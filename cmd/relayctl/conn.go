package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/eventrelay/eventrelay/client"
	eventrelayv1 "github.com/eventrelay/eventrelay/gen/eventrelay/v1"
	"google.golang.org/grpc/status"
)

// tlsFlags are the TLS options of every command that connects somewhere.
type tlsFlags struct {
	on       bool
	ca       string
	cert     string
	key      string
	insecure bool
	// token is the admin commands' bearer token (--token, else envToken: $RELAY_TOKEN).
	token, envToken string
}

func addTLSFlags(fs *flag.FlagSet, withSwitch bool) *tlsFlags {
	t := &tlsFlags{}
	if withSwitch {
		fs.BoolVar(&t.on, "tls", false, "connect with TLS (implied by --ca, --cert and --insecure-skip-verify)")
	}
	fs.StringVar(&t.ca, "ca", "", "PEM `file` of the CA certificates that verify the server (default: the system roots)")
	fs.StringVar(&t.cert, "cert", "", "PEM client certificate `file`, for mutual TLS (with --key)")
	fs.StringVar(&t.key, "key", "", "PEM client private key `file`, for mutual TLS (with --cert)")
	fs.BoolVar(&t.insecure, "insecure-skip-verify", false, "do not verify the server's certificate (testing only)")
	return t
}

// config returns the TLS configuration, nil when TLS is off.
func (t *tlsFlags) config() (*tls.Config, error) {
	if !t.on && t.ca == "" && t.cert == "" && t.key == "" && !t.insecure {
		return nil, nil
	}
	return t.build()
}

// build returns the TLS configuration the flags describe (for https:// URLs, where TLS is on
// regardless of the flags).
func (t *tlsFlags) build() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: t.insecure} //nolint:gosec // an explicit flag
	if t.ca != "" {
		pem, err := os.ReadFile(t.ca)
		if err != nil {
			return nil, usagef("--ca: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, usagef("--ca: no PEM certificate in %s", t.ca)
		}
		tc.RootCAs = pool
	}
	if (t.cert == "") != (t.key == "") {
		return nil, usagef("--cert and --key go together")
	}
	if t.cert != "" {
		c, err := tls.LoadX509KeyPair(t.cert, t.key)
		if err != nil {
			return nil, usagef("--cert/--key: %v", err)
		}
		tc.Certificates = []tls.Certificate{c}
	}
	return tc, nil
}

// httpClient returns a client for the HTTP listeners, with the TLS flags for https:// URLs.
func (t *tlsFlags) httpClient(timeout time.Duration) (*http.Client, error) {
	tc, err := t.build()
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc
	return &http.Client{Transport: tr, Timeout: timeout}, nil
}

// grpcFlags are the connection flags of the commands that call EventService.
type grpcFlags struct {
	addr  string
	token string
	tls   *tlsFlags
	env   *env
}

func addGRPCFlags(fs *flag.FlagSet, e *env) *grpcFlags {
	g := &grpcFlags{env: e}
	fs.StringVar(&g.addr, "addr", e.envOr("RELAY_ADDR", "localhost:9090"), "relayd gRPC `host:port` ($RELAY_ADDR)")
	fs.StringVar(&g.token, "token", "", "bearer `token` for EventService (default $RELAY_TOKEN)")
	g.tls = addTLSFlags(fs, true)
	return g
}

// dial connects to relayd's gRPC listener. The connection is lazy: errors show on the first call.
func (g *grpcFlags) dial() (eventrelayv1.EventServiceClient, func(), error) {
	c, err := g.client()
	if err != nil {
		return nil, nil, err
	}
	return c.API(), func() { _ = c.Close() }, nil
}

// client returns an eventrelay client for --addr with the TLS flags and the token
// (--token, else RELAY_TOKEN).
func (g *grpcFlags) client() (*client.Client, error) {
	tc, err := g.tls.config()
	if err != nil {
		return nil, err
	}
	token := g.token
	if token == "" {
		token = g.env.getenv("RELAY_TOKEN")
	}
	opts := []client.Option{client.WithToken(token)}
	if tc != nil {
		opts = append(opts, client.WithTLS(tc))
	}
	c, err := client.New(g.addr, opts...)
	if err != nil {
		return nil, usagef("--addr %q: %v", g.addr, err)
	}
	return c, nil
}

// call dials relayd and runs fn, bounded by a minute (for the unary commands).
func (g *grpcFlags) call(ctx context.Context, fn func(context.Context, eventrelayv1.EventServiceClient) error) error {
	client, closeConn, err := g.dial()
	if err != nil {
		return err
	}
	defer closeConn()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return fn(ctx, client)
}

// errorMessage is what the user sees of err: the gRPC status message and code, never a stack.
func errorMessage(err error) string {
	if st, ok := status.FromError(err); ok {
		return fmt.Sprintf("%s (%s)", st.Message(), st.Code())
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "timed out"
	}
	return err.Error()
}
