package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// baseline is the receiver a user would write by hand instead of running relayd: net/http,
// verify the HMAC over the raw body, pull id and type out of the JSON, one XADD per request
// with go-redis (default options), answer 200. No dedupe, no partitions, no Event envelope.
type baseline struct {
	rdb    *redis.Client
	secret []byte
	stream string
	srv    *http.Server
	addr   string
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
	if err := b.rdb.XAdd(r.Context(), &redis.XAddArgs{Stream: b.stream, Values: []any{"id", ev.ID, "type", ev.Type, "body", body}}).Err(); err != nil {
		http.Error(w, "store unavailable", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"event_id":"`+ev.ID+`","duplicate":false}`)
}

func (b *baseline) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = b.srv.Shutdown(ctx)
	_ = b.rdb.Close()
}
