package verify

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eventrelay/eventrelay/relay"
)

func TestParseTemplate(t *testing.T) {
	tests := []struct {
		in, want, err string
	}{
		{in: "{body}", want: "B"},
		{in: "v0:{timestamp}:{body}", want: "v0:T:B"},
		{in: "{id}.{timestamp}.{body}", want: "I.T.B"},
		{in: "{method}{url}{body}{timestamp}", want: "MUBT"},
		{in: "literal only", want: "literal only"},
		{in: "{body", err: `unclosed "{"`},
		{in: "body}", err: `unmatched "}"`},
		{in: "{Body}", err: `unknown placeholder "{Body}"`},
		{in: "{}", err: `unknown placeholder "{}"`},
	}
	for _, tc := range tests {
		tmpl, err := parseTemplate(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("parseTemplate(%q) error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseTemplate(%q): %v", tc.in, err)
			continue
		}
		got := tmpl.expand(&tvals{body: []byte("B"), ts: "T", id: "I", url: "U", method: "M"})
		if string(got) != tc.want {
			t.Errorf("expand(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestSetTopLevel(t *testing.T) {
	tests := []struct {
		body, name, value, want string
	}{
		{`{}`, "a", `1`, `{"a":1}`},
		{``, "a", `1`, `{"a":1}`},
		{`{"b":2}`, "a", `1`, `{"a":1,"b":2}`},
		{` { "a" : "old" , "b":[1,{"a":3}] } `, "a", `"new"`, ` { "a" : "new" , "b":[1,{"a":3}] } `},
		{`{"b":{"a":1},"a":12345}`, "a", `7`, `{"b":{"a":1},"a":7}`},
		{`{"a":null}`, "a", `{"x":"y"}`, `{"a":{"x":"y"}}`},
		{`{"a\u0062":1}`, "ab", `2`, `{"a\u0062":2}`},
	}
	for _, tc := range tests {
		got, err := setTopLevel([]byte(tc.body), tc.name, []byte(tc.value))
		if err != nil || string(got) != tc.want {
			t.Errorf("setTopLevel(%q, %q) = %q, %v; want %q", tc.body, tc.name, got, err, tc.want)
		}
	}
	for _, bad := range []string{`[1]`, `"x"`, `{"a":}`, `{"a":1`, `{"a":1}}`} {
		if got, err := setTopLevel([]byte(bad), "a", []byte("1")); err == nil {
			t.Errorf("setTopLevel(%q) = %q, want error", bad, got)
		}
	}
}

func TestPortVariants(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"https://x.example/p?q=1", []string{"https://x.example/p?q=1", "https://x.example:443/p?q=1"}},
		{"https://x.example:443/p", []string{"https://x.example:443/p", "https://x.example/p"}},
		{"http://x.example", []string{"http://x.example", "http://x.example:80"}},
		{"http://x.example:80?q", []string{"http://x.example:80?q", "http://x.example?q"}},
		{"https://u:p@x.example/p", []string{"https://u:p@x.example/p", "https://u:p@x.example:443/p"}},
		{"https://[::1]/p", []string{"https://[::1]/p", "https://[::1]:443/p"}},
		{"https://[::1]:443/p", []string{"https://[::1]:443/p", "https://[::1]/p"}},
		{"https://x.example:8443/p", []string{"https://x.example:8443/p"}},
		{"HTTPS://x.example/p", []string{"HTTPS://x.example/p", "HTTPS://x.example:443/p"}},
		{"ftp://x.example/p", []string{"ftp://x.example/p"}},
		{"no scheme", []string{"no scheme"}},
		{"https:///p", []string{"https:///p"}},
	}
	for _, tc := range tests {
		if got := portVariants(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("portVariants(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestParseKV(t *testing.T) {
	tests := []struct {
		in     string
		ts     string
		nsigs  int
		reason string
	}{
		{"t=1,v1=ab", "1", 1, ""},
		{" t=1 , v1=ab , v1=cd, v0=ef ,x=y,junk", "1", 2, ""},
		{"v1=ab,t=1", "1", 1, ""},
		{"t=1,v1=zz,v1=ab", "1", 1, ""},
		{"t=1", "", 0, relay.ReasonMalformed},
		{"v1=ab", "", 0, relay.ReasonMalformed},
		{"t=1,t=2,v1=ab", "", 0, relay.ReasonMalformed},
		{"t=1,v1=", "", 0, relay.ReasonMalformed},
		{"t=1" + strings.Repeat(",v1=ab", maxSignatures+1), "", 0, relay.ReasonMalformed},
	}
	for _, tc := range tests {
		c, err := parseKV(tc.in, ",", "t", "v1")
		if relay.ErrorReason(err) != tc.reason {
			t.Errorf("parseKV(%q): %v, want reason %q", tc.in, err, tc.reason)
			continue
		}
		if err == nil && (c.ts != tc.ts || len(c.sigs) != tc.nsigs) {
			t.Errorf("parseKV(%q) = ts %q, %d sigs", tc.in, c.ts, len(c.sigs))
		}
	}
}

func TestParseSignatureList(t *testing.T) {
	tests := []struct {
		in     string
		asym   []bool
		reason string
	}{
		{"v1,AAAA", []bool{false}, ""},
		{"v1,AAAA v1a,BBBB", []bool{false, true}, ""},
		{"  v2,AAAA\tv1,AAAA  ", []bool{false}, ""},
		{"v1,!!!! v1a,AAAA", []bool{true}, ""},
		{"v1", nil, relay.ReasonMalformed},
		{"v1,", nil, relay.ReasonMalformed},
		{"v2,AAAA", nil, relay.ReasonMalformed},
		{strings.Repeat("v1,AAAA ", maxSignatures+1), nil, relay.ReasonMalformed},
	}
	for _, tc := range tests {
		sigs, err := parseSignatureList(tc.in)
		if relay.ErrorReason(err) != tc.reason {
			t.Errorf("parseSignatureList(%q): %v, want %q", tc.in, err, tc.reason)
			continue
		}
		var asym []bool
		for _, s := range sigs {
			asym = append(asym, s.asym)
		}
		if !slices.Equal(asym, tc.asym) {
			t.Errorf("parseSignatureList(%q) kinds %v, want %v", tc.in, asym, tc.asym)
		}
	}
}

func TestTimestampUnits(t *testing.T) {
	at := time.Unix(1700000000, 0).UTC()
	tests := []struct {
		unit tsUnit
		in   string
		ok   bool
		want time.Time
	}{
		{unitSeconds, "1700000000", true, at},
		{unitSeconds, "+1700000000", false, time.Time{}},
		{unitSeconds, "-1", false, time.Time{}},
		{unitSeconds, "1.5", false, time.Time{}},
		{unitSeconds, "", false, time.Time{}},
		{unitSeconds, "9999999999999999999999", false, time.Time{}},
		{unitMillis, "1700000000000", true, at},
		{unitRFC3339, "2023-11-14T22:13:20Z", true, at},
		{unitRFC3339, "2023-11-14T23:13:20.000000000+01:00", true, at},
		{unitRFC3339, "1700000000", false, time.Time{}},
		{unitAuto, "1700000000", true, at},
		{unitAuto, "1700000000000", true, at},
		{unitAuto, "2023-11-14T22:13:20Z", true, at},
		{unitAuto, "soon", false, time.Time{}},
	}
	for _, tc := range tests {
		got, ok := tc.unit.parse(tc.in)
		if ok != tc.ok || ok && !got.Equal(tc.want) {
			t.Errorf("unit %d parse(%q) = %v %v, want %v %v", tc.unit, tc.in, got, ok, tc.want, tc.ok)
		}
		if ok {
			if back, _ := tc.unit.parse(tc.unit.format(got)); !back.Equal(got) {
				t.Errorf("unit %d: format/parse round trip of %v gave %v", tc.unit, got, back)
			}
		}
	}
}

func TestCheckTime(t *testing.T) {
	now := time.Unix(1700000000, 0)
	for _, tc := range []struct {
		signed time.Time
		tol    time.Duration
		reason string
	}{
		{now, time.Minute, ""},
		{now.Add(-time.Minute), time.Minute, ""},
		{now.Add(-time.Minute - 1), time.Minute, relay.ReasonStale},
		{now.Add(time.Minute), time.Minute, ""},
		{now.Add(time.Minute + 1), time.Minute, relay.ReasonFuture},
		{now.Add(-1000 * time.Hour), 0, ""},
	} {
		if got := relay.ErrorReason(checkTime(tc.signed, now, tc.tol)); got != tc.reason {
			t.Errorf("checkTime(%v, tol %v) = %q, want %q", tc.signed.Sub(now), tc.tol, got, tc.reason)
		}
	}
}

func TestSetPairs(t *testing.T) {
	got := setPairs("a=1&token=old&b=%20&&signature=x", []string{"token", "signature"},
		map[string]string{"token": "n w", "signature": "s"})
	if want := "a=1&b=%20&token=n+w&signature=s"; got != want {
		t.Errorf("setPairs = %q, want %q", got, want)
	}
}

func TestRequestField(t *testing.T) {
	tests := []struct {
		ct, body, path, want string
		ok                   bool
	}{
		{"application/json", `{"a":{"b":"c"}}`, "a.b", "c", true},
		{"application/json", `{"a":1.50}`, "a", "1.50", true},
		{"application/json", `{"a":null}`, "a", "", false},
		{"application/json", `[{"a":1}]`, "a", "", false},
		{"application/json", `{"a":"x"`, "a", "", false},
		{"application/x-www-form-urlencoded", "a=1&payload=%7B%22b%22%3A%7B%22c%22%3A2%7D%7D", "b.c", "2", true},
		{"application/x-www-form-urlencoded", "a=1&a=2", "a", "1", true},
		{"application/x-www-form-urlencoded", "a=%zz", "a", "", false},
	}
	for _, tc := range tests {
		r := &request{WebhookRequest: &relay.WebhookRequest{ContentType: tc.ct, Body: []byte(tc.body), Header: http.Header{}}}
		got, ok := r.field(tc.path)
		if got != tc.want || ok != tc.ok {
			t.Errorf("field(%s %q, %q) = %q %v, want %q %v", tc.ct, tc.body, tc.path, got, ok, tc.want, tc.ok)
		}
	}
}

// Every built-in preset template parses (mustTemplate panics at init otherwise) and every
// provider's timestamp tolerance is as the provider documents (docs/providers.md).
func TestDefaultTolerances(t *testing.T) {
	want := map[string]time.Duration{
		"stripe": 300 * time.Second, "standardwebhooks": 5 * time.Minute, "svix": 5 * time.Minute,
		"slack": 5 * time.Minute, "twitch": 10 * time.Minute, "linear": time.Minute, "paddle": 5 * time.Second,
		"zoom": 0, "discord": 0, "sendgrid": 0, "mailgun": 0,
	}
	for name, tol := range want {
		v, err := build(mustView(&relay.SourceConfig{Provider: name, Verify: &Options{Secrets: []relay.Secret{{Value: []byte("k")}}}}))
		if err != nil {
			t.Fatal(err)
		}
		e, ok := v.auth.(*engine)
		if !ok || e.ts == nil || e.ts.tolerance != tol {
			t.Errorf("%s: tolerance %+v, want %v", name, e.ts, tol)
		}
	}
	h, _ := build(mustView(&relay.SourceConfig{Provider: "hubspot", Verify: &Options{Secrets: []relay.Secret{{Value: []byte("k")}}}}))
	if tol := h.auth.(*hubspotAuth).v3.ts.tolerance; tol != 300*time.Second {
		t.Errorf("hubspot: %v", tol)
	}
}

// jsonValid is a helper of the fuzz targets.
func jsonValid(b []byte) bool { return json.Valid(b) }

// mustView is viewOf for a configuration a test wrote by hand.
func mustView(c *relay.SourceConfig) view {
	v, err := viewOf(c)
	if err != nil {
		panic(err)
	}
	return v
}
