package redisstore

import (
	"context"
	"fmt"
	"log/slog"
	neturl "net/url"
	"strings"
)

// redacted replaces every credential RedactURL hides.
const redacted = "xxxxx"

// RedactURL returns a Redis URL (any form Open takes: single node, cluster, Sentinel) fit
// for logs, errors and admin answers: the userinfo password and every query parameter that
// may carry a credential (password, sentinel_password, and any name containing "pass",
// "secret", "token" or "key") are replaced by "xxxxx". A URL that does not parse is
// "<invalid>" (it may be a credential spelled wrong).
func RedactURL(rawURL string) string {
	if rawURL == "" {
		return ""
	}
	u, err := neturl.Parse(rawURL)
	if err != nil {
		return "<invalid>"
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = neturl.UserPassword(u.User.Username(), redacted)
		}
	}
	if u.RawQuery != "" {
		q, err := neturl.ParseQuery(u.RawQuery)
		if err != nil {
			u.RawQuery = redacted
		} else {
			for name, vs := range q {
				if secretParam(name) {
					for i := range vs {
						vs[i] = redacted
					}
				}
			}
			u.RawQuery = q.Encode()
		}
	}
	if u.Opaque != "" {
		u.Opaque = redacted
	}
	return u.String()
}

func secretParam(name string) bool {
	n := strings.ToLower(name)
	for _, s := range []string{"pass", "secret", "token", "key"} {
		if strings.Contains(n, s) {
			return true
		}
	}
	return false
}

// SlogLogger adapts log to go-redis's logger (redis.SetLogger), so that the client's own
// lines (pool dial failures during an outage, ...) are structured like every other line, at
// WARN under the message "redis client".
type SlogLogger struct{ Log *slog.Logger }

// Printf logs one go-redis line.
func (l SlogLogger) Printf(ctx context.Context, format string, v ...any) {
	l.Log.WarnContext(ctx, "redis client", "detail", fmt.Sprintf(format, v...))
}
