package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"net/textproto"
	"runtime/debug"
	"strings"
	"time"

	eventrelayv1 "github.com/eventrelay/eventrelay/gen/eventrelay/v1"
	"github.com/eventrelay/eventrelay/relay"
	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// hopHeaders are never forwarded to gRPC metadata.
var hopHeaders = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Authenticate": true, "Proxy-Authorization": true,
	"Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true, "Host": true,
	"Content-Length": true, "Accept-Encoding": true,
}

// headerMatcher forwards the provider's headers (and Authorization) to the services as
// metadata under their lower-case names.
func headerMatcher(key string) (string, bool) {
	k := textproto.CanonicalMIMEHeaderKey(key)
	if hopHeaders[k] || strings.HasPrefix(k, "Grpc-") {
		return "", false
	}
	return strings.ToLower(k), true
}

// errorHandler writes gateway errors as google.rpc.Status JSON with the HTTP status of the one
// code table, and Retry-After on 429 and 503.
func errorHandler(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	st := status.Convert(err)
	code := domainCodeOf(st)
	if st.Code() == codes.Canceled {
		return // the client went away
	}
	httpStatus := HTTPStatus(code)
	var hse *runtime.HTTPStatusError
	if errors.As(err, &hse) {
		httpStatus = hse.HTTPStatus // routing errors: 404, 405
	}
	writeErrorStatus(w, httpStatus, &relay.Error{Code: code, Message: st.Message()})
}

// newGatewayMux is the grpc-gateway mux of a listener (the public one, and the console's on
// the admin listener): marshaler for every media type, errors from relayd's code table.
func newGatewayMux(marshaler *rawBodyMarshaler) *runtime.ServeMux {
	return runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, marshaler),
		runtime.WithIncomingHeaderMatcher(headerMatcher),
		runtime.WithErrorHandler(errorHandler),
		runtime.WithRoutingErrorHandler(routingErrorHandler),
		runtime.WithStreamErrorHandler(streamErrorHandler),
		runtime.WithForwardResponseOption(handshakeStatus),
		// A path segment keeps its percent-encoded "/" while routes are matched, then is
		// decoded: an event id holding "/" is read as .../events/a%2Fb.
		runtime.WithUnescapingMode(runtime.UnescapingModeAllExceptReserved),
	)
}

// handshakeStatus answers an empty handshake (Discord's webhook-events PING) with 204.
func handshakeStatus(ctx context.Context, w http.ResponseWriter, resp proto.Message) error {
	if r, ok := resp.(*eventrelayv1.ReceiveWebhookResponse); ok && r.GetHandshake() != nil && len(r.GetHandshake().GetData()) == 0 {
		w.Header().Del("Content-Type")
		w.WriteHeader(http.StatusNoContent)
	}
	return nil
}

// HTTPOptions configure the public HTTP handler.
type HTTPOptions struct {
	// Webhooks is the WebhookService the ingress calls (required).
	Webhooks *WebhookServer
	// Conn reaches the gRPC server for EventService's routes (server streaming needs a real
	// client connection); nil: no EventService routes.
	Conn    grpc.ClientConnInterface
	Ingress IngressOptions
	Logger  *slog.Logger
	Metrics *Metrics
	// TracerProvider records the webhook spans (nil: tracing off; see tracing.go).
	TracerProvider trace.TracerProvider
	// Events protect EventService's routes (auth before the body, body bound, client
	// certificates).
	Events EventRoutesOptions
	// StreamWriteTimeout closes an HTTP Subscribe stream that has not accepted a write for
	// that long (http.write_timeout; a client that stopped reading). 0: never.
	StreamWriteTimeout time.Duration
}

// NewHTTPHandler returns the public HTTP handler: the webhook ingress (middleware in front of
// the in-process WebhookService) and EventService's HTTP routes through grpc-gateway, which
// reach the gRPC server over opts.Conn.
func NewHTTPHandler(ctx context.Context, svc *relay.Service, opts HTTPOptions) (http.Handler, error) {
	webhooks, conn := opts.Webhooks, opts.Conn
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	marshaler := newRawBodyMarshaler()
	mux := newGatewayMux(marshaler)
	if err := eventrelayv1.RegisterWebhookServiceHandlerServer(ctx, mux, webhooks); err != nil {
		return nil, err
	}
	if conn != nil {
		if err := eventrelayv1.RegisterEventServiceHandlerClient(ctx, mux, eventrelayv1.NewEventServiceClient(conn)); err != nil {
			return nil, err
		}
	}
	in := newIngress(svc, opts.Ingress, log, opts.Metrics)
	in.tracer = tracerOf(opts.TracerProvider)
	in.webhooks, in.marshaler = webhooks, marshaler // POSTed webhooks skip the gateway
	return withRequestID(log, streamDeadlines(opts.StreamWriteTimeout, bearerChallenge(guardEventRoutes(opts.Events, in.wrap(mux))))), nil
}

// bearerChallenge adds WWW-Authenticate: Bearer to the 401s of EventService's routes
// (RFC 6750), including those the gateway writes for a refused Subscribe stream. Webhook
// 401s are about signatures and get none.
func bearerChallenge(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, webhookPrefix) {
			next.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(&challengeWriter{ResponseWriter: w}, r)
	})
}

type challengeWriter struct{ http.ResponseWriter }

