package push

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"strings"
	"time"
)

// Signer signs POSTs the Standard Webhooks way (https://www.standardwebhooks.com): the
// signed content is "<webhook-id>.<webhook-timestamp>.<body>", HMAC-SHA256 under each key,
// each signature "v1,<base64>", several separated by spaces.
type signer struct{ keys [][]byte }

func newSigner(secrets [][]byte) (*signer, error) {
	s := &signer{}
	for _, sec := range secrets {
		k, err := signingKey(sec)
		if err != nil {
			return nil, err
		}
		s.keys = append(s.keys, k)
	}
	return s, nil
}

// sign returns the webhook-signature header value of body sent as id at ts.
func (s *signer) sign(id string, ts time.Time, body []byte) string {
	var b strings.Builder
	unix := strconv.FormatInt(ts.Unix(), 10)
	for i, k := range s.keys {
		m := hmac.New(sha256.New, k)
		m.Write([]byte(id))
		m.Write([]byte{'.'})
		m.Write([]byte(unix))
		m.Write([]byte{'.'})
		m.Write(body)
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString("v1,")
		b.WriteString(base64.StdEncoding.EncodeToString(m.Sum(nil)))
	}
	return b.String()
}
