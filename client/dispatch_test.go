package client

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	eventrelayv1 "github.com/eventrelay/eventrelay/gen/eventrelay/v1"
)

// TestEndingDispatcherClosesGaps: with four handlers at once, the worker that took the second
// message is held back (as a descheduled goroutine is) until Receive is ending, while the
// other workers handle every later message. A tail still handles the held one, so that the
// saved cursor covers everything handled (a restart repeats nothing), with a context that is
// not cancelled; a group skips it (it is redelivered). A failing handler ends it the same way,
// and the cursor then stops just before the failed message.
func TestEndingDispatcherClosesGaps(t *testing.T) {
	const n = 10
	for _, tc := range []struct {
		name    string
		group   bool
		failAt  int    // the message whose handler fails (-1: none; the test cancels)
		handled int    // handlers run
		saved   string // the cursor saved at the end
		held    bool   // the held message was handled
	}{
		{name: "tail, cancelled", failAt: -1, handled: n, saved: "c9", held: true},
		{name: "tail, handler failed", failAt: 5, handled: n, saved: "c4", held: true},
		{name: "group, cancelled", group: true, failAt: -1, handled: n - 1, held: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			store := &MemoryCursorStore{}
			sub := Subscription{MaxConcurrency: 4, CursorStore: store}
			if tc.group {
				sub = Subscription{MaxConcurrency: 4, Group: "g"}
			}
			var (
				mu      sync.Mutex
				handled []string
				heldErr = errors.New("held message not handled")
			)
			others := make(chan struct{}, n)
			release := make(chan struct{})
			r := &receiver{sub: sub}
			r.handler = func(hctx context.Context, m *Message) error {
				mu.Lock()
				handled = append(handled, m.Event.GetId())
				if m.Event.GetId() == "e1" {
					heldErr = hctx.Err()
				}
				mu.Unlock()
				others <- struct{}{}
				if m.Event.GetId() == fmt.Sprintf("e%d", tc.failAt) {
					<-release // fail once every later message was handled
					return errors.New("handler failed")
				}
				return nil
			}
			ending := make(chan struct{})
			testHookTaken = func(seq uint64) {
				if seq == 1 {
					<-ending
				}
			}
			t.Cleanup(func() { testHookTaken = nil })

			d := newDispatcher(ctx, r, func() {})
			dispatched := make(chan struct{})
			go func() {
				defer close(dispatched)
				for i := range n {
					d.dispatch(&Message{Event: &eventrelayv1.Event{Id: fmt.Sprintf("e%d", i)}, Cursor: fmt.Sprintf("c%d", i)})
				}
			}()
			for range n - 1 { // every message but the held one
				select {
				case <-others:
				case <-time.After(30 * time.Second):
					t.Fatal("the other workers did not handle every later message")
				}
			}
			<-dispatched
			if tc.failAt < 0 {
				cancel()
			} else {
				close(release)
				for r.failed() == nil { // recorded once the failing handler returned
					time.Sleep(time.Millisecond)
				}
			}
			close(ending)
			d.wait()

			mu.Lock()
			defer mu.Unlock()
			if len(handled) != tc.handled || slices.Contains(handled, "e1") != tc.held {
				t.Errorf("handled %v, want %d handlers (the held e1 among them: %v)", handled, tc.handled, tc.held)
			}
			if tc.held && heldErr != nil {
				t.Errorf("the held message's context: %v, want not cancelled", heldErr)
			}
			if got, _ := store.Load(ctx); got != tc.saved {
				t.Errorf("saved cursor %q, want %q", got, tc.saved)
			}
		})
	}
}
