package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sort"
	"strings"

	"github.com/eventrelay/eventrelay/relay"
)

// DefaultMaxRequestBytes is the default bound on the body of an EventService request over
// HTTP and on a gRPC message received (http.max_request_bytes).
const DefaultMaxRequestBytes = 1 << 20

// EventRoutesOptions protect EventService's HTTP routes (everything on the HTTP listener
// that is not a webhook) before grpc-gateway reads a byte of the body.
type EventRoutesOptions struct {
	// Auth authenticates the bearer token of every request before its body is read: a
	// missing or invalid token is answered 401, a token without publish rights POSTing to
	// /v1/events 403, and the body is never read. Nil or open: no token needed.
	Auth *Auth
	// MaxRequestBytes bounds the request body: a Content-Length over it is answered 413
	// before reading, a chunked body is cut and answered 413 once it passes it.
	// 0: DefaultMaxRequestBytes.
	MaxRequestBytes int64
	// RequireClientCert demands a client certificate verified against the HTTP listener's
	// client CAs (http.tls.client_ca_file) on these routes; webhooks never need one.
	RequireClientCert bool
}

// guardEventRoutes wraps next (the gateway mux) so that EventService routes are refused
// before their body is read when the caller is not allowed, and bodies are bounded. Webhook
// paths pass through untouched (the ingress has its own per-source checks).
func guardEventRoutes(opts EventRoutesOptions, next http.Handler) http.Handler {
	limit := opts.MaxRequestBytes
	if limit <= 0 {
		limit = DefaultMaxRequestBytes
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, webhookPrefix) {
			next.ServeHTTP(w, r)
			return
		}
		if crossOrigin.Check(r) != nil {
			refuseCrossOrigin(w, r)
			return
		}
		if opts.RequireClientCert && (r.TLS == nil || len(r.TLS.VerifiedChains) == 0) {
			writeError(w, relay.Errorf(relay.CodeUnauthenticated,
				"a client certificate is required for EventService routes (http.tls.client_ca_file)"))
			return
		}
		if !opts.Auth.Open() {
			p, err := opts.Auth.AuthenticateHTTP(r)
			if err != nil {
				writeError(w, err)
				return
			}
			if r.Method == http.MethodPost && r.URL.Path == "/v1/events" && !p.publish {
				writeError(w, relay.Errorf(relay.CodePermissionDenied, "token %q may not publish", p.Name))
				return
			}
		}
		if r.ContentLength > limit {
			writeError(w, relay.Errorf(relay.CodeTooLarge, "request body larger than %d bytes (http.max_request_bytes)", limit))
			return
		}
		if r.Body != nil && r.Body != http.NoBody {
			// Read the (bounded) body here so that an oversized chunked body is answered 413
			// rather than whatever the gateway makes of a read error.
			body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
			if err != nil {
				var tooBig *http.MaxBytesError
				if errors.As(err, &tooBig) {
					writeError(w, relay.Errorf(relay.CodeTooLarge, "request body larger than %d bytes (http.max_request_bytes)", limit))
					return
				}
				writeError(w, relay.Errorf(relay.CodeInvalid, "reading the request body failed"))
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		next.ServeHTTP(w, r)
	})
}

// EventRoutes lists EventService's HTTP routes ("METHOD /path"), read from the OpenAPI
// document generated from the proto files, for start-up messages.
var EventRoutes = eventRoutes(openAPI)

func eventRoutes(doc []byte) []string {
	var d struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		return nil
	}
	var out []string
	for path, ops := range d.Paths {
		if strings.HasPrefix(path, webhookPrefix) {
			continue
		}
		for method := range ops {
			out = append(out, strings.ToUpper(method)+" "+path)
		}
	}
	sort.Strings(out)
	return out
}

// crossOrigin is net/http's check of cross-origin browser requests (Sec-Fetch-Site, Origin
// against Host); safe methods always pass.
var crossOrigin = http.NewCrossOriginProtection()

// refuseCrossOrigin answers a request crossOrigin refused: 403 as a google.rpc.Status.
func refuseCrossOrigin(w http.ResponseWriter, r *http.Request) {
	writeError(w, relay.Errorf(relay.CodePermissionDenied,
		"cross-origin request refused: a browser may only send %s from this listener's own pages", r.Method))
}

// CrossOriginGuard refuses state-changing requests (every method but GET, HEAD and OPTIONS)
// that a browser sends from another origin, answering 403 with a google.rpc.Status: a web
// page an operator opens cannot make their browser POST to a listener it can reach and the
// page's author cannot (the admin listener on loopback, say: the console's test webhooks,
// redrives, resumes, publishes). Browsers mark such requests with Sec-Fetch-Site or an
// Origin whose host is not the request's (net/http's CrossOriginProtection); requests
// without either, from relayctl, curl or a service, pass, as does the console's own.
func CrossOriginGuard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if crossOrigin.Check(r) != nil {
			refuseCrossOrigin(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}
