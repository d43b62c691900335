package redisstore_test

import (
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventrelay/eventrelay/internal/redistest"
	"github.com/eventrelay/eventrelay/relay"
	"github.com/eventrelay/eventrelay/relay/redisstore"
)

// BenchmarkAppend measures Append on the embedded server and on real Redis:
//
//   - single: one goroutine, one append at a time (a round trip each);
//   - concurrent: 64 goroutines per GOMAXPROCS on 4 partitions, batched (group commit);
//   - concurrent-unbatched: the same with MaxBatch 1, the baseline for batching.
//
// Each event is 512 bytes with a unique dedupe key. Run with:
//
//	go test -run '^$' -bench Append -benchmem ./relay/redisstore/
func BenchmarkAppend(b *testing.B) {
	servers := []struct {
		name string
		url  func(b *testing.B) string
	}{
		{"embedded", func(b *testing.B) string { return startEmbedded(b).URL() }},
		{"redis", func(b *testing.B) string { return redistest.Start(b) }},
	}
	modes := []struct {
		name     string
		opts     redisstore.Options
		parallel bool
	}{
		{"single", redisstore.Options{}, false},
		{"concurrent", redisstore.Options{}, true},
		{"concurrent-unbatched", redisstore.Options{MaxBatch: 1, MaxInFlight: 64}, true},
	}
	event := make([]byte, 512)
	for i := range event {
		event[i] = byte('a' + i%26)
	}
	for _, srv := range servers {
		b.Run(srv.name, func(b *testing.B) {
			url := srv.url(b)
			for _, m := range modes {
				b.Run(m.name, func(b *testing.B) {
					m.opts.OpTimeout = 30 * time.Second
					s := newStore(b, url, m.opts)
					var seq atomic.Int64
					src := "bench" + strconv.FormatInt(time.Now().UnixNano(), 36)
					appendOne := func() {
						n := seq.Add(1)
						_, err := s.Append(b.Context(), relay.AppendRequest{
							Partition:    relay.Partition{Source: src, Index: int(n % 4)},
							DedupeKey:    strconv.FormatInt(n, 10),
							DedupeWindow: time.Minute,
							Event:        event,
							MaxLen:       100000,
						})
						if err != nil {
							b.Error(err)
						}
					}
					b.SetBytes(int64(len(event)))
					b.ReportAllocs()
					b.ResetTimer()
					if !m.parallel {
						for b.Loop() {
							appendOne()
						}
						return
					}
					b.SetParallelism(64)
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							appendOne()
						}
					})
				})
			}
		})
	}
}
