package verify

import (
	"bytes"
	"encoding/json"
	"math"
	"math/big"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/eventrelay/eventrelay/relay"
)

// Fuzz targets of every parser of untrusted input. Seeds come from the providers' published vectors (vectors_test.go).

func fuzzKV(f *testing.F, sep, tsKey, sigKey string, seeds ...string) {
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		c, err := parseKV(header, sep, tsKey, sigKey)
		if err != nil {
			if relay.ErrorReason(err) != relay.ReasonMalformed {
				t.Fatalf("error %v is not malformed", err)
			}
			return
		}
		if !c.hasTS || len(c.sigs) == 0 || len(c.sigs) > maxSignatures {
			t.Fatalf("accepted %q with ts %v and %d signatures", header, c.hasTS, len(c.sigs))
		}
		// What write produces parses back to the same timestamp and first signature.
		if strings.Contains(c.ts, sep) || strings.ContainsAny(c.ts, " \t") {
			return
		}
		r := &request{WebhookRequest: &relay.WebhookRequest{Header: http.Header{}}}
		f := kvFormat{header: "H", sep: sep, tsKey: tsKey, sigKey: sigKey}
		_ = f.write(r, c, c.sigs[0])
		back, err := f.parse(r)
		if err != nil || back.ts != c.ts || !bytes.Equal(back.sigs[0].b, c.sigs[0].b) {
			t.Fatalf("round trip of %q: %+v %v", header, back, err)
		}
	})
}

func FuzzStripeSignature(f *testing.F) {
	fuzzKV(f, ",", "t", "v1",
		"t=1614265330,v1=3c5817089d739023dd6190f70a3757e04f7a2fd8b5dab12c2e000f51970dccff",
		"t=1614265330,v1=3c58,v0=ab,v1=3c5817089d739023dd6190f70a3757e04f7a2fd8b5dab12c2e000f51970dccff",
		"t=,v1=", "v1=aa,t=1,t=2", " t = 1 , v1 = aa ")
}

func FuzzPaddleSignature(f *testing.F) {
	fuzzKV(f, ";", "ts", "h1",
		"ts=1698796800;h1=a300428748dce5c70e4da19bffd60769591ea969c99dea3105d0ec9612cf43f9",
		"ts=1698796800;h1=00;h1=a300428748dce5c70e4da19bffd60769591ea969c99dea3105d0ec9612cf43f9",
		"ts=1;h2=ab", ";;=;")
}

func FuzzStandardWebhooksSignature(f *testing.F) {
	for _, s := range []string{
		"v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
		"v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE= v1a,AAAA v2,x",
		"v1a,FplhGkfJGh7AM7gZt+h+PbxYPdDO5tH9AhbxisfGYiiuUx3b+R+3vCjX7ffwhgTaFvVGJPOKa8BhTk3BPNR/Dw==",
		"v1, v1a ,", "\tv1,AAAA\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, list string) {
		sigs, err := parseSignatureList(list)
		if err != nil {
			if relay.ErrorReason(err) != relay.ReasonMalformed {
				t.Fatalf("error %v is not malformed", err)
			}
			return
		}
		if len(sigs) == 0 || len(sigs) > maxSignatures {
			t.Fatalf("%d signatures from %q", len(sigs), list)
		}
		for _, s := range sigs {
			if len(s.b) == 0 {
				t.Fatalf("empty signature from %q", list)
			}
		}
	})
}

func FuzzTwilioURL(f *testing.F) {
	for _, s := range []string{
		"https://mycompany.com/myapp.php?foo=1&bar=2",
		"https://mycompany.com:443/myapp.php?foo=1&bar=2&bodySHA256=0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620",
		"http://u:p@[::1]:80/x#frag", "https://:443", "https://a@:443/", "http://x:", "HTTP://X",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, u string) {
		vs := portVariants(u)
		if len(vs) == 0 || len(vs) > 2 || vs[0] != u {
			t.Fatalf("portVariants(%q) = %q", u, vs)
		}
		if len(vs) == 2 {
			if vs[1] == u {
				t.Fatalf("portVariants(%q): duplicate variant", u)
			}
			d := len(vs[1]) - len(u)
			if d != 3 && d != 4 && d != -3 && d != -4 {
				t.Fatalf("portVariants(%q) = %q: more than a port changed", u, vs)
			}
		}
		_, _ = queryParam(u, "bodySHA256")
	})
}

