package daemon

import (
	"encoding/json"
	"net"
	"net/http"
	"os"
	"strings"

	"github.com/eventrelay/eventrelay/relay"
	"github.com/eventrelay/eventrelay/relay/push"
	"github.com/eventrelay/eventrelay/server"
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
func (m *Main) adminDestinations(w http.ResponseWriter, r *http.Request, p *server.Principal) {
	out := []push.Status{}
	for _, st := range m.pushStatus() {
		if readsAll(p, m.destinationSources(st)) {
			out = append(out, st)
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

// destinationSources are the sources a destination delivers: its own, or every configured
// one when it names none.
func (m *Main) destinationSources(st push.Status) []string {
	if len(st.Sources) > 0 {
		return st.Sources
	}
	return m.svc.SourceNames()
}

// readsAll reports whether p (nil: no tokens) may read every one of sources.
func readsAll(p *server.Principal, sources []string) bool {
	for _, s := range sources {
		if !canRead(p, s) {
			return false
		}
	}
	return true
}

// adminResume answers POST /v1/admin/destinations/{name}/resume: resumes a destination a
// 410 Gone paused (on this replica). With auth.tokens the token must be allowed to publish to every
// source of the destination (a resume sends their events on).
func (m *Main) adminResume(w http.ResponseWriter, r *http.Request, p *server.Principal) {
	name := r.PathValue("name")
	if m.pusher == nil {
		http.Error(w, "no destination named "+name, http.StatusNotFound)
		return
	}
	for _, st := range m.pushStatus() {
		if st.Name != name {
			continue
		}
		sources := m.destinationSources(st)
		if !readsAll(p, sources) {
			http.Error(w, "no destination named "+name, http.StatusNotFound)
			return
		}
		for _, s := range sources {
			if p != nil && !p.CanPublish(s) {
				http.Error(w, "token "+p.Name+" may not resume "+name+": it needs publish on source "+s, http.StatusForbidden)
				return
			}
		}
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
