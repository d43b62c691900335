package redisstore

import (
	"context"
	"errors"
	"fmt"
	"net"
	neturl "net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eventrelay/eventrelay/relay"
)

// Store is a relay.GroupStore on Redis Streams. It is safe for concurrent use. Create it with
// New (on a client the caller owns) or Open (from a URL; the Store owns the client).
type Store struct {
	client  redis.UniversalClient
	cluster *redis.ClusterClient // non-nil when client is a cluster client
	opts    Options
	owned   bool

	// base is cancelled by Close; blocking reads waiting on it return at once.
	base       context.Context
	cancelBase context.CancelFunc

	// mu guards closed, writers and the wait groups' Add against Close's Wait.
	mu      sync.RWMutex
	closed  atomic.Bool
	writers map[relay.Partition]*writer
	flushWG sync.WaitGroup // append round trips in flight
	readWG  sync.WaitGroup // blocking reads running in the background
	// tasks hands an append round trip or a background read to an idle worker (see run);
	// workerWG counts the workers.
	tasks    chan func()
	workerWG sync.WaitGroup
	workers  atomic.Int32 // running workers (tests)
	inflight inflight     // commands in flight on an owned client (see reap)

	closeOnce sync.Once
	closeErr  error

	onBatch atomic.Pointer[func(relay.Partition, int)] // see ObserveBatches
}

var _ relay.Store = (*Store)(nil)

// ObserveBatches makes the store call fn with the number of appends of every append round
// trip to partition p (a batch-size metric). fn runs on the writer's goroutine: keep it cheap
// and non-blocking. nil stops the calls.
func (s *Store) ObserveBatches(fn func(p relay.Partition, appends int)) {
	if fn == nil {
		s.onBatch.Store(nil)
		return
	}
	s.onBatch.Store(&fn)
}

// New returns a Store on client. The caller keeps ownership of client: Close does not close
// it. opts zero fields take their defaults; an invalid option is an error.
//
// New does not contact Redis: an unreachable Redis surfaces as CodeUnavailable from the
// first call (use Ping for a readiness check).
func New(client redis.UniversalClient, opts Options) (*Store, error) {
	if client == nil {
		return nil, errors.New("redisstore: nil client")
	}
	opts.SetDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	s := &Store{
		client:  client,
		opts:    opts,
		writers: make(map[relay.Partition]*writer),
	}
	s.cluster, _ = client.(*redis.ClusterClient)
	s.base, s.cancelBase = context.WithCancel(context.Background())
	s.tasks = make(chan func())
	return s, nil
}

// Open parses rawURL into a go-redis client that the returned Store owns and closes on Close.
//
//   - redis://[user:password@]host:port[/db][?option=value...] or rediss:// (TLS): one server
//     (go-redis ParseURL options such as dial_timeout, pool_size, protocol are accepted).
//   - cluster=true: a Redis Cluster seed list, redis://h1:p1?addr=h2:p2&addr=h3:p3
//     (go-redis ParseClusterURL).
//   - masterName != "": Redis Sentinel; the URL names the sentinels
//     (redis://[user:password@]s1:26379?addr=s2:26379) and masterName the monitored master
//     (go-redis ParseFailoverURL). The user and password of the URL authenticate to the
//     sentinels and, unless the password= option is given, to the master too.
//
// cluster and masterName are mutually exclusive. The client is built with
// ContextTimeoutEnabled so that OpTimeout is enforced on the socket too, and with one dial
// attempt per new connection (DialerRetries 1, unless a Sentinel URL sets dialer_retries):
// go-redis's default of 5 attempts 100ms apart, repeated on each of its command retries,
// makes a call to an unreachable Redis fail only after about 2s, so webhooks would get their
// 503 at the edge of OpTimeout; with one attempt they get it within milliseconds, and the
// command retries (MaxRetries) still carry a call over a connection broken by a restart.
func Open(rawURL string, cluster bool, masterName string, opts Options) (*Store, error) {
	opts.SetDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	var client redis.UniversalClient
	switch {
	case cluster && masterName != "":
		return nil, errors.New("redisstore: cluster and master_name are mutually exclusive")
	case cluster:
		o, err := redis.ParseClusterURL(rawURL)
		if err != nil {
			return nil, fmt.Errorf("redisstore: cluster url: %w", redactURLError(err))
		}
		clientKnobs{&o.ContextTimeoutEnabled, &o.DialerRetries, &o.PoolSize, &o.MaxActiveConns, &o.PipelinePoolSize, &o.PoolFIFO, &o.ConnMaxIdleTime}.tune(opts)
		client = redis.NewClusterClient(o)
	case masterName != "":
		o, err := redis.ParseFailoverURL(rawURL)
		if err != nil {
			return nil, fmt.Errorf("redisstore: sentinel url: %w", redactURLError(err))
		}
		o.MasterName = masterName
		if o.Password == "" && o.Username == "" {
			o.Username, o.Password = o.SentinelUsername, o.SentinelPassword
		}
		clientKnobs{&o.ContextTimeoutEnabled, &o.DialerRetries, &o.PoolSize, &o.MaxActiveConns, &o.PipelinePoolSize, &o.PoolFIFO, &o.ConnMaxIdleTime}.tune(opts)
		client = redis.NewFailoverClient(o)
	default:
		o, err := redis.ParseURL(rawURL)
		if err != nil {
			return nil, fmt.Errorf("redisstore: url: %w", redactURLError(err))
		}
		clientKnobs{&o.ContextTimeoutEnabled, &o.DialerRetries, &o.PoolSize, &o.MaxActiveConns, &o.PipelinePoolSize, &o.PoolFIFO, &o.ConnMaxIdleTime}.tune(opts)
		client = redis.NewClient(o)
	}
	s, err := New(client, opts)
	if err != nil {
		_ = client.Close()
		return nil, err
	}
	s.owned = true
	client.AddHook(inflightHook{&s.inflight})
	s.readWG.Add(1)
	go func() {
		defer s.readWG.Done()
		s.reap()
	}()
	return s, nil
}