func FuzzTwilioParams(f *testing.F) {
	for _, s := range []string{
		"Digits=1234&CallSid=CA1234567890ABCDE&To=%2B18005551212&Caller=%2B14158675309&From=%2B14158675309&ReasonConferenceEnded=test&Reason=Participant",
		"To=b&To=a&To=b", "a=&=b&c", "x=%E2%82%AC",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		vals, err := url.ParseQuery(body)
		if err != nil {
			return
		}
		// The signed string does not depend on the order of the parameters.
		pairs := strings.Split(body, "&")
		slices.Reverse(pairs)
		rev, err := url.ParseQuery(strings.Join(pairs, "&"))
		if err != nil {
			t.Fatalf("reordered %q does not parse: %v", body, err)
		}
		if a, b := twilioParams(vals), twilioParams(rev); !bytes.Equal(a, b) {
			t.Fatalf("order-dependent params for %q: %q vs %q", body, a, b)
		}
	})
}

const multipartSeed = "--b\r\nContent-Disposition: form-data; name=\"timestamp\"\r\n\r\n1700000000\r\n" +
	"--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a\"\r\n\r\nx\r\n--b--\r\n"

func FuzzFormBody(f *testing.F) {
	f.Add("application/x-www-form-urlencoded", []byte("payload=%7B%22action%22%3A%22opened%22%7D&a=1"))
	f.Add("application/x-www-form-urlencoded", []byte("a=%zz;b"))
	f.Add("multipart/form-data; boundary=b", []byte(multipartSeed))
	f.Add("multipart/form-data; boundary=\"b\"", []byte("--b\r\n\r\n--b--"))
	f.Add("multipart/form-data", []byte(multipartSeed))
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		r := &request{WebhookRequest: &relay.WebhookRequest{ContentType: contentType, Body: body, Header: http.Header{}}}
		vals, err := r.form()
		if err == nil && vals == nil {
			t.Fatal("nil values without error")
		}
		for _, p := range []string{"timestamp", "action", "a.b", "payload"} {
			_, _ = r.field(p)
		}
	})
}

func FuzzMailgunBody(f *testing.F) {
	f.Add("application/json", []byte(`{"signature":{"timestamp":"1529006854","token":"a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0","signature":"d2271d12299f6592d9d44cd9d250f0704e4674c30d79d07c47a66f95ce71cf55"},"event-data":{"event":"opened"}}`))
	f.Add("application/json", []byte(`{"signature":{"timestamp":1,"token":null,"signature":[]}}`))
	f.Add("application/x-www-form-urlencoded", []byte("timestamp=1&token=t&signature=00ff&event=delivered"))
	f.Add("multipart/form-data; boundary=b", []byte(multipartSeed))
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		r := &request{WebhookRequest: &relay.WebhookRequest{ContentType: contentType, Body: body, Header: http.Header{}}}
		c, err := mailgunFormat{}.parse(r)
		if err != nil {
			if relay.ErrorCode(err) != relay.CodeUnauthenticated {
				t.Fatalf("error %v", err)
			}
			return
		}
		if len(c.sigs) != 1 || c.ts == "" || c.id == "" || !c.hasTS || !c.hasID {
			t.Fatalf("accepted %+v", c)
		}
		extractMailgun(r, &relay.Verified{})
	})
}

func FuzzHeaderSignature(f *testing.F) {
	f.Add("sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17", "sha256=", false, false)
	f.Add("v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503", "v0=", false, true)
	f.Add("W3FlCNk5IA3ZQ2LHTWoajvzfaDu/OwY2tNHIHC3IUOA=", "", true, false)
	f.Add("vOEb5UThFn24KEfnOFLQY2AE5FY", "", true, true)
	f.Fuzz(func(t *testing.T, value, prefix string, base64, lenient bool) {
		if !validPrefix(prefix) {
			return // rejected by New
		}
		enc := encHex
		if base64 {
			enc = encBase64
		}
		hf := headerFormat{header: "X-Sig", prefix: prefix, lenient: lenient, alt: "sha256=", enc: enc}
		r := &request{WebhookRequest: &relay.WebhookRequest{Header: http.Header{"X-Sig": {value}}}}
		c, err := hf.parse(r)
		if err != nil {
			if reason := relay.ErrorReason(err); reason != relay.ReasonMissing && reason != relay.ReasonMalformed {
				t.Fatalf("error %v", err)
			}
			return
		}
		if len(c.sigs) != 1 || len(c.sigs[0].b) == 0 {
			t.Fatalf("accepted %q as %+v", value, c)
		}
		// write then parse is the identity on the signature bytes.
		_ = hf.write(r, c, c.sigs[0])
		back, err := hf.parse(r)
		if err != nil || !bytes.Equal(back.sigs[0].b, c.sigs[0].b) {
			t.Fatalf("round trip of %q: %v", value, err)
		}
	})
}

