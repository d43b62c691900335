package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	eventrelayv1 "github.com/eventrelay/eventrelay/gen/eventrelay/v1"
	"github.com/eventrelay/eventrelay/internal/e2e"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/types/known/durationpb"
)

// recConn is a net.Conn that records each Write it is given.
type recConn struct {
	net.Conn // nil: only the methods below are used
	mu       sync.Mutex
	writes   []string
	fail     error
	closed   bool
}

func (c *recConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail != nil {
		return 0, c.fail
	}
	c.writes = append(c.writes, string(p))
	return len(p), nil
}

func (c *recConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	return nil
}

func (c *recConn) SetWriteDeadline(time.Time) error { return nil }

func (c *recConn) got() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.writes)
}

// newHoldConn wraps c with a hold timer too long to fire in a test: what a test sees written
// was written by a release, a write or a close, unless the test shortens maxHold.
func newHoldConn(c net.Conn) *holdConn {
	return &holdConn{Conn: c, owner: &HeldWrites{}, maxHold: time.Hour}
}

func TestHoldConn(t *testing.T) {
	write := func(t *testing.T, c *holdConn, s string) {
		t.Helper()
		if n, err := c.Write([]byte(s)); err != nil || n != len(s) {
			t.Fatalf("Write(%q) = %d, %v", s, n, err)
		}
	}
	want := func(t *testing.T, r *recConn, w ...string) {
		t.Helper()
		if got := r.got(); !slices.Equal(got, w) {
			t.Fatalf("written %q, want %q", got, w)
		}
	}
	// eventually: the last hold given back has the kept bytes written by a goroutine.
	eventually := func(t *testing.T, r *recConn, w ...string) {
		t.Helper()
		e2e.Eventually(t, fmt.Sprintf("writes %q", w), func() bool { return slices.Equal(r.got(), w) })
	}

	t.Run("writes through without holds", func(t *testing.T) {
		r := &recConn{}
		c := newHoldConn(r)
		write(t, c, "a")
		write(t, c, "b")
		want(t, r, "a", "b")
	})

	t.Run("held writes go out together at the last release", func(t *testing.T) {
		r := &recConn{}
		c := newHoldConn(r)
		c.Hold()
		c.Hold()
		write(t, c, "a")
		write(t, c, "b")
		want(t, r)
		c.Release()
		want(t, r)
		c.Release()
		eventually(t, r, "ab")
		write(t, c, "c")
		want(t, r, "ab", "c")
		c.Release() // more releases than holds change nothing
		c.Hold()
		write(t, c, "d")
		want(t, r, "ab", "c")
		c.Release()
		eventually(t, r, "ab", "c", "d")
	})

	t.Run("kept bytes go out before a write too large to keep", func(t *testing.T) {
		r := &recConn{}
		c := newHoldConn(r)
		c.Hold()
		write(t, c, "a")
		big := string(bytes.Repeat([]byte("x"), heldBytes))
		write(t, c, big)
		want(t, r, "a", big)
		c.Release()
		want(t, r, "a", big)
	})

	t.Run("a hold not given back delays writes once", func(t *testing.T) {
		r := &recConn{}
		c := newHoldConn(r)
		c.maxHold = maxHold
		c.Hold()
		write(t, c, "a")
		eventually(t, r, "a") // written by the timer
		write(t, c, "b")
		want(t, r, "a", "b") // overdue: through at once while the hold is still out
		c.Release()
		c.mu.Lock()
		c.maxHold = time.Hour // from here on only the release writes
		c.mu.Unlock()
		c.Hold()
		write(t, c, "c") // every hold came back: held again
		want(t, r, "a", "b")
		c.Release()
		eventually(t, r, "a", "b", "c")
	})

	t.Run("a failed write of kept bytes closes the connection", func(t *testing.T) {
		broken := errors.New("broken pipe")
		r := &recConn{fail: broken}
		c := newHoldConn(r)
		c.Hold()
		write(t, c, "a")
		c.Release()
		e2e.Eventually(t, "the connection closed after its kept bytes failed", func() bool {
			r.mu.Lock()
			defer r.mu.Unlock()
			return r.closed
		})
		if _, err := c.Write([]byte("b")); !errors.Is(err, broken) {
			t.Fatalf("Write after the failure: %v", err)
		}
	})

	t.Run("close writes what was kept", func(t *testing.T) {
		r := &recConn{}
		c := newHoldConn(r)
		c.Hold()
		write(t, c, "a")
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		want(t, r, "a")
		if !r.closed {
			t.Fatal("not closed")
		}
		c.Release()
		want(t, r, "a")
	})

	t.Run("close does not wait for a blocked write", func(t *testing.T) {
		server, client := net.Pipe() // writes block until the other end reads
		defer client.Close()
		c := newHoldConn(server)
		done := make(chan error, 1)
		go func() {
			_, err := c.Write([]byte("nobody reads this"))
			done <- err
		}()
		time.Sleep(20 * time.Millisecond) // let the write block
		closed := make(chan struct{})
		go func() {
			_ = c.Close()
			close(closed)
		}()
		select {
		case <-closed:
		case <-time.After(5 * time.Second):
			t.Fatal("Close waited for a blocked write")
		}
		if err := <-done; err == nil {
			t.Fatal("the blocked write succeeded after Close")
		}
	})
}

