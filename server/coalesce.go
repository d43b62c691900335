package server

import (
	"net"
	"sync"
	"time"
)

// Write coalescing for the gRPC listener.
//
// grpc-go writes a connection's frames when its writer finds nothing more to send, which at
// a trickle is after every few stream messages: an event fanned out to the 25 tail
// subscribers multiplexed on one client connection left in about five write system calls,
// and on loopback each of them also wakes the receiving process. Profiled at 1,000 events/s
// to 100 subscribers, those writes were the largest single cost of relayd.
//
// A coalescing connection writes at once when it has not written for a window, so a lone
// message (a unary answer, an event on a quiet stream) is never delayed; what is written
// within the window after a write waits until the window ends and then leaves in one
// system call. The first message of a burst goes out at once and the rest of the burst at
// most one window later.

// maxCoalesced bounds the bytes held back: beyond it they are written at once.
const maxCoalesced = 64 << 10

// CoalesceWrites returns l whose connections coalesce the writes made within window of the
// previous write (see above); window <= 0 returns l itself.
func CoalesceWrites(l net.Listener, window time.Duration) net.Listener {
	if window <= 0 {
		return l
	}
	return &coalescingListener{Listener: l, window: window}
}

type coalescingListener struct {
	net.Listener
	window time.Duration
}

func (l *coalescingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	cc := &coalescingConn{Conn: c, window: l.window}
	cc.timer = time.AfterFunc(time.Hour, cc.flushTimer)
	cc.timer.Stop()
	return cc, nil
}

// coalescingConn is a connection whose writes within window of the previous one are held
// and written together when the window ends.
type coalescingConn struct {
	net.Conn
	window time.Duration
	timer  *time.Timer

	wmu sync.Mutex // serializes writes to Conn, taken before mu

	mu      sync.Mutex
	held    []byte    // written by the caller, not yet to Conn
	spare   []byte    // the other buffer, swapped with held on a flush
	armed   bool      // the timer will flush held
	last    time.Time // when Conn was last written
	err     error     // the first failed write: every later Write returns it
	closing bool
}

func (c *coalescingConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return 0, c.err
	}
	if c.armed || time.Since(c.last) < c.window {
		if len(c.held)+len(b) <= maxCoalesced {
			c.held = append(c.held, b...)
			if !c.armed {
				c.armed = true
				c.timer.Reset(c.window - time.Since(c.last))
			}
			c.mu.Unlock()
			return len(b), nil
		}
	}
	c.mu.Unlock()
	// Idle long enough, or too much held: write what is held and b now.
	if err := c.flush(b); err != nil {
		return 0, err
	}
	return len(b), nil
}

// flushTimer runs when the window of held writes ends.
func (c *coalescingConn) flushTimer() { _ = c.flush(nil) }

// flush writes what is held, then extra, in one system call.
func (c *coalescingConn) flush(extra []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return c.err
	}
	out := c.held
	c.held, c.spare = c.spare[:0], nil
	if c.armed {
		c.armed = false
		c.timer.Stop()
	}
	c.mu.Unlock()

	var err error
	switch {
	case len(out) == 0 && len(extra) == 0:
	case len(out) == 0:
		_, err = c.Conn.Write(extra)
	case len(extra) == 0:
		_, err = c.Conn.Write(out)
	default:
		bufs := net.Buffers{out, extra}
		_, err = bufs.WriteTo(c.Conn)
	}

	c.mu.Lock()
	c.last = time.Now()
	c.spare = out[:0]
	if cap(c.spare) > maxCoalesced {
		c.spare = nil
	}
	if err != nil && c.err == nil {
		c.err = err
	}
	c.mu.Unlock()
	if err != nil {
		_ = c.Conn.Close() // the reader side sees the connection end too
	}
	return err
}

// Close writes what is held (a GOAWAY, the last answers), then closes the connection.
func (c *coalescingConn) Close() error {
	c.mu.Lock()
	closing := c.closing
	c.closing = true
	c.mu.Unlock()
	if !closing {
		_ = c.flush(nil)
		c.timer.Stop()
	}
	return c.Conn.Close()
}
