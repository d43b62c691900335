package server

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	eventrelayv1 "github.com/eventrelay/eventrelay/gen/eventrelay/v1"
	"github.com/eventrelay/eventrelay/relay"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/genproto/googleapis/api/httpbody"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
)

// webhookPrefix is the path prefix of the webhook ingress.
const webhookPrefix = "/v1/webhooks/"

// requestInfo is what the ingress middleware learned about a webhook request before the
// gateway decoded it; the WebhookService reads it from the context.
type requestInfo struct {
	method, path, rawQuery, url string
	header                      http.Header
	contentType                 string
	// refusal is set by the WebhookService when verification refused the request: the
	// verification reason and message, for the refused-requests log.
	refusal, refusalMsg string
	bodySize            int
}

type requestInfoKey struct{}

// ContentTypePolicy reports whether a source's provider ever sends contentType (a media
// type without parameters, lower case). Nil accepts everything.
type ContentTypePolicy func(src *relay.SourceConfig, contentType string) bool

// IngressOptions configure the webhook ingress middleware.
type IngressOptions struct {
	// TrustedProxies are the peers whose X-Forwarded-For is honoured.
	TrustedProxies []netip.Prefix
	// ContentTypes decides 415s.
	ContentTypes ContentTypePolicy
	// CredentialHeaders, when set, names the headers that carry a source's credential or
	// signature (verify.CredentialHeaders): redacted in the refused-requests log whatever
	// their names (a token source's X-Hook-Pass, say).
	CredentialHeaders func(src *relay.SourceConfig) []string
	// MaxConcurrent bounds the webhook requests served at once; beyond it requests are shed
	// with 503 and Retry-After instead of queueing (0: unbounded).
	MaxConcurrent int
	// MinBodyRate (http.min_body_rate, bytes per second) is the slowest a webhook body may
	// arrive after its first second; slower requests end with 408. 0: only the read timeout.
	MinBodyRate int64
	// ReadTimeout (http.read_timeout) is how long a webhook body may take in all, with or
	// without MinBodyRate (which replaces the server's read deadline and must not extend
	// it). 0: none.
	ReadTimeout time.Duration
	// MaxBodyMemory (http.max_body_memory) bounds the bytes of webhook bodies held at once,
	// while they are received, verified and stored; a body that would go over it is answered
	// 503 with Retry-After (0: unbounded). Without it, clients that each send most of a body
	// and stall hold a buffer apiece for as long as the read timeout allows.
	MaxBodyMemory int64
	// Unverified is the budget, per client address, of webhook requests that fail
	// verification (401); beyond it the address gets 429 until the bucket refills. Zero RPS:
	// no budget.
	Unverified relay.RateLimit
	// Refused, when set, keeps the last refused webhook requests of each source.
	Refused *RefusedLog
	// Activity, when set, counts every source's accepted, refused and failed requests.
	Activity *Activity
	// ViaGateway routes POSTed webhooks through the grpc-gateway mux (raw-body marshaler into
	// google.api.HttpBody, header matcher, in-process WebhookService). By default the
	// middleware, having read and checked the body already, calls the same WebhookService
	// directly and answers with the same marshaler and error handler: byte-identical answers
	// (TestWebhookDirectMatchesGateway), about a sixth less CPU per webhook.
	ViaGateway bool
}

// ingress is the net/http middleware in front of the gateway mux that answers what must be
// answered before the body is read: 405, 404, 403, 429, 413, 415, and the concurrency limit.
type ingress struct {
	svc      *relay.Service
	opts     IngressOptions
	log      *slog.Logger
	metrics  *Metrics
	limiters map[string]*bucket
	sem      chan struct{}
	// sourceSem bounds each source's requests in flight (sources[].max_concurrent).
	sourceSem map[string]chan struct{}
	// failures is the per-client-address budget of requests that fail verification.
	failures *addrBuckets
	// bodies is what webhook bodies hold at once (IngressOptions.MaxBodyMemory).
	bodies *byteBudget
	// credentials are each source's credential headers (IngressOptions.CredentialHeaders).
	credentials map[string][]string
	tracer      trace.Tracer
	// webhooks, when set, answers POSTed webhooks directly (see receive); else they go
	// through the gateway mux like every other route.
	webhooks  *WebhookServer
	marshaler *rawBodyMarshaler
}

