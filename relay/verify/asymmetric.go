package verify

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"github.com/eventrelay/eventrelay/relay"
)

// Public-key schemes: Discord (Ed25519), SendGrid (ECDSA P-256) and the v1a signatures of
// Standard Webhooks. Their secrets are public keys; Sign needs the private key (SignWithKey).

// discord: X-Signature-Ed25519 (hex) over {timestamp}{raw}; the secret is the application's
// public key in hex. PING interactions are answered with {"type":1}.
var discord = &provider{
	media: mediaJSON,
	opts:  optTolerance,
	build: (&preset{
		keys:       keyEd25519Hex,
		format:     headerFormat{header: "X-Signature-Ed25519", enc: encHex, asym: true},
		tmpl:       mustTemplate("{timestamp}{body}"),
		ts:         &tsSpec{header: "X-Signature-Timestamp", unit: unitSeconds},
		privateKey: ed25519Signer,
	}).build,
	extract:   extractDiscord,
	handshake: discordHandshake,
	keep:      []string{"X-Signature-Timestamp"},
	secret:    []string{"X-Signature-Ed25519"},
}

// sendgrid: X-Twilio-Email-Event-Webhook-Signature (base64 ASN.1 DER ECDSA P-256 SHA-256)
// over {timestamp}{raw}; the secret is the verification key, base64 SPKI DER (or PEM).
var sendgrid = &provider{
	media: mediaJSON,
	opts:  optTolerance,
	build: (&preset{
		keys:       keyECDSA,
		format:     headerFormat{header: "X-Twilio-Email-Event-Webhook-Signature", enc: encBase64, asym: true},
		tmpl:       mustTemplate("{timestamp}{body}"),
		ts:         &tsSpec{header: "X-Twilio-Email-Event-Webhook-Timestamp", unit: unitSeconds},
		privateKey: ecdsaP256Signer,
	}).build,
	keep:   []string{"X-Twilio-Email-Event-Webhook-Timestamp"},
	secret: []string{"X-Twilio-Email-Event-Webhook-Signature"},
}

var discordInteractions = map[string]string{
	"1": "PING", "2": "APPLICATION_COMMAND", "3": "MESSAGE_COMPONENT",
	"4": "APPLICATION_COMMAND_AUTOCOMPLETE", "5": "MODAL_SUBMIT",
}

// extractDiscord reads interactions (id, type as its Discord name) and webhook events
// (event.type, event.timestamp).
func extractDiscord(r *request, v *relay.Verified) {
	if t, ok := r.field("event.type"); ok {
		v.Type = t
		v.Time, _ = r.fieldTime("event.timestamp")
		return
	}
	v.ID, _ = r.field("id")
	if t, ok := r.field("type"); ok {
		if name, ok := discordInteractions[t]; ok {
			v.Type = name
		} else {
			v.Type = "interaction." + t
		}
	}
}

type ed25519Key ed25519.PublicKey

func (k ed25519Key) verify(msg, sig []byte) bool {
	return len(sig) == ed25519.SignatureSize && ed25519.Verify(ed25519.PublicKey(k), msg, sig)
}
func (ed25519Key) scheme() string { return "ed25519" }

type ecdsaKey struct{ *ecdsa.PublicKey }

func (k ecdsaKey) verify(msg, sig []byte) bool {
	h := sha256.Sum256(msg)
	return ecdsa.VerifyASN1(k.PublicKey, h[:], sig)
}
func (ecdsaKey) scheme() string { return "ecdsa-p256-sha256" }

func parseEd25519Hex(s string) (publicKey, string) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, "not an Ed25519 public key (want 64 hex digits)"
	}
	return ed25519Key(b), ""
}

func parseECDSAKey(s string) (publicKey, string) {
	const problem = "not an ECDSA P-256 public key (want base64 SPKI DER or PEM)"
	der, ok := pemOrBase64(s, "PUBLIC KEY")
	if !ok {
		return nil, problem
	}
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, problem
	}
	k, ok := pub.(*ecdsa.PublicKey)
	if !ok || k.Curve != elliptic.P256() {
		return nil, problem
	}
	return ecdsaKey{k}, ""
}

// pemOrBase64 returns the DER bytes of a PEM block of the given type or of standard base64.
func pemOrBase64(s, blockType string) ([]byte, bool) {
	if strings.HasPrefix(s, "-----BEGIN") {
		b, _ := pem.Decode([]byte(s))
		if b == nil || !strings.HasSuffix(b.Type, blockType) {
			return nil, false
		}
		return b.Bytes, true
	}
	der, err := base64.StdEncoding.DecodeString(s)
	return der, err == nil
}