func (w *challengeWriter) WriteHeader(code int) {
	if code == http.StatusUnauthorized && w.Header().Get("WWW-Authenticate") == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="eventrelay"`)
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *challengeWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *challengeWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

type requestIDKey struct{}

// saneRequestID returns id when it is a usable request id (1 to 128 printable ASCII
// characters without spaces), else a new random one.
func saneRequestID(id string) string {
	ok := id != "" && len(id) <= 128
	for i := 0; ok && i < len(id); i++ {
		ok = id[i] > ' ' && id[i] < 0x7f
	}
	if ok {
		return id
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// RequestID returns the request id of ctx, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// withRequestID gives every request an id (the caller's X-Request-Id when sane), echoes it,
// turns a panic into a 500 and a log line, and logs every request at debug level (method,
// path, status, duration: never the query, headers or body, which may carry credentials).
func withRequestID(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := saneRequestID(r.Header.Get("X-Request-Id"))
		// The gateway forwards it to EventService as x-request-id metadata, so the gRPC
		// side of an HTTP route logs under the same id.
		r.Header.Set("X-Request-Id", id)
		w.Header().Set("X-Request-Id", id)
		ctx := context.WithValue(r.Context(), requestIDKey{}, id)
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				log.ErrorContext(ctx, "panic in HTTP handler", "path", r.URL.Path, "panic", p, "stack", string(debug.Stack()))
				writeError(sw, relay.Errorf(relay.CodeInternal, "internal error"))
			}
			code := sw.status
			if code == 0 {
				code = http.StatusOK
			}
			log.DebugContext(ctx, "http request", "method", r.Method, "path", r.URL.Path, "status", code,
				"duration", time.Since(start))
		}()
		next.ServeHTTP(sw, r.WithContext(ctx))
	})
}

// streamDeadlines replaces the server's write timeout, which counts from the start of the
// request, for the long-lived Subscribe stream over HTTP: each write of the stream must be
// accepted within timeout of its start instead, so a stream lives as long as its client
// reads, and one that stopped reading is closed (its subscription then ends) once the
// connection's buffers are full for timeout.
func streamDeadlines(timeout time.Duration, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.URL.Path == "/v1/events:subscribe" {
			rc := http.NewResponseController(w)
			_ = rc.SetWriteDeadline(time.Time{})
			if timeout > 0 {
				w = &deadlineWriter{ResponseWriter: w, rc: rc, timeout: timeout}
			}
			// An error before the stream's first message is answered with the status of
			// relayd's code table, not grpc-gateway's (FAILED_PRECONDITION 412, not 400), and
			// Retry-After on 429 and 503, as on every other route.
			st := &streamStatus{}
			w = &streamStatusWriter{ResponseWriter: w, st: st}
			r = r.WithContext(context.WithValue(r.Context(), streamStatusKey{}, st))
		}
		next.ServeHTTP(w, r)
	})
}

// streamStatus is where streamErrorHandler leaves the status that ends an HTTP Subscribe
// stream, for streamStatusWriter.
type streamStatus struct{ st *status.Status }

type streamStatusKey struct{}

// streamErrorHandler is grpc-gateway's stream error handler (the status of the error chunk),
// which also records the status for the stream's streamStatusWriter.
func streamErrorHandler(ctx context.Context, err error) *status.Status {
	st := status.Convert(err)
	if h, ok := ctx.Value(streamStatusKey{}).(*streamStatus); ok {
		h.st = st
	}
	return st
}

// streamStatusWriter rewrites the HTTP status grpc-gateway gives an error that ends a stream
// before its first message (runtime.HTTPStatusFromCode) to relayd's (HTTPStatus).
type streamStatusWriter struct {
	http.ResponseWriter
	st *streamStatus
}

func (w *streamStatusWriter) WriteHeader(code int) {
	if code >= 400 && w.st.st != nil {
		code = HTTPStatus(domainCodeOf(w.st.st))
		if (code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable) && w.Header().Get("Retry-After") == "" {
			w.Header().Set("Retry-After", "1")
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *streamStatusWriter) Flush() { _ = http.NewResponseController(w.ResponseWriter).Flush() }

func (w *streamStatusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// routingErrorHandler answers requests no route takes: 405 (with the google.rpc.Status body of
// every other error) for a path whose routes take other methods, where grpc-gateway's default
// answers 501 UNIMPLEMENTED; 404 for an unknown path.
func routingErrorHandler(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, httpStatus int) {
	switch httpStatus {
	case http.StatusMethodNotAllowed:
		writeErrorStatus(w, httpStatus, relay.Errorf(relay.CodeInvalid, "method %s not allowed on %s", r.Method, r.URL.Path))
	case http.StatusNotFound:
		writeErrorStatus(w, httpStatus, relay.Errorf(relay.CodeNotFound, "no route %s %s", r.Method, r.URL.Path))
	default:
		runtime.DefaultRoutingErrorHandler(ctx, mux, m, w, r, httpStatus)
	}
}

// deadlineWriter sets the connection's write deadline before every write and flush.
type deadlineWriter struct {
	http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
}

func (w *deadlineWriter) Write(b []byte) (int, error) {
	_ = w.rc.SetWriteDeadline(time.Now().Add(w.timeout))
	return w.ResponseWriter.Write(b)
}

func (w *deadlineWriter) Flush() {
	_ = w.rc.SetWriteDeadline(time.Now().Add(w.timeout))
	_ = w.rc.Flush()
}

func (w *deadlineWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
