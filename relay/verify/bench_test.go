package verify_test

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/eventrelay/eventrelay/relay"
	"github.com/eventrelay/eventrelay/relay/verify"
)

// BenchmarkVerify measures Verify of a signed 1 KiB JSON event (go test -bench=. -benchmem).
func BenchmarkVerify(b *testing.B) {
	body := `{"id":"evt_1","type":"invoice.paid","created":1700000000,"data":{"object":{"id":"in_1","pad":"` +
		strings.Repeat("x", 900) + `"}}}`
	swSecret := "whsec_" + base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	for _, bc := range []struct {
		name string
		cfg  relay.SourceConfig
	}{
		{"hmac", relay.SourceConfig{Provider: "hmac", Verify: &verify.Options{Secrets: secrets("0123456789abcdef")}}},
		{"stripe", relay.SourceConfig{Provider: "stripe", Verify: &verify.Options{Secrets: secrets("whsec_0123456789abcdef")}}},
		{"standardwebhooks", relay.SourceConfig{Provider: "standardwebhooks", Verify: &verify.Options{Secrets: secrets(swSecret)}}},
		{"stripe/rotated", relay.SourceConfig{Provider: "stripe", Verify: &verify.Options{Secrets: secrets("whsec_old", "whsec_0123456789abcdef")}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			bc.cfg.Name = "bench"
			signer := bc.cfg
			verify.OptionsOf(&signer).Secrets = verify.OptionsOf(&signer).Secrets[len(verify.OptionsOf(&signer).Secrets)-1:]
			r := jsonReq(body)()
			if err := verify.Sign(&signer, r, testNow); err != nil {
				b.Fatal(err)
			}
			v, err := verify.New(&bc.cfg)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(r.Body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Verify(r, testNow); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
