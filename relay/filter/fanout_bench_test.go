package filter_test

import (
	"context"
	"fmt"
	"github.com/eventrelay/eventrelay/relay/verify"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/eventrelay/eventrelay/relay"
	"github.com/eventrelay/eventrelay/relay/embedded"
	"github.com/eventrelay/eventrelay/relay/filter"
	"github.com/eventrelay/eventrelay/relay/redisstore"
)

// passAll is a verifier the benchmark never calls (events come in through Publish).
type passAll struct{}

func (passAll) Verify(*relay.WebhookRequest, time.Time) (*relay.Verified, error) {
	return &relay.Verified{}, nil
}

// BenchmarkFanout100 is the fan-out of 1 KB Stripe invoices to 100 tail subscribers of a
// relay.Service on the embedded store, without a filter and with the invoice filter (which
// every event matches, so both deliver the same): ns/op and ns/delivery are wall time per
// delivery, cpu-ns/delivery the process's CPU time (publishing included) per delivery. The
// filtered subscribers share one decode and one JSON parse per event.
func BenchmarkFanout100(b *testing.B) {
	for _, expr := range []string{"", `event.type.startsWith("invoice.") && data.data.object.amount_due > 100000`} {
		name := "unfiltered"
		if expr != "" {
			name = "filtered"
		}
		b.Run(name, func(b *testing.B) { benchFanout(b, 100, expr) })
	}
}

func benchFanout(b *testing.B, subscribers int, expr string) {
	srv, err := embedded.Start()
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	st, err := redisstore.Open(srv.URL(), false, "", redisstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	cfg := relay.SourceConfig{Name: "stripe", Provider: "hmac", MaxLen: 1 << 20, Verify: &verify.Options{Secrets: []relay.Secret{{Value: []byte("x")}}}}
	cfg.SetDefaults()
	svc, err := relay.NewService(st, []*relay.Source{{Config: cfg, Verifier: passAll{}}}, relay.Options{
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), CompileFilter: filter.Compile, TailBuffer: 1 << 16})
	if err != nil {
		b.Fatal(err)
	}
	defer svc.Close()

	var delivered atomic.Int64
	var ready sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	var done sync.WaitGroup
	for range subscribers {
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			first := true
			_ = svc.Subscribe(ctx, relay.SubscribeRequest{Sources: []string{"stripe"}, Filter: expr}, func(m *relay.Message) error {
				if first {
					first = false
					ready.Done()
				}
				if m.Entry != nil {
					delivered.Add(1)
				}
				return nil
			})
		}()
	}
	// The first heartbeat comes at once: every subscriber is attached to the reader.
	ready.Wait()
	// Events are published by 8 goroutines (so that appends batch) in rounds of 200; a round
	// ends when every subscriber has received it.
	const perRound, publishers = 200, 8
	events := b.N/subscribers + 1
	cpu0 := cpuTime()
	b.ResetTimer()
	for i := 0; i < events; i += perRound {
		n := min(perRound, events-i)
		var wg sync.WaitGroup
		for w := range publishers {
			wg.Go(func() {
				for j := w; j < n; j += publishers {
					if _, err := svc.Publish(ctx, relay.PublishInput{Source: "stripe", ID: fmt.Sprintf("evt_%d", i+j), Type: "invoice.payment_failed",
						DataContentType: "application/json", Data: []byte(stripeInvoice)}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		want := int64((i + n) * subscribers)
		for delivered.Load() < want && !b.Failed() {
			time.Sleep(50 * time.Microsecond)
		}
	}
	b.StopTimer()
	d := float64(delivered.Load())
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/d, "ns/delivery")
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/d, "cpu-ns/delivery")
	cancel()
	done.Wait()
}

// cpuTime is the CPU time (user + system) the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