func newIngress(svc *relay.Service, opts IngressOptions, log *slog.Logger, m *Metrics) *ingress {
	in := &ingress{svc: svc, opts: opts, log: log, metrics: m, limiters: map[string]*bucket{}, tracer: tracerOf(nil)}
	for _, name := range svc.SourceNames() {
		src, _ := svc.Source(name)
		if rl := src.Config.RateLimit; rl.RPS > 0 {
			burst := rl.Burst
			if burst <= 0 {
				burst = max(1, int(math.Ceil(rl.RPS)))
			}
			in.limiters[name] = newBucket(rl.RPS, burst)
		}
	}
	if opts.MaxConcurrent > 0 {
		in.sem = make(chan struct{}, opts.MaxConcurrent)
	}
	in.sourceSem = map[string]chan struct{}{}
	in.credentials = map[string][]string{}
	for _, name := range svc.SourceNames() {
		src, _ := svc.Source(name)
		if src.Config.MaxConcurrent > 0 {
			in.sourceSem[name] = make(chan struct{}, src.Config.MaxConcurrent)
		}
		if opts.CredentialHeaders != nil {
			in.credentials[name] = opts.CredentialHeaders(&src.Config)
		}
	}
	if opts.Unverified.RPS > 0 {
		in.failures = newAddrBuckets(opts.Unverified.RPS, max(1, opts.Unverified.Burst), maxTrackedAddrs)
	}
	in.bodies = &byteBudget{limit: opts.MaxBodyMemory, metrics: m}
	return in
}

// byteBudget counts bytes held against a limit (0: none), and reports them to the
// eventrelay_webhook_body_bytes gauge.
type byteBudget struct {
	limit   int64
	used    atomic.Int64
	metrics *Metrics
}

// take holds n more bytes; false (holding nothing) when that would go over the limit.
func (b *byteBudget) take(n int64) bool {
	if b == nil {
		return true
	}
	if b.used.Add(n) > b.limit && b.limit > 0 {
		b.used.Add(-n)
		return false
	}
	b.metrics.bodyHeld(n)
	return true
}

// give returns n bytes that take held.
func (b *byteBudget) give(n int64) {
	if b != nil && n != 0 {
		b.used.Add(-n)
		b.metrics.bodyHeld(-n)
	}
}

// statusWriter records the status written, and why a refusal was answered.
type statusWriter struct {
	http.ResponseWriter
	status int
	reason string // set with refuse
	msg    string
}

