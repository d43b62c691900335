package push

import (
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"strings"
	"time"

	"github.com/eventrelay/eventrelay/relay"
)

// Signer signs POSTs the Standard Webhooks way (https://www.standardwebhooks.com): the
// signed content is "<webhook-id>.<webhook-timestamp>.<body>", HMAC-SHA256 under each key,
// each signature "v1,<base64>", several separated by spaces.
type signer struct{ keys []*relay.KeyedMAC }

func newSigner(secrets [][]byte) (*signer, error) {
	s := &signer{}
	for _, sec := range secrets {
		k, err := signingKey(sec)
		if err != nil {
			return nil, err
		}
		s.keys = append(s.keys, relay.NewKeyedMAC(sha256.New, k))
	}
	return s, nil
}

// sign returns the webhook-signature header value of body sent as id at ts.
func (s *signer) sign(id string, ts time.Time, body []byte) string {
	var b strings.Builder
	var unix [20]byte // an int64 in decimal
	var mac [sha256.Size]byte
	u := strconv.AppendInt(unix[:0], ts.Unix(), 10)
	dot := []byte{'.'}
	for i, k := range s.keys {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString("v1,")
		b.WriteString(base64.StdEncoding.EncodeToString(k.Sum(mac[:0], []byte(id), dot, u, dot, body)))
	}
	return b.String()
}
