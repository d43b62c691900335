package relay

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// JSONLookup returns the value at a dotted path (e.g. "data.object.customer") in a JSON
// object body. Strings are returned unquoted, numbers and booleans as written; objects and
// arrays as their raw JSON. ok is false when the body is not valid JSON, not an object, or
// the path is absent or null. When a key repeats, the last one counts (as when decoding into
// a map).
func JSONLookup(body []byte, path string) (value string, ok bool) {
	o, ok := ParseJSONObject(body)
	if !ok {
		return "", false
	}
	return o.Lookup(path)
}

// JSONObject is a JSON object validated once, whose fields are then looked up by scanning
// the text: no map or value is decoded but the one asked for. It is what a verifier reads
// ids, types and times out of a webhook body with.
type JSONObject []byte

// ParseJSONObject returns body as a JSONObject when it is valid JSON with an object at the
// top level.
func ParseJSONObject(body []byte) (JSONObject, bool) {
	b := bytes.TrimSpace(body)
	if len(b) == 0 || b[0] != '{' || !json.Valid(b) {
		return nil, false
	}
	return JSONObject(b), true
}

// Lookup is JSONLookup on an already validated object.
func (o JSONObject) Lookup(path string) (string, bool) {
	raw := []byte(o)
	for seg := range strings.SplitSeq(path, ".") {
		if len(raw) == 0 || raw[0] != '{' {
			return "", false
		}
		v, found := objectField(raw, seg)
		if !found {
			return "", false
		}
		raw = v
	}
	if len(raw) == 0 || string(raw) == "null" {
		return "", false
	}
	if raw[0] == '"' {
		return jsonString(raw)
	}
	return string(raw), true
}

// objectField returns the value (without surrounding whitespace) of the last member named
// key of obj, a valid JSON object.
func objectField(obj []byte, key string) (val []byte, found bool) {
	i := skipSpace(obj, 1)
	for i < len(obj) && obj[i] == '"' {
		kEnd := stringEnd(obj, i)
		k := obj[i:kEnd]
		i = skipSpace(obj, kEnd)
		i = skipSpace(obj, i+1) // ':'
		vEnd := valueEnd(obj, i)
		if keyEquals(k, key) {
			val, found = obj[i:vEnd], true
		}
		i = skipSpace(obj, vEnd)
		if i < len(obj) && obj[i] == ',' {
			i = skipSpace(obj, i+1)
		}
	}
	return val, found
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// stringEnd returns the index after the string starting at b[i] ('"').
func stringEnd(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(b)
}

// valueEnd returns the index after the value starting at b[i].
func valueEnd(b []byte, i int) int {
	if i >= len(b) {
		return i
	}
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				i = stringEnd(b, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
		}
		return len(b)
	}
	for i < len(b) && b[i] != ',' && b[i] != '}' && b[i] != ']' && b[i] != ' ' && b[i] != '\t' && b[i] != '\n' && b[i] != '\r' {
		i++
	}
	return i
}

// keyEquals compares a quoted JSON key with key as decoding would.
func keyEquals(quoted []byte, key string) bool {
	inner := quoted[1 : len(quoted)-1]
	if plainString(inner) {
		return string(inner) == key
	}
	k, ok := jsonString(quoted)
	return ok && k == key
}

// jsonString unquotes a JSON string value.
func jsonString(quoted []byte) (string, bool) {
	if inner := quoted[1 : len(quoted)-1]; plainString(inner) {
		return string(inner), true
	}
	var s string
	if err := json.Unmarshal(quoted, &s); err != nil {
		return "", false
	}
	return s, true
}

// plainString reports whether the inside of a JSON string decodes to itself: no escapes,
// valid UTF-8 (decoding replaces invalid bytes).
func plainString(b []byte) bool {
	for _, c := range b {
		if c == '\\' || c >= 0x80 {
			return c != '\\' && utf8.Valid(b) && bytes.IndexByte(b, '\\') < 0
		}
	}
	return true
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
