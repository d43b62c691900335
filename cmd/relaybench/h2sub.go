package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/protobuf/encoding/protowire"
)

// h2sub is a minimal gRPC client for one server-streaming Subscribe call, speaking HTTP/2
// directly: it sends the request, keeps flow control wide open and parses only the 5-byte
// gRPC message prefixes (and, when asked, hands each whole message to onMsg). A subscriber
// built on grpc-go spends more CPU per message than the server does to send it, and on a
// machine the server shares that would measure the client; this one measures the server.
// The wire protocol is the same gRPC a grpc-go or grpc-java client speaks.
type h2sub struct {
	conn  net.Conn
	bw    *bufio.Writer
	fr    *http2.Framer
	onMsg func(msg []byte) // nil: count only
	stop  func()           // ends a grpc-go stream (dialSubscribeGRPC); nil for the HTTP/2 one

	deliveries atomic.Int64
	heartbeats atomic.Int64
	headers    chan struct{} // closed when the response headers arrived
	done       chan struct{} // closed when the stream ended
	mu         sync.Mutex
	err        error // why it ended (nil: closed by us or status OK)

	// message reassembly
	hdr    [5]byte
	nhdr   int
	remain int
	first  bool // next payload byte is the message's first
	batch  bool // the message is a batch of deliveries: kept whole, then counted
	msg    []byte
	closed atomic.Bool
}

const h2Window = 1 << 30

func grpcFrame(msg []byte) []byte {
	b := make([]byte, 5+len(msg))
	binary.BigEndian.PutUint32(b[1:], uint32(len(msg)))
	copy(b[5:], msg)
	return b
}

// dialSubscribe opens a Subscribe stream on addr with the serialized SubscribeRequest req.
func dialSubscribe(addr string, req []byte, onMsg func([]byte)) (*h2sub, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	s := &h2sub{conn: c, bw: bufio.NewWriterSize(c, 32<<10), onMsg: onMsg,
		headers: make(chan struct{}), done: make(chan struct{})}
	s.fr = http2.NewFramer(s.bw, bufio.NewReaderSize(c, 256<<10))
	s.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	s.fr.MaxHeaderListSize = 1 << 20
	if _, err := s.bw.WriteString(http2.ClientPreface); err != nil {
		c.Close()
		return nil, err
	}
	_ = s.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: h2Window},
		http2.Setting{ID: http2.SettingEnablePush, Val: 0})
	_ = s.fr.WriteWindowUpdate(0, h2Window-65535)
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{
		{":method", "POST"}, {":scheme", "http"}, {":path", "/eventrelay.v1.EventService/Subscribe"},
		{":authority", (&url.URL{Host: addr}).Host}, {"content-type", "application/grpc"}, {"te", "trailers"},
	} {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	_ = s.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true})
	_ = s.fr.WriteData(1, true, grpcFrame(req))
	if err := s.bw.Flush(); err != nil {
		c.Close()
		return nil, err
	}
	go s.read()
	return s, nil
}

func (s *h2sub) fail(err error) {
	s.mu.Lock()
	if s.err == nil && !s.closed.Load() {
		s.err = err
	}
	s.mu.Unlock()
}

// Err is why the stream ended, nil while it runs or when it was closed by close.
func (s *h2sub) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *h2sub) close() {
	s.closed.Store(true)
	if s.stop != nil {
		s.stop()
	} else {
		_ = s.conn.Close()
	}
	<-s.done
}

