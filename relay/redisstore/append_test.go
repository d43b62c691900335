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
			// The broken append must share its round trip with others: retry with a fresh
			// partition until it did (the first append of a burst goes alone).
			for attempt := range 20 {
				p := relay.Partition{Source: "iso" + strconv.Itoa(attempt), Index: 0}
				isolationRound(t, s, p)
				hook.mu.Lock()
				n := hook.batch[redisstore.DedupeKey(p, "bad")]
				hook.mu.Unlock()
				if n > 1 {
					return
				}
			}
			t.Fatal("in 20 bursts the broken append never shared a round trip: the isolation was not exercised")
		})
	}
}

// isolationRound appends a broken entry (its dedupe marker key holds a list: GET fails with
// WRONGTYPE), a key twice and 40 others at once to p, and checks that only the broken one
// failed, the key twice was stored once, and everything else was stored.
func isolationRound(t *testing.T, s *redisstore.Store, p relay.Partition) {
	t.Helper()
	if err := s.Client().RPush(t.Context(), redisstore.DedupeKey(p, "bad"), "x").Err(); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for i := range 40 {
		keys = append(keys, strconv.Itoa(i))
	}
	keys = append(keys, "bad", "dup", "dup")
	results := make([]relay.AppendResult, len(keys))
	errs := make([]error, len(keys))
	var wg sync.WaitGroup
	for i, k := range keys {
		wg.Go(func() { results[i], errs[i] = s.Append(t.Context(), appendReq(p, k)) })
	}
	wg.Wait()
	bad, dup1, dup2 := len(keys)-3, len(keys)-2, len(keys)-1
	if relay.ErrorCode(errs[bad]) != relay.CodeUnavailable {
		t.Fatalf("append with a broken marker: %v, want CodeUnavailable", errs[bad])
	}
	for i, err := range errs {
		if i != bad && err != nil {
			t.Fatalf("append %q failed with its batch neighbour: %v", keys[i], err)
		}
	}
	if results[dup1].ID != results[dup2].ID || results[dup1].Duplicate == results[dup2].Duplicate {
		t.Fatalf("same key twice: %+v and %+v, want one append and one duplicate of it", results[dup1], results[dup2])
	}
	info, err := s.Info(t.Context(), p)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(len(keys) - 2); info.Length != want {
		t.Fatalf("stream holds %d entries, want %d", info.Length, want)
	}
}