// refuse answers err, recording reason for the refused-requests log.
func refuse(w *statusWriter, reason string, err error) {
	w.reason, w.msg = reason, relay.ErrorMessage(err)
	writeError(w, err)
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (in *ingress) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, ok := strings.CutPrefix(r.URL.Path, webhookPrefix)
		if !ok {
			next.ServeHTTP(w, r)
			return
		}
		sw := &statusWriter{ResponseWriter: w}
		label := name
		endSpan := func(int) {}
		var info *requestInfo // set once the source is known
		var ip netip.Addr
		defer func() {
			in.metrics.request(label, sw.status)
			endSpan(sw.status)
			if info != nil {
				in.settled(name, r, sw, info, ip)
			}
		}()
		src, err := in.svc.Source(name)
		if err != nil || strings.Contains(name, "/") {
			label = "unknown"
			writeError(sw, relay.Errorf(relay.CodeNotFound, "unknown source"))
			return
		}
		var ctx context.Context
		ctx, endSpan = startWebhookSpan(in.tracer, r, name)
		ip = clientIP(r, in.opts.TrustedProxies)
		info = &requestInfo{method: r.Method, path: r.URL.Path, rawQuery: r.URL.RawQuery, header: r.Header,
			contentType: r.Header.Get("Content-Type"), url: publicURL(r, &src.Config)}
		if r.Method != http.MethodPost && r.Method != http.MethodGet {
			sw.Header().Set("Allow", "GET, POST")
			sw.reason = "method"
			writeErrorStatus(sw, http.StatusMethodNotAllowed, relay.Errorf(relay.CodeInvalid, "method %s not allowed; webhooks are POSTed", r.Method))
			return
		}
		if len(src.Config.AllowIPs) > 0 && !allowed(ip, src.Config.AllowIPs) {
			in.log.DebugContext(ctx, "webhook refused: address not allowed", "source", name, "ip", ip.String())
			refuse(sw, "ip", relay.Errorf(relay.CodePermissionDenied, "address not allowed"))
			return
		}
		// Requests that fail verification spend their client address's budget, never the
		// source's rate limit: an unsigned flood cannot starve the provider's deliveries.
		if ok, wait := in.failures.allow(ip, time.Now()); !ok {
			sw.Header().Set("Retry-After", retryAfter(wait))
			refuse(sw, "unverified_limit", relay.Errorf(relay.CodeRateLimited, "too many requests that failed verification from this address"))
			return
		}
		limiter := in.limiters[name]
		if limiter != nil {
			if ok, wait := limiter.peek(time.Now()); !ok {
				sw.Header().Set("Retry-After", retryAfter(wait))
				refuse(sw, "rate_limit", relay.Errorf(relay.CodeRateLimited, "rate limit exceeded"))
				return
			}
		}
		// The source's token is taken once the body is in (below), so that requests admitted
		// together cannot overdraw the bucket, and given back unless the answer is a 2xx.
		taken := false
		defer func() {
			if sw.status == http.StatusUnauthorized {
				in.failures.spend(ip, time.Now())
			}
			if taken && (sw.status < 200 || sw.status >= 300) {
				limiter.refund(time.Now())
			}
		}()
		if r.Method == http.MethodPost {
			if !utf8Headers(r.Header) {
				// Event attributes come from headers (content type, ids, types) and must be
				// UTF-8 to be stored; no provider sends anything else.
				refuse(sw, "invalid", relay.Errorf(relay.CodeInvalid, "header values must be valid UTF-8"))
				return
			}
			limit := src.Config.MaxBodyBytes
			if r.ContentLength > limit {
				refuse(sw, "size", relay.Errorf(relay.CodeTooLarge, "body larger than %d bytes", limit))
				return
			}
			if in.opts.ContentTypes != nil {
				mt := mediaType(info.contentType)
				if !in.opts.ContentTypes(&src.Config, mt) {
					refuse(sw, "content_type", relay.Errorf(relay.CodeUnsupportedMedia, "content type %q is not accepted for this source", mt))
					return
				}
			}
			var until time.Time
			if in.opts.ReadTimeout > 0 {
				until = time.Now().Add(in.opts.ReadTimeout)
			}
			body, held, err := readBody(sw, r, limit, in.opts.MinBodyRate, until, in.bodies)
			defer in.bodies.give(held)
			info.bodySize = len(body)
			if err != nil {
				if errors.Is(err, errBodyMemory) {
					refuse(sw, "body_memory", relay.Errorf(relay.CodeUnavailable, "too many webhook bodies held at once (http.max_body_memory)"))
					return
				}
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					// http.read_timeout ran out: a client dribbling its body (slowloris).
					sw.reason = "body_rate"
					writeErrorStatus(sw, http.StatusRequestTimeout, relay.Errorf(relay.CodeInvalid, "timed out reading the body (http.min_body_rate, http.read_timeout)"))
					return
				}
				refuse(sw, "invalid", relay.Errorf(relay.CodeInvalid, "reading the body failed"))
				return
			}
			if int64(len(body)) > limit {
				refuse(sw, "size", relay.Errorf(relay.CodeTooLarge, "body larger than %d bytes", limit))
				return
			}
			if limiter != nil {
				if taken = takeToken(sw, limiter); !taken {
					return
				}
			}
			// Slots are taken once the body is in: a client dribbling its body holds none.
			release, ok := in.acquire(name)
			if !ok {
				refuse(sw, "unavailable", relay.Errorf(relay.CodeUnavailable, "too many concurrent requests"))
				return
			}
			defer release()
			if in.webhooks != nil && !in.opts.ViaGateway {
				in.receive(context.WithValue(ctx, requestInfoKey{}, info), sw, r, name, body)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			r.ContentLength = int64(len(body))
		}
		if r.Method != http.MethodPost {
			// A GET (a provider's verification handshake) has no body: its token is taken now.
			if limiter != nil {
				if taken = takeToken(sw, limiter); !taken {
					return
				}
			}
			release, ok := in.acquire(name)
			if !ok {
				refuse(sw, "unavailable", relay.Errorf(relay.CodeUnavailable, "too many concurrent requests"))
				return
			}
			defer release()
		}
		r = r.WithContext(context.WithValue(ctx, requestInfoKey{}, info))
		next.ServeHTTP(sw, r)
	})
}

