package server

import (
	"context"
	"errors"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/eventrelay/eventrelay/relay"
	"github.com/eventrelay/eventrelay/relay/redisstore"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
)

// Metrics are eventrelay's Prometheus metrics, all prefixed eventrelay_. A nil *Metrics
// observes nothing, so tests and embedders may leave it out.
type Metrics struct {
	Registry *prometheus.Registry

	requests      *prometheus.CounterVec
	verifyFails   *prometheus.CounterVec
	verifyKeys    *prometheus.CounterVec
	appendSeconds *prometheus.HistogramVec
	ingestedTotal *prometheus.CounterVec
	dedupeHits    *prometheus.CounterVec
	subscribers   prometheus.Gauge
	deliveries    *prometheus.CounterVec
	redeliveries  *prometheus.CounterVec
	acks          prometheus.Counter
	storeErrors   prometheus.Counter
	batchSize     *prometheus.HistogramVec
	redisErrors   *prometheus.CounterVec
}

// NewMetrics registers eventrelay's metrics (and the Go and process collectors) in a new
// registry.
func NewMetrics() *Metrics {
	r := prometheus.NewRegistry()
	m := &Metrics{
		Registry: r,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventrelay_webhook_requests_total", Help: "Webhook requests by source and HTTP status.",
		}, []string{"source", "status"}),
		verifyFails: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventrelay_verification_failures_total", Help: "Rejected webhook signatures by source and reason.",
		}, []string{"source", "reason"}),
		verifyKeys: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventrelay_verifications_total", Help: "Accepted webhook signatures by source and matching key (index or id).",
		}, []string{"source", "key"}),
		appendSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "eventrelay_append_duration_seconds", Help: "Time from a verified request to the store's acknowledgement.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"source"}),
		ingestedTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventrelay_events_ingested_total", Help: "Events appended, by source.",
		}, []string{"source"}),
		dedupeHits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventrelay_dedupe_hits_total", Help: "Deliveries already stored within the dedupe window, by source.",
		}, []string{"source"}),
		subscribers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "eventrelay_subscribers", Help: "Open Subscribe streams.",
		}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventrelay_deliveries_total", Help: "Events sent on Subscribe streams, by source.",
		}, []string{"source"}),
		redeliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventrelay_redeliveries_total", Help: "Group deliveries with attempt > 1, by source.",
		}, []string{"source"}),
		acks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eventrelay_acks_total", Help: "Acknowledged group deliveries.",
		}),
		storeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eventrelay_store_errors_total", Help: "Requests that failed because the store (Redis) was unavailable.",
		}),
		batchSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "eventrelay_append_batch_size", Help: "Appends per pipelined Redis round trip (group commit), by source.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024},
		}, []string{"source"}),
		redisErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventrelay_redis_errors_total", Help: "Failed Redis commands (network errors, timeouts, error replies), by command.",
		}, []string{"command"}),
	}
	r.MustRegister(m.requests, m.verifyFails, m.verifyKeys, m.appendSeconds, m.ingestedTotal, m.dedupeHits,
		m.subscribers, m.deliveries, m.redeliveries, m.acks, m.storeErrors, m.batchSize, m.redisErrors,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *Metrics) request(source string, status int) {
	if m != nil {
		m.requests.WithLabelValues(source, strconv.Itoa(status)).Inc()
	}
}

func (m *Metrics) verifyFailed(source, reason string) {
	if m != nil {
		m.verifyFails.WithLabelValues(source, reason).Inc()
	}
}

func (m *Metrics) verifiedKey(source, key string) {
	if m != nil {
		m.verifyKeys.WithLabelValues(source, key).Inc()
	}
}

func (m *Metrics) appended(source string, d time.Duration) {
	if m != nil {
		m.appendSeconds.WithLabelValues(source).Observe(d.Seconds())
	}
}

func (m *Metrics) ingested(source string, duplicate bool) {
	if m == nil {
		return
	}
	if duplicate {
		m.dedupeHits.WithLabelValues(source).Inc()
	} else {
		m.ingestedTotal.WithLabelValues(source).Inc()
	}
}

func (m *Metrics) subscriberAdd(n float64) {
	if m != nil {
		m.subscribers.Add(n)
	}
}

func (m *Metrics) delivered(source string, attempt int) {
	if m == nil {
		return
	}
	m.deliveries.WithLabelValues(source).Inc()
	if attempt > 1 {
		m.redeliveries.WithLabelValues(source).Inc()
	}
}

func (m *Metrics) acked(n int) {
	if m != nil && n > 0 {
		m.acks.Add(float64(n))
	}
}

func (m *Metrics) storeError() {
	if m != nil {
		m.storeErrors.Inc()
	}
}

// ObserveBatch records one append round trip of n appends to a partition of source (wire it
// to redisstore.Store.ObserveBatches).
func (m *Metrics) ObserveBatch(source string, n int) {
	if m != nil {
		m.batchSize.WithLabelValues(source).Observe(float64(n))
	}
}

