package server

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	eventrelayv1 "github.com/eventrelay/eventrelay/gen/eventrelay/v1"
	"github.com/eventrelay/eventrelay/relay"
	"github.com/eventrelay/eventrelay/relay/verify"
	"google.golang.org/grpc"
)

//go:embed console
var consoleFiles embed.FS

// consoleCSP is the Content-Security-Policy of every console answer: nothing but the
// console's own files and its own API, no inline script or style, no framing.
const consoleCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// DefaultConsoleStatsTTL is how long the console reuses the store's numbers (Service.Stats).
const DefaultConsoleStatsTTL = 2 * time.Second

// MaxConsoleSendBytes bounds the body of a test webhook sent from the console.
const MaxConsoleSendBytes = 256 << 10

// ConsoleOptions configure NewConsoleHandler.
type ConsoleOptions struct {
	// Service is the relay (sources, stats).
	Service *relay.Service
	// Auth decides who may open the console (a token with Console) and what it shows.
	Auth *Auth
	// Conn reaches the gRPC server: EventService's HTTP routes are mounted for the console.
	Conn grpc.ClientConnInterface
	// Events protect those routes as on the public listener (body bound, client certificates).
	Events EventRoutesOptions
	// Refused and Activity are the ingress's (the refused requests and the counts shown).
	Refused  *RefusedLog
	Activity *Activity
	// Ingress is the public HTTP handler a test webhook is posted through; nil: no sending.
	Ingress http.Handler
	// StatsTTL is how long the store's numbers are reused (0: DefaultConsoleStatsTTL).
	StatsTTL time.Duration
	// StreamWriteTimeout ends a live tail whose browser stopped reading (http.write_timeout).
	StreamWriteTimeout time.Duration
	Logger             *slog.Logger
}

// console serves the web console: its embedded files, its JSON API and EventService's routes.
type console struct {
	opts   ConsoleOptions
	files  http.Handler
	events http.Handler

	mu       sync.Mutex
	stats    []relay.SourceStats
	statsAt  time.Time
	inflight chan struct{} // closed when the running refresh ends
	statsErr error
}

// NewConsoleHandler returns the web console, for the admin listener: the page at "/", its
// files under "/console/", its API under "/v1/console/" and EventService's HTTP routes. With
// auth tokens configured every call needs a token with console access (Token.Console), and
// shows only what that token may read; without tokens it is open, like the admin listener.
func NewConsoleHandler(ctx context.Context, opts ConsoleOptions) (http.Handler, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.StatsTTL <= 0 {
		opts.StatsTTL = DefaultConsoleStatsTTL
	}
	sub, err := fs.Sub(consoleFiles, "console")
	if err != nil {
		return nil, err
	}
	c := &console{opts: opts, files: http.FileServerFS(sub)}
	gw := newGatewayMux(newRawBodyMarshaler())
	if opts.Conn != nil {
		if err := eventrelayv1.RegisterEventServiceHandlerClient(ctx, gw, eventrelayv1.NewEventServiceClient(opts.Conn)); err != nil {
			return nil, err
		}
	}
	c.events = streamDeadlines(opts.StreamWriteTimeout, bearerChallenge(guardEventRoutes(opts.Events, gw)))

	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", c.page)
	mux.Handle("GET /console/", http.StripPrefix("/console", c.files))
	mux.HandleFunc("GET /v1/console/session", c.api(c.session))
	mux.HandleFunc("GET /v1/console/overview", c.api(c.overview))
	mux.HandleFunc("GET /v1/console/sources/{name}/refused", c.api(c.refused))
	mux.HandleFunc("POST /v1/console/sources/{name}/send", c.api(c.send))
	mux.Handle("/v1/", c.guard(c.events))
	return withRequestID(opts.Logger, securityHeaders(mux)), nil
}

// securityHeaders adds the console's Content-Security-Policy and friends to every answer.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", consoleCSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

func (c *console) page(w http.ResponseWriter, r *http.Request) {
	http.ServeFileFS(w, r, consoleFiles, "console/index.html")
}

// principal authenticates r for the console: a token with Console when tokens are configured.
func (c *console) principal(r *http.Request) (*Principal, error) {
	p, err := c.opts.Auth.AuthenticateHTTP(r)
	if err != nil {
		return nil, err
	}
	if !p.CanOpenConsole() {
		return nil, relay.Errorf(relay.CodePermissionDenied, "token %q may not open the console (auth.tokens[].console)", p.Name)
	}
	return p, nil
}

// guard lets only console tokens through to EventService's routes on the admin listener.
func (c *console) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := c.principal(r); err != nil {
			writeError(w, err)
			return
		}
		next.ServeHTTP(w, r)
		if r.Method == http.MethodPost {
			c.invalidate() // a redrive or a publish changed the numbers: the next overview shows it
		}
	})
}