// takeToken takes a token of the source's rate limit and reports whether it could; when it
// could not, it has answered 429 with Retry-After.
func takeToken(sw *statusWriter, limiter *bucket) bool {
	ok, wait := limiter.take(time.Now())
	if !ok {
		sw.Header().Set("Retry-After", retryAfter(wait))
		refuse(sw, "rate_limit", relay.Errorf(relay.CodeRateLimited, "rate limit exceeded"))
	}
	return ok
}

// settled records the answer to a request of source: in Activity, and a refusal (status 400
// and above) in the refused-requests log with the reason the ingress recorded (refuse) or the
// WebhookService gave (verification, ingest errors), else "error".
func (in *ingress) settled(source string, r *http.Request, sw *statusWriter, info *requestInfo, ip netip.Addr) {
	if (in.opts.Refused == nil && in.opts.Activity == nil) || sw.status == 0 {
		return
	}
	now := time.Now().UTC()
	if sw.status < 400 {
		in.opts.Activity.record(source, sw.status, "", now)
		return
	}
	reason, msg := sw.reason, sw.msg
	if info.refusal != "" {
		reason, msg = info.refusal, info.refusalMsg
	}
	if reason == "" {
		reason = "error"
	}
	in.opts.Activity.record(source, sw.status, reason, now)
	in.opts.Refused.add(source, Refusal{Time: now, Status: sw.status, Reason: reason,
		Message: msg, ClientAddr: ip.String(), Method: r.Method, Path: redactedPath(r.URL.Path, r.URL.RawQuery),
		Headers: redactedHeaders(r.Header, in.credentials[source]), BodySize: max(r.ContentLength, int64(info.bodySize))})
}

// acquire takes a slot of the listener (http.max_concurrent) and one of the source
// (sources[].max_concurrent) without waiting; ok is false when either is full.
func (in *ingress) acquire(source string) (release func(), ok bool) {
	if in.sem != nil {
		select {
		case in.sem <- struct{}{}:
		default:
			return nil, false
		}
	}
	if ss := in.sourceSem[source]; ss != nil {
		select {
		case ss <- struct{}{}:
		default:
			if in.sem != nil {
				<-in.sem
			}
			return nil, false
		}
	}
	return func() {
		if ss := in.sourceSem[source]; ss != nil {
			<-ss
		}
		if in.sem != nil {
			<-in.sem
		}
	}, true
}

func retryAfter(wait time.Duration) string {
	return strconv.Itoa(max(1, int(math.Ceil(wait.Seconds()))))
}

// bodyGrace is how long a body may take before http.min_body_rate applies.
const bodyGrace = time.Second

// errBodyMemory is readBody's error when the body would take the listener over
// http.max_body_memory.
var errBodyMemory = errors.New("webhook bodies over http.max_body_memory")

// readBody reads a request body of at most limit bytes (one more is read to tell a longer
// one). With minRate > 0 (bytes per second) the body must arrive at that rate after the
// first second: before every read the connection's read deadline is set to the moment the
// bytes received so far would fall below it, so a client dribbling its body gets a timeout
// (408) within about a second instead of holding the connection for http.read_timeout. That
// deadline replaces the server's, so it never goes past until (http.read_timeout; zero:
// none): a client that sends most of a body quickly and then stalls is cut then, not when
// the rate would allow.
//
// Memory grows with the bytes received, not with the Content-Length announced, and every
// byte of buffer is taken from budget first (errBodyMemory when it has none left); held is
// what the caller gives back once the body is no longer needed, also after an error.
func readBody(w http.ResponseWriter, r *http.Request, limit, minRate int64, until time.Time, budget *byteBudget) (buf []byte, held int64, err error) {
	var rc *http.ResponseController
	start := time.Now()
	if minRate > 0 {
		rc = http.NewResponseController(w)
	}
	n := r.ContentLength
	if n < 0 || n > limit {
		n = limit + 1
	}
	grow := func(by int64) bool {
		old := int64(cap(buf))
		next := slices.Grow(buf, int(by))
		if !budget.take(int64(cap(next)) - old) {
			return false
		}
		held += int64(cap(next)) - old
		buf = next
		return true
	}
	if !grow(min(n, 64<<10)) {
		return nil, held, errBodyMemory
	}
	for int64(len(buf)) < n {
		if rc != nil {
			due := start.Add(bodyGrace + time.Duration(float64(len(buf)+1)/float64(minRate)*float64(time.Second)))
			if !until.IsZero() && due.After(until) {
				due = until
			}
			_ = rc.SetReadDeadline(due)
		}
		if len(buf) == cap(buf) && !grow(min(n-int64(len(buf)), int64(cap(buf)))) {
			return nil, held, errBodyMemory
		}
		m, err := r.Body.Read(buf[len(buf):min(int64(cap(buf)), n)])
		buf = buf[:len(buf)+m]
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, held, err
		}
	}
	if r.ContentLength >= 0 && int64(len(buf)) < r.ContentLength && int64(len(buf)) <= limit {
		return nil, held, io.ErrUnexpectedEOF
	}
	if rc != nil {
		// The body is in: lift the rate deadline. (After a timeout it stays in the past, so
		// the server does not wait for the rest of the body before answering 408.)
		_ = rc.SetReadDeadline(time.Time{})
	}
	return buf, held, nil
}

