// Package e2e is the end-to-end test harness of the repository: it runs the real relayd
// binary as a process (so a test can SIGKILL and restart it), signs and posts webhooks, and
// waits for conditions. Tests of relayd, relayctl, the client library and the examples use
// it; it is for tests only.
package e2e

import (
	"bufio"
	"bytes"
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
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eventrelay/eventrelay/internal/syncbuf"
	"github.com/eventrelay/eventrelay/relay"
	"github.com/eventrelay/eventrelay/relay/verify"
)

// Secret is the hmac secret of the sources HMACSource configures.
const Secret = "e2e-secret-for-tests"

// Wait bounds every wait of the harness for something that must happen.
const Wait = 30 * time.Second

var relaydBin struct {
	once sync.Once
	path string
	err  error
}

// buildRelayd builds ./cmd/relayd once per process, into a temporary directory that Cleanup
// removes, and returns its path.
func buildRelayd() (string, error) {
	relaydBin.once.Do(func() {
		dir, err := os.MkdirTemp("", "eventrelay-e2e-")
		if err != nil {
			relaydBin.err = err
			return
		}
		relaydBin.path = filepath.Join(dir, "relayd")
		out, err := exec.Command("go", "build", "-o", relaydBin.path, "github.com/eventrelay/eventrelay/cmd/relayd").CombinedOutput()
		if err != nil {
			relaydBin.err = fmt.Errorf("go build ./cmd/relayd: %v\n%s", err, out)
		}
	})
	return relaydBin.path, relaydBin.err
}

// Cleanup removes the relayd binary the harness built; call it from TestMain after m.Run.
func Cleanup() {
	if relaydBin.path != "" {
		_ = os.RemoveAll(filepath.Dir(relaydBin.path))
	}
}

// HMACSource is the YAML of an hmac source signed with Secret (extra: more keys of the
// source, e.g. "partitions: 4").
func HMACSource(name string, extra ...string) string {
	s := "  - name: " + name + "\n    provider: hmac\n    secrets: [\"" + Secret + "\"]\n"
	for _, e := range extra {
		s += "    " + e + "\n"
	}
	return s
}

// Relayd is a relayd process. Its addresses stay the same across Restart.
type Relayd struct {
	HTTP, GRPC, Admin string

	bin  string
	dir  string // a temporary directory of Launch (removed at cleanup); "" for LaunchFile
	path string // the configuration file
	env  []string
	logs syncbuf.Buffer

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	code int // exit status, once done is closed
}

// Start runs relayd as Launch does and stops it at cleanup, showing its log when the test
// failed.
func Start(t testing.TB, config string, env ...string) *Relayd {
	t.Helper()
	r, err := Launch(config, env...)
	return r.startedFor(t, err)
}

// startedFor fails t on err, else stops r when t ends (showing its log when t failed) and
// removes its temporary directory.
func (r *Relayd) startedFor(t testing.TB, err error) *Relayd {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.Stop()
		if t.Failed() {
			t.Logf("relayd log:\n%s", r.Logs())
		}
		if r.dir != "" {
			_ = os.RemoveAll(r.dir)
		}
	})
	return r
}

// Launch builds (once) and runs relayd on free loopback ports with the configuration config
// (top-level keys other than http, grpc, admin and log, e.g. "redis:\n  url: ...\nsources:\n"
// + HMACSource("orders")) and the environment env (NAME=VALUE; PATH is passed on), and
// returns once it listens. Stop it with Stop.
func Launch(config string, env ...string) (*Relayd, error) {
	bin, err := buildRelayd()
	if err != nil {
		return nil, err
	}
	r := &Relayd{bin: bin, env: env}
	addrs, err := freeAddrs(3)
	if err != nil {
		return nil, err
	}
	r.HTTP, r.GRPC, r.Admin = addrs[0], addrs[1], addrs[2]
	if r.dir, err = os.MkdirTemp("", "eventrelay-e2e-run-"); err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf("http: {addr: %q}\ngrpc: {addr: %q}\nadmin: {addr: %q}\nlog: {level: debug, format: json}\n%s",
		r.HTTP, r.GRPC, r.Admin, config)
	r.path = filepath.Join(r.dir, "relay.yaml")
	if err := os.WriteFile(r.path, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	if err := r.launch(); err != nil {
		_ = os.RemoveAll(r.dir)
		return nil, err
	}
	return r, nil
}

// LaunchFile runs relayd with the configuration file path as it is (its listeners may be on
// port 0: the addresses are read from relayd's "relayd listening" log line, so the log must be
// JSON) and the environment env, and returns once it listens. Restart starts it again with the
// same file, so on the same addresses only when the file names them.
func LaunchFile(path string, env ...string) (*Relayd, error) {
	bin, err := buildRelayd()
	if err != nil {
		return nil, err
	}
	r := &Relayd{bin: bin, env: env, path: path}
	if err := r.launch(); err != nil {
		return nil, err
	}
	return r, nil
}

// StartFile runs relayd as LaunchFile does and stops it at cleanup, showing its log when the
// test failed.
func StartFile(t testing.TB, path string, env ...string) *Relayd {
	t.Helper()
	r, err := LaunchFile(path, env...)
	return r.startedFor(t, err)
}

// Exits runs relayd with the configuration file path, expects it to exit before listening
// (a configuration it refuses), and returns its exit status and log.
func Exits(t testing.TB, path string, env ...string) (code int, logs string) {
	t.Helper()
	bin, err := buildRelayd()
	if err != nil {
		t.Fatal(err)
	}
	r := &Relayd{bin: bin, env: env, path: path}
	if err := r.launch(); err == nil {
		r.Stop()
		t.Fatalf("relayd started; want it to exit:\n%s", r.Logs())
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.code, r.logs.String()
}

// freeAddrs returns n distinct free loopback addresses: their listeners stay open until all
// are chosen, so the system cannot hand the same port out twice (relayd refuses a
// configuration with two listeners on one address).
func freeAddrs(n int) ([]string, error) {
	var out []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		out = append(out, l.Addr().String())
	}
	return out, nil
}

// launch starts the process and waits until it listens.
func (r *Relayd) launch() error {
	cmd := exec.Command(r.bin, "-config", r.path)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, r.env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	ready := make(chan struct{}, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			_, _ = r.logs.Write(append(line, '\n'))
			var rec struct{ Msg, HTTP, GRPC, Admin string }
			if json.Unmarshal(line, &rec) == nil && rec.Msg == "relayd listening" {
				// Written only when they changed (a first launch that asked for port 0): a
				// restart listens where it did, and tests read the fields while it restarts.
				if r.HTTP != rec.HTTP || r.GRPC != rec.GRPC || r.Admin != rec.Admin {
					r.mu.Lock()
					r.HTTP, r.GRPC, r.Admin = rec.HTTP, rec.GRPC, rec.Admin
					r.mu.Unlock()
				}
				select {
				case ready <- struct{}{}:
				default:
				}
			}
		}
		_ = cmd.Wait()
		r.mu.Lock()
		r.code = cmd.ProcessState.ExitCode()
		r.mu.Unlock()
	}()
	r.mu.Lock()
	r.cmd, r.done = cmd, done
	r.mu.Unlock()
	select {
	case <-ready:
		return nil
	case <-done:
		r.mu.Lock()
		code := r.code
		r.mu.Unlock()
		return fmt.Errorf("relayd exited with %d before listening:\n%s", code, r.logs.String())
	case <-time.After(60 * time.Second):
		r.Kill()
		return fmt.Errorf("relayd did not start:\n%s", r.logs.String())
	}
}

