package daemon

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/eventrelay/eventrelay/relay"
	"github.com/eventrelay/eventrelay/relay/verify"
)

// TestHandshakesOverHTTP sends each provider's handshake to a real relayd (embedded store),
// signed by hand as the provider documents it, and checks the exact answer the provider
// expects (status, content type, body) and that nothing was stored: Slack url_verification,
// Twitch webhook_callback_verification, Zoom endpoint.url_validation, Discord's interactions
// PING and webhook-events PING (204, no body), Meta's GET hub.challenge.
func TestHandshakesOverHTTP(t *testing.T) {
	const (
		slackKey  = "8f742231b10e8888abcd99yyyzzz85a5"
		twitchKey = "twitch-handshake-secret"
		zoomKey   = "zoom-handshake-secret"
		metaToken = "meta-verify-token-1"
	)
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig("")
	for _, s := range []relay.SourceConfig{
		{Name: "slack", Provider: "slack", Verify: &verify.Options{Secrets: []relay.Secret{{Value: []byte(slackKey)}}}},
		{Name: "twitch", Provider: "twitch", Verify: &verify.Options{Secrets: []relay.Secret{{Value: []byte(twitchKey)}}}},
		{Name: "zoom", Provider: "zoom", Verify: &verify.Options{Secrets: []relay.Secret{{Value: []byte(zoomKey)}}}},
		{Name: "discord", Provider: "discord", Verify: &verify.Options{Secrets: []relay.Secret{{Value: []byte(hex.EncodeToString(pub))}}}},
		{Name: "meta", Provider: "meta", Verify: &verify.Options{Secrets: []relay.Secret{{Value: []byte("meta-app-secret")}}, VerifyToken: &relay.Secret{Value: []byte(metaToken)}}},
	} {
		s.SetDefaults()
		cfg.Sources = append(cfg.Sources, s)
	}
	m := startMain(t, cfg)
	c := client(t, m)

	now := time.Now()
	ts := strconv.FormatInt(now.Unix(), 10)
	mac := func(key, msg string) string {
		h := hmac.New(sha256.New, []byte(key))
		h.Write([]byte(msg))
		return hex.EncodeToString(h.Sum(nil))
	}
	const (
		slackBody   = `{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}`
		twitchBody  = `{"challenge":"pogchamp-kappa-360noscope-vohiyo","subscription":{"id":"f1c2a387-161a-49f9-a165-0f21d7a4e1c4","type":"channel.follow","version":"2"}}`
		zoomBody    = `{"payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"},"event_ts":1654503849680,"event":"endpoint.url_validation"}`
		discordPing = `{"id":"1","application_id":"2","type":1,"token":"t","version":1}`
		discordHook = `{"version":1,"application_id":"2","type":0}`
	)
	twitchTS := now.UTC().Format(time.RFC3339Nano)
	discordSig := func(body string) string { return hex.EncodeToString(ed25519.Sign(priv, []byte(ts+body))) }
	for _, tc := range []struct {
		name, source, method, query, body string
		hdr                               []string
		status                            int
		ctype, want                       string
	}{
		{name: "slack url_verification", source: "slack", method: "POST", body: slackBody,
			hdr:    []string{"X-Slack-Request-Timestamp", ts, "X-Slack-Signature", "v0=" + mac(slackKey, "v0:"+ts+":"+slackBody)},
			status: 200, ctype: "application/json", want: `{"challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}`},
		{name: "twitch webhook_callback_verification", source: "twitch", method: "POST", body: twitchBody,
			hdr: []string{"Twitch-Eventsub-Message-Id", "e76c6bd4-55c9-4987-8304-da1588d8988b", "Twitch-Eventsub-Message-Timestamp", twitchTS,
				"Twitch-Eventsub-Message-Type", "webhook_callback_verification",
				"Twitch-Eventsub-Message-Signature", "sha256=" + mac(twitchKey, "e76c6bd4-55c9-4987-8304-da1588d8988b"+twitchTS+twitchBody)},
			status: 200, ctype: "text/plain; charset=utf-8", want: "pogchamp-kappa-360noscope-vohiyo"},
		{name: "zoom endpoint.url_validation", source: "zoom", method: "POST", body: zoomBody,
			hdr:    []string{"X-Zm-Request-Timestamp", ts, "X-Zm-Signature", "v0=" + mac(zoomKey, "v0:"+ts+":"+zoomBody)},
			status: 200, ctype: "application/json",
			want: `{"plainToken":"qgg8vlvZRS6UYooatFL8Aw","encryptedToken":"` + mac(zoomKey, "qgg8vlvZRS6UYooatFL8Aw") + `"}`},
		{name: "discord interactions PING", source: "discord", method: "POST", body: discordPing,
			hdr:    []string{"X-Signature-Timestamp", ts, "X-Signature-Ed25519", discordSig(discordPing)},
			status: 200, ctype: "application/json", want: `{"type":1}`},
		{name: "discord webhook-events PING", source: "discord", method: "POST", body: discordHook,
			hdr:    []string{"X-Signature-Timestamp", ts, "X-Signature-Ed25519", discordSig(discordHook)},
			status: 204, ctype: "", want: ""},
		{name: "meta GET hub.challenge", source: "meta", method: "GET",
			query:  "hub.mode=subscribe&hub.verify_token=" + metaToken + "&hub.challenge=1158201444",
			status: 200, ctype: "text/plain; charset=utf-8", want: "1158201444"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := "http://" + m.HTTPAddr + "/v1/webhooks/" + tc.source
			if tc.query != "" {
				u += "?" + tc.query
			}
			var body io.Reader
			if tc.body != "" {
				body = bytes.NewReader([]byte(tc.body))
			}
			req, err := http.NewRequest(tc.method, u, body)
			if err != nil {
				t.Fatal(err)
			}
			if tc.body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			for i := 0; i+1 < len(tc.hdr); i += 2 {
				req.Header.Set(tc.hdr[i], tc.hdr[i+1])
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || resp.Header.Get("Content-Type") != tc.ctype || string(got) != tc.want {
				t.Errorf("got %d %q %q\nwant %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), got, tc.status, tc.ctype, tc.want)
			}
			if n := countEvents(t, c, tc.source); n != 0 {
				t.Errorf("the handshake was stored: %d events in %s", n, tc.source)
			}
		})
	}
}
