package client_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"

	"github.com/eventrelay/eventrelay/client"
	eventrelayv1 "github.com/eventrelay/eventrelay/gen/eventrelay/v1"
	"github.com/eventrelay/eventrelay/internal/e2e"
	"google.golang.org/grpc/metadata"
)

// groupStatus reads a group's numbers from relayd's admin endpoint.
func groupStatus(r *e2e.Relayd, source, group string) (struct{ Lag, Pending int64 }, error) {
	var out struct{ Lag, Pending int64 }
	resp, err := http.Get("http://" + r.Admin + "/v1/admin/sources")
	if err != nil {
		return out, err
	}
	defer resp.Body.Close()
	var sources []struct {
		Name   string
		Groups []struct {
			Name         string
			Lag, Pending int64
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&sources); err != nil {
		return out, err
	}
	for _, s := range sources {
		for _, g := range s.Groups {
			if s.Name == source && g.Name == group {
				out.Lag, out.Pending = g.Lag, g.Pending
				return out, nil
			}
		}
	}
	return out, fmt.Errorf("no group %s/%s", source, group)
}

// firstCursor returns the cursor of the oldest retained event of orders.
func firstCursor(t *testing.T, c *client.Client) string {
	t.Helper()
	resp, err := c.API().ListEvents(context.Background(), &eventrelayv1.ListEventsRequest{Source: "orders", PageSize: 1})
	if err != nil || len(resp.GetDeliveries()) == 0 {
		t.Fatalf("ListEvents: %v %v", resp, err)
	}
	return resp.GetDeliveries()[0].GetCursor()
}

// publishTraced publishes an event with traceParent as the gRPC traceparent metadata (which
// relayd records in Event.trace_parent).
func publishTraced(t *testing.T, c *client.Client, id, traceParent string) {
	t.Helper()
	ctx := metadata.AppendToOutgoingContext(context.Background(), "traceparent", traceParent)
	if _, err := c.API().Publish(ctx, &eventrelayv1.PublishRequest{Source: "orders", Id: id, Type: "traced", Data: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
}

// freezingProxy forwards TCP connections to a backend; freeze makes the open ones silent
// (bytes are neither forwarded nor is the connection closed) while new ones still work.
type freezingProxy struct {
	l       net.Listener
	backend string

	mu     sync.Mutex
	frozen []chan struct{}
	gate   chan struct{}
	count  int
}

func newFreezingProxy(t *testing.T, backend string) *freezingProxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &freezingProxy{l: l, backend: backend}
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	return p
}

func (p *freezingProxy) addr() string { return p.l.Addr().String() }

func (p *freezingProxy) connections() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.count
}

// freeze silences every connection open now.
func (p *freezingProxy) freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, g := range p.frozen {
		close(g)
	}
	p.frozen = nil
}

func (p *freezingProxy) serve(c net.Conn) {
	up, err := net.Dial("tcp", p.backend)
	if err != nil {
		c.Close()
		return
	}
	gate := make(chan struct{})
	p.mu.Lock()
	p.count++
	p.frozen = append(p.frozen, gate)
	p.mu.Unlock()
	pipe := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			select {
			case <-gate:
				<-make(chan struct{}) // frozen: hold the connection open, forward nothing
			default:
			}
			if n > 0 {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				if err != io.EOF {
					_ = dst.Close()
				}
				return
			}
		}
	}
	go pipe(up, c)
	go pipe(c, up)
}
