package server

import (
	"bytes"
	"errors"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"
)

// recordingConn records each Write call it gets.
type recordingConn struct {
	net.Conn // nil: only Write and Close are used
	mu       sync.Mutex
	writes   [][]byte
	fail     error
	closed   bool
}

func (c *recordingConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail != nil {
		return 0, c.fail
	}
	c.writes = append(c.writes, bytes.Clone(b))
	return len(b), nil
}

func (c *recordingConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	return nil
}

func (c *recordingConn) got() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, w := range c.writes {
		out = append(out, string(w))
	}
	return out
}

// oneConnListener accepts c once.
type oneConnListener struct {
	net.Listener
	c net.Conn
}

func (l *oneConnListener) Accept() (net.Conn, error) { return l.c, nil }

func coalescing(t *testing.T, rc *recordingConn, window time.Duration) net.Conn {
	t.Helper()
	c, err := CoalesceWrites(&oneConnListener{c: rc}, window).Accept()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func write(t *testing.T, c net.Conn, s string) {
	t.Helper()
	if n, err := c.Write([]byte(s)); n != len(s) || err != nil {
		t.Fatalf("Write(%q) = %d, %v", s, n, err)
	}
}

func TestCoalesceWritesOff(t *testing.T) {
	l := &oneConnListener{}
	for _, w := range []time.Duration{0, -time.Second} {
		if got := CoalesceWrites(l, w); got != net.Listener(l) {
			t.Errorf("CoalesceWrites(l, %s) wrapped the listener", w)
		}
	}
}

// A write after a quiet window leaves at once; the writes within the window after it are
// held (here the window is an hour, so until Close) and leave in one call, in order.
func TestCoalesceWritesHoldsWithinTheWindow(t *testing.T) {
	rc := &recordingConn{}
	c := coalescing(t, rc, time.Hour)
	write(t, c, "first")
	if got := rc.got(); !slices.Equal(got, []string{"first"}) {
		t.Fatalf("after the first write the connection got %q, want it at once", got)
	}
	write(t, c, "a")
	write(t, c, "bb")
	write(t, c, "ccc")
	if got := rc.got(); !slices.Equal(got, []string{"first"}) {
		t.Fatalf("writes within the window went out before it ended: %q", got)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if got := rc.got(); !slices.Equal(got, []string{"first", "abbccc"}) {
		t.Fatalf("after Close the connection got %q, want the held writes in one call", got)
	}
	if !rc.closed {
		t.Error("Close did not close the connection")
	}
	if err := c.Close(); err != nil { // idempotent
		t.Errorf("second Close = %v", err)
	}
}

// The held writes leave by themselves when the window ends.
func TestCoalesceWritesFlushesWhenTheWindowEnds(t *testing.T) {
	rc := &recordingConn{}
	c := coalescing(t, rc, time.Millisecond)
	t.Cleanup(func() { c.Close() })
	write(t, c, "1")
	write(t, c, "2")
	write(t, c, "3")
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := rc.got()
		if slices.Equal(got, []string{"1", "23"}) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the connection got %q, want [1 23]", got)
		}
		time.Sleep(time.Millisecond)
	}
}

// What would make the held bytes exceed maxCoalesced leaves at once, after them.
func TestCoalesceWritesBoundsWhatIsHeld(t *testing.T) {
	rc := &recordingConn{}
	c := coalescing(t, rc, time.Hour)
	t.Cleanup(func() { c.Close() })
	write(t, c, "first")
	write(t, c, "held")
	big := string(bytes.Repeat([]byte{'x'}, maxCoalesced))
	write(t, c, big)
	got := rc.got()
	if len(got) < 2 || got[0] != "first" {
		t.Fatalf("the connection got %d writes, want first, then held followed by the big one at once", len(got))
	}
	var all string
	for _, w := range got[1:] {
		all += w
	}
	if all != "held"+big {
		t.Fatal("the held bytes and the big write did not leave in order")
	}
}

// A failed write is returned by every later Write and closes the connection, so that its
// reader ends too.
func TestCoalesceWritesFailure(t *testing.T) {
	rc := &recordingConn{}
	c := coalescing(t, rc, time.Hour)
	write(t, c, "first")
	write(t, c, "held")
	boom := errors.New("connection reset")
	rc.mu.Lock()
	rc.fail = boom
	rc.mu.Unlock()
	_ = c.Close() // flushes "held", which fails
	if !rc.closed {
		t.Error("a failed write did not close the connection")
	}
	if _, err := c.Write([]byte("later")); !errors.Is(err, boom) {
		t.Errorf("Write after a failed write = %v, want %v", err, boom)
	}
}

// Over a real connection, concurrent writers' bytes all arrive, each write in one piece.
func TestCoalesceWritesOverTCP(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := CoalesceWrites(raw, 200*time.Microsecond)
	t.Cleanup(func() { l.Close() })
	const writers, each = 8, 500
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() {
				msg := bytes.Repeat([]byte{byte('a' + w)}, 16)
				for range each {
					if _, err := c.Write(msg); err != nil {
						return
					}
				}
			})
		}
		wg.Wait()
	}()
	c, err := net.Dial("tcp", raw.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != writers*each*16 {
		t.Fatalf("read %d bytes, want %d", len(got), writers*each*16)
	}
	counts := map[byte]int{}
	for i := 0; i < len(got); i += 16 {
		chunk := got[i : i+16]
		if !bytes.Equal(chunk, bytes.Repeat(chunk[:1], 16)) {
			t.Fatalf("a write was split or interleaved at byte %d: %q", i, chunk)
		}
		counts[chunk[0]]++
	}
	for w := range writers {
		if n := counts[byte('a'+w)]; n != each {
			t.Errorf("writer %d: %d writes arrived, want %d", w, n, each)
		}
	}
}
