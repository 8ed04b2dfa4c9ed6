package admission

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
	"strings"
	"testing"
	"time"
)

// The certificate scenario: serve picks up replaced certificate files
// without a restart.
func (s *suite) testCertReload(t *testing.T, img images) {
	ns := s.namespace(t, "prod-certs", "prod")
	admits := func(t *testing.T, suffix string) {
		t.Helper()
		s.assertDecisions(t, decisions{
			"promoted":   {obj: pod(ns, "promoted-"+suffix, img.prod)},
			"unpromoted": {obj: pod(ns, "unpromoted-"+suffix, img.nowhere), deny: notPromoted(img.nowhere, "prod")},
		}, false)
	}

	t.Run("new serving certificate from the same CA", func(t *testing.T) {
		serial := s.issueServingCert(t)
		s.waitServing(t, func(c *x509.Certificate) bool { return c.SerialNumber.Cmp(serial) == 0 })
		admits(t, "same-ca")
	})

	t.Run("new CA and caBundle", func(t *testing.T) {
		oldCA := readFile(t, s.caFile())
		s.mustRun(t, "certs", "generate", "--dir", s.certDir(), "--force")
		newCA := parseCert(t, readFile(t, s.caFile()))
		if string(readFile(t, s.caFile())) == string(oldCA) {
			t.Fatal("certs generate --force kept the CA")
		}
		s.waitServing(t, func(c *x509.Certificate) bool { return c.CheckSignatureFrom(newCA) == nil })

		// The API server may go on using a keep-alive connection made
		// with the old certificate, so what it does with the stale
		// caBundle is not asserted here; the new caBundle gives it a new
		// client, hence a new handshake with the new certificate.
		s.installWebhook(t, ns)
		admits(t, "new-ca")
		// The promotion API serves the new certificate too.
		if n := s.ledgerSize(t); n == 0 {
			t.Error("ledger size 0 over the new certificate")
		}
	})
}

// issueServingCert signs a new serving certificate for 127.0.0.1 with the
// CA in certDir, replaces tls.key and tls.crt, and returns its serial.
func (s *suite) issueServingCert(t *testing.T) *big.Int {
	t.Helper()
	ca := parseCert(t, readFile(t, s.caFile()))
	block, _ := pem.Decode(readFile(t, filepath.Join(s.certDir(), "ca.key")))
	if block == nil {
		t.Fatal("ca.key: no PEM block")
	}
	caKey, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "stagegate (rotated)"},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	// Key first, then the certificate, each renamed into place whole: the
	// order a Secret volume update or cert-manager gives no guarantee
	// about, so serve must cope with a pair that briefly mismatches.
	replaceFile(t, filepath.Join(s.certDir(), "tls.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
	chain := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw})...)
	replaceFile(t, filepath.Join(s.certDir(), "tls.crt"), chain, 0o644)
	return serial
}

// waitServing polls TLS handshakes with serve until its leaf certificate
// satisfies ok.
func (s *suite) waitServing(t *testing.T, ok func(*x509.Certificate) bool) {
	t.Helper()
	addr := strings.TrimPrefix(s.url, "https://")
	deadline := time.Now().Add(30 * time.Second)
	for {
		// Verification is the caller's predicate: this only reads
		// what is served.
		conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}) //nolint:gosec // inspected below
		if err == nil {
			leaf := conn.ConnectionState().PeerCertificates[0]
			conn.Close()
			if ok(leaf) {
				return
			}
			err = nil
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not pick up the new certificate within 30s (last error: %v)", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func readFile(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func parseCert(t testing.TB, pemBytes []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		t.Fatal("no PEM certificate")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// replaceFile writes a temporary file and renames it over p.
func replaceFile(t testing.TB, p string, b []byte, mode os.FileMode) {
	t.Helper()
	tmp := p + ".new"
	if err := os.WriteFile(tmp, b, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
}
