package daemon

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	eventrelayv1 "github.com/eventrelay/eventrelay/gen/eventrelay/v1"
	"github.com/eventrelay/eventrelay/internal/config"
	"github.com/eventrelay/eventrelay/internal/e2e"
	"github.com/eventrelay/eventrelay/internal/redistest"
	"github.com/eventrelay/eventrelay/relay"
	"github.com/eventrelay/eventrelay/relay/embedded"
	"github.com/eventrelay/eventrelay/relay/redisstore"
	"github.com/eventrelay/eventrelay/relay/verify"
)

// ---------------------------------------------------------------------------------------
// Certificates, generated per test.

type secCert struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	certPEM []byte
	keyPEM  []byte
}

// secIssue makes a certificate for cn signed by ca (self-signed CA when ca is nil).
func secIssue(t testing.TB, ca *secCert, cn string, server bool) *secCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	parent, signer := tmpl, key
	switch {
	case ca == nil:
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
	case server:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		tmpl.DNSNames = []string{"localhost"}
		parent, signer = ca.cert, ca.key
	default:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		parent, signer = ca.cert, ca.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return &secCert{cert: cert, key: key,
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})}
}

func (c *secCert) tls(t testing.TB) tls.Certificate {
	t.Helper()
	pair, err := tls.X509KeyPair(c.certPEM, c.keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return pair
}

func (c *secCert) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c.cert)
	return p
}

