package server

import (
	"maps"
	"sync"
	"time"
)

// ActivityMinutes is how many minutes of per-minute counts Activity keeps per source.
const ActivityMinutes = 60

// Activity counts the outcomes of each source's webhook requests as this process answered
// them: accepted (2xx), refused by reason (4xx, the reasons of Refusal) and failed (5xx), the
// accepted ones per minute over the last hour, and the time of the last accepted one. It is
// what the console's overview shows next to the store's numbers. A nil *Activity counts
// nothing; it is safe for concurrent use.
type Activity struct {
	mu sync.Mutex
	by map[string]*sourceActivity
}

type sourceActivity struct {
	accepted, failed int64
	refused          map[string]int64
	last             time.Time
	// perMinute[m % ActivityMinutes] counts the accepted requests of unix minute
	// minute[m % ActivityMinutes].
	perMinute [ActivityMinutes]int64
	minute    [ActivityMinutes]int64
}

// SourceActivity is a snapshot of one source's counts (Activity.Snapshot).
type SourceActivity struct {
	Accepted int64            `json:"accepted"`
	Refused  map[string]int64 `json:"refused"` // by reason
	Failed   int64            `json:"failed"`
	// LastAccepted is when the last request was accepted (zero: none since start).
	LastAccepted time.Time `json:"last_accepted,omitzero"`
	// PerMinute are the accepted requests of each of the last ActivityMinutes minutes,
	// oldest first; the last is the current minute.
	PerMinute []int64 `json:"per_minute"`
}

// NewActivity returns an empty Activity.
func NewActivity() *Activity { return &Activity{by: map[string]*sourceActivity{}} }

// record counts one answered request of source: status < 400 accepted, >= 500 failed, else
// refused for reason.
func (a *Activity) record(source string, status int, reason string, now time.Time) {
	if a == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.by[source]
	if s == nil {
		s = &sourceActivity{refused: map[string]int64{}}
		a.by[source] = s
	}
	switch {
	case status < 400:
		s.accepted++
		if now.After(s.last) {
			s.last = now
		}
		m := now.Unix() / 60
		i := m % ActivityMinutes
		switch {
		case s.minute[i] < m: // the slot held a minute an hour or more ago
			s.minute[i], s.perMinute[i] = m, 1
		case s.minute[i] == m:
			s.perMinute[i]++
		} // else a request of an hour or more before the slot's minute: no longer shown
	case status >= 500:
		s.failed++
	default:
		s.refused[reason]++
	}
}

// Snapshot returns source's counts as of now.
func (a *Activity) Snapshot(source string, now time.Time) SourceActivity {
	out := SourceActivity{Refused: map[string]int64{}, PerMinute: make([]int64, ActivityMinutes)}
	if a == nil {
		return out
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.by[source]
	if s == nil {
		return out
	}
	out.Accepted, out.Failed, out.LastAccepted = s.accepted, s.failed, s.last
	maps.Copy(out.Refused, s.refused)
	m := now.Unix() / 60
	for k := range ActivityMinutes {
		minute := m - ActivityMinutes + 1 + int64(k)
		if i := minute % ActivityMinutes; s.minute[i] == minute {
			out.PerMinute[k] = s.perMinute[i]
		}
	}
	return out
}