// TestHeldWritesFindsTheStreamsConnection: a stream's hold is the connection it came in on,
// from its peer addresses, until that connection closes.
func TestHeldWritesFindsTheStreamsConnection(t *testing.T) {
	h := &HeldWrites{}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hl := h.Listen(lis)
	defer hl.Close()
	client, err := net.Dial("tcp", lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	sc, err := hl.Accept()
	if err != nil {
		t.Fatal(err)
	}
	ctx := peer.NewContext(context.Background(), &peer.Peer{Addr: client.LocalAddr(), LocalAddr: client.RemoteAddr()})
	if got := h.hold(ctx); got != sc.(*holdConn) {
		t.Fatalf("hold = %v, want the accepted connection", got)
	}
	other := peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, LocalAddr: client.RemoteAddr()})
	if got := h.hold(other); got != nil {
		t.Fatalf("hold of an unknown peer = %v", got)
	}
	if got := h.hold(context.Background()); got != nil {
		t.Fatalf("hold without a peer = %v", got)
	}
	if got := (*HeldWrites)(nil).hold(ctx); got != nil {
		t.Fatalf("hold of a nil HeldWrites = %v", got)
	}
	_ = sc.Close()
	if got := h.hold(ctx); got != nil {
		t.Fatal("a closed connection is still found")
	}
}

// TestHeldWritesManyStreamsOneConnection: 20 Subscribe streams on one client connection get
// every event in order through the held connection, whose kept bytes were written (the
// stream found its connection's hold).
func TestHeldWritesManyStreamsOneConnection(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const streams, events = 20, 50
	var subs []eventrelayv1.EventService_SubscribeClient
	for range streams {
		st, err := e.events.Subscribe(ctx, &eventrelayv1.SubscribeRequest{Sources: []string{"orders"}, HeartbeatInterval: durationpb.New(time.Second)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Header(); err != nil {
			t.Fatal(err)
		}
		subs = append(subs, st)
	}
	// Every stream is registered with the shared reader once its first heartbeat came.
	for _, st := range subs {
		for {
			m, err := st.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if m.GetHeartbeat() != nil {
				break
			}
		}
	}
	var want []string
	for i := range events {
		id := fmt.Sprintf("h%03d", i)
		want = append(want, id)
		if _, err := e.events.Publish(ctx, &eventrelayv1.PublishRequest{Source: "orders", Id: id, Type: "t", Data: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}
	for i, st := range subs {
		var got []string
		for len(got) < events {
			m, err := st.Recv()
			if err != nil {
				t.Fatalf("stream %d after %d: %v", i, len(got), err)
			}
			if d := m.GetDelivery(); d != nil {
				got = append(got, d.Event.Id)
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("stream %d got %v", i, got)
		}
	}
	kept := int64(0)
	e.writes.conns.Range(func(_, v any) bool {
		kept += v.(*holdConn).kept.Load()
		return true
	})
	if kept == 0 {
		t.Fatal("no kept bytes were ever written: the streams did not hold their connection")
	}
}