func secWrite(t testing.TB, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// ---------------------------------------------------------------------------------------
// Helpers.

// secStore is a view of the store for "nothing changed" checks: the number of keys and
// every source's stream length.
func secStore(t testing.TB, rdb *redis.Client, cfg *config.Config) map[string]int64 {
	t.Helper()
	ctx := context.Background()
	n, err := rdb.DBSize(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	st := map[string]int64{"keys": n}
	for _, s := range cfg.Sources {
		for i := range s.Partitions {
			l, err := rdb.XLen(ctx, redisstore.StreamKey(relay.Partition{Source: s.Name, Index: i})).Result()
			if err != nil {
				t.Fatal(err)
			}
			st[s.Name] += l
		}
	}
	return st
}

func secSource(name, provider, secret string, mod ...func(*relay.SourceConfig)) relay.SourceConfig {
	s := relay.SourceConfig{Name: name, Provider: provider, MaxBodyBytes: 4096, Verify: &verify.Options{Secrets: []relay.Secret{{Value: []byte(secret)}}}}
	for _, f := range mod {
		f(&s)
	}
	s.SetDefaults()
	return s
}

// secSigned is a webhook to source signed by its provider as of at.
func secSigned(t testing.TB, cfg *config.Config, base, source string, body []byte, at time.Time) *http.Request {
	t.Helper()
	var sc *relay.SourceConfig
	for i := range cfg.Sources {
		if cfg.Sources[i].Name == source {
			sc = &cfg.Sources[i]
		}
	}
	return e2e.SignedRequest(t, sc, base, source, body, at)
}

// secRaw writes raw to a new connection to addr, optionally in pieces with pauses, and
// returns the status of the answer (0 when the server closed the connection without one).
func secRaw(t testing.TB, addr string, pieces []string, pause time.Duration) int {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// A guard against a hang, far above every server timeout of the test.
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	for i, p := range pieces {
		if i > 0 && pause > 0 {
			time.Sleep(pause)
		}
		if _, err := io.WriteString(conn, p); err != nil {
			break // the server hung up
		}
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func secLogger(buf io.Writer) *slog.Logger {
	return newLogger(config.LogConfig{Level: "debug", Format: "json"}, buf)
}

// secStart runs a Main logging to log, stopped at cleanup.
func secStart(t testing.TB, cfg *config.Config, log *slog.Logger) *Main {
	t.Helper()
	m := NewMain(cfg, log)
	if err := m.Run(context.Background()); err != nil {
		_ = m.Close()
		t.Fatalf("Run: %v", err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// ---------------------------------------------------------------------------------------
// TLS and mTLS.

const (
	secReaderToken = "tls-reader-token-4e1f9c"
	secOtherSecret = "billing-secret-0b6a"
)

// TestTLS: with TLS on both listeners (mTLS on gRPC) and a token scoped to orders, a client
// with a certificate and the token streams orders and is refused billing; plaintext, a
// missing or foreign client certificate and a missing token are refused.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	ca := secIssue(t, nil, "eventrelay test CA", false)
	srv := secIssue(t, ca, "relayd", true)
	cli := secIssue(t, ca, "consumer", false)
	rogueCA := secIssue(t, nil, "rogue CA", false)
	rogue := secIssue(t, rogueCA, "rogue", false)

	cfg := testConfig(redistest.Start(t))
	cfg.Sources = append(cfg.Sources, secSource("billing", "hmac", secOtherSecret))
	cfg.HTTP.TLS = config.TLSConfig{CertFile: secWrite(t, dir, "srv.pem", srv.certPEM), KeyFile: secWrite(t, dir, "srv.key", srv.keyPEM)}
	cfg.GRPC.TLS = config.TLSConfig{CertFile: cfg.HTTP.TLS.CertFile, KeyFile: cfg.HTTP.TLS.KeyFile, ClientCAFile: secWrite(t, dir, "ca.pem", ca.certPEM)}
	cfg.Auth.Tokens = []config.AuthToken{{Name: "reader", Token: relay.Secret{Value: []byte(secReaderToken)}, Sources: []string{"orders"}}}
	m := startMain(t, cfg)
	rdb := redisClient(t, cfg.Redis.URL)

	https := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool()}, ForceAttemptHTTP2: true}}
	t.Run("webhook over HTTPS (HTTP/2)", func(t *testing.T) {
		resp, err := https.Do(secSigned(t, cfg, "https://"+m.HTTPAddr, "orders", []byte(`{"id":"evt_tls","type":"t"}`), time.Now()))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
			t.Fatalf("%d over %s", resp.StatusCode, resp.Proto)
		}
	})
	t.Run("plain HTTP to the TLS listener", func(t *testing.T) {
		before := secStore(t, rdb, cfg)
		resp, err := http.DefaultClient.Do(secSigned(t, cfg, "http://"+m.HTTPAddr, "orders", []byte(`{"id":"evt_plain","type":"t"}`), time.Now()))
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "HTTPS") {
				t.Fatalf("plaintext answered %d %s", resp.StatusCode, b)
			}
		}
		if after := secStore(t, rdb, cfg); !maps.Equal(before, after) {
			t.Fatalf("store changed: %v -> %v", before, after)
		}
	})

	dial := func(t *testing.T, creds credentials.TransportCredentials) eventrelayv1.EventServiceClient {
		conn, err := grpc.NewClient(m.GRPCAddr, grpc.WithTransportCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return eventrelayv1.NewEventServiceClient(conn)
	}
	mtls := func(cert *secCert) credentials.TransportCredentials {
		c := &tls.Config{RootCAs: ca.pool(), ServerName: "localhost"}
		if cert != nil {
			c.Certificates = []tls.Certificate{cert.tls(t)}
		}
		return credentials.NewTLS(c)
	}
	firstMessage := func(c eventrelayv1.EventServiceClient, token string, sources ...string) (*eventrelayv1.SubscribeResponse, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if token != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
		}
		st, err := c.Subscribe(ctx, &eventrelayv1.SubscribeRequest{Sources: sources, Start: eventrelayv1.StartPosition_START_POSITION_EARLIEST})
		if err != nil {
			return nil, err
		}
		return st.Recv()
	}
	for _, tc := range []struct {
		name    string
		creds   func() credentials.TransportCredentials
		token   string
		sources []string
		want    codes.Code
	}{
		{"mTLS and token stream the allowed source", func() credentials.TransportCredentials { return mtls(cli) }, secReaderToken, []string{"orders"}, codes.OK},
		{"mTLS and token are refused the other source", func() credentials.TransportCredentials { return mtls(cli) }, secReaderToken, []string{"billing"}, codes.PermissionDenied},
		{"mTLS without token", func() credentials.TransportCredentials { return mtls(cli) }, "", []string{"orders"}, codes.Unauthenticated},
		{"TLS without a client certificate", func() credentials.TransportCredentials { return mtls(nil) }, secReaderToken, []string{"orders"}, codes.Unavailable},
		{"client certificate of another CA", func() credentials.TransportCredentials { return mtls(rogue) }, secReaderToken, []string{"orders"}, codes.Unavailable},
		{"plaintext gRPC", insecure.NewCredentials, secReaderToken, []string{"orders"}, codes.Unavailable},
		{"server certificate not trusted", func() credentials.TransportCredentials {
			return credentials.NewTLS(&tls.Config{ServerName: "localhost", Certificates: []tls.Certificate{cli.tls(t)}, RootCAs: rogueCA.pool()})
		}, secReaderToken, []string{"orders"}, codes.Unavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg, err := firstMessage(dial(t, tc.creds()), tc.token, tc.sources...)
			if status.Code(err) != tc.want {
				t.Fatalf("got %v, want %s", err, tc.want)
			}
			if tc.want == codes.OK && msg.GetDelivery().GetEvent().GetId() != "evt_tls" {
				t.Fatalf("first message %v", msg)
			}
		})
	}
	t.Run("health over mTLS", func(t *testing.T) {
		conn, err := grpc.NewClient(m.GRPCAddr, grpc.WithTransportCredentials(mtls(cli)))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		resp, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{Service: "eventrelay.v1.EventService"})
		if err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("%v %v", resp, err)
		}
	})
}

// TestTLSConfigErrors: a listener whose certificate cannot be loaded is a start-up error
// that names it (and leaves no listener behind).
func TestTLSConfigErrors(t *testing.T) {
	dir := t.TempDir()
	ca := secIssue(t, nil, "ca", false)
	srv := secIssue(t, ca, "relayd", true)
	cert, key := secWrite(t, dir, "c.pem", srv.certPEM), secWrite(t, dir, "k.pem", srv.keyPEM)
	for _, tc := range []struct {
		name string
		mod  func(*config.Config)
		want string
	}{
		{"http key missing", func(c *config.Config) {
			c.HTTP.TLS = config.TLSConfig{CertFile: cert, KeyFile: filepath.Join(dir, "nope")}
		}, "http.tls"},
		{"grpc cert is a key", func(c *config.Config) { c.GRPC.TLS = config.TLSConfig{CertFile: key, KeyFile: key} }, "grpc.tls"},
		{"client CA without certificates", func(c *config.Config) {
			c.GRPC.TLS = config.TLSConfig{CertFile: cert, KeyFile: key, ClientCAFile: secWrite(t, dir, "empty.pem", []byte("nothing"))}
		}, "client_ca_file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig("")
			tc.mod(cfg)
			m := NewMain(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
			err := m.Run(context.Background())
			_ = m.Close()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error naming %s", err, tc.want)
			}
		})
	}
}

