package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventrelayv1 "github.com/eventrelay/eventrelay/gen/eventrelay/v1"
	"github.com/eventrelay/eventrelay/relay"
)

// Redis helpers shared by the streaming phases.

// lastID returns the id of the newest entry of key (zero when empty or missing).
func lastID(ctx context.Context, rdb *redis.Client, key string) (relay.ID, error) {
	msgs, err := rdb.XRevRangeN(ctx, key, "+", "-", 1).Result()
	if err != nil || len(msgs) == 0 {
		return relay.ID{}, err
	}
	return relay.ParseID(msgs[0].ID)
}

// eventBytes is a serialized eventrelay.v1.Event like the ones relayd stores for the
// benchmark's webhooks (id, source, type, times, content type, the JSON body, verification).
func eventBytes(source, id string, body []byte) []byte {
	now := timestamppb.Now()
	b, _ := proto.Marshal(&eventrelayv1.Event{
		Id: id, Source: source, Type: "order.created", Time: now, ReceivedTime: now,
		DataContentType: "application/json", Data: body, PartitionKey: id,
		Verification: &eventrelayv1.Verification{Provider: "hmac", Scheme: "hmac-sha256"},
	})
	return b
}

// producer appends events straight to a stream (pipelined XADD), bypassing HTTP ingest, so
// the streaming phases measure delivery and not ingest.
type producer struct {
	rdb    *redis.Client
	key    string
	field  string // "e" for relay streams
	source string
	sg     *signer
	seq    int64
	body   []byte
}

func (p *producer) add(ctx context.Context, n int) error {
	pipe := p.rdb.Pipeline()
	for range n {
		p.seq++
		p.body = p.sg.body(p.body, p.seq)
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: p.key, Values: []any{p.field, eventBytes(p.source, p.sg.id(p.seq), p.body)}})
	}
	_, err := pipe.Exec(ctx)
	return err
}

func subscribeRequest(source string, after string) []byte {
	b, _ := proto.Marshal(&eventrelayv1.SubscribeRequest{Sources: []string{source}, AfterCursor: after,
		HeartbeatInterval: durationpb.New(15 * time.Second), Filter: subFilter, MaxBatch: int32(subBatch)})
	return b
}

// ---- (b) end-to-end latency -------------------------------------------------------------

type e2eResult struct {
	name              string
	sent, acked, recv int64
	missing           int64     // acknowledged but not received
	lat               latencies // intended send time → receipt on the stream
	post              latencies // POST → its answer
	rate              float64
	lateMax           time.Duration // worst lateness of the request scheduler
	firstErr          string
}

// fixedRate POSTs signed webhooks at rate per second for d from conns connections and
// returns the intended send time of every seq (index seq-1) and the acknowledged seqs. The
// schedule is open loop: a slow answer does not delay the next request's intended time, and
// latency is measured from the intended time.
func fixedRate(addr, path string, sg *signer, rate float64, d time.Duration, conns int, sched []atomic.Int64) (acked []int64, post latencies, sent int64, lateMax time.Duration, firstErr string) {
	total := int64(rate * d.Seconds())
	interval := time.Duration(float64(time.Second) / rate)
	ch := make(chan int64, 4096)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := newHTTPConn(addr)
			defer c.close()
			var body []byte
			hdr := [][2]string{{"Content-Type", "application/json"}, {"X-Signature", ""}}
			var mine []int64
			var lat latencies
			for n := range ch {
				body = sg.body(body, n)
				hdr[1][1] = sg.sign(body)
				t0 := time.Now()
				status, resp, err := c.post(path, hdr, body)
				if err == nil && status/100 == 2 {
					lat = append(lat, time.Since(t0))
					mine = append(mine, n)
					continue
				}
				mu.Lock()
				if firstErr == "" {
					if err != nil {
						firstErr = err.Error()
					} else {
						firstErr = fmt.Sprintf("HTTP %d: %.200s", status, resp)
					}
				}
				mu.Unlock()
			}
			mu.Lock()
			acked = append(acked, mine...)
			post = append(post, lat...)
			mu.Unlock()
		}()
	}
	start := time.Now()
	for i := int64(1); i <= total; i++ {
		at := start.Add(time.Duration(i-1) * interval)
		if wait := time.Until(at); wait > 0 {
			time.Sleep(wait)
		} else if late := -wait; late > lateMax {
			lateMax = late
		}
		sched[i].Store(at.UnixNano())
		ch <- i
	}
	close(ch)
	wg.Wait()
	return acked, post.sorted(), total, lateMax, firstErr
}

