package cpustat

import (
	"testing"
	"time"
)

// This process's CPU time grows while it spins.
func TestProcessGrows(t *testing.T) {
	before := Process(0)
	for start := time.Now(); Process(0)-before < 20*time.Millisecond; {
		if time.Since(start) > time.Minute {
			t.Fatalf("Process(0) stayed at %s after a minute of spinning", Process(0))
		}
	}
	if Process(1<<30) != 0 {
		t.Error("a process that does not exist used CPU")
	}
}