// ---------------------------------------------------------------------------------------
// Bad requests.

const (
	secStripeSecret = "whsec_stripe-test-secret-31"
	secGitHubSecret = "github-secret-8d2"
	secSlackSecret  = "slack-signing-secret-a07"
)

var secSvixSecret = "whsec_" + base64.StdEncoding.EncodeToString([]byte("standard-webhooks-key-0123456789"))

// secHardenedConfig is a relay with several providers, an allowlisted and a rate-limited
// source, short read timeouts and a small header limit.
func secHardenedConfig(url string) *config.Config {
	cfg := testConfig(url)
	cfg.Sources = append(cfg.Sources,
		secSource("stripe", "stripe", secStripeSecret),
		secSource("gh", "github", secGitHubSecret),
		secSource("slack", "slack", secSlackSecret),
		secSource("svix", "standardwebhooks", secSvixSecret),
		secSource("internal", "hmac", testSecret, func(s *relay.SourceConfig) {
			s.AllowIPs = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
		}),
		secSource("limited", "hmac", testSecret, func(s *relay.SourceConfig) {
			s.RateLimit = relay.RateLimit{RPS: 0.001, Burst: 1}
		}),
		secSource("stamped", "hmac", testSecret, func(s *relay.SourceConfig) {
			verify.OptionsOf(s).TimestampHeader, verify.OptionsOf(s).Template = "X-Timestamp", "{timestamp}.{body}"
		}),
	)
	// The test client (127.0.0.1) is not a trusted proxy: its X-Forwarded-For is a spoof.
	cfg.HTTP.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	cfg.HTTP.ReadHeaderTimeout = time.Second
	cfg.HTTP.ReadTimeout = 2 * time.Second
	cfg.HTTP.MaxHeaderBytes = 8 << 10
	// The table sends dozens of failing requests from one address: keep the per-address
	// budget of failed verifications out of its way (TestUnsignedFloodSparesRateLimit).
	cfg.HTTP.Unverified = relay.RateLimit{RPS: 100, Burst: 1000}
	return cfg
}

// TestBadRequests sends bad requests to a running relayd on real Redis: each gets its status
// and leaves the store exactly as it was (same keys, same stream lengths, same history).
func TestBadRequests(t *testing.T) {
	onBothStores(t, runBadRequests)
}

