package server

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/eventrelay/eventrelay/relay"
	"github.com/eventrelay/eventrelay/relay/embedded"
	"github.com/eventrelay/eventrelay/relay/redisstore"
	"github.com/eventrelay/eventrelay/relay/verify"
)

const githubSecret = "gh-secret-12ab"

var fuzzMethods = []string{http.MethodPost, http.MethodGet, http.MethodPut, http.MethodDelete, http.MethodHead,
	http.MethodOptions, http.MethodPatch, "PROPFIND"}

var headerName = regexp.MustCompile(`^[A-Za-z0-9-]{1,64}$`)

// fuzzHeaders parses "Name: value" lines; lines a real server would refuse are dropped.
func fuzzHeaders(s string) http.Header {
	h := http.Header{}
	for _, line := range strings.Split(s, "\n") {
		name, value, ok := strings.Cut(line, ":")
		if !ok || !headerName.MatchString(name) || strings.ContainsAny(value, "\r\x00") {
			continue
		}
		h.Add(name, strings.TrimSpace(value))
	}
	return h
}

func hexMAC(secret, msg string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(msg))
	return hex.EncodeToString(m.Sum(nil))
}

var stripeTimestamp = regexp.MustCompile(`t=(\d+)`)

// carriesSignature is an independent check that a request carries its source's signature
// over body: the one thing no fuzzer can produce by chance.
func carriesSignature(source string, h http.Header, body []byte) bool {
	has := func(header, sig string) bool {
		for _, v := range h.Values(header) {
			if strings.Contains(strings.ToLower(v), sig) {
				return true
			}
		}
		return false
	}
	switch source {
	case "orders":
		return has("X-Signature", hexMAC(ordersSecret, string(body)))
	case "gh":
		return has("X-Hub-Signature-256", hexMAC(githubSecret, string(body)))
	case "stripe":
		for _, v := range h.Values("Stripe-Signature") {
			for _, m := range stripeTimestamp.FindAllStringSubmatch(v, -1) {
				if has("Stripe-Signature", "v1="+hexMAC(stripeSecret, m[1]+"."+string(body))) {
					return true
				}
			}
		}
	}
	return false
}

// FuzzWebhookIngress drives the public HTTP handler (ingress middleware, gateway, webhook
// service, a real store) with random methods, paths, headers and bodies: it never panics
// (which the handler would turn into a 500) and never answers 2xx without a valid signature.
//
//	go test ./server -run '^$' -fuzz FuzzWebhookIngress -fuzztime 60s
func FuzzWebhookIngress(f *testing.F) {
	srv, err := embedded.Start()
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(srv.Close)
	store, err := redisstore.Open(srv.URL(), false, "", redisstore.Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = store.Close() })
	cfgs := []relay.SourceConfig{
		{Name: "orders", Provider: "hmac", MaxBodyBytes: 2048, Verify: &verify.Options{Secrets: []relay.Secret{{Value: []byte(ordersSecret)}}}},
		{Name: "gh", Provider: "github", MaxBodyBytes: 2048, Verify: &verify.Options{Secrets: []relay.Secret{{Value: []byte(githubSecret)}}}},
		{Name: "stripe", Provider: "stripe", MaxBodyBytes: 2048, Verify: &verify.Options{Secrets: []relay.Secret{{Value: []byte(stripeSecret)}}}},
		{Name: "limited", Provider: "hmac", RateLimit: relay.RateLimit{RPS: 1000, Burst: 1000}, Verify: &verify.Options{Secrets: []relay.Secret{{Value: []byte(ordersSecret)}}}},
	}
	var sources []*relay.Source
	for i := range cfgs {
		cfgs[i].SetDefaults()
		v, err := verify.New(&cfgs[i])
		if err != nil {
			f.Fatal(err)
		}
		sources = append(sources, &relay.Source{Config: cfgs[i], Verifier: v})
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc, err := relay.NewService(TraceStore(store), sources, relay.Options{Logger: log})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = svc.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	f.Cleanup(cancel)
	h, err := NewHTTPHandler(ctx, svc, HTTPOptions{Webhooks: NewWebhookServer(svc, WebhookServerOptions{Logger: log}), Logger: log,
		Ingress: IngressOptions{ContentTypes: func(src *relay.SourceConfig, ct string) bool { return verify.SourceAccepts(src, ct) }}})
	if err != nil {
		f.Fatal(err)
	}

	// Seeds: valid requests of each source (the fuzzer mutates from there) and junk.
	for i, c := range cfgs[:3] {
		wr := &relay.WebhookRequest{Header: http.Header{}, Body: []byte(`{"id":"evt_seed` + string(rune('0'+i)) + `","type":"t"}`)}
		if err := verify.Sign(&c, wr, time.Now()); err != nil {
			f.Fatal(err)
		}
		var hs strings.Builder
		for k, vs := range wr.Header {
			for _, v := range vs {
				hs.WriteString(k + ": " + v + "\n")
			}
		}
		hs.WriteString("Content-Type: application/json\n")
		f.Add(uint8(0), "/v1/webhooks/"+c.Name, hs.String(), wr.Body)
	}
	f.Add(uint8(0), "/v1/webhooks/orders", "Content-Type: application/json\nX-Signature: sha256=00", []byte(`{}`))
	f.Add(uint8(1), "/v1/webhooks/orders?hub.challenge=x", "", []byte(nil))
	f.Add(uint8(2), "/v1/webhooks/orders", "Content-Type: text/plain", []byte("x"))
	f.Add(uint8(0), "/v1/webhooks/../webhooks/orders", "X-Forwarded-For: 1.2.3.4", []byte(`{"id":"\u0000"}`))
	f.Add(uint8(0), "/v1/webhooks/stripe", "Content-Type: application/json\nStripe-Signature: t=1,v1=,v1=zz", []byte(`{"id":1}`))
	f.Add(uint8(0), "/v1/webhooks/gh", "Content-Type: application/x-www-form-urlencoded\nX-Hub-Signature-256: sha256=", []byte("payload=%7B%7D"))
	f.Add(uint8(0), "/v1/events", "Content-Type: application/json", []byte(`{"source":"orders"}`))
	f.Add(uint8(0), "/v1/webhooks/limited", "Content-Length: 99999999", []byte(strings.Repeat("a", 3000)))

	f.Fuzz(func(t *testing.T, method uint8, path string, headers string, body []byte) {
		u, err := url.ParseRequestURI(path)
		if err != nil {
			return
		}
		r := httptest.NewRequest(http.MethodPost, "/", nil)
		r.Method = fuzzMethods[int(method)%len(fuzzMethods)]
		r.URL, r.RequestURI = u, path
		r.Header = fuzzHeaders(headers)
		r.Body = io.NopCloser(strings.NewReader(string(body)))
		r.ContentLength = int64(len(body))
		if method&0x80 != 0 {
			r.ContentLength = -1 // chunked
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if rec.Code == http.StatusInternalServerError {
			t.Fatalf("500 (a recovered panic?) for %s %q: %s", r.Method, path, rec.Body)
		}
		if rec.Code >= 200 && rec.Code < 300 {
			source, _ := strings.CutPrefix(u.Path, webhookPrefix)
			if !carriesSignature(source, r.Header, body) {
				t.Fatalf("%d without a valid signature for %s %q headers %v body %q: %s", rec.Code, r.Method, path, r.Header, body, rec.Body)
			}
		}
	})
}
