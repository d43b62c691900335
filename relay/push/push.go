// Package push delivers events to HTTP endpoints: each destination is a consumer group
// ("dest:<name>") over its sources whose members, one per relayd replica, POST every
// matching event to the destination's URL, signed the Standard Webhooks way, with retries
// (exponential backoff with full jitter, Retry-After honoured), a circuit breaker, optional
// per-key ordering, and dead letters past the retry limits (redrivable like any group's).
//
// Delivery is at least once: an event is acknowledged in its group only after a 2xx, so a
// replica that stops or dies mid-delivery leaves it pending, and the group delivers it again.
package push

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	eventrelayv1 "github.com/eventrelay/eventrelay/gen/eventrelay/v1"
	"github.com/eventrelay/eventrelay/relay"
)

// Group settings of every destination's group. They never change with the destination's
// options (which may then change freely): the retry limits are the destination's, applied
// here, and the ack deadline is kept ahead of by extending it (holdFor) while an event is
// in this replica's hands.
const (
	groupAckDeadline = 30 * time.Second
	groupMaxAttempts = 1000
	holdFor          = 30 * time.Second
	extendEvery      = 10 * time.Second
	leaseTTL         = 30 * time.Second
)

// Observer is told about every attempt (metrics).
type Observer interface {
	Attempt(destination string, class Class, latency time.Duration)
	DeadLettered(destination string)
}

// Options configure a Pusher.
type Options struct {
	// Consumer is this replica's member name in the destinations' groups. A replica that
	// restarts with the same name takes up its own unfinished deliveries at once; another
	// name gets them when their deadline passes (30s). Default: "push-" and a UUID.
	Consumer string
	// Logger logs state changes and dead letters (default slog.Default()).
	Logger *slog.Logger
	// Observer, when set, is told about every attempt.
	Observer Observer
	// TracerProvider, when set, traces every attempt (a span linked to the event's trace).
	TracerProvider trace.TracerProvider
}

// Pusher runs the push destinations of one relayd replica.
type Pusher struct {
	svc    *relay.Service
	opts   Options
	dests  []*destination
	byName map[string]*destination

	mu     sync.Mutex
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed bool
}

// New checks cfgs (defaults applied, Validate, sources configured, filter compiled) and
// returns their Pusher; Start starts it.
func New(svc *relay.Service, cfgs []Config, opts Options) (*Pusher, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Consumer == "" {
		opts.Consumer = "push-" + relay.NewUUIDv7(time.Now())
	} else if !relay.ValidGroupName(opts.Consumer) {
		return nil, fmt.Errorf("push consumer name %q must match [A-Za-z0-9][A-Za-z0-9._:-]{0,127}", opts.Consumer)
	}
	p := &Pusher{svc: svc, opts: opts, byName: map[string]*destination{}}
	var errs []error
	for i := range cfgs {
		c := cfgs[i]
		c.SetDefaults()
		d, err := newDestination(p, c)
		if err != nil {
			errs = append(errs, fmt.Errorf("destination %q: %w", c.Name, err))
			continue
		}
		if p.byName[c.Name] != nil {
			errs = append(errs, fmt.Errorf("destination %q: name used twice", c.Name))
			continue
		}
		p.byName[c.Name] = d
		p.dests = append(p.dests, d)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return p, nil
}

// Start starts delivering, until ctx ends or Close. Before it returns, each destination's
// group exists on every partition of its sources (unless the store failed, which is logged
// and retried), so that an event appended after Start is delivered: a new destination's
// group starts with the events appended after its creation.
func (p *Pusher) Start(ctx context.Context) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.cancel != nil {
		return
	}
	for _, d := range p.dests {
		if err := d.ensureGroup(ctx); err != nil {
			d.log.Warn("push: could not create the destination's group yet; retrying", "error", relay.ErrorMessage(err))
		}
	}
	ctx, p.cancel = context.WithCancel(ctx)
	for _, d := range p.dests {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			d.run(ctx)
		}()
	}
}

// Close stops every destination and waits for its goroutines: it takes no new event, lets
// the attempts in flight finish (each bounded by its destination's timeout) and settles them,
// so that an event a receiver accepted is not sent again. Events not yet sent stay pending in
// their group and are delivered later (at least once). It is idempotent.
func (p *Pusher) Close() error {
	p.mu.Lock()
	p.closed = true
	cancel := p.cancel
	p.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	p.wg.Wait()
	return nil
}

