package relay

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// decodingLookup is the reference JSONLookup: decode a map per path segment.
func decodingLookup(body []byte, path string) (string, bool) {
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

var jsonScanCases = []struct{ body, path string }{
	{`{"id":"evt_1","type":"a.b"}`, "id"},
	{` { "id" : "x" , "id" : "last" } `, "id"},
	{`{"data":{"object":{"customer":"cus_1","n":[1,{"customer":2}]}}}`, "data.object.customer"},
	{`{"data":{"object":{"customer":"cus_1"}},"data":{"object":{}}}`, "data.object.customer"},
	{`{"a":"\u0069d","\u0069d":"esc-key"}`, "id"},
	{`{"s":"quote \" and \\ and \u00e9"}`, "s"},
	{`{"n":-1.5e3,"t":true,"f":false,"z":null}`, "n"},
	{`{"n":-1.5e3,"t":true,"f":false,"z":null}`, "z"},
	{`{"o":{"k":[1,2,{"x":"}"}]}}`, "o"},
	{`{"a":{"b":"c"}}`, "a.b.c"},
	{`{"a":"x"} trailing`, "a"},
	{`{"a":"x"`, "a"},
	{`["a"]`, "a"},
	{`{"k\ud800":"lone surrogate key"}`, "k\ufffd"},
	{"{\"bad\xff\":\"invalid utf-8 key\"}", "bad\ufffd"},
	{"{\"v\":\"bad\xffvalue\"}", "v"},
	{`{"":"empty key"}`, ""},
	{`{"a":[ "}" , "{" ],"b":"after"}`, "b"},
}

func TestJSONLookupMatchesDecoding(t *testing.T) {
	for _, tc := range jsonScanCases {
		got, ok := JSONLookup([]byte(tc.body), tc.path)
		want, wantOK := decodingLookup([]byte(tc.body), tc.path)
		if got != want || ok != wantOK {
			t.Errorf("JSONLookup(%q, %q) = %q, %v; decoding gives %q, %v", tc.body, tc.path, got, ok, want, wantOK)
		}
	}
}

func FuzzJSONLookupMatchesDecoding(f *testing.F) {
	for _, tc := range jsonScanCases {
		f.Add(tc.body, tc.path)
	}
	f.Fuzz(func(t *testing.T, body, path string) {
		got, ok := JSONLookup([]byte(body), path)
		want, wantOK := decodingLookup([]byte(body), path)
		if got != want || ok != wantOK {
			t.Fatalf("JSONLookup(%q, %q) = %q, %v; decoding gives %q, %v", body, path, got, ok, want, wantOK)
		}
	})
}

// BenchmarkJSONLookup reads id and type out of a ~160-byte webhook: decoding a map (before)
// against validating once and scanning.
func BenchmarkJSONLookup(b *testing.B) {
	body := []byte(`{"id":"evt_123456","type":"order.created","created":1700000000,"data":{"object":{"id":"ord_1","amount":1999,"currency":"usd","customer":"cus_42"}}}`)
	b.Run("decode-map", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var m map[string]json.RawMessage
			_ = json.Unmarshal(body, &m)
			var id, typ string
			_ = json.Unmarshal(m["id"], &id)
			_ = json.Unmarshal(m["type"], &typ)
		}
	})
	b.Run("scan", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			o, _ := ParseJSONObject(body)
			_, _ = o.Lookup("id")
			_, _ = o.Lookup("type")
		}
	})
}
