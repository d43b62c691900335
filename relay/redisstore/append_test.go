package redisstore_test

import (
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/eventrelay/eventrelay/internal/redistest"
	"github.com/eventrelay/eventrelay/relay"
	"github.com/eventrelay/eventrelay/relay/redisstore"
)

// TestBatchEntryErrorsAreIsolated checks that one entry failing inside a batched script call
// (its dedupe marker key holds a list: GET fails with WRONGTYPE) fails that append alone;
// the others of the same round trip are stored and acknowledged, duplicates included.
func TestBatchEntryErrorsAreIsolated(t *testing.T) {
	for name, url := range map[string]func(t *testing.T) string{
		"embedded": func(t *testing.T) string { return startEmbedded(t).URL() },
		"redis":    func(t *testing.T) string { return redistest.Start(t) },
	} {
		t.Run(name, func(t *testing.T) {
			hook := &pipelineCounter{}
			s := newStore(t, url(t), redisstore.Options{MaxDelay: 200 * time.Millisecond, MaxBatch: 64, MaxInFlight: 1}, hook)
			p := relay.Partition{Source: "iso", Index: 0}
			if err := s.Client().RPush(t.Context(), redisstore.DedupeKey(p, "bad"), "x").Err(); err != nil {
				t.Fatal(err)
			}
			keys := []string{"bad", "dup", "dup"}
			for i := range 40 {
				keys = append(keys, strconv.Itoa(i))
			}
			results := make([]relay.AppendResult, len(keys))
			errs := make([]error, len(keys))
			var wg sync.WaitGroup
			for i, k := range keys {
				wg.Go(func() { results[i], errs[i] = s.Append(t.Context(), appendReq(p, k)) })
			}
			wg.Wait()
			if relay.ErrorCode(errs[0]) != relay.CodeUnavailable {
				t.Fatalf("append with a broken marker: %v, want CodeUnavailable", errs[0])
			}
			for i, err := range errs[1:] {
				if err != nil {
					t.Fatalf("append %q failed with its batch neighbour: %v", keys[i+1], err)
				}
			}
			if results[1].ID != results[2].ID || results[1].Duplicate == results[2].Duplicate {
				t.Fatalf("same key twice: %+v and %+v, want one append and one duplicate of it", results[1], results[2])
			}
			info, err := s.Info(t.Context(), p)
			if err != nil {
				t.Fatal(err)
			}
			if want := int64(len(keys) - 2); info.Length != want {
				t.Fatalf("stream holds %d entries, want %d", info.Length, want)
			}
			hook.mu.Lock()
			defer hook.mu.Unlock()
			if len(hook.sizes) >= len(keys) {
				t.Logf("no batching happened (%d round trips); the isolation was not exercised", len(hook.sizes))
			}
		})
	}
}