// redactURLError drops the URL (which may hold a password) from a url.Parse error.
func redactURLError(err error) error {
	var ue *neturl.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// Client returns the underlying go-redis client.
func (s *Store) Client() redis.UniversalClient { return s.client }

// Options returns the options in force (with defaults applied).
func (s *Store) Options() Options { return s.opts }

// Close stops the Store: appends not yet sent fail with CodeUnavailable, appends in flight
// are allowed to finish (bounded by OpTimeout), blocking reads return CodeUnavailable at
// once, and the client is closed when the Store owns it (Open). Close waits until every
// goroutine the Store started has exited; with a client it does not own, that may take
// up to the block time of reads in flight. Close is idempotent; later calls return the
// first call's result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed.Store(true)
		var pending []*appendOp
		for p, w := range s.writers {
			pending = append(pending, w.queue...)
			w.queue = nil
			if w.timer != nil {
				w.timer.Stop()
				w.timer = nil
			}
			if w.inflight == 0 {
				delete(s.writers, p)
			}
		}
		s.mu.Unlock()
		for _, op := range pending {
			op.finish(relay.AppendResult{}, errClosed())
		}
		s.cancelBase()
		s.flushWG.Wait()
		if s.owned {
			s.closeErr = s.client.Close()
		}
		s.readWG.Wait()
		s.workerWG.Wait()
	})
	return s.closeErr
}

// ReplicaCounts returns the replicas connected to each master the Store writes to, by the
// master's address ("" for the one master of a standalone or Sentinel-managed setup), read
// from INFO replication within OpTimeout.
func (s *Store) ReplicaCounts(ctx context.Context) (map[string]int, error) {
	if s.closed.Load() {
		return nil, errClosed()
	}
	opCtx, cancel := s.opContext(ctx, 0)
	defer cancel()
	count := func(c redis.Cmdable) (int, error) {
		info, err := c.Info(opCtx, "replication").Result()
		if err != nil {
			return 0, err
		}
		for line := range strings.Lines(info) {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "connected_slaves:"); ok {
				return strconv.Atoi(v)
			}
		}
		return 0, errors.New("INFO replication has no connected_slaves")
	}
	out := map[string]int{}
	if s.cluster != nil {
		var mu sync.Mutex
		err := s.cluster.ForEachMaster(opCtx, func(ctx context.Context, c *redis.Client) error {
			n, err := count(c)
			mu.Lock()
			out[c.Options().Addr] = n
			mu.Unlock()
			return err
		})
		if err != nil {
			return nil, s.fail(ctx, "info", err)
		}
		return out, nil
	}
	n, err := count(s.client)
	if err != nil {
		return nil, s.fail(ctx, "info", err)
	}
	out[""] = n
	return out, nil
}