// receive answers a POSTed webhook as the gateway's ReceiveWebhook route would (same
// WebhookServer, same error handler, marshaler and handshake status), without the gateway:
// its routing, header-to-metadata copy and second read of the body were a fifth of the
// ingest CPU profile.
func (in *ingress) receive(ctx context.Context, w http.ResponseWriter, r *http.Request, source string, body []byte) {
	resp, err := in.webhooks.ReceiveWebhook(ctx, &eventrelayv1.ReceiveWebhookRequest{Source: source, Body: &httpbody.HttpBody{Data: body}})
	if err != nil {
		errorHandler(ctx, nil, in.marshaler, w, r, err)
		return
	}
	w.Header().Set("Content-Type", in.marshaler.ContentType(resp))
	_ = handshakeStatus(ctx, w, resp)
	buf, err := in.marshaler.Marshal(resp)
	if err != nil {
		errorHandler(ctx, nil, in.marshaler, w, r, err)
		return
	}
	_, _ = w.Write(buf)
}

func utf8Headers(h http.Header) bool {
	for _, vs := range h {
		for _, v := range vs {
			if !utf8.ValidString(v) {
				return false
			}
		}
	}
	return true
}

func mediaType(ct string) string {
	mt, _, _ := strings.Cut(ct, ";")
	return strings.ToLower(strings.TrimSpace(mt))
}

// publicURL is the URL the provider called: the source's configured url (plus the request's
// query when the configured one has none), else reconstructed from the request.
func publicURL(r *http.Request, cfg *relay.SourceConfig) string {
	if cfg.URL != "" {
		if r.URL.RawQuery != "" && !strings.Contains(cfg.URL, "?") {
			return cfg.URL + "?" + r.URL.RawQuery
		}
		return cfg.URL
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + r.URL.RequestURI()
}

// clientIP is the peer address, or, when the peer is a trusted proxy, the right-most
// X-Forwarded-For address that is not itself a trusted proxy. X-Forwarded-For from any other
// peer is ignored (a client can write anything there). An entry that is not an address where
// a client address is expected yields the invalid address, which no allowlist admits.
func clientIP(r *http.Request, trusted []netip.Prefix) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	peer, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	peer = peer.Unmap()
	if !allowed(peer, trusted) {
		return peer
	}
	xff := r.Header.Values("X-Forwarded-For")
	if len(xff) == 0 {
		return peer // the proxy's own request
	}
	hops := strings.Split(strings.Join(xff, ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return netip.Addr{} // garbage where the client should be: fail closed
		}
		a = a.Unmap()
		if !allowed(a, trusted) {
			return a
		}
	}
	return peer
}

