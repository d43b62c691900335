package redistest

import (
	"strings"
	"testing"
)

func TestStartStopRestart(t *testing.T) {
	s := StartWith(t, "--appendonly", "yes", "--appendfsync", "always")
	if got, err := command(s.Addr(), "CONFIG", "GET", "appendonly"); err != nil {
		t.Fatalf("CONFIG GET: %v %q", err, got)
	}
	if _, err := command(s.Addr(), "SET", "k", "v"); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	if err := ping(s.Addr()); err == nil {
		t.Fatal("server answers after Stop")
	}
	s.Stop() // idempotent
	s.Restart(t)
	if got, err := command(s.Addr(), "GET", "k"); err != nil || got != "v" {
		t.Errorf("GET after restart with appendonly = %q, %v; want v", got, err)
	}
	s.Kill()
	if err := ping(s.Addr()); err == nil {
		t.Fatal("server answers after Kill")
	}
	s.Restart(t)
	if err := ping(s.Addr()); err != nil {
		t.Fatalf("PING after restart: %v", err)
	}
}

func TestStartURL(t *testing.T) {
	url := Start(t)
	if len(url) < len("redis://127.0.0.1:1") || url[:len("redis://127.0.0.1:")] != "redis://127.0.0.1:" {
		t.Errorf("URL = %q", url)
	}
}

func TestStartWithPassword(t *testing.T) {
	s := StartWith(t, "--requirepass", "pw")
	if _, err := command(s.Addr(), "GET", "k"); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
		t.Fatalf("GET without AUTH: %v", err)
	}
	if got, err := command(s.Addr(), "AUTH", "pw"); err != nil || got != "OK" {
		t.Fatalf("AUTH: %q %v", got, err)
	}
}

func TestSentinelFailover(t *testing.T) {
	st := StartSentinel(t, 1, 2)
	if !strings.HasPrefix(st.URL(), "redis://127.0.0.1:") || !strings.Contains(st.URL(), "?addr=127.0.0.1:") {
		t.Errorf("URL = %q", st.URL())
	}
	old := st.Master(t)
	if old != st.Data[0] {
		t.Fatalf("master is %s, want the first server %s", old.Addr(), st.Data[0].Addr())
	}
	// Whether a write survives the promotion is Redis's business (replication is asynchronous;
	// relayd's own Sentinel test uses min_replicas for that): this checks the switch.
	now := st.Failover(t)
	if now == old {
		t.Fatal("failover kept the master")
	}
	if _, err := command(now.Addr(), "SET", "k2", "v"); err != nil {
		t.Errorf("new master refuses writes: %v", err)
	}
}

func TestStartTLS(t *testing.T) {
	s := StartTLS(t)
	if !strings.HasPrefix(s.URL(), "rediss://127.0.0.1:") || s.CAFile() == "" {
		t.Fatalf("URL %q, CA %q", s.URL(), s.CAFile())
	}
	if err := s.ping(s.Addr()); err != nil {
		t.Fatalf("PING over TLS: %v", err)
	}
	if err := ping(s.Addr()); err == nil {
		t.Fatal("plaintext PING answered: the server should accept TLS only")
	}
	s.Restart(t)
	if err := s.ping(s.Addr()); err != nil {
		t.Fatalf("PING over TLS after restart: %v", err)
	}
}
