package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// File names of a client certificate inside the certificate directory.
const (
	ClientCert = "client.crt"
	ClientKey  = "client.key"
)

// GenerateClient writes client.crt and client.key (0600) into dir: a
// client certificate for cn signed by the CA already there (ca.crt,
// ca.key), e.g. the one kube-apiserver presents to the webhook through its
// AdmissionConfiguration. Its validity is that of Options.
func GenerateClient(dir, cn string, o Options) error {
	if cn == "" {
		return fmt.Errorf("pki: client certificate needs a common name")
	}
	if o.Validity == 0 {
		o.Validity = 365 * 24 * time.Hour
	}
	if !o.Force {
		for _, f := range []string{ClientCert, ClientKey} {
			if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
				return fmt.Errorf("%w: %s", ErrExists, filepath.Join(dir, f))
			}
		}
	}
	caPair, err := tls.LoadX509KeyPair(filepath.Join(dir, CACert), filepath.Join(dir, CAKey))
	if err != nil {
		return fmt.Errorf("pki: client certificate: CA: %w", err)
	}
	ca, err := x509.ParseCertificate(caPair.Certificate[0])
	if err != nil {
		return fmt.Errorf("pki: client certificate: CA: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	now := time.Now().Add(-time.Minute)
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    now,
		NotAfter:     now.Add(o.Validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caPair.PrivateKey)
	if err != nil {
		return fmt.Errorf("pki: client certificate: %w", err)
	}
	if err := writeKey(filepath.Join(dir, ClientKey), key); err != nil {
		return err
	}
	return writePEM(filepath.Join(dir, ClientCert), "CERTIFICATE", der, 0o644)
}
