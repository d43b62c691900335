package relay

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"time"
)

// JSONLookup returns the value at a dotted path (e.g. "data.object.customer") in a JSON
// object body. Strings are returned unquoted, numbers and booleans as written; objects and
// arrays as their raw JSON. ok is false when the body is not a JSON object or the path is
// absent or null. Only the objects along the path are decoded, never the whole payload.
func JSONLookup(body []byte, path string) (value string, ok bool) {
	raw := json.RawMessage(body)
	for seg := range strings.SplitSeq(path, ".") {
		raw = bytes.TrimSpace(raw)
		if len(raw) == 0 || raw[0] != '{' {
			return "", false
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(raw, &m); err != nil {
			return "", false
		}
		v, found := m[seg]
		if !found {
			return "", false
		}
		raw = v
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "", false
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", false
		}
		return s, true
	}
	return string(raw), true
}

// JSONTime interprets a JSON scalar as a time: unix seconds, unix milliseconds (values above
// 1e11), or RFC 3339. ok is false when it is none of these.
func JSONTime(v string) (t time.Time, ok bool) {
	if n, err := strconv.ParseFloat(v, 64); err == nil {
		if n <= 0 {
			return time.Time{}, false
		}
		if n > 1e11 {
			return time.UnixMilli(int64(n)).UTC(), true
		}
		sec := int64(n)
		return time.Unix(sec, int64((n-float64(sec))*1e9)).UTC(), true
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, true
	}
	return time.Time{}, false
}
