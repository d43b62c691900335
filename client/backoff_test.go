package client

import (
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	r := &receiver{c: &Client{opts: options{minDelay: 250 * time.Millisecond, maxDelay: 10 * time.Second}}}
	for n := range 30 {
		d := r.backoff(n)
		ceiling := min(250*time.Millisecond<<min(n, 20), 10*time.Second)
		if d < ceiling/2 || d > ceiling {
			t.Errorf("backoff(%d) = %s, want within [%s, %s]", n, d, ceiling/2, ceiling)
		}
	}
}
