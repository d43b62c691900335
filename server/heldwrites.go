package server

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/peer"

	"github.com/eventrelay/eventrelay/relay"
)

// HeldWrites lets the connections of a gRPC listener send the deliveries of one read of the
// shared tail reader to all the Subscribe streams on them in one write, rather than one write
// per few streams.
//
// grpc-go's connection writer writes whenever it runs out of queued frames. When one event
// goes to many streams of a connection, their send loops run one after another on the
// machine's processors, and the writer runs between them: at 1,000 events/s to 25 streams
// per connection it wrote about four times per event and connection. Each write to a
// loopback or LAN peer costs a system call and a wake-up of the reader, more than the
// frames themselves.
//
// A connection of Listen's listener counts holds (relay.WriteHold): the shared reader takes
// one per stream it hands a read to, before the stream's send loop can see it, and the send
// loop gives it back once it has sent the read's deliveries. While holds are out, the
// connection keeps what grpc-go writes (up to heldBytes) and writes it all when the last
// hold is given back, or maxHold after the first byte it kept, whichever comes first. A
// connection without holds writes through at once, so replays, group deliveries,
// heartbeats and everything else grpc-go sends are untouched. The zero value is ready to
// use.
type HeldWrites struct {
	conns sync.Map // connKey -> *holdConn
}

// Bounds of what a connection holds back.
const (
	heldBytes = 256 << 10
	maxHold   = time.Millisecond
	// keepBuffer: a buffer that grew larger is not kept for the next burst.
	keepBuffer = 32 << 10
	// closeFlush bounds the write of kept bytes when the connection closes.
	closeFlush = 100 * time.Millisecond
)

type connKey struct{ local, remote string }

// Listen returns l with every connection it accepts holding its writes as described.
func (h *HeldWrites) Listen(l net.Listener) net.Listener { return &holdListener{Listener: l, h: h} }

// hold returns the WriteHold of the connection a stream came in on (nil when it did not come
// through Listen's listener: the in-process gateway connection, another server).
func (h *HeldWrites) hold(ctx context.Context) relay.WriteHold {
	if h == nil {
		return nil
	}
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil || p.LocalAddr == nil {
		return nil
	}
	c, ok := h.conns.Load(connKey{p.LocalAddr.String(), p.Addr.String()})
	if !ok {
		return nil
	}
	return c.(*holdConn)
}

type holdListener struct {
	net.Listener
	h *HeldWrites
}

func (l *holdListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	// grpc-go sets the keepalive timeout as the socket's TCP_USER_TIMEOUT only on a
	// *net.TCPConn, which the wrapper hides from it: set it here.
	if tc, ok := c.(*net.TCPConn); ok {
		_ = setUserTimeout(tc, KeepaliveServer.Timeout)
	}
	hc := &holdConn{Conn: c, owner: l.h, maxHold: maxHold, key: connKey{c.LocalAddr().String(), c.RemoteAddr().String()}}
	l.h.conns.Store(hc.key, hc)
	return hc, nil
}

// holdConn is one accepted connection (see HeldWrites). grpc-go writes to it from its one
// writer goroutine (TLS, when configured, sits above it); kept bytes are written by that
// writer's next write, or by a goroutine that the last hold given back starts, or by the
// timer.
type holdConn struct {
	net.Conn
	owner *HeldWrites
	key   connKey
	holds atomic.Int64
	kept  atomic.Int64 // writes of kept bytes so far (tests)
	// maxHold is how long kept bytes wait at most (the constant; tests lengthen it to tell
	// a write at the last release from the timer's).
	maxHold time.Duration

	wmu sync.Mutex // serializes writes to Conn, so that kept bytes go out before later ones

	mu     sync.Mutex // guards the fields below
	buf    []byte     // kept bytes
	spare  []byte     // the other buffer, while buf's bytes are written
	timer  *time.Timer
	armed  bool
	err    error // the first write error: the connection is broken
	closed bool
	// overdue: holds were out for maxHold (a stream's send blocked on flow control, say):
	// writes go through until every hold is given back, so that one stuck stream delays
	// the others on its connection once, by maxHold, not on every write.
	overdue bool
	once    sync.Once
}

// Hold implements relay.WriteHold.
func (c *holdConn) Hold() { c.holds.Add(1) }

// Release implements relay.WriteHold: the last hold given back has what was kept written.
func (c *holdConn) Release() {
	for h := c.holds.Load(); h > 0; h = c.holds.Load() {
		if c.holds.CompareAndSwap(h, h-1) {
			if h == 1 {
				c.mu.Lock()
				c.overdue = false
				kept := len(c.buf) > 0
				c.mu.Unlock()
				// A write from now on finds no hold and goes through itself. The kept bytes
				// are written from a goroutine of their own: Release must not block, and a
				// write may (a peer that stopped reading).
				if kept {
					go func() { _ = c.flush(false) }()
				}
			}
			return
		}
	}
}

func (c *holdConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return 0, err
	}
	if !c.closed && !c.overdue && c.holds.Load() > 0 && len(c.buf)+len(p) <= heldBytes {
		if !c.armed {
			if c.timer == nil {
				c.timer = time.AfterFunc(c.maxHold, func() { _ = c.flush(true) })
			} else {
				c.timer.Reset(c.maxHold)
			}
			c.armed = true
		}
		c.buf = append(c.buf, p...)
		c.mu.Unlock()
		return len(p), nil
	}
	c.mu.Unlock()
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.flushLocked(false); err != nil {
		return 0, err
	}
	n, err := c.Conn.Write(p)
	if err != nil {
		c.fail(err)
	}
	return n, err
}

// flush writes what was kept, if anything; expired says the timer called it.
func (c *holdConn) flush(expired bool) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.flushLocked(expired)
}

// flushLocked writes the kept bytes; c.wmu must be held.
func (c *holdConn) flushLocked(expired bool) error {
	c.mu.Lock()
	if expired {
		c.armed = false
		c.overdue = c.holds.Load() > 0
	} else if c.armed {
		c.timer.Stop()
		c.armed = false
	}
	b, err := c.buf, c.err
	c.buf, c.spare = c.spare[:0], nil
	c.mu.Unlock()
	if err != nil || len(b) == 0 {
		c.giveBack(b)
		return err
	}
	c.kept.Add(1)
	_, err = c.Conn.Write(b)
	c.giveBack(b)
	if err != nil {
		c.fail(err)
	}
	return err
}

// giveBack makes b, written, the spare buffer again.
func (c *holdConn) giveBack(b []byte) {
	c.mu.Lock()
	if c.spare == nil && cap(b) <= keepBuffer {
		c.spare = b[:0]
	}
	c.mu.Unlock()
}

// fail records a write error and closes the connection: bytes grpc-go was told were written
// are lost, so its reader must see the connection end rather than wait for an answer.
func (c *holdConn) fail(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.mu.Unlock()
	_ = c.Conn.Close()
}

// Close writes what was kept unless a write is in progress (then the peer is not reading,
// and the close must not wait for it: closing is what ends a blocked write), and closes the
// connection.
func (c *holdConn) Close() error {
	var err error
	c.once.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		if c.wmu.TryLock() {
			_ = c.Conn.SetWriteDeadline(time.Now().Add(closeFlush))
			_ = c.flushLocked(false)
			c.wmu.Unlock()
		}
		c.mu.Lock()
		if c.timer != nil {
			c.timer.Stop()
		}
		c.buf, c.spare = nil, nil
		c.mu.Unlock()
		c.owner.conns.CompareAndDelete(c.key, c)
		err = c.Conn.Close()
	})
	return err
}
