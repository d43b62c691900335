package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ---- (f) trickle fan-out ---------------------------------------------------------------
//
// Webhooks POSTed over HTTP at a steady, modest rate (-trickle-rate, 1,000/s) to many tail
// subscribers (-trickle-subs, 100) multiplexed on a few grpc-go connections
// (-trickle-conns, 4): the load of a real deployment, where every event wakes every
// subscriber on its own, unlike the pipelined bursts of the fanout phase. The figure is the
// CPU each side spends per delivery (the ingest of the events included).

type trickleResult struct {
	name        string
	subs, conns int
	rate        float64
	acked       int64 // webhooks acknowledged in the window
	deliveries  int64 // of those, received by the subscribers (acked × subs when none is lost)
	ended       int   // subscribers that ended early
	lateMax     time.Duration
	firstErr    string
	cpu         *cpuMeter // relayd (or the hand-written receiver), Redis, the harness
}

// trickleSubs are tail subscriptions spread over conns grpc-go connections; each counts the
// deliveries whose event id starts with prefix.
type trickleSubs struct {
	ccs    []*grpc.ClientConn
	cancel context.CancelFunc
	wg     sync.WaitGroup
	counts []atomic.Int64
	primed []atomic.Bool
	ended  atomic.Int64
	errMu  sync.Mutex
	err    string
}

func openTrickleSubs(addr string, req []byte, n, conns int, prefix, primePrefix string) (*trickleSubs, error) {
	ctx, cancel := context.WithCancel(context.Background())
	s := &trickleSubs{cancel: cancel, counts: make([]atomic.Int64, n), primed: make([]atomic.Bool, n)}
	for range conns {
		cc, err := dialRaw(addr)
		if err != nil {
			s.close()
			return nil, err
		}
		s.ccs = append(s.ccs, cc)
	}
	for i := range n {
		st, err := openSubscribe(ctx, s.ccs[i%conns], req)
		if err != nil {
			s.close()
			return nil, err
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			for {
				var msg []byte
				if err := st.RecvMsg(&msg); err != nil {
					if ctx.Err() == nil {
						s.ended.Add(1)
						if !errors.Is(err, io.EOF) && status.Code(err) != codes.Canceled {
							s.errMu.Lock()
							if s.err == "" {
								s.err = err.Error()
							}
							s.errMu.Unlock()
						}
					}
					return
				}
				eachDelivery(msg, func(d []byte) {
					id, ok := deliveryEventID(d)
					switch {
					case !ok:
					case strings.HasPrefix(id, prefix):
						s.counts[i].Add(1)
					case strings.HasPrefix(id, primePrefix):
						s.primed[i].Store(true)
					}
				})
			}
		}()
	}
	return s, nil
}

func (s *trickleSubs) total() int64 {
	var n int64
	for i := range s.counts {
		n += s.counts[i].Load()
	}
	return n
}

func (s *trickleSubs) allPrimed() bool {
	for i := range s.primed {
		if !s.primed[i].Load() {
			return false
		}
	}
	return true
}

func (s *trickleSubs) close() {
	s.cancel()
	s.wg.Wait()
	for _, cc := range s.ccs {
		_ = cc.Close()
	}
}

