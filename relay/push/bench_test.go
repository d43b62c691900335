package push_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/eventrelay/eventrelay/internal/cpustat"
	"github.com/eventrelay/eventrelay/internal/redistest"
	"github.com/eventrelay/eventrelay/relay"
	"github.com/eventrelay/eventrelay/relay/push"
	"github.com/eventrelay/eventrelay/relay/redisstore"
)

// receiverEnv makes the test binary a receiver process (benchReceiver): a receiver in a
// process of its own, so that its CPU time is measured apart from the relay's.
const receiverEnv = "PUSH_BENCH_RECEIVER"

// benchReceiver serves POSTs on a loopback port, verifying each Standard Webhooks
// signature, until its standard input closes; it prints its address, then, at each line
// read, the number of verified POSTs.
func benchReceiver() {
	wh, err := standardwebhooks.NewWebhook(secret1)
	if err != nil {
		panic(err)
	}
	var n atomic.Int64
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Header.Get("Webhook-Signature") != "" && wh.Verify(body, r.Header) != nil {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		n.Add(1)
		w.WriteHeader(http.StatusNoContent)
	})}
	go func() { _ = srv.Serve(l) }()
	fmt.Println(l.Addr().String())
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		fmt.Println(n.Load())
	}
	os.Exit(0)
}

// receiverProc is a running benchReceiver.
type receiverProc struct {
	cmd  *exec.Cmd
	addr string
	in   io.WriteCloser
	out  *bufio.Scanner
}

func startReceiverProc(b *testing.B) *receiverProc {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), receiverEnv+"=1")
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	r := &receiverProc{cmd: cmd, in: in, out: bufio.NewScanner(out)}
	if !r.out.Scan() {
		b.Fatal("receiver did not start")
	}
	r.addr = r.out.Text()
	b.Cleanup(func() {
		_ = in.Close()
		_ = cmd.Wait()
	})
	return r
}

// count asks the receiver how many POSTs it verified.
func (r *receiverProc) count() int64 {
	fmt.Fprintln(r.in)
	r.out.Scan()
	n, _ := strconv.ParseInt(r.out.Text(), 10, 64)
	return n
}

// BenchmarkPush delivers b.N stored events to a receiver process with 64 in flight:
// relay is a push destination (max_in_flight 64) of a relay.Service; handwritten is the
// worker a team writes by hand on the same Redis (64 goroutines: XREADGROUP COUNT 1, POST
// signed with the same scheme, XACK), measured in the same run. Reported per delivery: the
// wall time (1e9 / deliveries per second), the CPU of this process (the relay or the worker),
// of Redis, and of the receiver process (which verifies every signature).
func BenchmarkPush(b *testing.B) {
	url := redistest.Start(b)
	opt, _ := redis.ParseURL(url)
	rdb := redis.NewClient(opt)
	b.Cleanup(func() { _ = rdb.Close() })
	rcv := startReceiverProc(b)
	run := 0
	measure := func(b *testing.B, deliver func(svc *relay.Service, source string) func()) {
		run++
		source := fmt.Sprintf("bench%d", run)
		svc := newServiceAt(b, url, relay.SourceConfig{Name: source, Partitions: 4})
		parts := []relay.Partition{{Source: source, Index: 0}, {Source: source, Index: 1}, {Source: source, Index: 2}, {Source: source, Index: 3}}
		for _, p := range parts {
			if err := svc.Store().EnsureGroup(context.Background(), p, push.GroupName("bench"), relay.MaxID); err != nil {
				b.Fatal(err)
			}
		}
		publishN(b, svc, source, b.N)
		before := rcv.count()
		cpu0, redis0, rcv0 := cpustat.Process(0), cpustat.Redis(rdb), cpustat.Process(rcv.cmd.Process.Pid)
		b.ResetTimer()
		start := time.Now()
		stop := deliver(svc, source)
		for rcv.count()-before < int64(b.N) {
			time.Sleep(2 * time.Millisecond)
		}
		wall := time.Since(start)
		b.StopTimer()
		cpu, rcpu, recv := cpustat.Process(0)-cpu0, cpustat.Redis(rdb)-redis0, cpustat.Process(rcv.cmd.Process.Pid)-rcv0
		stop()
		n := float64(b.N)
		b.ReportMetric(n/wall.Seconds(), "deliveries/s")
		b.ReportMetric(float64(cpu.Nanoseconds())/n, "cpu-ns/delivery")
		b.ReportMetric(float64(rcpu.Nanoseconds())/n, "redis-ns/delivery")
		b.ReportMetric(float64(recv.Nanoseconds())/n, "receiver-ns/delivery")
	}
	b.Run("relay", func(b *testing.B) {
		measure(b, func(svc *relay.Service, source string) func() {
			d := push.Config{Name: "bench", URL: "http://" + rcv.addr + "/", Sources: []string{source}, AllowPrivate: true,
				Secrets: []relay.Secret{{Value: []byte(secret1)}}, MaxInFlight: 64}
			p, err := push.New(svc, []push.Config{d}, push.Options{Logger: quiet(), Consumer: "bench"})
			if err != nil {
				b.Fatal(err)
			}
			p.Start(context.Background())
			return func() { _ = p.Close() }
		})
	})
	b.Run("handwritten", func(b *testing.B) {
		measure(b, func(_ *relay.Service, source string) func() {
			return handwrittenWorker(b, rdb, source, "http://"+rcv.addr+"/", 64)
		})
	})
}