func allowed(ip netip.Addr, prefixes []netip.Prefix) bool {
	if !ip.IsValid() {
		return false
	}
	for _, p := range prefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// bucket is a token bucket.
type bucket struct {
	mu     sync.Mutex
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
}

func newBucket(rps float64, burst int) *bucket {
	return &bucket{rate: rps, burst: float64(burst), tokens: float64(burst)}
}

// refill adds the tokens earned since the last call; b.mu is held.
func (b *bucket) refill(now time.Time) {
	if !b.last.IsZero() {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
}

// peek reports whether a token is left, without spending it; when none is, how long until
// one is.
func (b *bucket) peek(now time.Time) (bool, time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill(now)
	if b.tokens >= 1 {
		return true, 0
	}
	return false, b.wait()
}

// take spends a token when one is left; when none is, it reports how long until one is.
func (b *bucket) take(now time.Time) (bool, time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill(now)
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, b.wait()
}

// refund gives back a token that take spent, for a request that turned out not to count.
func (b *bucket) refund(now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill(now)
	b.tokens = min(b.burst, b.tokens+1)
}

// spend charges a token for a request admitted by peek. Requests admitted together may
// overdraw the bucket by the number in flight, never below -burst; the debt delays the next
// admission.
func (b *bucket) spend(now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill(now)
	b.tokens = max(-b.burst, b.tokens-1)
}

func (b *bucket) wait() time.Duration {
	return time.Duration((1 - b.tokens) / b.rate * float64(time.Second))
}

// full reports whether the bucket has refilled to its burst (it then says nothing a new
// bucket would not).
func (b *bucket) full(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill(now)
	return b.tokens >= b.burst
}

// maxTrackedAddrs bounds the client addresses whose verification failures are tracked.
const maxTrackedAddrs = 1 << 16

// addrBuckets are token buckets per client address, at most max of them: when full, the
// addresses whose buckets have refilled are forgotten, and if that frees nothing, all are
// (an attacker spreading over more addresses than that is then only bounded by the other
// limits). A nil *addrBuckets allows everything.
type addrBuckets struct {
	mu      sync.Mutex
	rate    float64
	burst   int
	max     int
	buckets map[netip.Addr]*bucket
}

func newAddrBuckets(rps float64, burst, maxAddrs int) *addrBuckets {
	return &addrBuckets{rate: rps, burst: burst, max: maxAddrs, buckets: map[netip.Addr]*bucket{}}
}

// allow reports whether addr has budget left (without spending it).
func (a *addrBuckets) allow(addr netip.Addr, now time.Time) (bool, time.Duration) {
	if a == nil {
		return true, 0
	}
	a.mu.Lock()
	b := a.buckets[addr]
	a.mu.Unlock()
	if b == nil {
		return true, 0
	}
	return b.peek(now)
}

// spend charges addr one failed request.
func (a *addrBuckets) spend(addr netip.Addr, now time.Time) {
	if a == nil {
		return
	}
	a.mu.Lock()
	b := a.buckets[addr]
	if b == nil {
		if len(a.buckets) >= a.max {
			for k, v := range a.buckets {
				if v.full(now) {
					delete(a.buckets, k)
				}
			}
			if len(a.buckets) >= a.max {
				clear(a.buckets)
			}
		}
		b = newBucket(a.rate, a.burst)
		a.buckets[addr] = b
	}
	a.mu.Unlock()
	b.spend(now)
}

// writeError writes err in the same JSON shape as the gateway (google.rpc.Status).
func writeError(w http.ResponseWriter, err error) {
	writeErrorStatus(w, HTTPStatus(relay.ErrorCode(err)), err)
}

func writeErrorStatus(w http.ResponseWriter, httpStatus int, err error) {
	code := relay.ErrorCode(err)
	st := status.New(GRPCCode(code), relay.ErrorMessage(err))
	if d, derr := st.WithDetails(&errdetails.ErrorInfo{Reason: string(code), Domain: errorDomain}); derr == nil {
		st = d
	}
	body, _ := protojson.Marshal(st.Proto())
	if httpStatus == http.StatusServiceUnavailable || httpStatus == http.StatusTooManyRequests {
		if w.Header().Get("Retry-After") == "" {
			w.Header().Set("Retry-After", "1")
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(httpStatus)
	_, _ = w.Write(body)
}

// WebhookServer implements eventrelay.v1.WebhookService over a relay.Service. It is
// registered in-process on the gateway; the ingress middleware has already read the body.
type WebhookServer struct {
	eventrelayv1.UnimplementedWebhookServiceServer
	svc     *relay.Service
	log     *slog.Logger
	metrics *Metrics
}

// WebhookServerOptions configure NewWebhookServer.
type WebhookServerOptions struct {
	Logger *slog.Logger
	// Metrics, when set, counts requests, verification failures and ingests.
	Metrics *Metrics
}

// NewWebhookServer returns the WebhookService implementation over svc.
func NewWebhookServer(svc *relay.Service, opts WebhookServerOptions) *WebhookServer {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &WebhookServer{svc: svc, log: opts.Logger, metrics: opts.Metrics}
}

// infoFrom returns the request info the middleware stored, or one rebuilt from gRPC metadata.
func infoFrom(ctx context.Context, source string) *requestInfo {
	if info, ok := ctx.Value(requestInfoKey{}).(*requestInfo); ok {
		return info
	}
	h := http.Header{}
	md, _ := metadata.FromIncomingContext(ctx)
	for k, vs := range md {
		for _, v := range vs {
			h.Add(k, v)
		}
	}
	return &requestInfo{method: http.MethodPost, path: webhookPrefix + source, header: h, contentType: h.Get("Content-Type")}
}

// ReceiveWebhook verifies and stores one webhook.
func (s *WebhookServer) ReceiveWebhook(ctx context.Context, req *eventrelayv1.ReceiveWebhookRequest) (*eventrelayv1.ReceiveWebhookResponse, error) {
	info := infoFrom(ctx, req.GetSource())
	ct := info.contentType
	if ct == "" {
		ct = req.GetBody().GetContentType()
	}
	wr := &relay.WebhookRequest{
		Method: info.method, URL: info.url, Path: info.path, RawQuery: info.rawQuery,
		Header: info.header, ContentType: ct, Body: req.GetBody().GetData(),
	}
	// The stored trace_parent names the webhook span (or is the provider's, tracing off).
	wr.Header = injectTraceParent(ctx, wr.Header)
	ctx, endVerify := startVerifySpan(ctx, req.GetSource())
	start := time.Now()
	res, err := s.svc.Ingest(ctx, req.GetSource(), wr)
	endVerify(err)
	if err != nil {
		// For the refused-requests log: the verification reason, else the error's code.
		info.refusal, info.refusalMsg = string(relay.ErrorCode(err)), relay.ErrorMessage(err)
		switch relay.ErrorCode(err) {
		case relay.CodeUnauthenticated:
			info.refusal = relay.ErrorReason(err)
			if info.refusal == relay.ReasonMismatch {
				info.refusal = "signature"
			}
			s.metrics.verifyFailed(req.GetSource(), relay.ErrorReason(err))
			s.log.DebugContext(ctx, "webhook signature rejected", "source", req.GetSource(), "reason", relay.ErrorReason(err))
		case relay.CodeUnavailable:
			s.metrics.storeError()
		}
		return nil, toStatus(ctx, s.log, err)
	}
	if v := res.Verified; v != nil {
		key := v.KeyID
		if key == "" {
			key = strconv.Itoa(v.KeyIndex)
		}
		s.metrics.verifiedKey(req.GetSource(), key)
	}
	if res.Handshake != nil {
		return &eventrelayv1.ReceiveWebhookResponse{Handshake: &httpbody.HttpBody{
			ContentType: res.Handshake.ContentType, Data: res.Handshake.Body}}, nil
	}
	s.metrics.appended(req.GetSource(), time.Since(start))
	s.metrics.ingested(req.GetSource(), res.Duplicate)
	return &eventrelayv1.ReceiveWebhookResponse{EventId: res.EventID, Duplicate: res.Duplicate}, nil
}

// VerifyWebhookEndpoint answers a provider's GET challenge (Meta's hub.challenge).
func (s *WebhookServer) VerifyWebhookEndpoint(ctx context.Context, req *eventrelayv1.VerifyWebhookEndpointRequest) (*httpbody.HttpBody, error) {
	src, err := s.svc.Source(req.GetSource())
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	ch, ok := src.Verifier.(relay.EndpointChallenger)
	if !ok {
		return nil, toStatus(ctx, s.log, relay.Errorf(relay.CodeNotFound, "source %q does not answer GET endpoint verification", req.GetSource()))
	}
	q := url.Values{}
	if info := infoFrom(ctx, req.GetSource()); info.rawQuery != "" {
		if parsed, err := url.ParseQuery(info.rawQuery); err == nil {
			q = parsed
		}
	}
	if h := req.GetHub(); h != nil {
		for k, v := range map[string]string{"hub.mode": h.GetMode(), "hub.verify_token": h.GetVerifyToken(), "hub.challenge": h.GetChallenge()} {
			if v != "" && q.Get(k) == "" {
				q.Set(k, v)
			}
		}
	}
	hs, err := ch.Challenge(q)
	if err != nil {
		s.metrics.verifyFailed(req.GetSource(), relay.ErrorReason(err))
		return nil, toStatus(ctx, s.log, err)
	}
	return &httpbody.HttpBody{ContentType: hs.ContentType, Data: hs.Body}, nil
}
