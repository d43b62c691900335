package daemon

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/eventrelay/eventrelay/internal/config"
	"github.com/eventrelay/eventrelay/internal/e2e"
	"github.com/eventrelay/eventrelay/relay"
)

// The admin listener shows a source's last refused webhooks: why, from where, with which
// headers, never a credential nor the body.
func TestRefusedRequestsAreShown(t *testing.T) {
	m := startMain(t, testConfig(""))
	body := []byte(`{"id":"r-1","type":"t"}`)
	// A wrong secret, with credentials in a header and in the query.
	if res := post(t, m, "orders?token=s3cr3t-in-query", body, e2e.Sign("not-the-secret", body), "Authorization", "Bearer abc", "X-Api-Token", "tok"); res.status != http.StatusUnauthorized {
		t.Fatalf("wrong secret: %d", res.status)
	}
	// Too large (orders allows 4096 bytes).
	big := []byte(`{"id":"r-2","pad":"` + strings.Repeat("x", 5000) + `"}`)
	if res := post(t, m, "orders", big, e2e.Sign(testSecret, big)); res.status != http.StatusRequestEntityTooLarge {
		t.Fatalf("too large: %d", res.status)
	}
	// Accepted: not listed.
	if res := post(t, m, "orders", body, e2e.Sign(testSecret, body)); res.status != http.StatusOK {
		t.Fatalf("good webhook: %d %s", res.status, res.body)
	}

	var got []struct {
		Status     int
		Reason     string
		Message    string
		ClientAddr string `json:"client_addr"`
		Method     string
		Path       string
		Headers    map[string]string
		BodySize   int64 `json:"body_size"`
	}
	resp, err := http.Get("http://" + m.AdminAddr + "/v1/admin/sources/orders/refused")
	if err != nil {
		t.Fatal(err)
	}
	err = json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	if err != nil || len(got) != 2 {
		t.Fatalf("refused = %+v, %v; want 2", got, err)
	}
	size, sig := got[0], got[1] // newest first
	if size.Status != 413 || size.Reason != "size" || size.BodySize != int64(len(big)) {
		t.Errorf("newest = %+v, want 413 size with the body size %d", size, len(big))
	}
	if sig.Status != 401 || sig.Reason != "signature" || sig.ClientAddr != "127.0.0.1" || sig.Method != "POST" ||
		sig.BodySize != int64(len(body)) || sig.Message == "" {
		t.Errorf("signature refusal = %+v", sig)
	}
	if sig.Path != "/v1/webhooks/orders?token=redacted" {
		t.Errorf("path %q: the query value is not redacted", sig.Path)
	}
	if sig.Headers["Authorization"] != "redacted" || sig.Headers["X-Api-Token"] != "redacted" || sig.Headers["X-Signature"] != "redacted" {
		t.Errorf("headers %v: want Authorization, X-Api-Token and the source's signature header redacted", sig.Headers)
	}
	// The 413 was answered before verification: its X-Signature is valid, and would let
	// anyone who reads the log replay that body.
	if size.Headers["X-Signature"] != "redacted" || size.Headers["Content-Type"] == "" {
		t.Errorf("headers %v: want the valid signature redacted, Content-Type shown", size.Headers)
	}
	raw, _ := json.Marshal(got)
	for _, secret := range []string{"s3cr3t-in-query", "Bearer abc", `"tok"`, `"r-1"`, e2e.Sign(testSecret, big)} {
		if strings.Contains(string(raw), secret) {
			t.Errorf("the refused log shows %s", secret)
		}
	}

	for path, want := range map[string]int{
		"/v1/admin/sources/orders/refused?limit=1": http.StatusOK,
		"/v1/admin/sources/nope/refused":           http.StatusNotFound,
		"/v1/admin/sources/orders/refused?limit=x": http.StatusBadRequest,
	} {
		resp, err := http.Get("http://" + m.AdminAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		var one []json.RawMessage
		if want == http.StatusOK {
			_ = json.NewDecoder(resp.Body).Decode(&one)
			if len(one) != 1 {
				t.Errorf("%s: %d entries, want 1", path, len(one))
			}
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s: %d, want %d", path, resp.StatusCode, want)
		}
	}
}

// TestAdminAPITokens: with auth.tokens, the admin API (/v1/admin/*) takes a token with
// console: true, and shows only the sources it may read; without a token it was open to
// anyone who reached the admin listener, whatever the console's own checks.
func TestAdminAPITokens(t *testing.T) {
	cfg := testConfig("")
	billing := cfg.Sources[0]
	billing.Name = "billing"
	cfg.Sources = append(cfg.Sources, billing)
	cfg.Auth.Tokens = []config.AuthToken{
		{Name: "ops", Token: relay.Secret{Value: []byte("ops-token")}, Sources: []string{"*"}, Publish: true, Console: true},
		{Name: "reader", Token: relay.Secret{Value: []byte("reader-token")}, Sources: []string{"orders"}, Console: true},
		{Name: "service", Token: relay.Secret{Value: []byte("service-token")}, Sources: []string{"*"}},
	}
	m := startMain(t, cfg)
	get := func(path, token string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "http://"+m.AdminAddr+path, nil)
		code, body := doToken(t, req, token) // "": an empty bearer token, no credential
		return code, string(body)
	}
	for _, tc := range []struct {
		path, token string
		want        int
		has, hasNot string
	}{
		{"/v1/admin/sources", "", http.StatusUnauthorized, "console: true", ""},
		{"/v1/admin/sources", "wrong", http.StatusUnauthorized, "", ""},
		{"/v1/admin/sources", "service-token", http.StatusForbidden, "console: true", ""},
		{"/v1/admin/sources", "ops-token", http.StatusOK, `"billing"`, ""},
		{"/v1/admin/sources", "reader-token", http.StatusOK, `"orders"`, `"billing"`},
		{"/v1/admin/sources/billing/refused", "", http.StatusUnauthorized, "", ""},
		{"/v1/admin/sources/billing/refused", "reader-token", http.StatusNotFound, "no source named billing", ""},
		{"/v1/admin/sources/orders/refused", "reader-token", http.StatusOK, "", ""},
		{"/v1/admin/destinations", "", http.StatusUnauthorized, "", ""},
		{"/v1/admin/destinations", "reader-token", http.StatusOK, "[]", ""},
	} {
		code, body := get(tc.path, tc.token)
		if code != tc.want || !strings.Contains(body, tc.has) || (tc.hasNot != "" && strings.Contains(body, tc.hasNot)) {
			t.Errorf("GET %s with %q: %d %s, want %d with %q and without %q", tc.path, tc.token, code, body, tc.want, tc.has, tc.hasNot)
		}
	}
	resp, err := http.Post("http://"+m.AdminAddr+"/v1/admin/destinations/x/resume", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("resume without a token: %d, want 401", resp.StatusCode)
	}
}