// api wraps a console API call: authentication, then JSON out, errors as on every route.
func (c *console) api(fn func(r *http.Request, p *Principal) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, err := c.principal(r)
		if err == nil {
			var out any
			if out, err = fn(r, p); err == nil {
				w.Header().Set("Content-Type", "application/json")
				_ = json.NewEncoder(w).Encode(out)
				return
			}
		}
		if relay.ErrorCode(err) == relay.CodeInternal {
			c.opts.Logger.ErrorContext(r.Context(), "console", "err", err)
		}
		writeError(w, err)
	}
}

// ConsoleSession is the answer of GET /v1/console/session: who the console is open for.
type ConsoleSession struct {
	// Auth is false when no tokens are configured: the console is open to anyone who reaches
	// the admin listener.
	Auth  bool   `json:"auth"`
	Token string `json:"token"`
	// Sources the caller may read, and of those the ones it may send test webhooks to.
	Sources []string `json:"sources"`
	Publish []string `json:"publish"`
}

func (c *console) session(r *http.Request, p *Principal) (any, error) {
	s := ConsoleSession{Auth: !c.opts.Auth.Open(), Token: p.Name, Sources: []string{}, Publish: []string{}}
	for _, name := range c.opts.Service.SourceNames() {
		if p.CanRead(name) {
			s.Sources = append(s.Sources, name)
			if p.CanPublish(name) && c.opts.Ingress != nil {
				s.Publish = append(s.Publish, name)
			}
		}
	}
	return s, nil
}

// ConsoleOverview is the answer of GET /v1/console/overview.
type ConsoleOverview struct {
	Time    time.Time       `json:"time"`
	Sources []ConsoleSource `json:"sources"`
}

// ConsoleSource is one source of the overview: the store's numbers (shared by every replica,
// at most StatsTTL old) and this replica's counts since it started.
type ConsoleSource struct {
	Name        string `json:"name"`
	Provider    string `json:"provider"`
	Partitions  int    `json:"partitions"`
	Length      int64  `json:"length"`
	DeadLetters int64  `json:"dead_letters"`
	// LastEvent is when the newest retained event was appended (zero: none).
	LastEvent time.Time      `json:"last_event,omitzero"`
	Activity  SourceActivity `json:"activity"`
	Groups    []ConsoleGroup `json:"groups"`
}

// ConsoleGroup is a consumer group of a source in the overview.
type ConsoleGroup struct {
	Name        string `json:"name"`
	Consumers   int64  `json:"consumers"`
	Pending     int64  `json:"pending"`
	Lag         int64  `json:"lag"` // -1: more than the store counts
	DeadLetters int64  `json:"dead_letters"`
	// OldestAgeSeconds is how long the group's oldest unacknowledged entry has waited (0: none).
	OldestAgeSeconds float64 `json:"oldest_age_seconds"`
}

func (c *console) overview(r *http.Request, p *Principal) (any, error) {
	stats, err := c.cachedStats(r.Context())
	if err != nil {
		return nil, err
	}
	now := time.Now()
	out := ConsoleOverview{Time: now.UTC(), Sources: []ConsoleSource{}}
	for _, s := range stats {
		if !p.CanRead(s.Name) {
			continue
		}
		cs := ConsoleSource{Name: s.Name, Provider: s.Provider, Partitions: s.Partitions, Length: s.Length,
			DeadLetters: s.DeadLetters, Activity: c.opts.Activity.Snapshot(s.Name, now), Groups: []ConsoleGroup{}}
		if !s.Last.IsZero() {
			cs.LastEvent = s.Last.Time().UTC()
		}
		for _, g := range s.Groups {
			cg := ConsoleGroup{Name: g.Name, Consumers: g.Consumers, Pending: g.Pending, Lag: g.Lag, DeadLetters: g.DeadLetters}
			if !g.Oldest.IsZero() {
				cg.OldestAgeSeconds = max(0, now.Sub(g.Oldest.Time()).Seconds())
			}
			cs.Groups = append(cs.Groups, cg)
		}
		out.Sources = append(out.Sources, cs)
	}
	return out, nil
}

// invalidate makes the next overview read the store's numbers again.
func (c *console) invalidate() {
	c.mu.Lock()
	c.statsAt = time.Time{}
	c.mu.Unlock()
}

// cachedStats returns the store's numbers, refreshed at most once per StatsTTL however many
// consoles ask: concurrent callers wait for the one refresh in flight.
func (c *console) cachedStats(ctx context.Context) ([]relay.SourceStats, error) {
	for {
		c.mu.Lock()
		if c.stats != nil && time.Since(c.statsAt) < c.opts.StatsTTL {
			s := c.stats
			c.mu.Unlock()
			return s, nil
		}
		if wait := c.inflight; wait != nil {
			c.mu.Unlock()
			select {
			case <-wait:
			case <-ctx.Done():
				return nil, relay.Errorf(relay.CodeUnavailable, "overview: %v", ctx.Err())
			}
			c.mu.Lock()
			err := c.statsErr
			c.mu.Unlock()
			if err != nil {
				return nil, err
			}
			continue
		}
		done := make(chan struct{})
		c.inflight = done
		c.mu.Unlock()

		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		stats, err := c.opts.Service.Stats(sctx)
		cancel()
		c.mu.Lock()
		c.inflight, c.statsErr = nil, err
		if err == nil {
			c.stats, c.statsAt = stats, time.Now()
		}
		c.mu.Unlock()
		close(done)
		if err != nil {
			return nil, err
		}
		return stats, nil
	}
}