// Resume resumes a paused destination (a 410 Gone paused it). An unknown name is
// relay.CodeNotFound.
func (p *Pusher) Resume(name string) error {
	d := p.byName[name]
	if d == nil {
		return relay.Errorf(relay.CodeNotFound, "destination %q is not configured", name)
	}
	d.resume()
	return nil
}

// Status describes every destination, in configuration order.
func (p *Pusher) Status() []Status {
	out := make([]Status, 0, len(p.dests))
	for _, d := range p.dests {
		out = append(out, d.status())
	}
	return out
}

// Status describes one destination on this replica.
type Status struct {
	Name string `json:"name"`
	// URL with user information and query values redacted.
	URL      string   `json:"url"`
	Group    string   `json:"group"`
	Sources  []string `json:"sources"`
	Ordering Ordering `json:"ordering"`
	// State: "running"; "paused" (a 410 Gone; Resume); "standby" (an ordered destination
	// another replica delivers); "retrying" (the subscription failed and is retried).
	State string `json:"state"`
	// PausedReason says why it is paused.
	PausedReason string       `json:"paused_reason,omitempty"`
	Breaker      BreakerState `json:"breaker"`
	InFlight     int64        `json:"in_flight"`
	// Held counts the events in this replica's hands: in flight, waiting to be sent, or
	// waiting for a retry (ordered destinations retry in place).
	Held          int64     `json:"held"`
	Attempts      int64     `json:"attempts"`
	Delivered     int64     `json:"delivered"`
	Failed        int64     `json:"failed"`
	DeadLettered  int64     `json:"dead_lettered"`
	LastError     string    `json:"last_error,omitempty"`
	LastErrorTime time.Time `json:"last_error_time,omitzero"`
	LastDelivered time.Time `json:"last_delivered_time,omitzero"`
}

// destination is one configured destination's state on this replica.
type destination struct {
	p       *Pusher
	cfg     Config
	group   string
	sources []string
	types   relay.TypeFilter
	filter  relay.Filter
	signer  *signer
	client  *http.Client
	breaker *breaker
	limit   *limiter
	sem     chan struct{}
	log     *slog.Logger

	state   atomic.Value // string
	pauseMu sync.Mutex
	paused  string        // reason; "" when running
	changed chan struct{} // closed and replaced when paused changes

	// held are the events in this replica's hands (ack id → delivery), extended every
	// extendEvery. holdMu also orders an extension before a settlement of the same event.
	holdMu sync.Mutex
	held   map[string]*delivery

	// settle is the context of the current subscription's settlements (acks, retries, dead
	// letters): it outlives the subscription until its attempts in flight have finished.
	settle context.Context

	inFlight, attempts, delivered, failed, deadLettered atomic.Int64
	lastMu                                              sync.Mutex
	lastError                                           string
	lastErrorTime, lastDelivered                        time.Time
}

// delivery is one event in this replica's hands.
type delivery struct {
	ackID    string
	attempt  int // attempts so far, this one included (the group's delivery count)
	part     relay.Partition
	id       relay.ID
	ev       *eventrelayv1.Event
	received time.Time
}

func newDestination(p *Pusher, c Config) (*destination, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	sources := c.Sources
	if len(sources) == 0 {
		sources = p.svc.SourceNames()
	}
	for _, s := range sources {
		if _, err := p.svc.Source(s); err != nil {
			return nil, fmt.Errorf("sources: %q is not a configured source", s)
		}
	}
	f, err := p.svc.CompileFilter(c.Filter)
	if err != nil {
		return nil, fmt.Errorf("filter: %s", relay.ErrorMessage(err))
	}
	secrets := make([][]byte, len(c.Secrets))
	for i, s := range c.Secrets {
		secrets[i] = s.Value
	}
	sg, err := newSigner(secrets)
	if err != nil {
		return nil, err
	}
	d := &destination{
		p: p, cfg: c, group: GroupName(c.Name), sources: sources, types: relay.TypeFilter(c.Types), filter: f,
		signer: sg, client: newClient(c.MaxInFlight, c.AllowPrivate), breaker: newBreaker(c.Breaker),
		limit: newLimiter(c.RateLimit.RPS, c.RateLimit.Burst), sem: make(chan struct{}, c.MaxInFlight),
		log: p.opts.Logger.With("destination", c.Name), changed: make(chan struct{}),
		held: map[string]*delivery{},
	}
	d.state.Store("starting")
	return d, nil
}