// Kill ends the process with SIGKILL (no graceful shutdown) and waits for it.
func (r *Relayd) Kill() { r.signal(syscall.SIGKILL) }

// Stop ends the process with SIGTERM (SIGKILL after 15 s) and waits for it. It is
// idempotent.
func (r *Relayd) Stop() { r.signal(syscall.SIGTERM) }

func (r *Relayd) signal(sig syscall.Signal) {
	r.mu.Lock()
	cmd, done := r.cmd, r.done
	r.cmd = nil
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// Signal sends sig to the process without waiting (see Wait).
func (r *Relayd) Signal(sig syscall.Signal) error {
	r.mu.Lock()
	cmd := r.cmd
	r.mu.Unlock()
	if cmd == nil {
		return fmt.Errorf("relayd is not running")
	}
	return cmd.Process.Signal(sig)
}

// Wait waits up to timeout for the process to exit and returns its exit status; ok is false
// on timeout.
func (r *Relayd) Wait(timeout time.Duration) (code int, ok bool) {
	r.mu.Lock()
	done := r.done
	r.mu.Unlock()
	select {
	case <-done:
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.code, true
	case <-time.After(timeout):
		return 0, false
	}
}

// Exited reports whether the process has exited, and its status.
func (r *Relayd) Exited() (code int, exited bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	select {
	case <-r.done:
		return r.code, true
	default:
		return 0, false
	}
}

// Pid is the process id of the running process.
func (r *Relayd) Pid() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return 0
	}
	return r.cmd.Process.Pid
}

// Restart starts the process again (after Kill or Stop; a running one is stopped first) on
// the same addresses and configuration.
func (r *Relayd) Restart() error {
	r.Stop()
	return r.launch()
}

// Logs returns everything relayd logged so far (all runs).
func (r *Relayd) Logs() string { return r.logs.String() }

// Sign returns the X-Signature of body under secret (the hmac provider's default scheme).
func Sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Post POSTs body as a JSON webhook to source, signed with Secret, and returns the status.
// It does not fail the test: a relayd being killed is something tests post through.
func Post(ctx context.Context, addr, source string, body []byte) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/v1/webhooks/"+source, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Signature", Sign(Secret, body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// Event is a webhook body with an id, a type and a sequence number n.
func Event(id, typ string, n int) []byte {
	return []byte(`{"id":` + strconv.Quote(id) + `,"type":` + strconv.Quote(typ) + `,"n":` + strconv.Itoa(n) + `}`)
}

// MustPost posts Event(id, typ, n) to source and requires a 200.
func MustPost(t testing.TB, addr, source, id, typ string, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	code, err := Post(ctx, addr, source, Event(id, typ, n))
	if err != nil || code != http.StatusOK {
		t.Fatalf("POST %s to %s: %d %v", id, source, code, err)
	}
}

// Eventually polls cond every 20 ms until it holds, failing t after Wait with what.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(Wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Slow skips t under -short: the suites that start clusters, kill processes or put load
// (make test-short leaves them out).
func Slow(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("slow end-to-end suite: skipped with -short")
	}
}

// SignedRequest is a webhook POST of body to source under base ("http://host:port"), signed by
// cfg's provider as of now (unsigned when cfg is nil), with the provider's content type (JSON
// when it sets none).
func SignedRequest(t testing.TB, cfg *relay.SourceConfig, base, source string, body []byte, now time.Time) *http.Request {
	t.Helper()
	wr := &relay.WebhookRequest{Header: http.Header{}, Body: body}
	if cfg != nil {
		if err := verify.Sign(cfg, wr, now); err != nil {
			t.Fatal(err)
		}
	}
	req, err := http.NewRequest(http.MethodPost, base+"/v1/webhooks/"+source, bytes.NewReader(wr.Body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = wr.Header
	if wr.ContentType == "" {
		wr.ContentType = "application/json"
	}
	req.Header.Set("Content-Type", wr.ContentType)
	return req
}