func runBadRequests(t *testing.T, url string) {
	cfg := secHardenedConfig(url)
	m := startMain(t, cfg)
	rdb := redisClient(t, url)
	c := client(t, m)
	base := "http://" + m.HTTPAddr
	now := time.Now()

	n := 0
	body := func() []byte {
		n++
		return []byte(fmt.Sprintf(`{"id":"evt_bad%d","type":"t","event_id":"Ev%d","text":"x"}`, n, n))
	}
	signed := func(source string, at time.Time, mod ...func(*http.Request)) func() *http.Request {
		return func() *http.Request {
			r := secSigned(t, cfg, base, source, body(), at)
			for _, f := range mod {
				f(r)
			}
			return r
		}
	}
	set := func(k, v string) func(*http.Request) { return func(r *http.Request) { r.Header.Set(k, v) } }
	del := func(k string) func(*http.Request) { return func(r *http.Request) { r.Header.Del(k) } }
	edit := func(k string, f func(string) string) func(*http.Request) {
		return func(r *http.Request) { r.Header.Set(k, f(r.Header.Get(k))) }
	}
	tamper := func(r *http.Request) { // change the body after signing
		b, _ := io.ReadAll(r.Body)
		b = bytes.Replace(b, []byte(`"x"`), []byte(`"y"`), 1)
		r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(b)), int64(len(b))
	}
	method := func(m string) func(*http.Request) { return func(r *http.Request) { r.Method = m } }
	chunked := func(r *http.Request) { r.ContentLength = -1 }
	big := func(r *http.Request) {
		b := []byte(`{"id":"evt_big","pad":"` + strings.Repeat("x", 5000) + `"}`)
		r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(b)), int64(len(b))
	}
	stale, future := now.Add(-time.Hour), now.Add(time.Hour)
	// Far from now: t=99999999999 (year 5138), and now's milliseconds read as seconds.
	farFuture, millisAsSeconds := time.Unix(99999999999, 0), time.Unix(now.UnixMilli(), 0)
	// stampedAt is a webhook to "stamped" whose X-Timestamp is ts, signed by hand
	// (HMAC-SHA256 of "<ts>.<body>", the source's template).
	stampedAt := func(ts string) func() *http.Request {
		return func() *http.Request {
			b := body()
			r := secSigned(t, cfg, base, "stamped", b, now)
			r.Header.Set("X-Timestamp", ts)
			r.Header.Set("X-Signature", e2e.Sign(testSecret, []byte(ts+"."+string(b))))
			return r
		}
	}
	// smuggled is a signed JSON body whose string value reads as form fields, sent as a form.
	smuggled := func() *http.Request {
		b := []byte(`{"id":"evt_1","note":"x&type=refund.issued&id=evt_forged"}`)
		r := secSigned(t, cfg, base, "orders", b, now)
		r.Header.Set("X-Signature", e2e.Sign(testSecret, b))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		return r
	}

	type badCase struct {
		name  string
		req   func() *http.Request // nil: raw
		raw   func() int           // a hand-written exchange on a connection
		want  int                  // 0: the connection is cut without an answer
		retry bool                 // Retry-After expected
		after int                  // its value in seconds, within one (0: not checked)
	}
	cases := []badCase{
		// hmac (orders)
		{name: "hmac: missing signature", req: signed("orders", now, del("X-Signature")), want: 401},
		{name: "hmac: wrong secret", req: signed("orders", now, set("X-Signature", e2e.Sign("not-the-secret", []byte("{}")))), want: 401},
		{name: "hmac: body changed after signing", req: signed("orders", now, tamper), want: 401},
		{name: "hmac: malformed hex", req: signed("orders", now, set("X-Signature", "sha256=zz")), want: 401},
		{name: "hmac: truncated", req: signed("orders", now, edit("X-Signature", func(v string) string { return v[:len(v)-2] })), want: 401},
		{name: "hmac: wrong prefix", req: signed("orders", now, edit("X-Signature", func(v string) string { return "sha1=" + strings.TrimPrefix(v, "sha256=") })), want: 401},
		{name: "hmac: signature in another header", req: signed("orders", now, func(r *http.Request) {
			r.Header.Set("X-Hub-Signature-256", r.Header.Get("X-Signature"))
			r.Header.Del("X-Signature")
		}), want: 401},
		{name: "hmac: empty signature", req: signed("orders", now, set("X-Signature", "")), want: 401},
		{name: "hmac: JSON smuggling form fields, sent as a form", req: smuggled, want: 415},
		{name: "hmac: X-Timestamp 9999-12-31T23:59:59Z", req: stampedAt("9999-12-31T23:59:59Z"), want: 401},
		{name: "hmac: X-Timestamp 0001-01-01T00:00:00Z", req: stampedAt("0001-01-01T00:00:00Z"), want: 401},
		{name: "hmac: X-Timestamp in milliseconds 10 minutes ahead", req: stampedAt(strconv.FormatInt(now.Add(10*time.Minute).UnixMilli(), 10)), want: 401},
		// stripe
		{name: "stripe: missing header", req: signed("stripe", now, del("Stripe-Signature")), want: 401},
		{name: "stripe: stale timestamp", req: signed("stripe", stale), want: 401},
		{name: "stripe: future timestamp", req: signed("stripe", future), want: 401},
		{name: "stripe: malformed header", req: signed("stripe", now, set("Stripe-Signature", "garbage")), want: 401},
		{name: "stripe: only a v0 signature", req: signed("stripe", now, edit("Stripe-Signature", func(v string) string { return strings.ReplaceAll(v, "v1=", "v0=") })), want: 401},
		{name: "stripe: timestamp swapped after signing", req: signed("stripe", now, edit("Stripe-Signature", func(v string) string {
			return strings.Replace(v, "t=", "t=1", 1)
		})), want: 401},
		{name: "stripe: t=99999999999 (far future)", req: signed("stripe", farFuture), want: 401},
		{name: "stripe: t in milliseconds", req: signed("stripe", millisAsSeconds), want: 401},
		{name: "stripe: text/plain", req: signed("stripe", now, set("Content-Type", "text/plain")), want: 415},
		{name: "stripe: XML", req: signed("stripe", now, set("Content-Type", "application/xml")), want: 415},
		// github
		{name: "github: only the SHA-1 header", req: signed("gh", now, func(r *http.Request) {
			r.Header.Set("X-Hub-Signature", "sha1="+strings.Repeat("a", 40))
			r.Header.Del("X-Hub-Signature-256")
		}), want: 401},
		{name: "github: body changed after signing", req: signed("gh", now, tamper), want: 401},
		{name: "github: multipart content type", req: signed("gh", now, set("Content-Type", "multipart/form-data; boundary=x")), want: 415},
		{name: "github: JSON capture replayed as a form", req: signed("gh", now, set("Content-Type", "application/x-www-form-urlencoded")), want: 415},
		// slack
		{name: "slack: stale timestamp (replay)", req: signed("slack", stale), want: 401},
		{name: "slack: future timestamp", req: signed("slack", future), want: 401},
		{name: "slack: timestamp in milliseconds", req: signed("slack", millisAsSeconds), want: 401},
		{name: "slack: missing timestamp", req: signed("slack", now, del("X-Slack-Request-Timestamp")), want: 401},
		{name: "slack: timestamp changed after signing", req: signed("slack", now, edit("X-Slack-Request-Timestamp", func(v string) string {
			ts, _ := strconv.ParseInt(v, 10, 64)
			return strconv.FormatInt(ts+1, 10)
		})), want: 401},
		// standard webhooks
		{name: "standardwebhooks: stale timestamp", req: signed("svix", stale), want: 401},
		{name: "standardwebhooks: far-future timestamp", req: signed("svix", farFuture), want: 401},
		{name: "standardwebhooks: missing webhook-id", req: signed("svix", now, del("Webhook-Id")), want: 401},
		{name: "standardwebhooks: signature not base64", req: signed("svix", now, set("Webhook-Signature", "v1,!!!not-base64!!!")), want: 401},
		// limits, before verification
		{name: "oversize body (Content-Length)", req: signed("orders", now, big), want: 413},
		{name: "oversize body (chunked)", req: signed("orders", now, big, chunked), want: 413},
		{name: "PUT", req: signed("orders", now, method(http.MethodPut)), want: 405},
		{name: "DELETE", req: signed("orders", now, method(http.MethodDelete)), want: 405},
		{name: "unknown source", req: signed("nope", now), want: 404},
		{name: "path below a source", req: func() *http.Request {
			r := signed("orders", now)()
			r.URL.Path += "/extra"
			return r
		}, want: 404},
		{name: "GET on a source without endpoint verification", req: signed("orders", now, method(http.MethodGet)), want: 404},
		{name: "disallowed IP", req: signed("internal", now), want: 403},
		{name: "spoofed X-Forwarded-For from an untrusted peer", req: signed("internal", now, set("X-Forwarded-For", "192.0.2.10")), want: 403},
		// "limited" spent its one token (0.001/s) on the valid webhook sent before the table.
		{name: "rate limit: an unsigned request meets the empty bucket", req: signed("limited", now, del("X-Signature")), want: 429, retry: true, after: 1000},
		{name: "rate limit: a valid request is refused before verification", req: signed("limited", now), want: 429, retry: true, after: 1000}, // 1 token at 0.001/s, spent just before
		{name: "header value not UTF-8", req: signed("orders", now, set("X-Note", "caf\xe9")), want: 400},
		// EventService over HTTP (no tokens here): http.max_request_bytes (1 MiB) bounds the body.
		{name: "publish announcing 100 MB: 413 before the body", raw: func() int {
			return secRaw(t, m.HTTPAddr, []string{"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
				"Content-Length: 104857600\r\n\r\n{\"source\":\"orders\""}, 0) // and nothing more
		}, want: 413},
		{name: "publish chunked past 1 MiB: 413", raw: func() int {
			return secRaw(t, m.HTTPAddr, []string{"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
				"Transfer-Encoding: chunked\r\n\r\n", fmt.Sprintf("%x\r\n%s\r\n", 1100<<10, strings.Repeat(" ", 1100<<10))}, 0)
		}, want: 413},
		{name: "acknowledge announcing 100 MB: 413 before the body", raw: func() int {
			return secRaw(t, m.HTTPAddr, []string{"POST /v1/events:acknowledge HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
				"Content-Length: 104857600\r\n\r\n{"}, 0)
		}, want: 413},
		// the server's own limits
		{name: "huge headers", raw: func() int {
			return secRaw(t, m.HTTPAddr, []string{"POST /v1/webhooks/orders HTTP/1.1\r\nHost: x\r\nX-Pad: " +
				strings.Repeat("a", 20<<10) + "\r\nContent-Length: 2\r\n\r\n{}"}, 0)
		}, want: http.StatusRequestHeaderFieldsTooLarge},
		{name: "slow headers (slowloris)", raw: func() int {
			pieces := []string{"POST /v1/webhooks/orders HTTP/1.1\r\n", "Host: x\r\n"}
			for i := range 8 {
				pieces = append(pieces, fmt.Sprintf("X-Drip-%d: 1\r\n", i))
			}
			return secRaw(t, m.HTTPAddr, pieces, 400*time.Millisecond) // 3.2s of dribbling > read_header_timeout 1s
		}, want: 0},
		{name: "slow body", raw: func() int {
			b := body()
			return secRaw(t, m.HTTPAddr, []string{fmt.Sprintf("POST /v1/webhooks/orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"+
				"X-Signature: %s\r\nContent-Length: %d\r\n\r\n", e2e.Sign(testSecret, b), len(b)), string(b[:5])}, 0) // and nothing more
		}, want: http.StatusRequestTimeout},
	}
	if len(cases) < 30 {
		t.Fatalf("only %d cases", len(cases))
	}
	history := func() int64 {
		var total int64
		for _, s := range cfg.Sources {
			total += int64(countEvents(t, c, s.Name))
		}
		return total
	}
	// Spend "limited"'s one token with a valid webhook (unsigned requests never spend it).
	if resp, err := http.DefaultClient.Do(signed("limited", now)()); err != nil || resp.StatusCode != 200 {
		t.Fatalf("valid webhook to limited: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before, hist := secStore(t, rdb, cfg), history()
			var got int
			var hdr http.Header
			var answer []byte
			if tc.raw != nil {
				got = tc.raw()
			} else {
				resp, err := http.DefaultClient.Do(tc.req())
				if err != nil {
					t.Fatal(err)
				}
				answer, _ = io.ReadAll(resp.Body)
				resp.Body.Close()
				got, hdr = resp.StatusCode, resp.Header
			}
			if got != tc.want {
				t.Fatalf("status %d, want %d: %s", got, tc.want, answer)
			}
			if tc.retry && hdr.Get("Retry-After") == "" {
				t.Errorf("no Retry-After")
			}
			if ra, err := strconv.Atoi(hdr.Get("Retry-After")); tc.after != 0 && (err != nil || ra > tc.after || ra < tc.after-1) {
				t.Errorf("Retry-After %q, want %d (within a second)", hdr.Get("Retry-After"), tc.after)
			}
			if tc.want == 401 && !strings.Contains(string(answer), "signature verification failed") {
				t.Errorf("401 should say no more than that verification failed: %s", answer)
			}
			if after := secStore(t, rdb, cfg); !maps.Equal(before, after) {
				t.Fatalf("store changed: %v -> %v", before, after)
			}
			if h := history(); h != hist {
				t.Fatalf("history changed: %d -> %d events", hist, h)
			}
		})
	}
	// The same relay still takes good webhooks of every source.
	t.Run("controls", func(t *testing.T) {
		type control struct {
			src string
			req func() *http.Request
		}
		var controls []control
		for _, src := range []string{"orders", "stripe", "gh", "slack", "svix", "stamped"} {
			controls = append(controls, control{src, func() *http.Request { return secSigned(t, cfg, base, src, body(), time.Now()) }})
		}
		// The hand-signed attacks above fail for their timestamp or format alone: the same
		// requests with a current timestamp, or as JSON, are stored.
		controls = append(controls,
			control{"stamped", stampedAt(time.Now().UTC().Format(time.RFC3339))},
			control{"orders", func() *http.Request {
				r := smuggled()
				r.Header.Set("Content-Type", "application/json")
				return r
			}})
		for _, ctl := range controls {
			src := ctl.src
			before := secStore(t, rdb, cfg)
			resp, err := http.DefaultClient.Do(ctl.req())
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("%s: %d %s", src, resp.StatusCode, b)
			}
			if after := secStore(t, rdb, cfg); after[src] != before[src]+1 {
				t.Fatalf("%s not stored: %v -> %v", src, before, after)
			}
		}
	})
}