// publishN stores n events of about 300 bytes, from 16 goroutines.
func publishN(b *testing.B, svc *relay.Service, source string, n int) {
	data := []byte(`{"id":"evt_0","type":"invoice.paid","data":{"object":{"id":"in_1","customer":"cus_1","amount_due":2000,"currency":"usd","lines":[{"amount":2000,"description":"1 x Pro plan"}],"status":"paid"}},"padding":"` + strings.Repeat("x", 100) + `"}`)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1); i <= int64(n); i = next.Add(1) {
				_, err := svc.Publish(context.Background(), relay.PublishInput{Source: source, ID: "e" + strconv.FormatInt(i, 10),
					Type: "invoice.paid", PartitionKey: strconv.FormatInt(i%64, 10), DataContentType: "application/json", Data: data})
				if err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// handwrittenWorker is the baseline: workers goroutines, each reading one entry at a time
// from the group of every partition in turn (XREADGROUP COUNT 1), POSTing its payload signed
// as Standard Webhooks do, and acknowledging it (XACK). No retry, breaker or ordering.
func handwrittenWorker(b *testing.B, rdb *redis.Client, source, url string, workers int) (stop func()) {
	key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret1, "whsec_"))
	opt := rdb.Options()
	opt.PoolSize = 2 * workers // a connection per worker, as such a worker is deployed
	rdb = redis.NewClient(opt)
	ctx, cancel := context.WithCancel(context.Background())
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	group := push.GroupName("bench")
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			consumer := "w" + strconv.Itoa(w)
			for p := w % 4; ctx.Err() == nil; p = (p + 1) % 4 {
				stream := redisstore.StreamKey(relay.Partition{Source: source, Index: p})
				res, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: group, Consumer: consumer,
					Streams: []string{stream, ">"}, Count: 1, Block: 10 * time.Millisecond}).Result()
				if err != nil || len(res) == 0 || len(res[0].Messages) == 0 {
					continue
				}
				m := res[0].Messages[0]
				ev, err := relay.DecodeEvent([]byte(m.Values[redisstore.FieldEvent].(string)))
				if err != nil {
					b.Error(err)
					return
				}
				ts := strconv.FormatInt(time.Now().Unix(), 10)
				mac := hmac.New(sha256.New, key)
				mac.Write([]byte(ev.GetId() + "." + ts + "."))
				mac.Write(ev.GetData())
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(ev.GetData()))
				req.Header.Set("Content-Type", ev.GetDataContentType())
				req.Header.Set("Webhook-Id", ev.GetId())
				req.Header.Set("Webhook-Timestamp", ts)
				req.Header.Set("Webhook-Signature", "v1,"+base64.StdEncoding.EncodeToString(mac.Sum(nil)))
				resp, err := client.Do(req)
				if err != nil {
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode/100 == 2 {
					rdb.XAck(ctx, stream, group, m.ID)
				}
			}
		}()
	}
	return func() {
		cancel()
		wg.Wait()
		_ = rdb.Close()
	}
}