// ensureGroup creates the destination's group on its partitions, starting after their
// newest entry, unless it exists.
func (d *destination) ensureGroup(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for _, name := range d.sources {
		src, err := d.p.svc.Source(name)
		if err != nil {
			return err
		}
		for _, part := range src.Partitions() {
			if err := d.p.svc.Store().EnsureGroup(ctx, part, d.group, relay.MaxID); err != nil {
				return err
			}
		}
	}
	return nil
}

func (d *destination) ordered() bool { return d.cfg.Ordering == OrderingPartitionKey }

// run subscribes the destination's group until ctx ends, again after a failure, a pause or
// a lost lease.
func (d *destination) run(ctx context.Context) {
	retry := time.Second
	for ctx.Err() == nil {
		if !d.waitRunning(ctx) {
			return
		}
		if d.ordered() && !d.takeLease(ctx) {
			return
		}
		err := d.subscribe(ctx)
		if ctx.Err() != nil {
			return
		}
		if d.pausedReason() != "" {
			continue
		}
		if err != nil {
			d.state.Store("retrying")
			d.log.Warn("push subscription failed; retrying", "error", relay.ErrorMessage(err), "in", retry)
			if !sleep(ctx, retry) {
				return
			}
			retry = min(2*retry, 30*time.Second)
			continue
		}
		retry = time.Second
	}
}