// trickleRelay measures relayd: n subscribers over conns connections, webhooks at rate per
// second for d from postConns connections.
func trickleRelay(t *relaydTarget, rdb *redis.Client, source string, secret []byte, runID string, n, conns int, rate float64, d time.Duration, postConns int) (*trickleResult, error) {
	prefix, primePrefix := "trk-"+runID+"-", "prime-"+runID+"-trk-"
	subs, err := openTrickleSubs(t.grpcAddr, subscribeRequest(source, ""), n, conns, prefix, primePrefix)
	if err != nil {
		return nil, err
	}
	defer subs.close()
	path := "/v1/webhooks/" + source
	// Prime until every subscriber has received an event: all are registered with the reader.
	c := newHTTPConn(t.httpAddr)
	psg := &signer{secret: secret, prefix: primePrefix}
	var body []byte
	hdr := [][2]string{{"Content-Type", "application/json"}, {"X-Signature", ""}}
	deadline := time.Now().Add(30 * time.Second)
	for k := int64(1); !subs.allPrimed(); k++ {
		if time.Now().After(deadline) {
			c.close()
			return nil, errors.New("trickle subscribers not all registered within 30s")
		}
		body = psg.body(body, k)
		hdr[1][1] = psg.sign(body)
		if st, resp, err := c.post(path, hdr, body); err != nil || st/100 != 2 {
			c.close()
			return nil, fmt.Errorf("priming POST: status %d %s: %v", st, resp, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.close()
	time.Sleep(200 * time.Millisecond)

	total := int64(rate*d.Seconds()) + 1
	cpu := startCPU(t.pid, rdb)
	acked, _, _, lateMax, firstErr := fixedRate(t.httpAddr, path, &signer{secret: secret, prefix: prefix}, rate, d, postConns, make([]atomic.Int64, total+1))
	want := int64(len(acked)) * int64(n)
	for end := time.Now().Add(3 * time.Second); subs.total() < want && time.Now().Before(end); {
		time.Sleep(5 * time.Millisecond)
	}
	r := &trickleResult{name: "relayd", subs: n, conns: conns, rate: rate, acked: int64(len(acked)), deliveries: subs.total(),
		ended: int(subs.ended.Load()), lateMax: lateMax, firstErr: firstErr, cpu: cpu.stop()}
	if r.firstErr == "" {
		r.firstErr = subs.err
	}
	return r, nil
}

// trickleBaseline measures the hand-written equivalent on the same Redis: the hand-written
// receiver (XADD per webhook) and n goroutines each running a blocking XREAD loop on its
// stream, a connection each.
func trickleBaseline(ctx context.Context, b *baseline, redisURL, runID string, n int, rate float64, d time.Duration, postConns int) (*trickleResult, error) {
	opt, err := redis.ParseURL(redisURL)
	if err != nil {
		return nil, err
	}
	opt.PoolSize = n + 16
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	from, err := lastID(ctx, rdb, b.stream)
	if err != nil {
		return nil, err
	}
	prefix := "trkb-" + runID + "-"
	cctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	counts := make([]atomic.Int64, n)
	var ready atomic.Int64
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			last := from.String()
			ready.Add(1)
			for cctx.Err() == nil {
				res, err := rdb.XRead(cctx, &redis.XReadArgs{Streams: []string{b.stream, last}, Count: 1000, Block: time.Second}).Result()
				if err != nil {
					continue
				}
				for _, st := range res {
					for _, m := range st.Messages {
						last = m.ID
						if id, ok := m.Values["id"].(string); ok && strings.HasPrefix(id, prefix) {
							counts[i].Add(1)
						}
					}
				}
			}
		}()
	}
	defer func() { cancel(); wg.Wait() }()
	for ready.Load() < int64(n) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // every reader is blocked in XREAD
	sum := func() int64 {
		var s int64
		for i := range counts {
			s += counts[i].Load()
		}
		return s
	}
	total := int64(rate*d.Seconds()) + 1
	cpu := startCPU(b.pid, rdb)
	acked, _, _, lateMax, firstErr := fixedRate(b.addr, "/v1/webhooks/baseline", &signer{secret: b.secret, prefix: prefix}, rate, d, postConns, make([]atomic.Int64, total+1))
	want := int64(len(acked)) * int64(n)
	for end := time.Now().Add(3 * time.Second); sum() < want && time.Now().Before(end); {
		time.Sleep(5 * time.Millisecond)
	}
	return &trickleResult{name: "hand-written", subs: n, conns: n, rate: rate, acked: int64(len(acked)), deliveries: sum(),
		lateMax: lateMax, firstErr: firstErr, cpu: cpu.stop()}, nil
}
