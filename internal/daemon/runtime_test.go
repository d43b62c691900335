package daemon

import (
	"strings"
	"testing"

	"github.com/eventrelay/eventrelay/internal/e2e"
)

// relayd (cmd/relayd) collects garbage at GOGC=400 unless the GOGC environment variable sets
// another target; the Go collector's go_gc_gogc_percent shows the one in force.
func TestRelaydGCPercent(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  []string
		want string
	}{
		{"default", nil, "\ngo_gc_gogc_percent 400\n"},
		{"GOGC set", []string{"GOGC=150"}, "\ngo_gc_gogc_percent 150\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e2e.Start(t, "sources:\n"+e2e.HMACSource("orders"), tc.env...)
			if got := scrape(t, r.Admin); !strings.Contains(got, tc.want) {
				t.Errorf("/metrics lacks %q", strings.TrimSpace(tc.want))
			}
		})
	}
}
