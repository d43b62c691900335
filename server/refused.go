package server

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// DefaultRefusedPerSource is how many refused webhooks RefusedLog keeps per source.
const DefaultRefusedPerSource = 100

// Refusal is one refused webhook request, as RefusedLog keeps it: enough to tell a wrong
// secret, a skewed clock or a missing allow-list entry from the outside, and never a
// credential or the body.
type Refusal struct {
	Time   time.Time `json:"time"`
	Status int       `json:"status"`
	// Reason: signature (mismatch), missing, malformed, stale, future, no_secret (verification);
	// ip, rate_limit, unverified_limit, size, content_type, body_rate, body_memory, invalid, method,
	// unavailable (refused by the ingress); the error code (invalid, unavailable, ...) of
	// another failure of the ingest; error when nothing says more.
	Reason string `json:"reason"`
	// Message is the answer's message.
	Message    string `json:"message,omitempty"`
	ClientAddr string `json:"client_addr"`
	Method     string `json:"method"`
	// Path with the query's values replaced by "redacted" (a token may travel there).
	Path string `json:"path"`
	// Headers without credentials: Authorization, Cookie and any header whose name says
	// token, secret, key, password or auth are "redacted".
	Headers  map[string]string `json:"headers"`
	BodySize int64             `json:"body_size"`
}

// RefusedLog keeps the last refused webhook requests of each source (a ring per source).
// It is safe for concurrent use; a nil *RefusedLog keeps nothing.
type RefusedLog struct {
	per int
	mu  sync.Mutex
	by  map[string]*refusalRing
}

type refusalRing struct {
	items []Refusal
	next  int
	full  bool
}

// NewRefusedLog keeps the last per refused requests of each source (0: the default).
func NewRefusedLog(per int) *RefusedLog {
	if per <= 0 {
		per = DefaultRefusedPerSource
	}
	return &RefusedLog{per: per, by: map[string]*refusalRing{}}
}

func (l *RefusedLog) add(source string, r Refusal) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	ring := l.by[source]
	if ring == nil {
		ring = &refusalRing{items: make([]Refusal, l.per)}
		l.by[source] = ring
	}
	ring.items[ring.next] = r
	ring.next = (ring.next + 1) % l.per
	if ring.next == 0 {
		ring.full = true
	}
}

// Recent returns up to limit of source's refused requests, newest first (limit <= 0: all
// kept).
func (l *RefusedLog) Recent(source string, limit int) []Refusal {
	out := []Refusal{}
	if l == nil {
		return out
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	ring := l.by[source]
	if ring == nil {
		return out
	}
	n := ring.next
	if ring.full {
		n = l.per
	}
	for i := 1; i <= n && (limit <= 0 || len(out) < limit); i++ {
		out = append(out, ring.items[(ring.next-i+l.per)%l.per])
	}
	return out
}

// credentialWords mark header names whose values are redacted.
var credentialWords = []string{"token", "secret", "key", "password", "auth", "cookie", "session", "signature", "hmac"}

// redactedHeaders returns h with one value per name, credentials redacted: the headers
// whose names say so (credentialWords) and the source's credential headers, whatever their
// names (canonical names, as verify.CredentialHeaders gives them).
func redactedHeaders(h http.Header, credentials []string) map[string]string {
	out := make(map[string]string, len(h))
	for name, vs := range h {
		lower := strings.ToLower(name)
		if slices.Contains(credentials, http.CanonicalHeaderKey(name)) ||
			slices.ContainsFunc(credentialWords, func(w string) bool { return strings.Contains(lower, w) }) {
			out[name] = "redacted"
			continue
		}
		v := strings.Join(vs, ", ")
		if len(v) > 512 {
			v = v[:512] + "…"
		}
		out[name] = v
	}
	return out
}

// redactedPath returns path with every query value replaced by "redacted".
func redactedPath(path, rawQuery string) string {
	if rawQuery == "" {
		return path
	}
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return path + "?redacted"
	}
	for k := range q {
		q[k] = []string{"redacted"}
	}
	return path + "?" + q.Encode()
}
