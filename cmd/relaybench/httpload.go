package main

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// A minimal HTTP/1.1 keep-alive client: one request at a time per connection, the request
// written with one write, the response parsed just enough (status, Content-Length or
// chunked, Connection: close). It keeps the load generator's own CPU small on a machine the
// server under test shares.

type httpConn struct {
	addr string
	c    net.Conn
	br   *bufio.Reader
	req  []byte
	body []byte
}

func newHTTPConn(addr string) *httpConn { return &httpConn{addr: addr} }

func (h *httpConn) close() {
	if h.c != nil {
		_ = h.c.Close()
		h.c = nil
	}
}

// post sends one request and returns the status and the response body (valid until the next
// call).
func (h *httpConn) post(path string, headers [][2]string, body []byte) (int, []byte, error) {
	if h.c == nil {
		c, err := net.DialTimeout("tcp", h.addr, 5*time.Second)
		if err != nil {
			return 0, nil, err
		}
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetNoDelay(true)
		}
		h.c = c
		h.br = bufio.NewReaderSize(c, 16<<10)
	}
	b := h.req[:0]
	b = append(b, "POST "...)
	b = append(b, path...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, h.addr...)
	b = append(b, "\r\n"...)
	for _, kv := range headers {
		b = append(b, kv[0]...)
		b = append(b, ": "...)
		b = append(b, kv[1]...)
		b = append(b, "\r\n"...)
	}
	b = append(b, "Content-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\n\r\n"...)
	b = append(b, body...)
	h.req = b
	_ = h.c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := h.c.Write(b); err != nil {
		h.close()
		return 0, nil, err
	}
	status, respBody, keep, err := h.readResponse()
	if err != nil || !keep {
		h.close()
	}
	return status, respBody, err
}

var errBadResponse = errors.New("malformed HTTP response")

func (h *httpConn) readResponse() (status int, body []byte, keep bool, err error) {
	line, err := h.br.ReadSlice('\n')
	if err != nil {
		return 0, nil, false, err
	}
	// HTTP/1.1 200 OK
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, nil, false, errBadResponse
	}
	status, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, nil, false, errBadResponse
	}
	keep = true
	length := -1
	chunked := false
	for {
		line, err = h.br.ReadSlice('\n')
		if err != nil {
			return 0, nil, false, err
		}
		if len(line) <= 2 {
			break
		}
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		v = bytes.TrimSpace(v)
		switch {
		case asciiEqualFold(k, "content-length"):
			length, err = strconv.Atoi(string(v))
			if err != nil {
				return 0, nil, false, errBadResponse
			}
		case asciiEqualFold(k, "transfer-encoding"):
			chunked = asciiEqualFold(v, "chunked")
		case asciiEqualFold(k, "connection"):
			if asciiEqualFold(v, "close") {
				keep = false
			}
		}
	}
	h.body = h.body[:0]
	switch {
	case chunked:
		for {
			line, err = h.br.ReadSlice('\n')
			if err != nil {
				return 0, nil, false, err
			}
			n, err := strconv.ParseInt(string(bytes.TrimSpace(bytes.SplitN(line, []byte(";"), 2)[0])), 16, 64)
			if err != nil {
				return 0, nil, false, errBadResponse
			}
			if n == 0 {
				for { // trailers
					line, err = h.br.ReadSlice('\n')
					if err != nil {
						return 0, nil, false, err
					}
					if len(line) <= 2 {
						break
					}
				}
				break
			}
			start := len(h.body)
			h.body = append(h.body, make([]byte, n)...)
			if _, err := io.ReadFull(h.br, h.body[start:]); err != nil {
				return 0, nil, false, err
			}
			if _, err := h.br.Discard(2); err != nil {
				return 0, nil, false, err
			}
		}
	case length >= 0:
		if cap(h.body) < length {
			h.body = make([]byte, length)
		}
		h.body = h.body[:length]
		if _, err := io.ReadFull(h.br, h.body); err != nil {
			return 0, nil, false, err
		}
	default:
		return 0, nil, false, errBadResponse // we never send requests that allow close-delimited bodies
	}
	return status, h.body, keep, nil
}

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// signer builds signed webhooks the way a hand-written sender signs them: hex
// HMAC-SHA256 of the raw body in X-Signature, "sha256=" prefixed.
type signer struct {
	secret []byte
	prefix string // event id prefix: unique per run and phase
}

