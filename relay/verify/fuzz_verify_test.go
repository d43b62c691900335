package verify_test

import (
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/eventrelay/eventrelay/relay"
	"github.com/eventrelay/eventrelay/relay/verify"
)

// encodeHeaders writes headers as "Name: value" lines, the fuzzer's form of a header set.
func encodeHeaders(h http.Header) string {
	var b strings.Builder
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		for _, v := range h[k] {
			b.WriteString(k + ": " + v + "\n")
		}
	}
	return b.String()
}

func decodeHeaders(s string) http.Header {
	h := http.Header{}
	for line := range strings.SplitSeq(s, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			h.Add(strings.TrimSpace(k), strings.TrimSpace(v))
		}
	}
	return h
}

// FuzzVerify feeds arbitrary headers, query, content type and body to the verifier of every
// fixture. The seeds are requests correctly signed with test secret 0 (and the published
// vectors); the verifiers hold only secret 1. Verify must never panic and never succeed:
// success would be a signature accepted without the secret.
func FuzzVerify(f *testing.F) {
	fx := fixtures(f)
	verifiers := make([]relay.Verifier, len(fx))
	index := map[string]int{}
	for i, x := range fx {
		verifiers[i] = mustNewTB(f, x.config(1))
		if _, ok := index[x.provider]; !ok {
			index[x.provider] = i
		}
		r := x.sign(f, 0, testNow)
		f.Add(uint8(i), r.ContentType, encodeHeaders(r.Header), r.RawQuery, r.Body, int64(0))
	}
	for _, v := range vectors() {
		if i, ok := index[v.cfg.Provider]; ok {
			f.Add(uint8(i), v.req.ContentType, encodeHeaders(v.req.Header), v.req.RawQuery, v.req.Body, v.now.Unix()-testNow.Unix())
		}
	}
	f.Fuzz(func(t *testing.T, which uint8, contentType, header, rawQuery string, body []byte, skew int64) {
		i := int(which) % len(fx)
		r := &relay.WebhookRequest{
			Method: "POST", ContentType: contentType, Header: decodeHeaders(header), RawQuery: rawQuery, Body: body,
			URL: "https://relay.example.com/v1/webhooks/src?" + rawQuery,
		}
		now := testNow.Add(time.Duration(skew%(1<<40)) * time.Second)
		got, err := verifiers[i].Verify(r, now)
		if err == nil {
			t.Fatalf("%s: forged request accepted: %+v", fx[i].name, got)
		}
		if c := relay.ErrorCode(err); c != relay.CodeUnauthenticated && c != relay.CodeUnsupportedMedia {
			t.Fatalf("%s: unexpected error %v", fx[i].name, err)
		}
	})
}

func mustNewTB(tb testing.TB, cfg *relay.SourceConfig) relay.Verifier {
	tb.Helper()
	v, err := verify.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return v
}