// RedisHook returns a go-redis hook that counts failed commands in
// eventrelay_redis_errors_total: network errors, timeouts and error replies. Not errors: a nil
// reply (redis.Nil), NOSCRIPT (the script is then loaded and retried), a canceled caller.
func (m *Metrics) RedisHook() redis.Hook { return redisHook{m} }

type redisHook struct{ m *Metrics }

func (h redisHook) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := next(ctx, network, addr)
		if err != nil && ctx.Err() == nil {
			h.m.redisError("dial")
		}
		return c, err
	}
}

func (h redisHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.observe(ctx, cmd, err)
		return err
	}
}

func (h redisHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		for _, c := range cmds {
			h.observe(ctx, c, c.Err())
		}
		return err
	}
}

// redisCommands bounds the command label: anything else is "other".
var redisCommands = map[string]bool{
	"dial": true, "ping": true, "evalsha": true, "eval": true, "xadd": true, "xrange": true, "xrevrange": true,
	"xread": true, "xreadgroup": true, "xautoclaim": true, "xack": true, "xgroup": true, "xinfo": true,
	"xlen": true, "xpending": true, "xclaim": true, "get": true, "set": true, "wait": true, "multi": true,
	"exec": true, "hsetnx": true, "hget": true, "hgetall": true, "exists": true, "script": true,
}

// observe counts err, the outcome of cmd (the error a command returns is not yet on the
// command when a hook sees it).
func (h redisHook) observe(ctx context.Context, cmd redis.Cmder, err error) {
	if err == nil {
		err = cmd.Err()
	}
	if err == nil || errors.Is(err, redis.Nil) || redis.HasErrorPrefix(err, "NOSCRIPT") ||
		errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return
	}
	name := strings.ToLower(cmd.Name())
	if name == "client" || name == "hello" {
		return // connection set-up that go-redis tolerates (CLIENT SETINFO before Redis 7.2)
	}
	if !redisCommands[name] {
		name = "other"
	}
	h.m.redisError(name)
}

func (m *Metrics) redisError(command string) {
	if m != nil {
		m.redisErrors.WithLabelValues(command).Inc()
	}
}

// WatchStreams registers a collector that reads, on every scrape, the state of each source's
// streams: eventrelay_stream_length (entries retained), eventrelay_dead_letters (entries in
// the dead-letter streams of all its groups), and per consumer group eventrelay_group_lag (entries not yet
// delivered to the group) and eventrelay_group_pending (delivered, not acknowledged), summed
// over the source's partitions. The reads are pipelined and bounded by timeout; when Redis
// does not answer in time the scrape carries none of these series (and
// eventrelay_stream_scrape_errors_total counts it) rather than stale values.
func (m *Metrics) WatchStreams(svc *relay.Service, client redis.UniversalClient, timeout time.Duration) {
	if m == nil {
		return
	}
	c := &streamCollector{svc: svc, client: client, timeout: timeout,
		length:  prometheus.NewDesc("eventrelay_stream_length", "Entries retained in the source's streams (all partitions).", []string{"source"}, nil),
		dead:    prometheus.NewDesc("eventrelay_dead_letters", "Entries in the source's dead-letter streams (all partitions).", []string{"source"}, nil),
		lag:     prometheus.NewDesc("eventrelay_group_lag", "Entries of the source not yet delivered to the consumer group (all partitions).", []string{"source", "group"}, nil),
		pending: prometheus.NewDesc("eventrelay_group_pending", "Entries delivered to the consumer group and not yet acknowledged (all partitions).", []string{"source", "group"}, nil),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eventrelay_stream_scrape_errors_total", Help: "Scrapes that could not read the stream state from Redis.",
		}),
	}
	m.Registry.MustRegister(c)
}

type streamCollector struct {
	svc                        *relay.Service
	client                     redis.UniversalClient
	timeout                    time.Duration
	length, dead, lag, pending *prometheus.Desc
	errors                     prometheus.Counter
}

func (c *streamCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.length
	ch <- c.dead
	ch <- c.lag
	ch <- c.pending
	c.errors.Describe(ch)
}

// lagScanLimit bounds the entries counted when Redis cannot report a group's lag itself (the
// embedded store, or entries deleted from the stream); beyond it the lag is left out.
const lagScanLimit = 1000

