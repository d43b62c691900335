package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// baseline is the receiver a user would write by hand instead of running relayd: net/http,
// verify the HMAC over the raw body, pull id and type out of the JSON, one XADD per request
// with go-redis (default options), answer 200. No dedupe, no partitions, no Event envelope.
// POST /v1/webhooks/nostore does the same without the XADD: the upper bound of any receiver
// built on net/http on this machine.
type baseline struct {
	rdb    *redis.Client
	secret []byte
	stream string
	srv    *http.Server
	addr   string
	proc   *proc // when it runs as a child process (the default)
	pid    int
}

// startBaselineProcess runs the baseline in a child process (this binary with
// -serve-baseline), like relayd: a receiver sharing the load generator's process would
// share its scheduler, and its wakeups would be cheaper than a separate server's.
func startBaselineProcess(redisURL string, secret []byte, stream string) (*baseline, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	p, err := startProc("baseline", exe, []string{"-serve-baseline", "-redis-url", redisURL, "-stream", stream}, append(os.Environ(), "RELAYBENCH_SECRET="+string(secret)))
	if err != nil {
		return nil, err
	}
	var addr string
	if err := p.waitLine(10*time.Second, func(l string) bool {
		a, ok := strings.CutPrefix(l, "baseline listening ")
		addr = strings.TrimSpace(a)
		return ok
	}); err != nil {
		p.stop()
		return nil, err
	}
	return &baseline{secret: secret, stream: stream, addr: addr, proc: p, pid: p.pid()}, nil
}

// serveBaseline is the child process of startBaselineProcess.
func serveBaseline(redisURL, stream string) error {
	b, err := startBaseline(redisURL, []byte(os.Getenv("RELAYBENCH_SECRET")), stream)
	if err != nil {
		return err
	}
	fmt.Printf("baseline listening %s\n", b.addr)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	b.close()
	return nil
}

func startBaseline(redisURL string, secret []byte, stream string) (*baseline, error) {
	opt, err := redis.ParseURL(redisURL)
	if err != nil {
		return nil, err
	}
	b := &baseline{rdb: redis.NewClient(opt), secret: secret, stream: stream}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/webhooks/{source}", b.receive)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b.addr = l.Addr().String()
	b.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = b.srv.Serve(l) }()
	return b, nil
}

func (b *baseline) receive(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	sig, err := hex.DecodeString(strings.TrimPrefix(r.Header.Get("X-Signature"), "sha256="))
	if err != nil {
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	m := hmac.New(sha256.New, b.secret)
	m.Write(body)
	if !hmac.Equal(m.Sum(nil), sig) {
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var ev struct {
		ID   string `json:"id"`
		Type string `json:"type"`
	}
	if err := json.Unmarshal(body, &ev); err != nil {
		http.Error(w, "bad json", http.StatusBadRequest)
		return
	}
	if r.PathValue("source") == "nostore" {
		// The reference without storage: what any Go HTTP receiver costs at most.
	} else if err := b.rdb.XAdd(r.Context(), &redis.XAddArgs{Stream: b.stream, Values: []any{"id", ev.ID, "type", ev.Type, "body", body}}).Err(); err != nil {
		http.Error(w, "store unavailable", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"event_id":"`+ev.ID+`","duplicate":false}`)
}

func (b *baseline) close() {
	if b.proc != nil {
		b.proc.stop()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = b.srv.Shutdown(ctx)
	_ = b.rdb.Close()
}
