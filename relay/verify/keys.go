package verify

import (
	"bytes"
	"crypto/sha256"
	"strings"

	"github.com/eventrelay/eventrelay/relay"
)

// keyKind is how a scheme reads Options.Secrets.
type keyKind uint8

const (
	keyRaw        keyKind = iota // the bytes as configured are the HMAC key
	keyToken                     // a static token, kept as its SHA-256 for constant-time compare
	keyBasic                     // "user:password", kept as its SHA-256
	keyStandard                  // Standard Webhooks: whsec_<base64> HMAC key or whpk_<base64> Ed25519 public key
	keyEd25519Hex                // Ed25519 public key, hex (Discord)
	keyECDSA                     // ECDSA P-256 public key, base64 SPKI DER or PEM (SendGrid)
)

// parseKeys reads secrets as kind. An unusable secret is kept with its problem so the indexes
// of the others stay those of the configuration.
func parseKeys(secrets []relay.Secret, kind keyKind) []key {
	keys := make([]key, len(secrets))
	for i, s := range secrets {
		k := key{index: i, id: s.ID, raw: bytes.Clone(s.Value)}
		text := strings.TrimSpace(string(s.Value))
		switch {
		case len(s.Value) == 0:
			k.problem = "empty value"
		case kind == keyRaw:
			k.mac = k.raw
		case kind == keyToken:
			d := sha256.Sum256(s.Value)
			k.mac = d[:]
		case kind == keyBasic:
			if !bytes.ContainsRune(s.Value, ':') {
				k.problem = `not "user:password"`
				break
			}
			d := sha256.Sum256(s.Value)
			k.mac = d[:]
		case kind == keyStandard:
			k.mac, k.pub, k.problem = parseStandardKey(text)
		case kind == keyEd25519Hex:
			k.pub, k.problem = parseEd25519Hex(text)
		case kind == keyECDSA:
			k.pub, k.problem = parseECDSAKey(text)
		}
		keys[i] = k
	}
	return keys
}
