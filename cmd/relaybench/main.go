// Command relaybench measures a running relayd and Redis, and, in the same run and on the
// same Redis, the receiver a user would write by hand instead (net/http, verify the HMAC,
// one XADD per request with go-redis), and prints both with their ratio.
//
// It starts nothing by itself unless asked: -start-redis starts a redis-server on a free
// loopback port, -relayd PATH starts that relayd binary as a subprocess against the Redis
// (on free loopback ports, with a generated configuration of one hmac source). Without
// -relayd it targets the relayd at -http/-grpc/-admin, whose source -source is an hmac
// source with secret -secret, on the Redis of -redis-url.
//
// Phases (-phases, in this order):
//
//	idle    relayd RSS with -idle-subs tail subscribers open over -idle-conns connections
//	ingest  closed-loop POSTs of correctly signed webhooks (unique ids) from -conns
//	        connections for -ingest-duration: req/s and latency; every acknowledged event
//	        is then looked up in the stream
//	e2e     POSTs at -e2e-rate per second for -e2e-duration; latency from the intended send
//	        time to receipt on a Subscribe stream (baseline: XREAD BLOCK on its stream)
//	fanout  deliveries/s to -fanout-subs tail subscribers (one connection each) for
//	        -fanout-duration; events are XADDed straight to the stream, the producer staying
//	        at most -fanout-window events ahead of the slowest subscriber (baseline: one
//	        blocking XREAD loop per subscriber)
//	trickle webhooks POSTed over HTTP at -trickle-rate per second for -trickle-duration to
//	        -trickle-subs tail subscribers on -trickle-conns grpc-go connections: CPU per
//	        delivery at a realistic rate (baseline: the hand-written receiver and one blocking
//	        XREAD loop per subscriber)
//	replay  -replay-events events replayed from history to one subscriber (baseline: go-redis
//	        XRANGE COUNT 1000)
//	wrk     wrk against relayd and the baseline, one after the other (-wrk-duration each)
//
// -client grpc-go makes the e2e, fanout and replay subscribers stock grpc-go clients (raw
// codec) instead of the minimal HTTP/2 client (-client h2, the default), which parses only
// message prefixes and so measures relayd alone.
//
// -write FILE replaces the section between "<!-- relaybench:begin -->" and
// "<!-- relaybench:end -->" in FILE (BENCHMARKS.md) with the results table, the command and
// the machine facts. -profile DIR saves relayd CPU profiles of the ingest, e2e, fanout and
// replay phases (from the admin /debug/pprof/profile).
//
// Figures on a machine the load generator, relayd and Redis share are noisy: compare the
// ratios of one run, and repeat when the machine is quiet.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eventrelay/eventrelay/relay"
	"github.com/eventrelay/eventrelay/relay/redisstore"
)

type config struct {
	redisURL   string
	startRedis bool
	relaydBin  string
	httpAddr   string
	grpcAddr   string
	adminAddr  string
	pid        int
	source     string
	secret     string
	partitions int
	phases     string

	conns          int
	warmup         time.Duration
	ingestDuration time.Duration
	e2eRate        float64
	e2eDuration    time.Duration
	e2eConns       int
	fanoutSubs     int
	fanoutDuration time.Duration
	fanoutWindow   int64
	trickleRate    float64
	trickleSubs    int
	trickleConns   int
	trickleDur     time.Duration
	destination    bool
	replayEvents   int
	idleSubs       int
	idleConns      int
	idleSettle     time.Duration
	wrkDuration    time.Duration
	wrkConns       int
	wrkThreads     int
	wrkPerThread   int
	profileDir     string
	write          string
	command        string
	cleanup        bool
	nostore        bool
	inProcess      bool
	baselineStream string
	goBench        string
}

