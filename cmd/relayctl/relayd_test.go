package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eventrelay/eventrelay/internal/syncbuf"
)

// The end-to-end tests run relayctl against the real relayd binary, built once from
// ./cmd/relayd, so that they exercise exactly what a user runs (including relayd's admin API).

var relaydBin struct {
	once sync.Once
	dir  string
	path string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if relaydBin.dir != "" {
		_ = os.RemoveAll(relaydBin.dir)
	}
	os.Exit(code)
}

// buildRelayd builds cmd/relayd once per test binary.
func buildRelayd(t testing.TB) string {
	t.Helper()
	relaydBin.once.Do(func() {
		relaydBin.dir, relaydBin.err = os.MkdirTemp("", "relayctl-test-")
		if relaydBin.err != nil {
			return
		}
		relaydBin.path = filepath.Join(relaydBin.dir, "relayd")
		cmd := exec.Command("go", "build", "-o", relaydBin.path, "github.com/eventrelay/eventrelay/cmd/relayd")
		out, err := cmd.CombinedOutput()
		if err != nil {
			relaydBin.err = fmt.Errorf("go build ./cmd/relayd: %v\n%s", err, out)
		}
	})
	if relaydBin.err != nil {
		t.Fatal(relaydBin.err)
	}
	return relaydBin.path
}

// relayd is a running relayd process.
type relayd struct {
	HTTP, GRPC, Admin string
}

// startRelayd runs relayd on loopback ports and the embedded store, with the configuration
// config (top-level keys other than http, grpc, admin and log: "sources:\n  - ...") and the
// environment variables env (RELAY_*), and stops it at cleanup.
func startRelayd(t *testing.T, config string, env ...string) *relayd {
	t.Helper()
	bin := buildRelayd(t)
	dir := t.TempDir()
	cfg := "http: {addr: \"127.0.0.1:0\"}\ngrpc: {addr: \"127.0.0.1:0\"}\nadmin: {addr: \"127.0.0.1:0\"}\nlog: {level: info, format: json}\n" + config
	path := filepath.Join(dir, "relay.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-config", path)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	ready := make(chan *relayd, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			logs.Write(append(line, '\n'))
			var rec struct{ Msg, HTTP, GRPC, Admin string }
			if json.Unmarshal(line, &rec) == nil && rec.Msg == "relayd listening" {
				ready <- &relayd{HTTP: rec.HTTP, GRPC: rec.GRPC, Admin: rec.Admin}
			}
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("relayd log:\n%s", logs.String())
		}
	})
	select {
	case r := <-ready:
		return r
	case <-done:
		t.Fatalf("relayd exited before listening:\n%s", logs.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("relayd did not start:\n%s", logs.String())
	}
	return nil
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
