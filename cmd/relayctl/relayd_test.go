package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/eventrelay/eventrelay/internal/e2e"
	"github.com/eventrelay/eventrelay/internal/syncbuf"
)

// The end-to-end tests run relayctl against the real relayd binary (internal/e2e builds it
// once from ./cmd/relayd), so that they exercise exactly what a user runs (including relayd's
// admin API).

func TestMain(m *testing.M) {
	code := m.Run()
	e2e.Cleanup()
	os.Exit(code)
}

// relayd is a running relayd process.
type relayd = e2e.Relayd

// startRelayd runs relayd on loopback ports and the embedded store, with the configuration
// config (top-level keys other than http, grpc, admin and log: "sources:\n  - ...") and the
// environment variables env (RELAY_*), and stops it at cleanup.
func startRelayd(t *testing.T, config string, env ...string) *relayd {
	t.Helper()
	return e2e.Start(t, config, env...)
}

type syncBuffer = syncbuf.Buffer

// result is one relayctl run.
type result struct {
	code           int
	stdout, stderr string
}

// relayctl runs relayctl in-process with args and an empty environment (plus env, NAME=VALUE),
// bounded by a minute.
func relayctl(t *testing.T, environ []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return relayctlContext(ctx, environ, args...)
}

func relayctlContext(ctx context.Context, environ []string, args ...string) result {
	vars := map[string]string{}
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	var stdout, stderr bytes.Buffer
	code := runContext(ctx, &env{
		stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr,
		getenv: func(k string) string { return vars[k] }, now: time.Now,
	}, args)
	return result{code, stdout.String(), stderr.String()}
}

// ok fails the test unless r exited 0.
func (r result) ok(t *testing.T) result {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	return r
}

func (r result) lines() []string {
	return strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
}