func (c *streamCollector) Collect(ch chan<- prometheus.Metric) {
	defer c.errors.Collect(ch)
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	type part struct {
		p         relay.Partition
		xlen      *redis.IntCmd
		dlq       []*redis.IntCmd // per group: its dead letters
		exists    *redis.IntCmd
		groups    *redis.XInfoGroupsCmd
		lastEntry *redis.XMessageSliceCmd
		// tail holds the newest entries after the oldest last-delivered id of the groups
		// whose lag Redis does not know (at most lagScanLimit, newest first): one read per
		// partition, however many groups.
		tail *redis.XMessageSliceCmd
	}
	var parts []*part
	for _, name := range c.svc.SourceNames() {
		src, err := c.svc.Source(name)
		if err != nil {
			continue
		}
		for _, p := range src.Partitions() {
			parts = append(parts, &part{p: p})
		}
	}
	// One round trip for lengths and existence, one for the groups of existing streams,
	// one for lags Redis does not track.
	pipe := c.client.Pipeline()
	for _, pt := range parts {
		pt.xlen = pipe.XLen(ctx, redisstore.StreamKey(pt.p))
		pt.exists = pipe.Exists(ctx, redisstore.StreamKey(pt.p))
		pt.lastEntry = pipe.XRevRangeN(ctx, redisstore.StreamKey(pt.p), "+", "-", 1)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		c.errors.Inc()
		return
	}
	pipe = c.client.Pipeline()
	n := 0
	for _, pt := range parts {
		if pt.exists.Val() > 0 {
			pt.groups = pipe.XInfoGroups(ctx, redisstore.StreamKey(pt.p))
			n++
		}
	}
	if n > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			c.errors.Inc()
			return
		}
	}
	pipe = c.client.Pipeline()
	n = 0
	for _, pt := range parts {
		if pt.groups == nil {
			continue
		}
		for _, g := range pt.groups.Val() {
			pt.dlq = append(pt.dlq, pipe.XLen(ctx, redisstore.DeadLetterKey(pt.p, g.Name)))
			n++
		}
		last := ""
		if es := pt.lastEntry.Val(); len(es) > 0 {
			last = es[0].ID
		}
		oldest := ""
		for _, g := range pt.groups.Val() {
			if lagKnown(g) || last == "" || !idLess(g.LastDeliveredID, last) {
				continue
			}
			if oldest == "" || idLess(g.LastDeliveredID, oldest) {
				oldest = g.LastDeliveredID
			}
		}
		if oldest != "" {
			pt.tail = pipe.XRevRangeN(ctx, redisstore.StreamKey(pt.p), "+", "("+oldest, lagScanLimit)
			n++
		}
	}
	if n > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			c.errors.Inc()
			return
		}
	}

	type groupKey struct{ source, group string }
	length, dead := map[string]int64{}, map[string]int64{}
	lag, pending := map[groupKey]int64{}, map[groupKey]int64{}
	for _, pt := range parts {
		s := pt.p.Source
		length[s] += pt.xlen.Val()
		dead[s] += 0 // present for every source, with or without groups
		for _, d := range pt.dlq {
			dead[s] += d.Val()
		}
		if pt.groups == nil {
			continue
		}
		last := ""
		if es := pt.lastEntry.Val(); len(es) > 0 {
			last = es[0].ID
		}
		for _, g := range pt.groups.Val() {
			k := groupKey{s, g.Name}
			pending[k] += g.Pending
			var l int64
			switch {
			case lagKnown(g):
				l = g.Lag
			case last == "" || !idLess(g.LastDeliveredID, last):
				l = 0
			default:
				l = tailLag(pt.tail.Val(), g.LastDeliveredID)
			}
			if prev, seen := lag[k]; l < 0 || (seen && prev < 0) {
				lag[k] = -1
			} else {
				lag[k] = prev + l
			}
		}
	}
	for s, v := range length {
		ch <- prometheus.MustNewConstMetric(c.length, prometheus.GaugeValue, float64(v), s)
	}
	for s, v := range dead {
		ch <- prometheus.MustNewConstMetric(c.dead, prometheus.GaugeValue, float64(v), s)
	}
	for k, v := range pending {
		ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(v), k.source, k.group)
	}
	for k, v := range lag {
		if v >= 0 {
			ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, float64(v), k.source, k.group)
		}
	}
}

// tailLag counts the entries of tail (the newest entries of a stream, newest first, at most
// lagScanLimit) after the id last: the lag of a group that last read last. -1 when tail was
// cut at lagScanLimit before reaching last (the lag is larger than the scan).
func tailLag(tail []redis.XMessage, last string) int64 {
	n := sort.Search(len(tail), func(i int) bool { return !idLess(last, tail[i].ID) })
	if n == len(tail) && len(tail) >= lagScanLimit {
		return -1
	}
	return int64(n)
}

// lagKnown reports whether Redis tracked the group's lag (Redis 7: entries-read is counted;
// a group that has read nothing has a trivially right lag).
func lagKnown(g redis.XInfoGroup) bool {
	return g.Lag >= 0 && (g.EntriesRead > 0 || g.LastDeliveredID == "0-0")
}

// idLess compares two stream ids; an unparseable id is never less.
func idLess(a, b string) bool {
	x, err1 := relay.ParseID(a)
	y, err2 := relay.ParseID(b)
	return err1 == nil && err2 == nil && x.Less(y)
}
