package verify

import (
	"strings"
	"testing"
	"time"

	"github.com/eventrelay/eventrelay/relay"
)

// TestBodyFormats: which body_format each provider offering a choice takes, its default, and
// the errors for anything else. Expected values are the documented table, written out.
func TestBodyFormats(t *testing.T) {
	for _, tc := range []struct {
		provider string
		choices  string
		def      string
	}{
		{"hmac", "json|form|raw", "json"},
		{"token", "json|form|raw", "raw"},
		{"basic", "json|form|raw", "raw"},
		{"github", "json|form", "json"},
		{"slack", "json|form", "json"},
		{"twilio", "json|form", "form"},
		{"mailgun", "json|form|multipart", "json"},
		{"shopify", "json|xml", "json"},
		{"stripe", "", "json"},
		{"discord", "", "json"},
	} {
		choices, def := BodyFormats(tc.provider)
		if strings.Join(choices, "|") != tc.choices || def != tc.def {
			t.Errorf("BodyFormats(%s) = %v, %q; want %s, %q", tc.provider, choices, def, tc.choices, tc.def)
		}
	}
	for _, tc := range []struct {
		provider, format, wantErr string
	}{
		{"github", "xml", `body_format: provider "github" sends json|form, not xml`},
		{"stripe", "form", `body_format: provider "stripe" sends only json`},
		{"hmac", "yaml", `body_format: unknown "yaml"`},
		{"github", "FORM", ""},
		{"hmac", "raw", ""},
	} {
		_, err := New(&relay.SourceConfig{Provider: tc.provider, Verify: &Options{BodyFormat: tc.format, Secrets: []relay.Secret{{Value: []byte("k")}}}})
		if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("New(%s, body_format %s) = %v, want %q", tc.provider, tc.format, err, tc.wantErr)
		}
	}
}

// TestSourceAccepts: a source accepts exactly its one format's content types.
func TestSourceAccepts(t *testing.T) {
	for _, tc := range []struct {
		provider, format, ct string
		want                 bool
	}{
		{"github", "", "application/json", true},
		{"github", "", "application/json; charset=utf-8", true},
		{"github", "", "application/x-www-form-urlencoded", false},
		{"github", "form", "application/x-www-form-urlencoded", true},
		{"github", "form", "application/json", false},
		{"hmac", "", "application/vnd.api+json", true},
		{"hmac", "", "text/plain", false},
		{"hmac", "", "", false},
		{"hmac", "raw", "text/plain", true},
		{"hmac", "raw", "", true},
		{"twilio", "", "application/x-www-form-urlencoded", true},
		{"twilio", "", "application/json", false},
		{"mailgun", "multipart", "multipart/form-data; boundary=b", true},
		{"mailgun", "multipart", "application/x-www-form-urlencoded", false},
		{"stripe", "form", "application/json", false}, // invalid configuration accepts nothing
	} {
		cfg := &relay.SourceConfig{Provider: tc.provider, Verify: &Options{BodyFormat: tc.format}}
		if got := SourceAccepts(cfg, tc.ct); got != tc.want {
			t.Errorf("SourceAccepts(%s/%s, %q) = %v, want %v", tc.provider, tc.format, tc.ct, got, tc.want)
		}
	}
}

// TestRawReadsNoForm: a raw source reads fields from JSON bodies only, so a form body (any
// content type is accepted) never supplies the event's id or type.
func TestRawReadsNoForm(t *testing.T) {
	cfg := &relay.SourceConfig{Provider: "hmac", Verify: &Options{BodyFormat: "raw", Secrets: []relay.Secret{{Value: []byte("k")}}}}
	body := []byte("id=evt_forged&type=refund.issued")
	req := &relay.WebhookRequest{Method: "POST", ContentType: "application/x-www-form-urlencoded", Body: body, Header: map[string][]string{}}
	if err := Sign(cfg, req, time.Unix(1700000000, 0)); err != nil {
		t.Fatal(err)
	}
	v, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	got, err := v.Verify(req, time.Unix(1700000000, 0))
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != "" || got.Type != "" {
		t.Errorf("raw source read form fields: id %q type %q", got.ID, got.Type)
	}
}

// FuzzBodyFormat: for every provider and every format it offers, a content type is accepted
// exactly when its media type (lower case, without parameters) is one the format names; the
// oracle is the list of names written out here.
func FuzzBodyFormat(f *testing.F) {
	for _, s := range []string{"application/json", "APPLICATION/JSON ; charset=x", "application/x-www-form-urlencoded",
		"multipart/form-data; boundary=b", "text/xml", "application/problem+json", "", ";", "application/+json", "\x00"} {
		f.Add(s)
	}
	names := map[string][]string{
		"json":      {"application/json"},
		"form":      {"application/x-www-form-urlencoded"},
		"multipart": {"multipart/form-data"},
		"xml":       {"application/xml", "text/xml"},
	}
	f.Fuzz(func(t *testing.T, ct string) {
		mt, _, _ := strings.Cut(ct, ";")
		mt = strings.ToLower(strings.TrimSpace(mt))
		for _, provider := range []string{"hmac", "github", "slack", "twilio", "mailgun", "shopify", "stripe"} {
			choices, def := BodyFormats(provider)
			if choices == nil {
				choices = []string{def}
			}
			for _, format := range choices {
				want := format == "raw"
				for _, n := range names[format] {
					want = want || mt == n
				}
				if format == "json" && strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json") {
					want = true
				}
				if got := SourceAccepts(&relay.SourceConfig{Provider: provider, Verify: &Options{BodyFormat: format}}, ct); got != want {
					t.Fatalf("%s/%s accepts %q: %v, want %v", provider, format, ct, got, want)
				}
			}
		}
	})
}
