package daemon

import (
	"encoding/json"
	"net"
	"net/http"
	"os"
	"strings"

	"github.com/eventrelay/eventrelay/relay"
	"github.com/eventrelay/eventrelay/relay/push"
)

// pushConsumer names this replica in the destinations' groups: "relayd-<host>-<http port>",
// stable across restarts of the same replica, distinct between replicas of one host.
func pushConsumer(httpAddr string) string {
	host, _ := os.Hostname()
	_, port, _ := net.SplitHostPort(httpAddr)
	name := "relayd-" + host + "-" + port
	clean := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == ':', r == '-':
			return r
		}
		return '-'
	}, name)
	if len(clean) > 128 {
		clean = clean[:128]
	}
	return clean
}

// pushStatus is the state of every push destination on this replica (none without any).
func (m *Main) pushStatus() []push.Status {
	if m.pusher == nil {
		return nil
	}
	return m.pusher.Status()
}

// adminDestinations answers GET /v1/admin/destinations: every push destination's state on
// this replica (push.Status; relayctl destinations).
func (m *Main) adminDestinations(w http.ResponseWriter, r *http.Request) {
	out := m.pushStatus()
	if out == nil {
		out = []push.Status{}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

// adminResume answers POST /v1/admin/destinations/{name}/resume: resumes a destination a
// 410 Gone paused (on this replica).
func (m *Main) adminResume(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if m.pusher == nil {
		http.Error(w, "no destination named "+name, http.StatusNotFound)
		return
	}
	if err := m.pusher.Resume(name); err != nil {
		code := http.StatusInternalServerError
		if relay.ErrorCode(err) == relay.CodeNotFound {
			code = http.StatusNotFound
		}
		http.Error(w, relay.ErrorMessage(err), code)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{"resumed": name})
}
