package redistest

import (
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