// subscribe runs one subscription of the group and returns when it ends; the deliveries it
// started have ended too (those abandoned stay pending in the group).
func (d *destination) subscribe(ctx context.Context) error {
	// ctx ends the subscription and every wait; settle outlives it until the attempts in
	// flight have finished (each bounded by the timeout) and their outcome is written, so that
	// stopping relayd does not send again what a receiver already accepted.
	ctx, cancel := context.WithCancel(ctx)
	settle, stopSettling := context.WithCancel(context.WithoutCancel(ctx))
	d.settle = settle
	var wg, helpers sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
		stopSettling()
		helpers.Wait()
		d.holdMu.Lock()
		clear(d.held) // abandoned: their holds lapse and the group delivers them again
		d.holdMu.Unlock()
	}()
	helpers.Add(1)
	go func() { defer helpers.Done(); d.extend(settle) }()
	if d.ordered() {
		helpers.Add(1)
		go func() { defer helpers.Done(); d.keepLease(ctx, cancel) }()
	}
	d.state.Store("running")
	keys := newKeyQueues()
	req := relay.SubscribeRequest{
		Sources:   d.sources,
		Heartbeat: 15 * time.Second,
		Group: relay.GroupOptions{
			Name: d.group, Consumer: d.p.opts.Consumer, AckDeadline: groupAckDeadline,
			MaxOutstanding: 2 * d.cfg.MaxInFlight, MaxAttempts: groupMaxAttempts,
		},
	}
	if d.ordered() {
		req.Group.MaxOutstanding = 4 * d.cfg.MaxInFlight
	}
	d.watchPause(ctx, cancel)
	// Unordered deliveries run on workers that outlive a delivery, at most max_in_flight of
	// them (started as needed, ended with the subscription): a goroutine per delivery grew
	// its stack through the HTTP client on every event. jobs hands a delivery to an idle
	// worker; the send callback below is the only sender and counts the workers.
	jobs := make(chan *delivery)
	workers := 0
	worker := func(dl *delivery) {
		defer wg.Done()
		for {
			d.deliverOnce(ctx, dl)
			<-d.sem
			select {
			case dl = <-jobs:
			case <-ctx.Done():
				return
			}
		}
	}
	err := d.p.svc.Subscribe(ctx, req, func(m *relay.Message) error {
		if m.Entry == nil {
			return nil // heartbeat
		}
		dl, match, err := d.accept(m)
		if err != nil { // a stored event that does not decode: retrying cannot help
			d.log.Error("push: stored event does not decode; dead-lettering it", "entry", m.Entry.ID.String(), "error", err)
			if _, err := d.p.svc.Reject(settle, []string{m.AckID}, max(m.Attempt, 1), nil); err != nil {
				return err
			}
			return nil
		}
		if !match {
			d.ack(m.AckID)
			return nil
		}
		d.hold(dl)
		if d.ordered() {
			if first := keys.push(dl.ev.GetPartitionKey(), dl); first {
				wg.Add(1)
				go func() { defer wg.Done(); d.runKey(ctx, keys, dl.ev.GetPartitionKey()) }()
			}
			return nil
		}
		select {
		case d.sem <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		select {
		case jobs <- dl: // an idle worker
		default:
			if workers < d.cfg.MaxInFlight {
				workers++
				wg.Add(1)
				go worker(dl)
				return nil
			}
			// Every worker exists and one has given its slot back: it takes dl next.
			select {
			case jobs <- dl:
			case <-ctx.Done():
				<-d.sem
			}
		}
		return nil
	})
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// accept copies a message into a delivery and reports whether it matches the destination.
func (d *destination) accept(m *relay.Message) (*delivery, bool, error) {
	raw := m.Entry.Event
	ev, err := relay.DecodeEvent(raw)
	if err != nil {
		return nil, false, err
	}
	if !d.types.Match(ev.GetType()) || !d.p.svc.Matches(d.filter, raw) {
		return nil, false, nil
	}
	dl := &delivery{ackID: m.AckID, attempt: max(m.Attempt, 1), part: m.Partition, id: m.Entry.ID, ev: ev}
	if rt := ev.GetReceivedTime(); rt.IsValid() {
		dl.received = rt.AsTime()
	} else {
		dl.received = m.Entry.ID.Time()
	}
	return dl, true, nil
}

// deliverOnce makes one attempt (unordered destinations) and settles the event: a 2xx
// acknowledges it; a failure hands it back to the group for redelivery after the backoff,
// or dead-letters it past the limits; a 410 pauses the destination and leaves it pending.
func (d *destination) deliverOnce(ctx context.Context, dl *delivery) {
	r, ok := d.attempt(ctx, dl)
	if !ok {
		return // abandoned: stays pending
	}
	switch {
	case r.class == ClassSuccess:
		d.settled(dl)
		d.ack(dl.ackID)
	case r.class == ClassGone:
		d.pause(fmt.Sprintf("%s answered 410 Gone", redactURL(d.cfg.URL)))
	default:
		delay, give := d.nextTry(dl, r)
		d.settled(dl)
		if give {
			d.reject(dl, r)
			return
		}
		if _, err := d.p.svc.Nack(d.settle, []string{dl.ackID}, delay, nil); err != nil {
			d.log.Warn("push: could not schedule a retry; the group redelivers it after its deadline",
				"event", dl.ev.GetId(), "error", relay.ErrorMessage(err))
		}
	}
}

// runKey delivers the queued events of one partition key in order (ordered destinations):
// each is retried in place until it is acknowledged or dead-lettered, and only then is the
// next sent.
func (d *destination) runKey(ctx context.Context, keys *keyQueues, key string) {
	for {
		dl := keys.next(key)
		if dl == nil {
			return
		}
		for {
			select {
			case d.sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			r, ok := d.attempt(ctx, dl)
			<-d.sem
			if !ok {
				return
			}
			if r.class == ClassSuccess {
				d.settled(dl)
				d.ack(dl.ackID)
				break
			}
			if r.class == ClassGone {
				d.pause(fmt.Sprintf("%s answered 410 Gone", redactURL(d.cfg.URL)))
				return
			}
			delay, give := d.nextTry(dl, r)
			if give {
				d.settled(dl)
				d.reject(dl, r)
				break
			}
			if !sleep(ctx, delay) {
				return
			}
			dl.attempt++
		}
		keys.done(key)
	}
}

// nextTry returns the delay before the next attempt, or give when the event is past the
// retry limits (attempts, or an age beyond max_age by the time of the next attempt).
func (d *destination) nextTry(dl *delivery, r result) (delay time.Duration, give bool) {
	rc := d.cfg.Retry
	delay = rc.backoff(dl.attempt)
	if r.retryAfter > 0 {
		delay = min(r.retryAfter, relay.MaxAckDeadline)
	}
	if dl.attempt >= rc.MaxAttempts || time.Since(dl.received)+delay > rc.MaxAge {
		return 0, true
	}
	return delay, false
}

// reject dead-letters dl in the destination's group.
func (d *destination) reject(dl *delivery, r result) {
	if _, err := d.p.svc.Reject(d.settle, []string{dl.ackID}, dl.attempt, nil); err != nil {
		d.log.Warn("push: could not dead-letter an event; the group redelivers it", "event", dl.ev.GetId(), "error", relay.ErrorMessage(err))
		return
	}
	d.deadLettered.Add(1)
	if o := d.p.opts.Observer; o != nil {
		o.DeadLettered(d.cfg.Name)
	}
	d.log.Warn("push: event dead-lettered", "event", dl.ev.GetId(), "source", dl.part.Source, "attempts", dl.attempt, "last_error", r.err)
}

// hold puts dl in the set whose deadlines are extended; settled takes it out.
func (d *destination) hold(dl *delivery) {
	d.holdMu.Lock()
	d.held[dl.ackID] = dl
	d.holdMu.Unlock()
}

func (d *destination) settled(dl *delivery) {
	d.holdMu.Lock()
	delete(d.held, dl.ackID)
	d.holdMu.Unlock()
}

// extend keeps the events in this replica's hands from being redelivered: every extendEvery
// it moves their deadline holdFor ahead. A replica that dies stops extending, and the group
// delivers them again once holdFor has passed.
func (d *destination) extend(ctx context.Context) {
	t := time.NewTicker(extendEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		d.holdMu.Lock()
		ids := make([]string, 0, len(d.held))
		for id := range d.held {
			ids = append(ids, id)
		}
		for len(ids) > 0 && ctx.Err() == nil {
			n := min(len(ids), relay.MaxAckIDs)
			if _, err := d.p.svc.ModifyAckDeadline(ctx, ids[:n], holdFor, nil); err != nil && ctx.Err() == nil {
				d.log.Warn("push: could not extend deadlines", "error", relay.ErrorMessage(err))
			}
			ids = ids[n:]
		}
		d.holdMu.Unlock()
	}
}

// ack acknowledges a settled delivery, on the calling goroutine: with the group's next read
// of its partition where one comes soon (Service.AcknowledgeLater), otherwise at once (a
// store call, bounded by the store's timeout like the retries' Nack). It is written even as
// the subscription ends (settle outlives it): the event was delivered.
func (d *destination) ack(ackID string) {
	if err := d.p.svc.AcknowledgeLater(d.settle, []string{ackID}); err != nil {
		d.log.Warn("push: could not acknowledge a delivery; it will be sent again", "error", relay.ErrorMessage(err))
	}
}

// pause stops the destination until Resume.
func (d *destination) pause(reason string) {
	d.pauseMu.Lock()
	defer d.pauseMu.Unlock()
	if d.paused != "" {
		return
	}
	d.paused = reason
	d.log.Error("push destination paused; resume it with relayctl destinations resume", "reason", reason)
	close(d.changed)
	d.changed = make(chan struct{})
}

func (d *destination) resume() {
	d.pauseMu.Lock()
	defer d.pauseMu.Unlock()
	if d.paused == "" {
		return
	}
	d.paused = ""
	d.log.Info("push destination resumed")
	close(d.changed)
	d.changed = make(chan struct{})
}

// pauseState returns why the destination is paused ("" when it is not) and a channel
// closed at the next change.
func (d *destination) pauseState() (string, <-chan struct{}) {
	d.pauseMu.Lock()
	defer d.pauseMu.Unlock()
	return d.paused, d.changed
}

func (d *destination) pausedReason() string {
	r, _ := d.pauseState()
	return r
}

// watchPause ends the subscription (cancel) when the destination is paused.
func (d *destination) watchPause(ctx context.Context, cancel context.CancelFunc) {
	go func() {
		for {
			reason, ch := d.pauseState()
			if reason != "" {
				cancel()
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-ch:
			}
		}
	}()
}

// waitRunning waits until the destination is not paused; false when ctx ended.
func (d *destination) waitRunning(ctx context.Context) bool {
	for {
		reason, ch := d.pauseState()
		if reason == "" {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-ch:
		}
	}
}

func (d *destination) status() Status {
	s := Status{
		Name: d.cfg.Name, URL: redactURL(d.cfg.URL), Group: d.group, Sources: d.sources, Ordering: d.cfg.Ordering,
		State: d.state.Load().(string), Breaker: d.breaker.State(),
		InFlight: d.inFlight.Load(), Attempts: d.attempts.Load(), Delivered: d.delivered.Load(),
		Failed: d.failed.Load(), DeadLettered: d.deadLettered.Load(),
	}
	if s.PausedReason = d.pausedReason(); s.PausedReason != "" {
		s.State = "paused" // from the pause itself: the state of the subscription lags it
	}
	d.holdMu.Lock()
	s.Held = int64(len(d.held))
	d.holdMu.Unlock()
	d.lastMu.Lock()
	s.LastError, s.LastErrorTime, s.LastDelivered = d.lastError, d.lastErrorTime, d.lastDelivered
	d.lastMu.Unlock()
	return s
}

// sleep waits for d or ctx; false when ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
