package relay_test

import (
	"slices"
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

// TestMessageMore: a delivery says whether another that was ready with it follows at once
// (what lets a transport batch them), and the last of every run says no, also when the
// entries after it are filtered out.
func TestMessageMore(t *testing.T) {
	backends(t, func(t *testing.T, url string) {
		f := newService(t, url, relay.Options{}, relay.SourceConfig{Name: "s"})
		for i, id := range ids("e", 6) {
			f.publish(t, "s", id, []string{"a", "b"}[i%2], id)
		}
		// History is one read, so one run.
		all := subscribe(t, f.svc, relay.SubscribeRequest{Start: relay.StartEarliest}, nil)
		all.wait(t, 6)
		if got := all.mores(); !slices.Equal(got, []bool{true, true, true, true, true, false}) {
			t.Fatalf("replay: More %v", got)
		}
		// e005 (type b) ends the read: the last "a" is the last of its run.
		as := subscribe(t, f.svc, relay.SubscribeRequest{Start: relay.StartEarliest, Types: relay.TypeFilter{"a"}}, nil)
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
			Group: relay.GroupOptions{Name: "g", AckDeadline: time.Minute}}, nil)
		if got := g.wait(t, 4); !slices.Equal(got, []string{"e000", "e002", "e004", "e006"}) {
			t.Fatalf("group: %v", got)
		}
		if got := g.mores(); got[len(got)-1] {
			t.Fatalf("group: More %v: the last says another follows", got)
		}
	})
}