func ed25519Signer(priv crypto.Signer) (signer, error) {
	k, ok := priv.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("sign: want an ed25519.PrivateKey, got %T", priv)
	}
	return func(msg []byte) (sigValue, error) {
		return sigValue{b: ed25519.Sign(k, msg), asym: true}, nil
	}, nil
}

func ecdsaP256Signer(priv crypto.Signer) (signer, error) {
	k, ok := priv.(*ecdsa.PrivateKey)
	if !ok || k.Curve != elliptic.P256() {
		return nil, fmt.Errorf("sign: want an ECDSA P-256 *ecdsa.PrivateKey, got %T", priv)
	}
	return func(msg []byte) (sigValue, error) {
		h := sha256.Sum256(msg)
		sig, err := ecdsa.SignASN1(rand.Reader, k, h[:])
		return sigValue{b: sig, asym: true}, err
	}, nil
}

// asymFamily returns the public-key family of a provider: "ed25519-hex" (discord),
// "ecdsa" (sendgrid), "standard" (standardwebhooks, svix) or "".
func asymFamily(provider string) string {
	switch normalize(provider) {
	case "discord":
		return "ed25519-hex"
	case "sendgrid":
		return "ecdsa"
	case "standardwebhooks", "svix":
		return "standard"
	}
	return ""
}

// ParsePrivateKey parses the private key of a public-key provider for SignWithKey:
//
//   - discord: hex of the 32-byte Ed25519 seed or of the 64-byte private key;
//   - sendgrid: base64 PKCS#8 or SEC 1 DER, or PEM, of an ECDSA P-256 key;
//   - standardwebhooks, svix: "whsk_" + base64 of the Ed25519 seed or private key.
func ParsePrivateKey(provider, s string) (crypto.Signer, error) {
	s = strings.TrimSpace(s)
	switch asymFamily(provider) {
	case "ed25519-hex":
		b, err := hex.DecodeString(s)
		if err != nil {
			return nil, errors.New("private key: not hex")
		}
		return ed25519Private(b)
	case "standard":
		rest, ok := strings.CutPrefix(s, "whsk_")
		if !ok {
			return nil, errors.New(`private key: want "whsk_" + base64`)
		}
		b, err := base64.StdEncoding.DecodeString(rest)
		if err != nil {
			return nil, errors.New("private key: not base64")
		}
		return ed25519Private(b)
	case "ecdsa":
		der, ok := pemOrBase64(s, "PRIVATE KEY")
		if !ok {
			return nil, errors.New("private key: want base64 DER or PEM")
		}
		var key any
		key, err := x509.ParsePKCS8PrivateKey(der)
		if err != nil {
			if key, err = x509.ParseECPrivateKey(der); err != nil {
				return nil, errors.New("private key: not a PKCS#8 or SEC 1 key")
			}
		}
		k, ok := key.(*ecdsa.PrivateKey)
		if !ok || k.Curve != elliptic.P256() {
			return nil, errors.New("private key: not an ECDSA P-256 key")
		}
		return k, nil
	}
	return nil, fmt.Errorf("private key: provider %q signs with shared secrets", provider)
}

func ed25519Private(b []byte) (crypto.Signer, error) {
	switch len(b) {
	case ed25519.SeedSize:
		return ed25519.NewKeyFromSeed(b), nil
	case ed25519.PrivateKeySize:
		return ed25519.PrivateKey(b), nil
	}
	return nil, errors.New("private key: want a 32-byte Ed25519 seed or a 64-byte private key")
}

// EncodePublicKey returns pub as a secret value of a public-key provider: hex for discord,
// base64 SPKI DER for sendgrid, "whpk_" + base64 for standardwebhooks and svix.
func EncodePublicKey(provider string, pub crypto.PublicKey) (string, error) {
	switch asymFamily(provider) {
	case "ed25519-hex", "standard":
		k, ok := pub.(ed25519.PublicKey)
		if !ok {
			return "", fmt.Errorf("public key: want ed25519.PublicKey, got %T", pub)
		}
		if asymFamily(provider) == "standard" {
			return "whpk_" + base64.StdEncoding.EncodeToString(k), nil
		}
		return hex.EncodeToString(k), nil
	case "ecdsa":
		k, ok := pub.(*ecdsa.PublicKey)
		if !ok || k.Curve != elliptic.P256() {
			return "", fmt.Errorf("public key: want an ECDSA P-256 *ecdsa.PublicKey, got %T", pub)
		}
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			return "", err
		}
		return base64.StdEncoding.EncodeToString(der), nil
	}
	return "", fmt.Errorf("public key: provider %q signs with shared secrets", provider)
}