func (c *console) source(r *http.Request, p *Principal) (*relay.Source, error) {
	name := r.PathValue("name")
	src, err := c.opts.Service.Source(name)
	if err != nil || !p.CanRead(name) {
		return nil, relay.Errorf(relay.CodeNotFound, "no source named %q", name)
	}
	return src, nil
}

func (c *console) refused(r *http.Request, p *Principal) (any, error) {
	src, err := c.source(r, p)
	if err != nil {
		return nil, err
	}
	return c.opts.Refused.Recent(src.Config.Name, 0), nil
}

// ConsoleSend is the body of POST /v1/console/sources/{name}/send: a test webhook relayd
// signs with the source's own scheme and secret.
type ConsoleSend struct {
	Body string `json:"body"`
	// ContentType of the body; empty: the provider's usual one.
	ContentType string `json:"content_type"`
}

// ConsoleSent is its answer: the ingress's answer to the signed request.
type ConsoleSent struct {
	Status      int    `json:"status"`
	ContentType string `json:"content_type"`
	Body        string `json:"body"`
}

func (c *console) send(r *http.Request, p *Principal) (any, error) {
	src, err := c.source(r, p)
	if err != nil {
		return nil, err
	}
	if c.opts.Ingress == nil || !p.CanPublish(src.Config.Name) {
		return nil, relay.Errorf(relay.CodePermissionDenied, "token %q may not send webhooks to %s (auth.tokens[].publish)", p.Name, src.Config.Name)
	}
	var in ConsoleSend
	dec := json.NewDecoder(io.LimitReader(r.Body, MaxConsoleSendBytes+4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return nil, relay.Errorf(relay.CodeInvalid, "body: want {\"body\": \"...\", \"content_type\": \"...\"}")
	}
	if len(in.Body) > MaxConsoleSendBytes {
		return nil, relay.Errorf(relay.CodeTooLarge, "body: at most %d bytes", MaxConsoleSendBytes)
	}
	const host = "relayd.console"
	path := "/v1/webhooks/" + src.Config.Name
	hdr := http.Header{}
	if in.ContentType != "" {
		hdr.Set("Content-Type", in.ContentType)
	}
	wr := &relay.WebhookRequest{Method: http.MethodPost, URL: "http://" + host + path, Path: path,
		Header: hdr, ContentType: in.ContentType, Body: []byte(in.Body)}
	if err := verify.Sign(&src.Config, wr, time.Now()); err != nil {
		if errors.Is(err, verify.ErrPrivateKeyRequired) {
			return nil, relay.Errorf(relay.CodeFailedPrecondition, "%s signs with a private key relayd does not hold: send with relayctl send --private-key", src.Config.Provider)
		}
		return nil, relay.Errorf(relay.CodeInvalid, "signing: %v", err)
	}
	target := path
	if wr.RawQuery != "" {
		target += "?" + wr.RawQuery
	}
	req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, "http://"+host+target, bytes.NewReader(wr.Body))
	if err != nil {
		return nil, relay.Errorf(relay.CodeInternal, "test webhook: %v", err)
	}
	req.RemoteAddr = "127.0.0.1:0"
	req.Header = wr.Header.Clone()
	if wr.ContentType != "" {
		req.Header.Set("Content-Type", wr.ContentType)
	}
	rec := &sendAnswer{header: http.Header{}}
	c.opts.Ingress.ServeHTTP(rec, req)
	c.invalidate()
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	c.opts.Logger.InfoContext(r.Context(), "console sent a test webhook", "source", src.Config.Name, "token", p.Name, "status", rec.status)
	return ConsoleSent{Status: rec.status, ContentType: rec.header.Get("Content-Type"), Body: strings.TrimSpace(rec.body.String())}, nil
}

// sendAnswer records the ingress's answer to a test webhook (its first 64 KiB).
type sendAnswer struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (a *sendAnswer) Header() http.Header { return a.header }

func (a *sendAnswer) WriteHeader(code int) {
	if a.status == 0 {
		a.status = code
	}
}

func (a *sendAnswer) Write(b []byte) (int, error) {
	a.WriteHeader(http.StatusOK)
	if room := 64<<10 - a.body.Len(); room > 0 {
		a.body.Write(b[:min(len(b), room)])
	}
	return len(b), nil
}