// Ping checks that Redis answers PING within OpTimeout.
func (s *Store) Ping(ctx context.Context) error {
	if s.closed.Load() {
		return errClosed()
	}
	opCtx, cancel := s.opContext(ctx, 0)
	defer cancel()
	if err := s.client.Ping(opCtx).Err(); err != nil {
		return s.fail(ctx, "ping", err)
	}
	return nil
}

// Keys.

// hashTag is the cluster hash tag of partition p: {<source>:<index>}.
func hashTag(p relay.Partition) string { return "{" + p.Source + ":" + strconv.Itoa(p.Index) + "}" }

// StreamKey returns the key of p's stream: relay:{<source>:<p>}:s.
func StreamKey(p relay.Partition) string { return "relay:" + hashTag(p) + ":s" }

// AddedKey returns the key counting the entries ever appended to p's stream:
// relay:{<source>:<p>}:n. Info reads it where the server does not report entries-added.
func AddedKey(p relay.Partition) string { return "relay:" + hashTag(p) + ":n" }

// DedupeKey returns the key of the dedupe marker of event id in p:
// relay:{<source>:<p>}:d:<id>.
func DedupeKey(p relay.Partition, id string) string { return "relay:" + hashTag(p) + ":d:" + id }

// Field names of stream entries. A main stream entry has only FieldEvent; a dead letter also
// records the group it was dead-lettered from, its delivery count and its original entry id.
const (
	FieldEvent         = "e"
	FieldGroup         = "group"
	FieldDeliveryCount = "delivery_count"
	FieldOriginalID    = "original_id"
)

// Validation at the domain edge.

// MaxDedupeKeyLen is the longest accepted dedupe key (event id), in bytes.
const MaxDedupeKeyLen = 256

func checkPartition(p relay.Partition) error {
	if !relay.ValidSourceName(p.Source) {
		return relay.Errorf(relay.CodeInvalid, "invalid source name %q", p.Source)
	}
	if p.Index < 0 || p.Index >= relay.MaxPartitions {
		return relay.Errorf(relay.CodeInvalid, "partition index %d out of range", p.Index)
	}
	return nil
}

// checkDedupeKey accepts 1..MaxDedupeKeyLen bytes with no control characters: the key is a
// suffix of a Redis key and is never interpreted, so no other character needs escaping.
func checkDedupeKey(k string) error {
	if k == "" {
		return relay.Errorf(relay.CodeInvalid, "event id is empty")
	}
	if len(k) > MaxDedupeKeyLen {
		return relay.Errorf(relay.CodeInvalid, "event id longer than %d bytes", MaxDedupeKeyLen)
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; c < 0x20 || c == 0x7f {
			return relay.Errorf(relay.CodeInvalid, "event id contains a control character")
		}
	}
	return nil
}

// checkName accepts consumer group and consumer names: relay.ValidGroupName.
func checkName(kind, name string) error {
	if !relay.ValidGroupName(name) {
		return relay.Errorf(relay.CodeInvalid, "invalid %s name %q: must match [A-Za-z0-9][A-Za-z0-9._:-]{0,127}", kind, name)
	}
	return nil
}

// Errors.

func errClosed() error {
	return relay.WrapError(relay.CodeUnavailable, errors.New("redisstore: store closed"), "store unavailable")
}

// fail maps an error of a Redis call made on behalf of ctx: the caller's own cancellation or
// deadline is returned wrapped (errors.Is(err, context.Canceled) holds), anything else is
// CodeUnavailable wrapping the cause.
func (s *Store) fail(ctx context.Context, op string, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return relay.WrapError(relay.CodeUnavailable, cerr, "request canceled")
	}
	var rerr *relay.Error
	if errors.As(err, &rerr) {
		return err
	}
	return relay.WrapError(relay.CodeUnavailable, fmt.Errorf("redisstore: %s: %w", op, err), "store unavailable")
}

// isNoGroup reports a NOGROUP error reply (missing stream or consumer group).
func isNoGroup(err error) bool { return redis.HasErrorPrefix(err, "NOGROUP") }

func errNoGroup(p relay.Partition, group string) error {
	return relay.Errorf(relay.CodeNotFound, "consumer group %q not found on %s", group, p)
}

