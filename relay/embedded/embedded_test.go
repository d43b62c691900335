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

// do sends one command over RESP on a new connection, without AUTH, and returns the first
// reply line (and the bulk body).
func do(t *testing.T, addr string, args ...string) string {
	t.Helper()
	return doAuth(t, addr, "", args...)
}

// as sends one command to srv after AUTH with the password of its URL.
func as(t *testing.T, srv *embedded.Server, args ...string) string {
	t.Helper()
	u, err := url.Parse(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	pw, _ := u.User.Password()
	return doAuth(t, srv.Addr(), pw, args...)
}

func doAuth(t *testing.T, addr, password string, args ...string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	r := bufio.NewReader(c)
	send := func(args ...string) {
		fmt.Fprintf(c, "*%d\r\n", len(args))
		for _, a := range args {
			fmt.Fprintf(c, "$%d\r\n%s\r\n", len(a), a)
		}
	}
	if password != "" {
		send("AUTH", password)
		if line, err := r.ReadString('\n'); err != nil || strings.TrimSpace(line) != "+OK" {
			t.Fatalf("AUTH: %q %v", line, err)
		}
	}
	send(args...)
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
	u, err := url.Parse(srv.URL())
	if err != nil || u.Host != srv.Addr() {
		t.Errorf("URL = %q", srv.URL())
	}
	if pw, _ := u.User.Password(); len(pw) < 32 {
		t.Errorf("URL %q carries no random password", srv.URL())
	}
	if got := as(t, srv, "PING"); got != "+PONG" {
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

// TestNoOpenStore: another local process reaching the loopback port without the password
// can neither append a forged event nor read any; each server has its own password.
func TestNoOpenStore(t *testing.T) {
	srv, err := embedded.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	other, err := embedded.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if srv.URL() == other.URL() {
		t.Fatal("two servers share a URL")
	}
	if got := as(t, srv, "XADD", "relay:{orders:0}:s", "*", "e", "real"); strings.HasPrefix(got, "-") {
		t.Fatalf("XADD with the password: %q", got)
	}
	for _, cmd := range [][]string{
		{"XADD", "relay:{orders:0}:s", "*", "e", "forged"},
		{"XRANGE", "relay:{orders:0}:s", "-", "+"},
		{"KEYS", "*"},
		{"EVAL", "return 1", "0"},
	} {
		if got := do(t, srv.Addr(), cmd...); !strings.HasPrefix(got, "-NOAUTH") {
			t.Errorf("%v without AUTH = %q, want NOAUTH", cmd, got)
		}
	}
	ou, _ := url.Parse(other.URL())
	opw, _ := ou.User.Password()
	c, err := net.DialTimeout("tcp", srv.Addr(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	fmt.Fprintf(c, "*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n", len(opw), opw)
	if line, _ := bufio.NewReader(c).ReadString('\n'); !strings.HasPrefix(line, "-") {
		t.Errorf("AUTH with another server's password = %q, want an error", line)
	}
	if got := as(t, srv, "XLEN", "relay:{orders:0}:s"); got != ":1" {
		t.Errorf("XLEN = %q, want :1 (only the authenticated append)", got)
	}
}

func TestKeysExpireInRealTime(t *testing.T) {
	srv, err := embedded.Start(embedded.WithClockInterval(20 * time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if got := as(t, srv, "SET", "k", "v", "PX", "100"); got != "+OK" {
		t.Fatalf("SET = %q", got)
	}
	if got := as(t, srv, "GET", "k"); got != "v" {
		t.Fatalf("GET before expiry = %q", got)
	}
	deadline := time.Now().Add(2 * time.Second)
	for as(t, srv, "GET", "k") != "$-1" {
		if time.Now().After(deadline) {
			t.Fatal("key with a 100ms TTL still there after 2s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Stream ids follow the wall clock.
	id := as(t, srv, "XADD", "s", "*", "e", "x")
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
