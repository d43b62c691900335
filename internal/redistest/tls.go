package redistest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// StartTLS starts a redis-server that accepts only TLS connections (--port 0 --tls-port N),
// with a certificate for 127.0.0.1 issued by a certificate authority made for the test
// (CAFile), and no client certificates required. Its URL is rediss://127.0.0.1:N. Extra
// arguments are added as with StartWith. Like Start, it skips (or fails with
// RELAY_REQUIRE_REDIS=1) without redis-server.
func StartTLS(t testing.TB, args ...string) *Server {
	t.Helper()
	bin := lookBin(t)
	dir := t.TempDir()
	pool, err := writeTestPKI(dir)
	if err != nil {
		t.Fatalf("redistest: certificates: %v", err)
	}
	s := &Server{bin: bin, dir: dir, args: args, tlsClient: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	return s.launch(t)
}

// CAFile returns the PEM file of the certificate authority that issued a StartTLS server's
// certificate ("" for a plain server).
func (s *Server) CAFile() string {
	if s.tlsClient == nil {
		return ""
	}
	return filepath.Join(s.dir, "ca.pem")
}

// tlsArgs returns the redis-server arguments that make it listen with TLS only on port.
func (s *Server) tlsArgs(port string) []string {
	return []string{
		"--port", "0",
		"--tls-port", port,
		"--tls-cert-file", filepath.Join(s.dir, "server.pem"),
		"--tls-key-file", filepath.Join(s.dir, "server.key"),
		"--tls-ca-cert-file", filepath.Join(s.dir, "ca.pem"),
		"--tls-auth-clients", "no",
	}
}

// writeTestPKI writes ca.pem, server.pem and server.key (for 127.0.0.1 and localhost, valid
// for a day) into dir and returns a pool holding the CA.
func writeTestPKI(dir string) (*x509.CertPool, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "redistest CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	for name, block := range map[string]*pem.Block{
		"ca.pem":     {Type: "CERTIFICATE", Bytes: caDER},
		"server.pem": {Type: "CERTIFICATE", Bytes: der},
		"server.key": {Type: "EC PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(block), 0o600); err != nil {
			return nil, err
		}
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return pool, nil
}
