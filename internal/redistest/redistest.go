// Package redistest starts real redis-server processes for tests.
//
// Start(t) runs `redis-server --port N --bind 127.0.0.1 --save "" --appendonly no --dir T`
// on a free loopback port N and a temporary directory T, waits until it answers PING and
// kills it when the test ends. When redis-server is not on PATH the test is skipped with a
// message saying so, unless RELAY_REQUIRE_REDIS=1, which turns the skip into a failure (CI
// sets it so that a missing install cannot pass silently).
//
// StartWith(t, args...) adds redis-server arguments (for example "--appendonly", "yes",
// "--appendfsync", "always") and returns a *Server that fault tests can Stop, Kill and
// Restart on the same port and directory, so clients reconnect to the same address and an
// append-only file survives. A server started with --requirepass counts as up once it
// answers PING with NOAUTH.
//
// StartCluster(t, n) joins n servers into a Redis Cluster of primaries; StartSentinel(t,
// replicas, sentinels) starts a master, its replicas and Redis Sentinels watching it, with
// Failover to switch the master.
package redistest

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// EnvRequire names the environment variable that makes a missing redis-server fatal.
const EnvRequire = "RELAY_REQUIRE_REDIS"

// startTimeout bounds how long a server may take to answer PING.
const startTimeout = 10 * time.Second

// Server is one redis-server process on a fixed loopback port and data directory.
type Server struct {
	bin  string
	port int
	dir  string
	conf string // configuration file, the first argument when set
	args []string
	// tlsClient, for a StartTLS server, is the client configuration trusting its CA.
	tlsClient *tls.Config

	mu     sync.Mutex
	proc   *os.Process   // nil when stopped
	exited chan struct{} // closed once proc has been reaped
}

// Start starts a redis-server for t and returns its redis:// URL.
func Start(t testing.TB) string {
	t.Helper()
	return StartWith(t).URL()
}

// StartWith starts a redis-server for t with extra arguments appended to the defaults
// (later arguments win, so "--appendonly", "yes" overrides the default). It is killed when
// t ends.
func StartWith(t testing.TB, args ...string) *Server {
	t.Helper()
	bin := lookBin(t)
	return startServer(t, bin, t.TempDir(), "", args)
}

// startServer starts a Server with conf (a configuration file in dir, or "") as the first
// argument, which sentinel mode needs: a sentinel rewrites its configuration file.
func startServer(t testing.TB, bin, dir, conf string, args []string) *Server {
	t.Helper()
	s := &Server{bin: bin, dir: dir, conf: conf, args: args}
	return s.launch(t)
}

// launch starts s on a free port; it is killed when t ends.
func (s *Server) launch(t testing.TB) *Server {
	t.Helper()
	t.Cleanup(s.Kill)
	// A free port can be taken between probing and binding: try a few.
	var lastErr error
	for range 5 {
		if s.port, lastErr = freePort(); lastErr != nil {
			continue
		}
		if lastErr = s.start(); lastErr == nil {
			return s
		}
	}
	t.Fatalf("redistest: start redis-server: %v", lastErr)
	return nil
}

// lookBin returns the path of redis-server, or skips t (fails it with RELAY_REQUIRE_REDIS=1).
func lookBin(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		msg := "redis-server not found on PATH: install Redis (Debian: apt-get install redis-server) to run the tests against real Redis"
		if os.Getenv(EnvRequire) == "1" {
			t.Fatalf("%s (%s=1)", msg, EnvRequire)
		}
		t.Skip(msg)
	}
	return bin
}

// Addr returns 127.0.0.1:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// URL returns redis://127.0.0.1:port (rediss:// for a StartTLS server).
func (s *Server) URL() string {
	if s.tlsClient != nil {
		return "rediss://" + s.Addr()
	}
	return "redis://" + s.Addr()
}

// Port returns the server's port.
func (s *Server) Port() int { return s.port }

// Dir returns the server's data directory.
func (s *Server) Dir() string { return s.dir }

// Stop shuts the server down gracefully (SIGTERM, which also flushes an append-only file)
// and waits for it to exit. Stopping a stopped server does nothing.
func (s *Server) Stop() { s.signal(syscall.SIGTERM) }

// Kill kills the server at once (SIGKILL: a crash, nothing is flushed) and waits for it to
// exit. Killing a stopped server does nothing.
func (s *Server) Kill() { s.signal(syscall.SIGKILL) }

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	proc, exited := s.proc, s.exited
	s.proc, s.exited = nil, nil
	s.mu.Unlock()
	if proc == nil {
		return
	}
	_ = proc.Signal(sig)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		_ = proc.Kill()
		<-exited
	}
}

// Restart starts the server again on the same port, directory and arguments (stopping it
// gracefully first if it runs) and waits until it answers.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	var err error
	// The port was just released; retry briefly in case it lingers.
	for range 20 {
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("redistest: restart redis-server on port %d: %v", s.port, err)
}

func (s *Server) start() error {
	var args []string
	if s.conf != "" {
		args = append(args, s.conf)
	}
	port := []string{"--port", strconv.Itoa(s.port)}
	if s.tlsClient != nil {
		port = s.tlsArgs(strconv.Itoa(s.port))
	}
	args = append(args, port...)
	args = append(args,
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
	)
	args = append(args, s.args...)
	cmd := exec.Command(s.bin, args...)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
	deadline := time.Now().Add(startTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("redis-server exited: %s", out.String())
		default:
		}
		if s.ping(addr) == nil {
			s.mu.Lock()
			s.proc, s.exited = cmd.Process, exited
			s.mu.Unlock()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	<-exited
	return fmt.Errorf("redis-server did not answer PING within %s: %s", startTimeout, out.String())
}

// ping sends PING on a fresh connection and expects +PONG, or -NOAUTH from a server that
// requires a password (it answers, so it is up).
func ping(addr string) error { return (&Server{}).ping(addr) }

// ping is the package's ping, over TLS for a StartTLS server.
func (s *Server) ping(addr string) error {
	var c net.Conn
	var err error
	if s.tlsClient != nil {
		c, err = tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", addr, s.tlsClient)
	} else {
		c, err = net.DialTimeout("tcp", addr, time.Second)
	}
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if l := strings.TrimSpace(line); l != "+PONG" && !strings.HasPrefix(l, "-NOAUTH") {
		return fmt.Errorf("unexpected PING reply %q", line)
	}
	return nil
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// syncBuffer collects a process' output.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.b.Len() > 64<<10 { // keep the start, which says why it failed
		return len(p), nil
	}
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// SysProcAttr returns the process attributes redistest starts servers with: on Linux the
// process is killed when the test process dies. Tests that start other helper processes
// (a relayd binary) use it too.
func SysProcAttr() *syscall.SysProcAttr { return procAttr() }