// isNetErr reports a transport-level failure (as opposed to an error reply).
func isNetErr(err error) bool {
	var ne net.Error
	return errors.As(err, &ne)
}

// opContext derives the context of one Redis call: ctx bounded by OpTimeout plus extra.
func (s *Store) opContext(ctx context.Context, extra time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.opts.OpTimeout+extra)
}

// spawn runs fn in a goroutine tracked by the Store (Close waits for it), on a context that
// keeps ctx's values but not its cancellation, bounded by timeout. It returns false, without
// running fn, when the Store is closed.
func (s *Store) spawn(ctx context.Context, timeout time.Duration, fn func(context.Context)) bool {
	s.mu.RLock()
	if s.closed.Load() {
		s.mu.RUnlock()
		return false
	}
	s.readWG.Add(1)
	s.mu.RUnlock()
	s.run(func() {
		defer s.readWG.Done()
		bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
		defer cancel()
		fn(bctx)
	})
	return true
}

// workerIdle is how long a worker waits for its next task before it exits.
const workerIdle = 2 * time.Second

// run runs fn on a goroutine of its own: an idle worker, or a new one. Append round trips
// and background reads run go-redis's command path, whose stack a new goroutine grows (and
// copies) on its first command; workers outlive a task so that the next one finds the stack
// grown. A worker exits after workerIdle without a task, and when the Store is closed. The
// caller counts fn in flushWG or readWG before run, which Close waits for before workerWG.
func (s *Store) run(fn func()) {
	select {
	case s.tasks <- fn:
		return
	default:
	}
	s.workerWG.Add(1)
	go s.worker(fn)
}

func (s *Store) worker(fn func()) {
	s.workers.Add(1)
	defer s.workerWG.Done()
	defer s.workers.Add(-1)
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		fn()
		idle.Reset(workerIdle)
		select {
		case fn = <-s.tasks:
		case <-idle.C:
			return
		case <-s.base.Done():
			return
		}
	}
}

// background runs fn with spawn and returns a channel receiving its error (errClosed when
// the Store is closed).
func (s *Store) background(ctx context.Context, timeout time.Duration, fn func(context.Context) error) <-chan error {
	done := make(chan error, 1)
	if !s.spawn(ctx, timeout, func(bctx context.Context) { done <- fn(bctx) }) {
		done <- errClosed()
	}
	return done
}

// await waits for a background call: its result, the caller's cancellation or Close.
func (s *Store) await(ctx context.Context, done <-chan error) error {
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return relay.WrapError(relay.CodeUnavailable, ctx.Err(), "request canceled")
	case <-s.base.Done():
		return errClosed()
	}
}

// Stream id formatting.

// rangeStart and rangeEnd format range bounds: zero is "-", MaxID is "+".
func rangeStart(id relay.ID) string {
	switch {
	case id.IsZero():
		return "-"
	case id == relay.MaxID:
		return "+"
	}
	return id.String()
}

func rangeEnd(id relay.ID) string {
	if id == relay.MaxID {
		return "+"
	}
	return id.String()
}

func parseID(s string) (relay.ID, error) {
	id, err := relay.ParseID(s)
	if err != nil {
		return relay.ID{}, fmt.Errorf("redisstore: %w", err)
	}
	return id, nil
}

// toEntries converts stream messages; messages without the event field (entries deleted
// while pending) are skipped and their ids returned in gone.
func toEntries(msgs []redis.XMessage) (entries []relay.Entry, gone []string, err error) {
	entries = make([]relay.Entry, 0, len(msgs))
	for _, m := range msgs {
		v, ok := m.Values[FieldEvent]
		if !ok {
			gone = append(gone, m.ID)
			continue
		}
		id, err := parseID(m.ID)
		if err != nil {
			return nil, nil, err
		}
		entries = append(entries, relay.Entry{ID: id, Event: toBytes(v)})
	}
	return entries, gone, nil
}

func toBytes(v any) []byte {
	switch v := v.(type) {
	case string:
		return []byte(v)
	case []byte:
		return append([]byte(nil), v...)
	}
	return nil
}

func toInt(v any) int64 {
	switch v := v.(type) {
	case int64:
		return v
	case string:
		n, _ := strconv.ParseInt(v, 10, 64)
		return n
	}
	return 0
}