func (s *h2sub) read() {
	defer close(s.done)
	defer s.conn.Close()
	gotHeaders := false
	unacked := 0
	s.first = true
	for {
		f, err := s.fr.ReadFrame()
		if err != nil {
			s.fail(err)
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = s.fr.WriteSettingsAck()
				_ = s.bw.Flush()
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				_ = s.fr.WritePing(true, f.Data)
				_ = s.bw.Flush()
			}
		case *http2.MetaHeadersFrame:
			var status, msg string
			for _, hf := range f.Fields {
				switch hf.Name {
				case "grpc-status":
					status = hf.Value
				case "grpc-message":
					msg = hf.Value
				}
			}
			if !gotHeaders {
				gotHeaders = true
				close(s.headers)
			}
			if status != "" && status != "0" {
				s.fail(fmt.Errorf("grpc-status %s: %s", status, msg))
			}
			if f.StreamEnded() {
				return
			}
		case *http2.DataFrame:
			data := f.Data()
			s.consume(data)
			unacked += len(data)
			if unacked >= 1<<20 {
				_ = s.fr.WriteWindowUpdate(0, uint32(unacked))
				_ = s.fr.WriteWindowUpdate(1, uint32(unacked))
				_ = s.bw.Flush()
				unacked = 0
			}
			if f.StreamEnded() {
				return
			}
		case *http2.RSTStreamFrame:
			s.fail(fmt.Errorf("stream reset: %v", f.ErrCode))
			return
		case *http2.GoAwayFrame:
			s.fail(fmt.Errorf("goaway: %v", f.ErrCode))
			return
		}
	}
}

// consume parses gRPC length-prefixed messages out of DATA payloads.
func (s *h2sub) consume(b []byte) {
	for len(b) > 0 {
		if s.nhdr < 5 {
			n := copy(s.hdr[s.nhdr:], b)
			s.nhdr += n
			b = b[n:]
			if s.nhdr < 5 {
				return
			}
			s.remain = int(binary.BigEndian.Uint32(s.hdr[1:]))
			s.first = true
			s.msg = s.msg[:0]
			if s.remain == 0 {
				s.nhdr = 0
			}
			continue // the payload may start in the next DATA frame
		}
		n := min(s.remain, len(b))
		if s.first {
			// SubscribeResponse: field 1 (tag 0x0a) delivery, field 2 (0x12) heartbeat, field 3
			// (0x1a) a batch of deliveries (-batch), counted once it is whole.
			switch b[0] {
			case 0x0a:
				s.deliveries.Add(1)
			case 0x1a:
				s.batch = true
			default:
				s.heartbeats.Add(1)
			}
			s.first = false
		}
		if s.onMsg != nil || s.batch {
			s.msg = append(s.msg, b[:n]...)
		}
		s.remain -= n
		b = b[n:]
		if s.remain == 0 {
			if s.batch {
				s.deliveries.Add(int64(eachDelivery(s.msg, s.onMsg)))
				s.batch = false
			} else if s.onMsg != nil && len(s.msg) > 0 && s.msg[0] == 0x0a {
				s.onMsg(s.msg)
			}
			s.nhdr = 0
		}
	}
}

// eachDelivery calls fn (when not nil) with each delivery of a serialized SubscribeResponse,
// as the SubscribeResponse carrying it alone (a batch's elements are exactly that: see
// server/delivery.go), and returns how many it carries.
func eachDelivery(msg []byte, fn func([]byte)) int {
	switch {
	case len(msg) == 0:
		return 0
	case msg[0] == 0x0a:
		if fn != nil {
			fn(msg)
		}
		return 1
	case msg[0] != 0x1a:
		return 0
	}
	body, ok := field(msg, 3)
	n := 0
	for ok && len(body) > 0 {
		_, _, l := protowire.ConsumeTag(body)
		if l < 0 {
			break
		}
		_, v := protowire.ConsumeBytes(body[l:])
		if v < 0 {
			break
		}
		if fn != nil {
			fn(body[:l+v])
		}
		body = body[l+v:]
		n++
	}
	return n
}

// deliveryEventID returns Event.id of a serialized SubscribeResponse carrying a delivery.
func deliveryEventID(msg []byte) (string, bool) {
	d, ok := field(msg, 1) // delivery
	if !ok {
		return "", false
	}
	ev, ok := field(d, 1) // event
	if !ok {
		return "", false
	}
	id, ok := field(ev, 1) // id
	return string(id), ok
}

// field returns the first length-delimited field num of a serialized message.
func field(b []byte, num protowire.Number) ([]byte, bool) {
	for len(b) > 0 {
		n, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return nil, false
		}
		b = b[l:]
		if n == num && typ == protowire.BytesType {
			v, l := protowire.ConsumeBytes(b)
			return v, l >= 0
		}
		l = protowire.ConsumeFieldValue(n, typ, b)
		if l < 0 {
			return nil, false
		}
		b = b[l:]
	}
	return nil, false
}