// body returns the ~160-byte JSON webhook of event seq.
func (s *signer) body(dst []byte, seq int64) []byte {
	dst = append(dst[:0], `{"id":"`...)
	dst = append(dst, s.prefix...)
	dst = strconv.AppendInt(dst, seq, 10)
	dst = append(dst, `","type":"order.created","created":1700000000,"data":{"object":{"id":"ord_`...)
	dst = strconv.AppendInt(dst, seq%100000, 10)
	dst = append(dst, `","amount":1999,"currency":"usd","customer":"cus_42"}}}`...)
	return dst
}

func (s *signer) id(seq int64) string { return s.prefix + strconv.FormatInt(seq, 10) }

func (s *signer) sign(body []byte) string {
	m := hmac.New(sha256.New, s.secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// ingestResult is one closed-loop load run.
type ingestResult struct {
	name      string
	duration  time.Duration // measured window
	ok        int64         // 2xx in the window
	errors    int64         // transport errors + non-2xx in the whole run
	statuses  map[int]int64
	lat       latencies // sorted, window only
	acked     []int64   // every acknowledged (2xx, not duplicate) seq, whole run
	missing   int64     // acknowledged but not found in the stream afterwards
	total     int64     // requests answered in the whole run (warm-up included)
	cpu       *cpuMeter // CPU used over the whole run
	batch     float64   // relayd: appends per Redis round trip (0: unknown)
	firstErr  string
	reqPerSec float64
}

// runIngest runs conns closed-loop workers POSTing signed webhooks to addr+path for warmup +
// d. Every 2xx is recorded as acknowledged.
func runIngest(name, addr, path string, sg *signer, conns int, warmup, d time.Duration) *ingestResult {
	var seq atomic.Int64
	start := time.Now()
	winStart, winEnd := start.Add(warmup), start.Add(warmup+d)
	type workerOut struct {
		lat      []time.Duration
		acked    []int64
		ok, errs int64
		statuses map[int]int64
		firstErr string
	}
	outs := make([]workerOut, conns)
	var wg sync.WaitGroup
	for w := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := &outs[w]
			o.statuses = map[int]int64{}
			c := newHTTPConn(addr)
			defer c.close()
			var body []byte
			hdr := [][2]string{{"Content-Type", "application/json"}, {"X-Signature", ""}}
			for {
				now := time.Now()
				if now.After(winEnd) {
					return
				}
				n := seq.Add(1)
				body = sg.body(body, n)
				hdr[1][1] = sg.sign(body)
				t0 := time.Now()
				status, resp, err := c.post(path, hdr, body)
				t1 := time.Now()
				if err != nil {
					o.errs++
					if o.firstErr == "" {
						o.firstErr = err.Error()
					}
					time.Sleep(time.Millisecond)
					continue
				}
				o.statuses[status]++
				if status/100 != 2 {
					o.errs++
					if o.firstErr == "" {
						o.firstErr = fmt.Sprintf("HTTP %d: %.200s", status, resp)
					}
					continue
				}
				if !bytes.Contains(resp, []byte(`"duplicate":true`)) {
					o.acked = append(o.acked, n)
				}
				if !t1.Before(winStart) && !t1.After(winEnd) {
					o.ok++
					o.lat = append(o.lat, t1.Sub(t0))
				}
			}
		}()
	}
	wg.Wait()
	r := &ingestResult{name: name, duration: d, statuses: map[int]int64{}}
	var lat latencies
	for _, o := range outs {
		r.ok += o.ok
		r.errors += o.errs
		lat = append(lat, o.lat...)
		r.acked = append(r.acked, o.acked...)
		for k, v := range o.statuses {
			r.statuses[k] += v
			r.total += v
		}
		if r.firstErr == "" {
			r.firstErr = o.firstErr
		}
	}
	r.lat = lat.sorted()
	r.reqPerSec = float64(r.ok) / d.Seconds()
	return r
}