// receiptRecorder turns received event ids into latencies from their intended send time.
type receiptRecorder struct {
	prefix string
	sched  []atomic.Int64
	mu     sync.Mutex
	lat    latencies
	seen   map[int64]bool
}

func (r *receiptRecorder) record(id string, now time.Time) {
	s, ok := strings.CutPrefix(id, r.prefix)
	if !ok {
		return
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n >= int64(len(r.sched)) {
		return
	}
	at := r.sched[n].Load()
	if at == 0 {
		return
	}
	r.mu.Lock()
	if !r.seen[n] {
		r.seen[n] = true
		r.lat = append(r.lat, now.Sub(time.Unix(0, at)))
	}
	r.mu.Unlock()
}

func (r *receiptRecorder) result(name string, acked []int64, sent int64, rate float64, lateMax time.Duration, firstErr string) *e2eResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	res := &e2eResult{name: name, sent: sent, acked: int64(len(acked)), recv: int64(len(r.seen)), rate: rate,
		lat: r.lat.sorted(), lateMax: lateMax, firstErr: firstErr}
	for _, n := range acked {
		if !r.seen[n] {
			res.missing++
		}
	}
	return res
}

func (r *receiptRecorder) waitFor(acked func() int64, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		r.mu.Lock()
		n := int64(len(r.seen))
		r.mu.Unlock()
		if n >= acked() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// e2eRelay measures POST → receipt on a relayd Subscribe stream.
func e2eRelay(t *relaydTarget, source string, secret []byte, runID string, rate float64, d time.Duration, conns int) (*e2eResult, error) {
	total := int64(rate*d.Seconds()) + 1
	rec := &receiptRecorder{prefix: "e2e-" + runID + "-", sched: make([]atomic.Int64, total+1), seen: map[int64]bool{}}
	primed := make(chan struct{}, 1)
	sub, err := subscribe(t.grpcAddr, subscribeRequest(source, ""), func(msg []byte) {
		now := time.Now()
		id, ok := deliveryEventID(msg)
		if !ok {
			return
		}
		if strings.HasPrefix(id, "prime-"+runID) {
			select {
			case primed <- struct{}{}:
			default:
			}
			return
		}
		rec.record(id, now)
	})
	if err != nil {
		return nil, err
	}
	defer sub.close()
	path := "/v1/webhooks/" + source
	if err := prime(t.httpAddr, path, &signer{secret: secret, prefix: "prime-" + runID + "-e2e-"}, primed, sub); err != nil {
		return nil, err
	}
	sg := &signer{secret: secret, prefix: rec.prefix}
	acked, post, sent, lateMax, firstErr := fixedRate(t.httpAddr, path, sg, rate, d, conns, rec.sched)
	rec.waitFor(func() int64 { return int64(len(acked)) }, 3*time.Second)
	if err := sub.Err(); err != nil && firstErr == "" {
		firstErr = "subscriber: " + err.Error()
	}
	res := rec.result("relayd", acked, sent, rate, lateMax, firstErr)
	res.post = post
	return res, nil
}

// prime posts webhooks until the subscriber receives one: the stream is then registered with
// the shared reader (headers are sent before that).
func prime(httpAddr, path string, sg *signer, primed <-chan struct{}, sub *h2sub) error {
	c := newHTTPConn(httpAddr)
	defer c.close()
	var body []byte
	hdr := [][2]string{{"Content-Type", "application/json"}, {"X-Signature", ""}}
	deadline := time.Now().Add(15 * time.Second)
	for n := int64(1); time.Now().Before(deadline); n++ {
		body = sg.body(body, n)
		hdr[1][1] = sg.sign(body)
		status, resp, err := c.post(path, hdr, body)
		if err != nil || status/100 != 2 {
			return fmt.Errorf("priming POST: status %d %s: %v", status, resp, err)
		}
		select {
		case <-primed:
			return nil
		case <-sub.done:
			return fmt.Errorf("subscriber ended: %v", sub.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return errors.New("subscriber received nothing within 15s")
}

// e2eBaseline measures POST → receipt with the hand-written receiver and a go-redis
// XREAD BLOCK consumer on its stream.
func e2eBaseline(ctx context.Context, b *baseline, rdb *redis.Client, runID string, rate float64, d time.Duration, conns int) (*e2eResult, error) {
	total := int64(rate*d.Seconds()) + 1
	rec := &receiptRecorder{prefix: "e2eb-" + runID + "-", sched: make([]atomic.Int64, total+1), seen: map[int64]bool{}}
	from, err := lastID(ctx, rdb, b.stream)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		last := from.String()
		for cctx.Err() == nil {
			res, err := rdb.XRead(cctx, &redis.XReadArgs{Streams: []string{b.stream, last}, Count: 1000, Block: time.Second}).Result()
			if err != nil {
				continue
			}
			now := time.Now()
			for _, st := range res {
				for _, m := range st.Messages {
					last = m.ID
					if id, ok := m.Values["id"].(string); ok {
						rec.record(id, now)
					}
				}
			}
		}
	}()
	sg := &signer{secret: b.secret, prefix: rec.prefix}
	acked, post, sent, lateMax, firstErr := fixedRate(b.addr, "/v1/webhooks/baseline", sg, rate, d, conns, rec.sched)
	rec.waitFor(func() int64 { return int64(len(acked)) }, 3*time.Second)
	cancel()
	wg.Wait()
	res := rec.result("hand-written", acked, sent, rate, lateMax, firstErr)
	res.post = post
	return res, nil
}

// ---- (c) fan-out -------------------------------------------------------------------------

type fanoutResult struct {
	name       string
	subs       int
	events     int64 // produced in the window
	deliveries int64 // received in the window, all subscribers
	perSec     float64
	ended      int // subscribers that ended early (cut, error)
	firstErr   string
	cpu        *cpuMeter // over the measured window
}

// counter is a subscriber's running count of deliveries.
type counter interface{ count() int64 }

type h2counter struct{ s *h2sub }

func (c h2counter) count() int64 { return c.s.deliveries.Load() }

type atomicCounter struct{ n atomic.Int64 }

func (c *atomicCounter) count() int64 { return c.n.Load() }

// drive produces into p for d keeping at most window events ahead of the slowest
// subscriber, and returns the events produced and deliveries received in the window.
func drive(ctx context.Context, p *producer, subs []counter, window int64, d time.Duration) (events, deliveries int64, err error) {
	base := make([]int64, len(subs))
	for i, s := range subs {
		base[i] = s.count()
	}
	const batch = 100
	start := time.Now()
	end := start.Add(d)
	var produced int64
	for time.Now().Before(end) {
		slowest := int64(-1)
		for i, s := range subs {
			if got := s.count() - base[i]; slowest < 0 || got < slowest {
				slowest = got
			}
		}
		if produced-slowest > window-batch {
			time.Sleep(50 * time.Microsecond)
			continue
		}
		if err := p.add(ctx, batch); err != nil {
			return 0, 0, err
		}
		produced += batch
	}
	for i, s := range subs {
		deliveries += s.count() - base[i]
	}
	return produced, deliveries, nil
}

// fanoutRelay measures deliveries/s from relayd to m tail subscribers, each on its own
// connection, events appended straight to the source's stream.
func fanoutRelay(ctx context.Context, t *relaydTarget, rdb *redis.Client, source, streamKey string, runID string, m int, window int64, d time.Duration) (*fanoutResult, error) {
	subs := make([]*h2sub, 0, m)
	defer func() {
		for _, s := range subs {
			s.close()
		}
	}()
	req := subscribeRequest(source, "")
	for range m {
		s, err := subscribe(t.grpcAddr, req, nil)
		if err != nil {
			return nil, err
		}
		subs = append(subs, s)
	}
	p := &producer{rdb: rdb, key: streamKey, field: "e", source: source, sg: &signer{prefix: "fan-" + runID + "-"}}
	// Prime until every subscriber is registered with the shared reader.
	deadline := time.Now().Add(20 * time.Second)
	for {
		if err := p.add(ctx, 1); err != nil {
			return nil, err
		}
		all := true
		for _, s := range subs {
			if s.deliveries.Load() == 0 {
				all = false
				break
			}
		}
		if all {
			break
		}
		if time.Now().After(deadline) {
			return nil, errors.New("fan-out subscribers not all registered within 20s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	cs := make([]counter, len(subs))
	for i, s := range subs {
		cs[i] = h2counter{s}
	}
	cpu := startCPU(t.pid, rdb)
	events, deliveries, err := drive(ctx, p, cs, window, d)
	if err != nil {
		return nil, err
	}
	r := &fanoutResult{name: "relayd", subs: m, events: events, deliveries: deliveries, perSec: float64(deliveries) / d.Seconds(), cpu: cpu.stop()}
	for _, s := range subs {
		select {
		case <-s.done:
			r.ended++
			if r.firstErr == "" && s.Err() != nil {
				r.firstErr = s.Err().Error()
			}
		default:
		}
	}
	return r, nil
}

// fanoutBaseline: m goroutines each running its own blocking XREAD loop on one stream, what
// a user would write with go-redis instead of a shared reader.
func fanoutBaseline(ctx context.Context, redisURL, key, runID string, m int, window int64, d time.Duration) (*fanoutResult, error) {
	opt, err := redis.ParseURL(redisURL)
	if err != nil {
		return nil, err
	}
	opt.PoolSize = m + 16
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	from, err := lastID(ctx, rdb, key)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	cs := make([]counter, m)
	for i := range m {
		c := &atomicCounter{}
		cs[i] = c
		wg.Add(1)
		go func() {
			defer wg.Done()
			last := from.String()
			for cctx.Err() == nil {
				res, err := rdb.XRead(cctx, &redis.XReadArgs{Streams: []string{key, last}, Count: 1000, Block: time.Second}).Result()
				if err != nil {
					continue
				}
				for _, st := range res {
					if n := len(st.Messages); n > 0 {
						last = st.Messages[n-1].ID
						c.n.Add(int64(n))
					}
				}
			}
		}()
	}
	defer func() { cancel(); wg.Wait() }()
	p := &producer{rdb: rdb, key: key, field: "e", source: "baseline", sg: &signer{prefix: "fanb-" + runID + "-"}}
	cpu := startCPU(0, rdb)
	events, deliveries, err := drive(ctx, p, cs, window, d)
	if err != nil {
		return nil, err
	}
	return &fanoutResult{name: "hand-written", subs: m, events: events, deliveries: deliveries, perSec: float64(deliveries) / d.Seconds(), cpu: cpu.stop()}, nil
}

// ---- (d) replay --------------------------------------------------------------------------

type replayResult struct {
	name     string
	events   int64
	elapsed  time.Duration
	perSec   float64
	firstErr string
	cpu      *cpuMeter
}

// fill appends n events to key and returns the id before the first.
func fill(ctx context.Context, rdb *redis.Client, key, source, runID string, n int) (relay.ID, error) {
	from, err := lastID(ctx, rdb, key)
	if err != nil {
		return relay.ID{}, err
	}
	p := &producer{rdb: rdb, key: key, field: "e", source: source, sg: &signer{prefix: "rep-" + runID + "-"}}
	for done := 0; done < n; {
		k := min(1000, n-done)
		if err := p.add(ctx, k); err != nil {
			return relay.ID{}, err
		}
		done += k
	}
	return from, nil
}

// replayRelay subscribes after the cursor just before the filled events and times the
// delivery of n of them.
func replayRelay(t *relaydTarget, rdb *redis.Client, p relay.Partition, from relay.ID, n int64) (*replayResult, error) {
	cursor := relay.EncodeCursor(relay.Cursor{Positions: map[relay.Partition]relay.ID{p: from}})
	cpu := startCPU(t.pid, rdb)
	start := time.Now()
	s, err := subscribe(t.grpcAddr, subscribeRequest(p.Source, cursor), nil)
	if err != nil {
		return nil, err
	}
	defer s.close()
	deadline := start.Add(2 * time.Minute)
	for s.deliveries.Load() < n {
		select {
		case <-s.done:
			return &replayResult{name: "relayd", events: s.deliveries.Load(), firstErr: fmt.Sprint(s.Err())}, nil
		case <-time.After(200 * time.Microsecond):
		}
		if time.Now().After(deadline) {
			return &replayResult{name: "relayd", events: s.deliveries.Load(), firstErr: "timeout"}, nil
		}
	}
	el := time.Since(start)
	return &replayResult{name: "relayd", events: n, elapsed: el, perSec: float64(n) / el.Seconds(), cpu: cpu.stop()}, nil
}

// replayBaseline reads the same entries with go-redis XRANGE in batches of 1000.
func replayBaseline(ctx context.Context, rdb *redis.Client, key string, from relay.ID, n int64) (*replayResult, error) {
	cpu := startCPU(0, rdb)
	start := time.Now()
	var got int64
	lo := "(" + from.String()
	if from.IsZero() {
		lo = "-"
	}
	for got < n {
		msgs, err := rdb.XRangeN(ctx, key, lo, "+", 1000).Result()
		if err != nil {
			return nil, err
		}
		if len(msgs) == 0 {
			break
		}
		got += int64(len(msgs))
		lo = "(" + msgs[len(msgs)-1].ID
	}
	el := time.Since(start)
	return &replayResult{name: "hand-written", events: got, elapsed: el, perSec: float64(got) / el.Seconds(), cpu: cpu.stop()}, nil
}

// ---- (e) idle subscribers ---------------------------------------------------------------

type idleResult struct {
	subs, conns     int
	before, after   int64
	source          string
	open            int
	firstErr        string
	goroutinesAfter string
}

// rawCodec lets the idle subscribers receive without decoding.
type rawCodec struct{ proto encoding.CodecV2 }

type rawMsg struct{}

func (c rawCodec) Marshal(v any) (mem.BufferSlice, error) { return c.proto.Marshal(v) }
func (c rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if _, ok := v.(*rawMsg); ok {
		return nil
	}
	return c.proto.Unmarshal(data, v)
}
func (c rawCodec) Name() string { return "proto" }

// idleRelay opens k tail subscriptions over conns grpc-go connections, waits for them to
// settle and reads relayd's RSS.
func idleRelay(t *relaydTarget, source string, k, conns int, settle time.Duration) (*idleResult, error) {
	r := &idleResult{subs: k, conns: conns}
	var err error
	if r.before, r.source, err = t.rssBytes(); err != nil {
		return nil, err
	}
	codec := rawCodec{proto: encoding.GetCodecV2("proto")}
	ccs := make([]*grpc.ClientConn, conns)
	for i := range ccs {
		ccs[i], err = grpc.NewClient("passthrough:///"+t.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.ForceCodecV2(codec)))
		if err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
		for _, cc := range ccs {
			_ = cc.Close()
		}
	}()
	req := &eventrelayv1.SubscribeRequest{Sources: []string{source}, HeartbeatInterval: durationpb.New(15 * time.Second)}
	desc := &grpc.StreamDesc{StreamName: "Subscribe", ServerStreams: true}
	var open atomic.Int64
	var errMu sync.Mutex
	for i := range k {
		cs, err := ccs[i%conns].NewStream(ctx, desc, "/eventrelay.v1.EventService/Subscribe")
		if err != nil {
			return nil, err
		}
		if err := cs.SendMsg(req); err != nil {
			return nil, err
		}
		_ = cs.CloseSend()
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := cs.Header(); err == nil {
				open.Add(1)
			}
			for {
				if err := cs.RecvMsg(&rawMsg{}); err != nil {
					if ctx.Err() == nil {
						errMu.Lock()
						if r.firstErr == "" {
							r.firstErr = err.Error()
						}
						errMu.Unlock()
					}
					return
				}
			}
		}()
	}
	deadline := time.Now().Add(30 * time.Second)
	for open.Load() < int64(k) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(settle)
	r.open = int(open.Load())
	if r.after, _, err = t.rssBytes(); err != nil {
		return nil, err
	}
	return r, nil
}

// verifyStreams reads keys after froms and returns how many of the acknowledged seqs (ids
// prefix+seq) are in none of them. Relay streams hold serialized Events (field "e"), the
// baseline's entries an "id" field.
func verifyStreams(ctx context.Context, rdb *redis.Client, keys []string, froms []relay.ID, prefix string, acked []int64) (missing int64, err error) {
	want := make(map[int64]bool, len(acked))
	for _, n := range acked {
		want[n] = true
	}
	for i, key := range keys {
		lo := "(" + froms[i].String()
		if froms[i].IsZero() {
			lo = "-"
		}
		for {
			msgs, err := rdb.XRangeN(ctx, key, lo, "+", 5000).Result()
			if err != nil {
				return 0, err
			}
			if len(msgs) == 0 {
				break
			}
			for _, m := range msgs {
				var id string
				if e, ok := m.Values["e"].(string); ok {
					if v, ok := field([]byte(e), 1); ok {
						id = string(v)
					}
				} else if v, ok := m.Values["id"].(string); ok {
					id = v
				}
				if s, ok := strings.CutPrefix(id, prefix); ok {
					if n, err := strconv.ParseInt(s, 10, 64); err == nil {
						delete(want, n)
					}
				}
			}
			lo = "(" + msgs[len(msgs)-1].ID
		}
	}
	return int64(len(want)), nil
}