func main() {
	var c config
	flag.StringVar(&c.redisURL, "redis-url", os.Getenv("REDIS_URL"), "Redis that relayd uses and the baseline runs on (default $REDIS_URL)")
	flag.BoolVar(&c.startRedis, "start-redis", false, "start a redis-server on a free loopback port when -redis-url is empty")
	flag.StringVar(&c.relaydBin, "relayd", "", "start this relayd binary as a subprocess against the Redis (else target -http/-grpc/-admin)")
	flag.StringVar(&c.httpAddr, "http", "127.0.0.1:8080", "HTTP address of a running relayd")
	flag.StringVar(&c.grpcAddr, "grpc", "127.0.0.1:9090", "gRPC address of a running relayd")
	flag.StringVar(&c.adminAddr, "admin", "127.0.0.1:9091", "admin address of a running relayd (RSS from /metrics, profiles)")
	flag.IntVar(&c.pid, "pid", 0, "pid of a running relayd (RSS from /proc/<pid>/status instead of /metrics)")
	flag.StringVar(&c.source, "source", "bench", "hmac source to use (a started relayd gets one of this name)")
	flag.StringVar(&c.secret, "secret", "", "the source's HMAC secret (generated for a started relayd)")
	flag.IntVar(&c.partitions, "partitions", 1, "partitions of the source")
	flag.StringVar(&subClient, "client", "h2", "subscriber of the e2e, fanout and replay phases: h2 (a minimal HTTP/2 client: relayd's own cost) or grpc-go (a stock grpc-go client, raw codec: what users see)")
	flag.StringVar(&c.phases, "phases", "idle,ingest,e2e,fanout,trickle,replay", "phases to run, comma-separated: idle,ingest,e2e,fanout,trickle,replay,wrk")
	flag.IntVar(&c.conns, "conns", 50, "ingest: concurrent connections")
	flag.DurationVar(&c.warmup, "warmup", time.Second, "ingest: warm-up before the measured window")
	flag.DurationVar(&c.ingestDuration, "ingest-duration", 10*time.Second, "ingest: measured window per target")
	flag.Float64Var(&c.e2eRate, "e2e-rate", 2000, "e2e: events per second")
	flag.DurationVar(&c.e2eDuration, "e2e-duration", 10*time.Second, "e2e: duration per target")
	flag.IntVar(&c.e2eConns, "e2e-conns", 16, "e2e: connections the fixed-rate sender uses")
	flag.IntVar(&c.fanoutSubs, "fanout-subs", 100, "fanout: tail subscribers")
	flag.DurationVar(&c.fanoutDuration, "fanout-duration", 10*time.Second, "fanout: measured window per target")
	flag.Int64Var(&c.fanoutWindow, "fanout-window", 2000, "fanout: events the producer may be ahead of the slowest subscriber")
	flag.Float64Var(&c.trickleRate, "trickle-rate", 1000, "trickle: webhooks per second POSTed over HTTP")
	flag.IntVar(&c.trickleSubs, "trickle-subs", 100, "trickle: tail subscribers (grpc-go)")
	flag.IntVar(&c.trickleConns, "trickle-conns", 4, "trickle: grpc-go connections the subscribers share")
	flag.DurationVar(&c.trickleDur, "trickle-duration", 10*time.Second, "trickle: duration per target")
	flag.StringVar(&subFilter, "filter", "", "CEL filter every e2e, fanout, trickle and replay subscriber asks for (one that every event matches, e.g. 'event.source != \"\"')")
	flag.IntVar(&grpcWindow, "grpc-window", 0, "grpc-go subscribers: fixed flow-control window per stream and connection in bytes (0: grpc-go's default, bandwidth estimated with pings)")
	flag.IntVar(&subBatch, "batch", 0, "max_batch every e2e, fanout, trickle and replay subscriber asks for (0: one delivery per message)")
	flag.BoolVar(&c.destination, "destination", false, "with -relayd: also push every event to a receiver in this process (a push destination)")
	flag.IntVar(&c.replayEvents, "replay-events", 300000, "replay: events in history to replay")
	flag.IntVar(&c.idleSubs, "idle-subs", 1000, "idle: subscribers")
	flag.IntVar(&c.idleConns, "idle-conns", 10, "idle: gRPC connections the subscribers share")
	flag.DurationVar(&c.idleSettle, "idle-settle", 3*time.Second, "idle: wait after the subscribers opened before reading RSS")
	flag.DurationVar(&c.wrkDuration, "wrk-duration", 5*time.Second, "wrk: duration per run")
	flag.IntVar(&c.wrkConns, "wrk-conns", 50, "wrk: connections")
	flag.IntVar(&c.wrkThreads, "wrk-threads", 2, "wrk: threads")
	flag.IntVar(&c.wrkPerThread, "wrk-unique", 150000, "wrk: distinct signed bodies per thread (then it cycles: duplicates)")
	flag.StringVar(&c.profileDir, "profile", "", "directory for relayd CPU profiles of the phases")
	flag.StringVar(&c.write, "write", "", "replace the results section of this file (BENCHMARKS.md)")
	flag.StringVar(&c.command, "command", "", "command line to record in -write (default: this one)")
	flag.StringVar(&c.goBench, "gobench", "", "only write this go test -bench output to -write's Go benchmarks section (no phases run)")
	flag.BoolVar(&c.inProcess, "baseline-in-process", false, "run the hand-written receiver inside the harness process instead of a child process")
	flag.BoolVar(&c.nostore, "nostore", true, "ingest: also measure the hand-written receiver without its XADD (the ceiling of a net/http receiver)")
	flag.BoolVar(&c.cleanup, "cleanup", true, "delete the baseline stream (and with -relayd the source's keys) at the end")
	serve := flag.Bool("serve-baseline", false, "internal: run the hand-written receiver (the child process of a run)")
	flag.StringVar(&c.baselineStream, "stream", "", "internal: with -serve-baseline, the stream to XADD to")
	flag.Parse()
	if *serve {
		if err := serveBaseline(c.redisURL, c.baselineStream); err != nil {
			fmt.Fprintln(os.Stderr, "relaybench baseline:", err)
			os.Exit(1)
		}
		return
	}
	if grpcWindow != 0 && (grpcWindow < 64<<10 || grpcWindow > 1<<30) {
		fmt.Fprintln(os.Stderr, "relaybench: -grpc-window must be 0 or 65536 to 1073741824 bytes (grpc-go ignores smaller windows)")
		os.Exit(2)
	}
	if c.command == "" {
		c.command = "relaybench " + strings.Join(os.Args[1:], " ")
	}
	if c.goBench != "" {
		// Only record go test -bench output in -write's Go benchmarks section.
		if c.write == "" {
			fmt.Fprintln(os.Stderr, "relaybench: -gobench needs -write")
			os.Exit(2)
		}
		if err := writeGoBench(c.write, c.goBench, c.command); err != nil {
			fmt.Fprintln(os.Stderr, "relaybench:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(&c); err != nil {
		fmt.Fprintln(os.Stderr, "relaybench:", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, args...)...)
}

func newRunID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func run(c *config) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	dir, err := os.MkdirTemp("", "relaybench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	runID := newRunID()
	phases := map[string]bool{}
	for p := range strings.SplitSeq(c.phases, ",") {
		phases[strings.TrimSpace(p)] = true
	}

	// Redis.
	if c.redisURL == "" {
		if !c.startRedis {
			return fmt.Errorf("no Redis: pass -redis-url (or set REDIS_URL), or -start-redis")
		}
		p, url, err := startRedis(dir)
		if err != nil {
			return err
		}
		defer p.stop()
		c.redisURL = url
		logf("started redis-server at %s", url)
	}
	opt, err := redis.ParseURL(c.redisURL)
	if err != nil {
		return fmt.Errorf("-redis-url: %w", err)
	}
	opt.PoolSize = 64
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	if err := rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis: %w", err)
	}

	// relayd.
	var t *relaydTarget
	if c.relaydBin != "" {
		if c.secret == "" {
			c.secret = newRunID() + newRunID()
		}
		extra := ""
		if c.destination {
			recv, err := startPushReceiver()
			if err != nil {
				return err
			}
			defer func() { logf("destination: the receiver got %d POSTs", recv.hits.Load()); recv.stop() }()
			extra = destinationYAML(recv.url)
		}
		t, err = startRelayd(c.relaydBin, dir, c.redisURL, c.source, c.secret, c.partitions, extra)
		if err != nil {
			return err
		}
		defer t.proc.stop()
		logf("started relayd pid %d: http %s grpc %s admin %s", t.pid, t.httpAddr, t.grpcAddr, t.adminAddr)
	} else {
		if c.secret == "" {
			return fmt.Errorf("targeting a running relayd: pass -secret (the HMAC secret of -source)")
		}
		t = &relaydTarget{httpAddr: c.httpAddr, grpcAddr: c.grpcAddr, adminAddr: c.adminAddr, pid: c.pid}
	}
	if c.profileDir != "" {
		if err := os.MkdirAll(c.profileDir, 0o755); err != nil {
			return err
		}
	}

	// The baseline, on the same Redis.
	bstream := "relaybench:baseline:" + runID
	var b *baseline
	if c.inProcess {
		b, err = startBaseline(c.redisURL, []byte(c.secret), bstream)
	} else {
		b, err = startBaselineProcess(c.redisURL, []byte(c.secret), bstream)
	}
	if err != nil {
		return err
	}
	defer b.close()
	if c.cleanup {
		defer rdb.Del(context.Background(), bstream)
	}

	rep := &report{cfg: c, machine: machineFacts(rdb)}
	logf("machine: %d CPUs, %s, %s, Redis %s, load %s", rep.machine.NProc, rep.machine.CPUModel, rep.machine.Go, rep.machine.Redis, rep.machine.LoadAvg)
	parts := make([]relay.Partition, c.partitions)
	keys := make([]string, c.partitions)
	for i := range parts {
		parts[i] = relay.Partition{Source: c.source, Index: i}
		keys[i] = redisstore.StreamKey(parts[i])
	}
	// profile records a CPU profile of relayd for d after delay (when -profile is set).
	profile := func(name string, delay, d time.Duration) <-chan struct{} {
		if c.profileDir == "" {
			ch := make(chan struct{})
			close(ch)
			return ch
		}
		return t.cpuProfile(filepath.Join(c.profileDir, name+".pprof"), delay, d)
	}

	if phases["idle"] && ctx.Err() == nil {
		logf("idle: %d subscribers over %d connections", c.idleSubs, c.idleConns)
		r, err := idleRelay(t, c.source, c.idleSubs, c.idleConns, c.idleSettle)
		if err != nil {
			return fmt.Errorf("idle: %w", err)
		}
		rep.idle = r
		logf("idle: RSS %s before, %s with %d/%d subscribers open (%s)", fmtMiB(r.before), fmtMiB(r.after), r.open, r.subs, r.source)
		time.Sleep(time.Second)
	}

	if phases["ingest"] && ctx.Err() == nil {
		froms := make([]relay.ID, len(keys))
		for i, k := range keys {
			if froms[i], err = lastID(ctx, rdb, k); err != nil {
				return err
			}
		}
		logf("ingest: relayd, %d connections, %s + %s warm-up", c.conns, c.ingestDuration, c.warmup)
		sg := &signer{secret: []byte(c.secret), prefix: "ing-" + runID + "-"}
		done := profile("ingest", c.warmup, c.ingestDuration)
		bsum0, _ := t.metric("eventrelay_append_batch_size_sum")
		bcnt0, _ := t.metric("eventrelay_append_batch_size_count")
		cpu := startCPU(t.pid, rdb)
		r := runIngest("relayd", t.httpAddr, "/v1/webhooks/"+c.source, sg, c.conns, c.warmup, c.ingestDuration)
		r.cpu = cpu.stop()
		<-done
		bsum1, ok1 := t.metric("eventrelay_append_batch_size_sum")
		bcnt1, ok2 := t.metric("eventrelay_append_batch_size_count")
		if ok1 && ok2 && bcnt1 > bcnt0 {
			r.batch = (bsum1 - bsum0) / (bcnt1 - bcnt0)
			logf("ingest: %.1f appends per Redis round trip on average", r.batch)
		}
		if r.missing, err = verifyStreams(ctx, rdb, keys, froms, sg.prefix, r.acked); err != nil {
			return err
		}
		rep.ingest[0] = r
		logf("ingest: relayd %s req/s p50 %s p99 %s, %d acked, %d missing, errors %d %s; CPU µs/request: relayd %s, Redis %s, load generator %s",
			fmtRate(r.reqPerSec), fmtDur(r.lat.pct(50)), fmtDur(r.lat.pct(99)), len(r.acked), r.missing, r.errors, r.firstErr,
			perOp(r.cpu.relayd, r.total), perOp(r.cpu.redis, r.total), perOp(r.cpu.harness, r.total))

		logf("ingest: hand-written receiver")
		from, err := lastID(ctx, rdb, bstream)
		if err != nil {
			return err
		}
		bsg := &signer{secret: []byte(c.secret), prefix: "ingb-" + runID + "-"}
		cpu = startCPU(b.pid, rdb)
		br := runIngest("hand-written", b.addr, "/v1/webhooks/baseline", bsg, c.conns, c.warmup, c.ingestDuration)
		br.cpu = cpu.stop()
		if br.missing, err = verifyStreams(ctx, rdb, []string{bstream}, []relay.ID{from}, bsg.prefix, br.acked); err != nil {
			return err
		}
		rep.ingest[1] = br
		if c.nostore {
			cpu = startCPU(b.pid, rdb)
			nr := runIngest("no store", b.addr, "/v1/webhooks/nostore", &signer{secret: []byte(c.secret), prefix: "ingn-" + runID + "-"}, c.conns, c.warmup, c.ingestDuration)
			nr.cpu = cpu.stop()
			rep.nostore = nr
			logf("ingest: hand-written without storing %s req/s p50 %s p99 %s; CPU µs/request: receiver %s, load generator %s",
				fmtRate(nr.reqPerSec), fmtDur(nr.lat.pct(50)), fmtDur(nr.lat.pct(99)), perOp(nr.cpu.relayd, nr.total), perOp(nr.cpu.harness, nr.total))
		}
		logf("ingest: hand-written %s req/s p50 %s p99 %s, %d acked, %d missing, errors %d %s; CPU µs/request: receiver %s, Redis %s, load generator %s",
			fmtRate(br.reqPerSec), fmtDur(br.lat.pct(50)), fmtDur(br.lat.pct(99)), len(br.acked), br.missing, br.errors, br.firstErr,
			perOp(br.cpu.relayd, br.total), perOp(br.cpu.redis, br.total), perOp(br.cpu.harness, br.total))
	}

	if phases["e2e"] && ctx.Err() == nil {
		logf("e2e: relayd at %.0f/s for %s", c.e2eRate, c.e2eDuration)
		done := profile("e2e", time.Second, c.e2eDuration-time.Second)
		r, err := e2eRelay(t, c.source, []byte(c.secret), runID, c.e2eRate, c.e2eDuration, c.e2eConns)
		<-done
		if err != nil {
			return fmt.Errorf("e2e: %w", err)
		}
		rep.e2e[0] = r
		logf("e2e: relayd p50 %s p99 %s max %s, %d/%d received, %d missing %s; POST answered p50 %s p99 %s", fmtDur(r.lat.pct(50)), fmtDur(r.lat.pct(99)),
			fmtDur(r.lat.pct(100)), r.recv, r.acked, r.missing, r.firstErr, fmtDur(r.post.pct(50)), fmtDur(r.post.pct(99)))
		br, err := e2eBaseline(ctx, b, rdb, runID, c.e2eRate, c.e2eDuration, c.e2eConns)
		if err != nil {
			return fmt.Errorf("e2e baseline: %w", err)
		}
		rep.e2e[1] = br
		logf("e2e: hand-written p50 %s p99 %s max %s, %d/%d received; POST answered p50 %s p99 %s", fmtDur(br.lat.pct(50)), fmtDur(br.lat.pct(99)),
			fmtDur(br.lat.pct(100)), br.recv, br.acked, fmtDur(br.post.pct(50)), fmtDur(br.post.pct(99)))
	}

	if phases["fanout"] && ctx.Err() == nil {
		logf("fanout: relayd to %d subscribers for %s", c.fanoutSubs, c.fanoutDuration)
		done := profile("fanout", 2*time.Second, c.fanoutDuration-time.Second)
		r, err := fanoutRelay(ctx, t, rdb, c.source, keys[0], runID, c.fanoutSubs, c.fanoutWindow, c.fanoutDuration)
		<-done
		if err != nil {
			return fmt.Errorf("fanout: %w", err)
		}
		rep.fanout[0] = r
		logf("fanout: relayd %s deliveries/s (%d events), %d subscribers ended %s; CPU µs/delivery: relayd %s, Redis %s, subscribers+producer %s",
			fmtRate(r.perSec), r.events, r.ended, r.firstErr, perOp(r.cpu.relayd, r.deliveries), perOp(r.cpu.redis, r.deliveries), perOp(r.cpu.harness, r.deliveries))
		br, err := fanoutBaseline(ctx, c.redisURL, bstream, runID, c.fanoutSubs, c.fanoutWindow, c.fanoutDuration)
		if err != nil {
			return fmt.Errorf("fanout baseline: %w", err)
		}
		rep.fanout[1] = br
		logf("fanout: hand-written %s deliveries/s (%d events); CPU µs/delivery: readers+producer %s, Redis %s",
			fmtRate(br.perSec), br.events, perOp(br.cpu.harness, br.deliveries), perOp(br.cpu.redis, br.deliveries))
	}

	if phases["trickle"] && ctx.Err() == nil {
		logf("trickle: %.0f webhooks/s over HTTP to %d tail subscribers on %d connections for %s", c.trickleRate, c.trickleSubs, c.trickleConns, c.trickleDur)
		done := profile("trickle", 2*time.Second, c.trickleDur-time.Second)
		r, err := trickleRelay(t, rdb, c.source, []byte(c.secret), runID, c.trickleSubs, c.trickleConns, c.trickleRate, c.trickleDur, c.e2eConns)
		<-done
		if err != nil {
			return fmt.Errorf("trickle: %w", err)
		}
		rep.trickle[0] = r
		logf("trickle: relayd %d/%d deliveries (%d webhooks), %d subscribers ended %s; CPU µs/delivery: relayd %s, Redis %s, harness %s",
			r.deliveries, r.acked*int64(r.subs), r.acked, r.ended, r.firstErr, perOp(r.cpu.relayd, r.deliveries), perOp(r.cpu.redis, r.deliveries), perOp(r.cpu.harness, r.deliveries))
		br, err := trickleBaseline(ctx, b, c.redisURL, runID, c.trickleSubs, c.trickleRate, c.trickleDur, c.e2eConns)
		if err != nil {
			return fmt.Errorf("trickle baseline: %w", err)
		}
		rep.trickle[1] = br
		logf("trickle: hand-written %d/%d deliveries; CPU µs/delivery: receiver %s, Redis %s, readers and load %s",
			br.deliveries, br.acked*int64(br.subs), perOp(br.cpu.relayd, br.deliveries), perOp(br.cpu.redis, br.deliveries), perOp(br.cpu.harness, br.deliveries))
	}

	if phases["replay"] && ctx.Err() == nil {
		logf("replay: filling %d events", c.replayEvents)
		from, err := fill(ctx, rdb, keys[0], c.source, runID, c.replayEvents)
		if err != nil {
			return fmt.Errorf("replay fill: %w", err)
		}
		done := profile("replay", 0, 2*time.Second)
		r, err := replayRelay(t, rdb, parts[0], from, int64(c.replayEvents))
		<-done
		if err != nil {
			return fmt.Errorf("replay: %w", err)
		}
		rep.replay[0] = r
		logf("replay: relayd %s events/s (%d in %s) %s; CPU µs/event: relayd %s, Redis %s, subscriber %s", fmtRate(r.perSec), r.events, fmtDur(r.elapsed), r.firstErr,
			perOp(r.cpu.relayd, r.events), perOp(r.cpu.redis, r.events), perOp(r.cpu.harness, r.events))
		br, err := replayBaseline(ctx, rdb, keys[0], from, int64(c.replayEvents))
		if err != nil {
			return fmt.Errorf("replay baseline: %w", err)
		}
		rep.replay[1] = br
		logf("replay: hand-written %s events/s (%d in %s); CPU µs/event: reader %s, Redis %s", fmtRate(br.perSec), br.events, fmtDur(br.elapsed),
			perOp(br.cpu.harness, br.events), perOp(br.cpu.redis, br.events))
	}

	if phases["wrk"] && ctx.Err() == nil {
		if err := runWrkPhase(ctx, c, t, b, rdb, keys[0], bstream, dir, runID, rep); err != nil {
			return fmt.Errorf("wrk: %w", err)
		}
	}

	rep.loadEnd = loadAvg()
	rep.print(os.Stdout)
	if c.write != "" {
		if err := rep.writeMarkdown(c.write); err != nil {
			return err
		}
		logf("wrote %s", c.write)
	}
	if c.cleanup && c.relaydBin != "" {
		cleanupSource(rdb, c.source)
	}
	return ctx.Err()
}

func runWrkPhase(ctx context.Context, c *config, t *relaydTarget, b *baseline, rdb *redis.Client, key, bstream, dir, runID string, rep *report) error {
	type target struct {
		name, addr, path, prefix string
		key                      string
	}
	targets := []target{
		{"relayd", t.httpAddr, "/v1/webhooks/" + c.source, "wrk-" + runID + "-", key},
		{"hand-written", b.addr, "/v1/webhooks/baseline", "wrkb-" + runID + "-", bstream},
	}
	for _, variant := range []string{"unique", "fixed"} {
		for _, tg := range targets {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			per := c.wrkPerThread
			prefix := tg.prefix + variant + "-"
			if variant == "fixed" {
				per = 1
			}
			sg := &signer{secret: []byte(c.secret), prefix: prefix}
			inputs, err := writeWrkInputs(dir, prefix, sg, c.wrkThreads, per)
			if err != nil {
				return err
			}
			before, _ := rdb.XLen(ctx, tg.key).Result()
			logf("wrk: %s, %s bodies, %d connections, %s", tg.name, variant, c.wrkConns, c.wrkDuration)
			r, err := runWrk(dir, tg.name, variant, tg.addr, tg.path, inputs, int64(per*c.wrkThreads), c.wrkThreads, c.wrkConns, c.wrkDuration)
			if err != nil {
				return err
			}
			after, _ := rdb.XLen(ctx, tg.key).Result()
			r.raw = fmt.Sprintf("stream grew by %d entries\n%s", after-before, r.raw)
			rep.wrk = append(rep.wrk, r)
			logf("wrk: %s %s: %s req/s, p50 %s p99 %s, non-2xx %d, stream +%d", tg.name, variant, fmtRate(r.perSec), r.p50, r.p99, r.non2xx, after-before)
			time.Sleep(time.Second)
		}
	}
	return nil
}

// cleanupSource removes the keys of the benchmark source from a Redis the harness did not
// start (streams, dedupe markers, metadata).
func cleanupSource(rdb *redis.Client, source string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, pat := range []string{"relay:{" + source + ":*", "relay:{" + source + "}*"} {
		iter := rdb.Scan(ctx, 0, pat, 1000).Iterator()
		var batch []string
		for iter.Next(ctx) {
			batch = append(batch, iter.Val())
			if len(batch) == 1000 {
				rdb.Unlink(ctx, batch...)
				batch = batch[:0]
			}
		}
		if len(batch) > 0 {
			rdb.Unlink(ctx, batch...)
		}
	}
}