func FuzzSetTopLevel(f *testing.F) {
	f.Add([]byte(`{"signature":{"token":"x"},"event-data":{}}`), "signature")
	f.Add([]byte(`{"webhookTimestamp":1,"a":[1,2,{"webhookTimestamp":2}]}`), "webhookTimestamp")
	f.Add([]byte(` {} `), "a")
	f.Add([]byte(`{"a\u00e9":1}`), "aé")
	f.Fuzz(func(t *testing.T, body []byte, name string) {
		if !utf8.ValidString(name) {
			return // names are constants
		}
		out, err := setTopLevel(body, name, []byte(`"v"`))
		if err != nil {
			return
		}
		if !jsonValid(out) {
			t.Fatalf("setTopLevel(%q, %q) = %q: invalid JSON", body, name, out)
		}
		if v, ok := firstMember(out, name); !ok || string(v) != `"v"` {
			t.Fatalf("setTopLevel(%q, %q) = %q: member is %q", body, name, out, v)
		}
	})
}

// firstMember returns the raw value of the first top-level member called name.
func firstMember(body []byte, name string) (json.RawMessage, bool) {
	dec := json.NewDecoder(bytes.NewReader(body))
	if _, err := dec.Token(); err != nil {
		return nil, false
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, false
		}
		var raw json.RawMessage
		if dec.Decode(&raw) != nil {
			return nil, false
		}
		if tok == name {
			return raw, true
		}
	}
	return nil, false
}

func FuzzTemplate(f *testing.F) {
	for _, s := range []string{"{body}", "v0:{timestamp}:{body}", "{method}{url}{body}{timestamp}", "{", "}{", "{{body}}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tmpl, err := parseTemplate(s)
		if err != nil {
			return
		}
		out := tmpl.expand(&tvals{body: []byte("B")})
		if !strings.ContainsAny(s, "{}") && string(out) != s {
			t.Fatalf("literal template %q expanded to %q", s, out)
		}
	})
}

// FuzzCheckTime: a signed time is accepted exactly when it is within tol of now, either way,
// whatever the magnitudes (no overflow lets a far-away timestamp through). The oracle works in
// big integers of nanoseconds.
func FuzzCheckTime(f *testing.F) {
	f.Add(int64(1700000000), int64(0), int64(1700000000), int64(0), int64(300))
	f.Add(int64(99999999999), int64(0), int64(1700000000), int64(0), int64(300))
	f.Add(int64(1733360000000), int64(0), int64(1733360000), int64(0), int64(300))
	f.Add(int64(253402300799), int64(0), int64(1700000000), int64(0), int64(600))
	f.Add(int64(-62135596800), int64(0), int64(1700000000), int64(0), int64(600))
	f.Add(int64(math.MaxInt64/int64(time.Second)), int64(999999999), int64(0), int64(0), int64(1))
	f.Fuzz(func(t *testing.T, sSec, sNsec, nSec, nNsec, tolSec int64) {
		signed, now := time.Unix(sSec, sNsec%1e9), time.Unix(nSec, nNsec%1e9)
		tol := time.Duration(tolSec%(1e6)) * time.Second
		err := checkTime(signed, now, tol)
		if tol <= 0 {
			if err != nil {
				t.Fatalf("tolerance %v: %v", tol, err)
			}
			return
		}
		ns := func(x time.Time) *big.Int {
			v := new(big.Int).Mul(big.NewInt(x.Unix()), big.NewInt(1e9))
			return v.Add(v, big.NewInt(int64(x.Nanosecond())))
		}
		diff := new(big.Int).Sub(ns(now), ns(signed))
		within := new(big.Int).Abs(diff).Cmp(big.NewInt(int64(tol))) <= 0
		if within != (err == nil) {
			t.Fatalf("signed %v now %v tol %v: err %v, want within=%v", signed, now, tol, err, within)
		}
		// The bound is symmetric: the mirror image of signed around now gets the same
		// answer, with the other reason (stale for the past, future for the future).
		if mirror := now.Add(now.Sub(signed)); now.Sub(signed) == now.Sub(mirror)*-1 && now.Sub(signed) != 0 {
			merr := checkTime(mirror, now, tol)
			if (merr == nil) != (err == nil) {
				t.Fatalf("signed %v and its mirror %v around %v (tol %v): %v and %v", signed, mirror, now, tol, err, merr)
			}
			if err != nil && relay.ErrorReason(err) == relay.ErrorReason(merr) {
				t.Fatalf("signed %v and its mirror %v: both %s", signed, mirror, relay.ErrorReason(err))
			}
		}
	})
}
