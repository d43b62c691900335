package embedded_test

import (
	"bufio"
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/eventrelay/eventrelay/relay/embedded"
)

// do sends one command over RESP and returns the first reply line (and the bulk body).
func do(t *testing.T, addr string, args ...string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	fmt.Fprintf(c, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(c, "$%d\r\n%s\r\n", len(a), a)
	}
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	line = strings.TrimSpace(line)
	if strings.HasPrefix(line, "$") && line != "$-1" {
		body, _ := r.ReadString('\n')
		return strings.TrimSpace(body)
	}
	return line
}

func TestStart(t *testing.T) {
	srv, err := embedded.Start()
	if err != nil {
		t.Fatal(err)
	}
	host, _, err := net.SplitHostPort(srv.Addr())
	if err != nil || host != "127.0.0.1" {
		t.Errorf("Addr = %q, want a loopback address", srv.Addr())
	}
	if srv.URL() != "redis://"+srv.Addr() {
		t.Errorf("URL = %q", srv.URL())
	}
	if got := do(t, srv.Addr(), "PING"); got != "+PONG" {
		t.Errorf("PING = %q", got)
	}
	srv.Close()
	srv.Close() // idempotent
	if _, err := net.DialTimeout("tcp", srv.Addr(), 200*time.Millisecond); err == nil {
		t.Error("server still accepts connections after Close")
	}
}

func TestPassword(t *testing.T) {
	srv, err := embedded.Start(embedded.WithPassword("p@ss/word"))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	u, err := url.Parse(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	pw, _ := u.User.Password()
	if pw != "p@ss/word" {
		t.Errorf("URL %q carries password %q", srv.URL(), pw)
	}
	if got := do(t, srv.Addr(), "PING"); !strings.HasPrefix(got, "-NOAUTH") {
		t.Errorf("PING without AUTH = %q, want NOAUTH", got)
	}
}

func TestKeysExpireInRealTime(t *testing.T) {
	srv, err := embedded.Start(embedded.WithClockInterval(20 * time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if got := do(t, srv.Addr(), "SET", "k", "v", "PX", "100"); got != "+OK" {
		t.Fatalf("SET = %q", got)
	}
	if got := do(t, srv.Addr(), "GET", "k"); got != "v" {
		t.Fatalf("GET before expiry = %q", got)
	}
	deadline := time.Now().Add(2 * time.Second)
	for do(t, srv.Addr(), "GET", "k") != "$-1" {
		if time.Now().After(deadline) {
			t.Fatal("key with a 100ms TTL still there after 2s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Stream ids follow the wall clock.
	id := do(t, srv.Addr(), "XADD", "s", "*", "e", "x")
	var ms int64
	if _, err := fmt.Sscanf(id, "%d-", &ms); err != nil || time.Since(time.UnixMilli(ms)).Abs() > time.Minute {
		t.Errorf("XADD id %q is not near the current time", id)
	}
}

func TestStartErrors(t *testing.T) {
	if _, err := embedded.Start(embedded.WithClockInterval(0)); err == nil {
		t.Error("Start with a zero clock interval succeeded")
	}
	srv, err := embedded.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if _, err := embedded.Start(embedded.WithAddr(srv.Addr())); err == nil {
		t.Error("Start on a taken address succeeded")
	}
}