// ---------------------------------------------------------------------------------------
// Admin listener, readiness and gRPC health.

func secGet(t testing.TB, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// secAwait polls cond until it holds (a guard of 30s against a hang; the condition, not the
// time, is what is tested).
func secAwait(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(30 * time.Second); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("never: %s", what)
		}
	}
}

func TestAdmin(t *testing.T) {
	srv := redistest.StartWith(t)
	cfg := testConfig(srv.URL())
	m := startMain(t, cfg)
	admin := "http://" + m.AdminAddr
	c := client(t, m)

	b := prettyBody("evt_admin")
	if r := post(t, m, "orders", b, e2e.Sign(testSecret, b)); r.status != 200 {
		t.Fatalf("%d", r.status)
	}
	if r := post(t, m, "orders", b, "sha256=00"); r.status != 401 {
		t.Fatalf("%d", r.status)
	}
	// A group delivery, for the group series.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	st, err := c.Subscribe(ctx, &eventrelayv1.SubscribeRequest{Group: "billing-svc", Start: eventrelayv1.StartPosition_START_POSITION_EARLIEST,
		HeartbeatInterval: durationpb.New(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	for {
		msg, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if msg.GetDelivery() != nil {
			break
		}
	}
	cancel()

	t.Run("metrics", func(t *testing.T) {
		code, text := secGet(t, admin+"/metrics")
		if code != 200 {
			t.Fatalf("%d", code)
		}
		for _, series := range []string{
			`eventrelay_webhook_requests_total{source="orders",status="200"} 1`,
			`eventrelay_webhook_requests_total{source="orders",status="401"} 1`,
			`eventrelay_verification_failures_total{reason=`,
			`eventrelay_append_duration_seconds_count{source="orders"} 1`,
			`eventrelay_append_batch_size_count{source="orders"} 1`,
			`eventrelay_events_ingested_total{source="orders"} 1`,
			`eventrelay_deliveries_total{source="orders"} 1`,
			`eventrelay_subscribers `,
			`eventrelay_stream_length{source="orders"} 1`,
			`eventrelay_dead_letters{source="orders"} 0`,
			`eventrelay_group_pending{group="billing-svc",source="orders"}`,
			`eventrelay_group_lag{group="billing-svc",source="orders"} 0`,
			`eventrelay_stream_scrape_errors_total 0`,
			`go_goroutines `,
			`process_open_fds `,
		} {
			if !strings.Contains(text, series) {
				t.Errorf("missing %s", series)
			}
		}
	})
	t.Run("health, readiness, openapi, pprof", func(t *testing.T) {
		for path, want := range map[string]int{
			"/healthz": 200, "/readyz": 200, "/openapi.json": 200, "/debug/pprof/": 200,
			"/debug/pprof/goroutine?debug=1": 200, "/debug/pprof/cmdline": 404,
		} {
			if code, _ := secGet(t, admin+path); code != want {
				t.Errorf("%s: %d, want %d", path, code, want)
			}
		}
	})
	t.Run("admin and public ports are apart", func(t *testing.T) {
		if code, _ := secGet(t, "http://"+m.HTTPAddr+"/metrics"); code != 404 {
			t.Errorf("public /metrics: %d", code)
		}
		resp, err := http.Post(admin+"/v1/webhooks/orders", "application/json", strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode/100 == 2 {
			t.Errorf("admin port took a webhook: %d", resp.StatusCode)
		}
	})

	t.Run("Redis down: readiness 503, gRPC health NOT_SERVING; back: ready", func(t *testing.T) {
		conn, err := grpc.NewClient(m.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		hc := healthpb.NewHealthClient(conn)
		wctx, wcancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer wcancel()
		watch, err := hc.Watch(wctx, &healthpb.HealthCheckRequest{Service: "eventrelay.v1.EventService"})
		if err != nil {
			t.Fatal(err)
		}
		next := func(want healthpb.HealthCheckResponse_ServingStatus) {
			t.Helper()
			for {
				r, err := watch.Recv()
				if err != nil {
					t.Fatalf("waiting for %s: %v", want, err)
				}
				if r.Status == want {
					return
				}
			}
		}
		next(healthpb.HealthCheckResponse_SERVING)

		srv.Stop()
		next(healthpb.HealthCheckResponse_NOT_SERVING)
		secAwait(t, "readyz 503", func() bool { code, _ := secGet(t, admin+"/readyz"); return code == 503 })
		if code, _ := secGet(t, admin+"/healthz"); code != 200 {
			t.Errorf("healthz follows the process, not Redis: %d", code)
		}
		b := prettyBody("evt_down")
		if r := post(t, m, "orders", b, e2e.Sign(testSecret, b)); r.status != 503 || r.header.Get("Retry-After") != "1" {
			t.Errorf("webhook while Redis is down: %d Retry-After %q", r.status, r.header.Get("Retry-After"))
		}
		_, text := secGet(t, admin+"/metrics")
		if !strings.Contains(text, "eventrelay_redis_errors_total{") || strings.Contains(text, "eventrelay_stream_length{") {
			t.Errorf("metrics while Redis is down: redis errors counted %v, stream series present %v",
				strings.Contains(text, "eventrelay_redis_errors_total{"), strings.Contains(text, "eventrelay_stream_length{"))
		}

		srv.Restart(t)
		next(healthpb.HealthCheckResponse_SERVING)
		secAwait(t, "readyz 200", func() bool { code, _ := secGet(t, admin+"/readyz"); return code == 200 })
	})
}

// TestReflectionSwitch: reflection is on by default; grpc.reflection: false turns it off.
func TestReflectionSwitch(t *testing.T) {
	for _, tc := range []struct {
		env  []string
		want codes.Code
	}{{nil, codes.OK}, {[]string{"RELAY_GRPC_REFLECTION=false"}, codes.Unimplemented}} {
		t.Run(fmt.Sprint(tc.env), func(t *testing.T) {
			cfg, err := config.Load("", tc.env, nil)
			if err != nil {
				t.Fatal(err)
			}
			base := testConfig("")
			base.GRPC.Reflection = cfg.GRPC.Reflection
			m := startMain(t, base)
			conn, err := grpc.NewClient(m.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
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
			if err == nil {
				_, err = st.Recv()
			}
			if status.Code(err) != tc.want {
				t.Fatalf("got %v, want %s", err, tc.want)
			}
		})
	}
}

// ---------------------------------------------------------------------------------------
// Logs.

func TestOpenEventServiceWarning(t *testing.T) {
	for _, tc := range []struct {
		open  bool
		addrs []string
		warn  bool
	}{
		{true, []string{"127.0.0.1:9090", "[::1]:8080"}, false},
		{true, []string{"127.0.0.1:9090", "0.0.0.0:8080"}, true},
		{true, []string{"[::]:9090", "127.0.0.1:8080"}, true},
		{true, []string{"192.0.2.4:9090", "127.0.0.1:8080"}, true},
		{true, []string{"localhost:9090"}, true}, // not a bound address: assume the worst
		{false, []string{"0.0.0.0:9090", "0.0.0.0:8080"}, false},
	} {
		var buf bytes.Buffer
		warnOpenEventService(secLogger(&buf), tc.open, tc.addrs...)
		if got := strings.Contains(buf.String(), "no auth.tokens configured"); got != tc.warn {
			t.Errorf("open=%v %v: warned %v", tc.open, tc.addrs, got)
		}
		if tc.warn && !strings.Contains(buf.String(), `"level":"WARN"`) {
			t.Errorf("not a warning: %s", buf.String())
		}
	}
	// A relayd on loopback with no tokens does not warn.
	var buf syncLog
	secStart(t, testConfig(""), secLogger(&buf))
	if strings.Contains(buf.String(), "no auth.tokens configured") {
		t.Errorf("warned on loopback")
	}
}

// TestNoSecretsInLogs runs relayd at debug level with known secrets, tokens and a Redis
// password, sends good and bad requests, and finds none of those values (nor the signatures
// sent) in its output; every line logged for a webhook carries the request id.
//
// On real Redis, Redis also goes away and comes back (the reconnect lines name the URL); the
// embedded server (with the same password) covers everything else.
func TestNoSecretsInLogs(t *testing.T) {
	const redisPassword = "redis-pass-e51d0c"
	t.Run("embedded", func(t *testing.T) {
		srv, err := embedded.Start(embedded.WithPassword(redisPassword))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(srv.Close)
		runNoSecretsInLogs(t, "redis://:"+redisPassword+"@"+srv.Addr(), redisPassword, nil)
	})
	t.Run("redis", func(t *testing.T) {
		srv := redistest.StartWith(t, "--requirepass", redisPassword)
		runNoSecretsInLogs(t, "redis://:"+redisPassword+"@"+srv.Addr(), redisPassword, func(logs *syncLog) {
			srv.Stop()
			secAwait(t, "redis unreachable logged", func() bool { return strings.Contains(logs.String(), "redis unreachable") })
			srv.Restart(t)
			secAwait(t, "redis reachable logged", func() bool { return strings.Contains(logs.String(), "redis reachable again") })
		})
	})
}

// runNoSecretsInLogs is TestNoSecretsInLogs on the store at url; outage, when set, takes the
// store away and back while the log is recorded.
func runNoSecretsInLogs(t *testing.T, url, redisPassword string, outage func(logs *syncLog)) {
	const producerToken = "log-producer-token-77a1"
	cfg := secHardenedConfig(url)
	cfg.Auth.Tokens = []config.AuthToken{
		{Name: "reader", Token: relay.Secret{Value: []byte(secReaderToken)}, Sources: []string{"orders"}},
		{Name: "producer", Token: relay.Secret{Value: []byte(producerToken)}, Sources: []string{"orders"}, Publish: true},
	}
	var logs syncLog
	m := secStart(t, cfg, secLogger(&logs))
	base := "http://" + m.HTTPAddr

	var sent []string // every signature value sent
	send := func(r *http.Request, want int) {
		t.Helper()
		for _, h := range []string{"X-Signature", "Stripe-Signature", "X-Hub-Signature-256", "X-Slack-Signature", "Webhook-Signature"} {
			if v := r.Header.Get(h); v != "" {
				sent = append(sent, v)
			}
		}
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("%s: %d, want %d: %s", r.URL.Path, resp.StatusCode, want, b)
		}
	}
	for i, src := range []string{"orders", "stripe", "gh", "slack", "svix"} {
		body := []byte(fmt.Sprintf(`{"id":"evt_log%d","type":"t","event_id":"Ev%d"}`, i, i))
		send(secSigned(t, cfg, base, src, body, time.Now()), 200)
		// Stale, and the body changed after signing (hmac and github have no timestamp).
		bad := secSigned(t, cfg, base, src, body, time.Now().Add(-time.Hour))
		tampered := append(bytes.Clone(body), ' ')
		bad.Body, bad.ContentLength = io.NopCloser(bytes.NewReader(tampered)), int64(len(tampered))
		bad.Header.Set("X-Request-Id", fmt.Sprintf("req-bad-%d", i))
		send(bad, 401)
	}
	wrong := secSigned(t, cfg, base, "orders", []byte(`{"id":"evt_wrong"}`), time.Now())
	wrong.Header.Set("X-Signature", e2e.Sign(testSecret+"x", []byte(`{"id":"evt_wrong"}`)))
	send(wrong, 401)
	send(secSigned(t, cfg, base, "internal", []byte(`{}`), time.Now()), 403)

	// EventService with good and bad tokens, over gRPC and HTTP.
	c := client(t, m)
	for _, tok := range []string{secReaderToken, producerToken, "wrong-token-value-1d"} {
		ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
		_, _ = c.ListEvents(ctx, &eventrelayv1.ListEventsRequest{Source: "billing"})
		_, _ = c.Publish(ctx, &eventrelayv1.PublishRequest{Source: "orders", Type: "t", Data: []byte(`{}`)})
		req, _ := http.NewRequest(http.MethodGet, base+"/v1/sources/orders/events", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}
	// Redis goes away and comes back: the URL is logged redacted.
	if outage != nil {
		outage(&logs)
	}
	_ = m.Close()

	out := logs.String()
	secrets := []string{testSecret, secStripeSecret, secGitHubSecret, secSlackSecret, secSvixSecret,
		strings.TrimPrefix(secSvixSecret, "whsec_"), secReaderToken, producerToken, "wrong-token-value-1d", redisPassword}
	for _, s := range append(secrets, sent...) {
		if strings.Contains(out, s) {
			t.Errorf("the log contains %q", s)
		}
	}
	// Every line is JSON; every line logged for a request (HTTP or gRPC) carries its id.
	perMsg := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("not JSON: %s", line)
		}
		msg, _ := rec["msg"].(string)
		switch msg {
		case "webhook signature rejected", "webhook refused: address not allowed", "http request", "grpc call", "request failed":
			perMsg[msg]++
			if id, _ := rec["request_id"].(string); id == "" {
				t.Errorf("no request id: %s", line)
			}
		}
	}
	// 12 webhooks + 3 HTTP reads; 6 gRPC calls + the 2 HTTP reads through the gateway (the
	// one with a wrong token is refused before it reaches the gateway).
	if perMsg["webhook signature rejected"] != 6 || perMsg["http request"] < 15 || perMsg["grpc call"] < 8 {
		t.Errorf("request lines at debug level: %v", perMsg)
	}
	for i := range 5 {
		if !strings.Contains(out, fmt.Sprintf(`"request_id":"req-bad-%d"`, i)) {
			t.Errorf("the caller's request id req-bad-%d is not logged", i)
		}
	}
	if testing.Verbose() {
		t.Logf("%d bytes of log checked", len(out))
	}
}
