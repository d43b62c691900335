// Package daemon is relayd: Main wires the configuration to the store, the domain service
// and the gRPC, HTTP and admin listeners, and Command is relayd's main() with its
// environment made explicit. cmd/relayd calls Command; the end-to-end tests run Main in
// process.
package daemon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"github.com/eventrelay/eventrelay/internal/config"
	"github.com/eventrelay/eventrelay/relay/verify"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/eventrelay/eventrelay/relay"
	"github.com/eventrelay/eventrelay/server"
)

// Command is relayd's main with its environment made explicit (main passes os.Args[1:],
// os.Environ(), os.Stdout, os.Stderr): it parses the flags, loads the configuration and
// serves until ctx ends, and returns the exit status (0 after a clean shutdown, 1 when relayd
// could not start or stop in time, 2 for a usage or configuration error).
func Command(ctx context.Context, args, environ []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("relayd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "path of the YAML configuration file")
	flagKeys := map[string]*string{
		"http.addr":  fs.String("http-addr", "", "HTTP listen address (http.addr, default :8080)"),
		"grpc.addr":  fs.String("grpc-addr", "", "gRPC listen address (grpc.addr, default :9090)"),
		"admin.addr": fs.String("admin-addr", "", "admin listen address (admin.addr, default :9091)"),
		"redis.url":  fs.String("redis-url", "", "Redis URL (redis.url); empty: embedded in-memory store"),
		"log.level":  fs.String("log-level", "", "log level: debug, info, warn, error (log.level)"),
		"log.format": fs.String("log-format", "", "log format: json or text (log.format)"),
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "relayd: unexpected arguments %q\n", fs.Args())
		return 2
	}
	flags := map[string]string{}
	fs.Visit(func(f *flag.Flag) {
		key := strings.Replace(f.Name, "-", ".", 1)
		if _, ok := flagKeys[key]; ok {
			flags[key] = f.Value.String()
		}
	})
	cfg, err := config.Load(*configPath, environ, flags)
	if err != nil {
		fmt.Fprintf(stderr, "relayd: configuration: %v\n", err)
		return 2
	}
	log := newLogger(cfg.Log, stderr)
	var demo *demoSource
	if len(cfg.Sources) == 0 && *configPath == "" {
		if demo, err = addDemoSource(cfg, environ); err != nil {
			fmt.Fprintf(stderr, "relayd: %v\n", err)
			return 2
		}
	}
	m := NewMain(cfg, log)
	if err := m.Run(ctx); err != nil {
		log.Error("relayd failed to start", "err", err)
		_ = m.Close()
		return 1
	}
	if demo != nil {
		demo.banner(stdout, m.HTTPAddr) // the bound port (the configured one may be ":0")
	}
	<-ctx.Done()
	log.Info("shutting down")
	done := make(chan struct{})
	go func() { _ = m.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		log.Error("shutdown took longer than 10s; exiting")
		return 1
	}
	return 0
}

func newLogger(c config.LogConfig, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.SlogLevel()}
	var h slog.Handler
	if c.Format == "text" {
		h = slog.NewTextHandler(w, opts)
	} else {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(server.LogHandler(h))
}

// demoSource is the source relayd serves when run with no configuration.
type demoSource struct {
	secret    string
	generated bool // printed once; else from RELAY_DEMO_SECRET
}

// addDemoSource adds the "demo" source (provider hmac) used when relayd runs with no
// configuration, with its secret from RELAY_DEMO_SECRET or generated (banner prints it).
func addDemoSource(cfg *config.Config, environ []string) (*demoSource, error) {
	secret := ""
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, "RELAY_DEMO_SECRET="); ok {
			secret = v
		}
	}
	generated := secret == ""
	if generated {
		var b [16]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, err
		}
		secret = hex.EncodeToString(b[:])
	}
	src := relay.SourceConfig{Name: "demo", Provider: "hmac", Verify: &verify.Options{Secrets: []relay.Secret{{Value: []byte(secret)}}}}
	src.SetDefaults()
	if err := src.Validate(); err != nil {
		return nil, err
	}
	cfg.Sources = append(cfg.Sources, src)
	return &demoSource{secret: secret, generated: generated}, nil
}

// banner prints how to send the demo source a signed event on the HTTP listener bound at
// addr.
func (d *demoSource) banner(stdout io.Writer, addr string) {
	secret, generated := d.secret, d.generated
	host := "localhost"
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		port = addr
	}
	if generated {
		fmt.Fprintf(stdout, "eventrelay demo source: secret %s (set RELAY_DEMO_SECRET to choose it)\n", secret)
	} else {
		fmt.Fprintf(stdout, "eventrelay demo source: secret from RELAY_DEMO_SECRET\n")
	}
	fmt.Fprintf(stdout, `send a signed test event:
  BODY='{"id":"evt_1","type":"demo.hello","text":"hi"}'
  SIG=$(printf '%%s' "$BODY" | openssl dgst -sha256 -hmac "%s" -hex | sed 's/^.* //')
  curl -sS -X POST http://%s:%s/v1/webhooks/demo -H 'Content-Type: application/json' -H "X-Signature: sha256=$SIG" --data-binary "$BODY"
`, shellQuoteSecret(secret, generated), host, port)
}

func shellQuoteSecret(secret string, printable bool) string {
	if !printable {
		return "$RELAY_DEMO_SECRET"
	}
	return secret
}
