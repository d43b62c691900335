package relay_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eventrelay/eventrelay/relay"
)

// mores returns the More flag of every delivery so far.
func (s *sub) mores() []bool {
	var out []bool
	for _, m := range s.messages() {
		out = append(out, m.More)
	}
	return out
}

// TestMessageMore: with MaxBatch, a delivery says whether the next, ready with it, joins its
// batch (what lets a transport batch them); the last of every run says no, also when the
// entries after it are filtered out, and so does the last of a full batch.
func TestMessageMore(t *testing.T) {
	backends(t, func(t *testing.T, url string) {
		f := newService(t, url, relay.Options{}, relay.SourceConfig{Name: "s"})
		for i, id := range ids("e", 6) {
			f.publish(t, "s", id, []string{"a", "b"}[i%2], id)
		}
		// History is one read, so one run.
		all := subscribe(t, f.svc, relay.SubscribeRequest{Start: relay.StartEarliest, MaxBatch: 100}, nil)
		all.wait(t, 6)
		if got := all.mores(); !slices.Equal(got, []bool{true, true, true, true, true, false}) {
			t.Fatalf("replay: More %v", got)
		}
		// e005 (type b) ends the read: the last "a" is the last of its run.
		as := subscribe(t, f.svc, relay.SubscribeRequest{Start: relay.StartEarliest, Types: relay.TypeFilter{"a"}, MaxBatch: 100}, nil)
		if got := as.wait(t, 3); !slices.Equal(got, []string{"e000", "e002", "e004"}) {
			t.Fatalf("types a: %v", got)
		}
		if got := as.mores(); !slices.Equal(got, []bool{true, true, false}) {
			t.Fatalf("types a: More %v", got)
		}
		// A tail event alone.
		f.publish(t, "s", "e006", "a", "e006")
		as.wait(t, 4)
		if got := as.mores(); got[3] {
			t.Fatal("a lone tail delivery says another follows")
		}

		// Group deliveries: the last one queued says no more, also when the ones after it
		// are filtered out (and acknowledged as handled): e007 is.
		f.publish(t, "s", "e007", "b", "e007")
		g := subscribe(t, f.svc, relay.SubscribeRequest{Start: relay.StartEarliest, Types: relay.TypeFilter{"a"},
			Group: relay.GroupOptions{Name: "g", AckDeadline: time.Minute}, MaxBatch: 100}, nil)
		if got := g.wait(t, 4); !slices.Equal(got, []string{"e000", "e002", "e004", "e006"}) {
			t.Fatalf("group: %v", got)
		}
		if got := g.mores(); got[len(got)-1] {
			t.Fatalf("group: More %v: the last says another follows", got)
		}

		// Full batches: of MaxBatch deliveries, and of at most MaxBatchBytes.
		two := subscribe(t, f.svc, relay.SubscribeRequest{Start: relay.StartEarliest, MaxBatch: 2}, nil)
		two.wait(t, 8)
		if got := two.mores(); !slices.Equal(got, []bool{true, false, true, false, true, false, true, false}) {
			t.Fatalf("MaxBatch 2: More %v", got)
		}
		none := subscribe(t, f.svc, relay.SubscribeRequest{Start: relay.StartEarliest}, nil)
		none.wait(t, 8)
		if got := none.mores(); slices.Contains(got, true) {
			t.Fatalf("without MaxBatch: More %v", got)
		}
	})
}

// TestMessageMoreBytes: a batch's deliveries add up to at most MaxBatchBytes.
func TestMessageMoreBytes(t *testing.T) {
	backends(t, func(t *testing.T, url string) {
		f := newService(t, url, relay.Options{}, relay.SourceConfig{Name: "s", MaxBodyBytes: 1 << 20})
		big := strings.Repeat("x", 400<<10) // three of them are over 1 MiB
		for _, id := range ids("e", 5) {
			if _, err := f.svc.Publish(context.Background(), relay.PublishInput{Source: "s", ID: id, Type: "t", Data: []byte(`"` + big + `"`)}); err != nil {
				t.Fatal(err)
			}
		}
		s := subscribe(t, f.svc, relay.SubscribeRequest{Start: relay.StartEarliest, MaxBatch: 100}, nil)
		s.wait(t, 5)
		if got := s.mores(); !slices.Equal(got, []bool{true, false, true, false, false}) {
			t.Fatalf("More %v, want batches of two", got)
		}
	})
}
