// Package pki makes the webhook's TLS material: a CA and a serving
// certificate signed by it, for local use and for the caBundle of the
// ValidatingWebhookConfiguration, and the replicas' peer certificates
// (peers.go).
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// File names inside the certificate directory.
const (
	CACert  = "ca.crt"
	CAKey   = "ca.key"
	TLSCert = "tls.crt"
	TLSKey  = "tls.key"
)

// Options says what to generate.
type Options struct {
	// Hosts are the DNS names and IP addresses of the serving certificate.
	Hosts []string
	// Validity of the serving certificate; the CA lives ten times longer.
	Validity time.Duration
	// Force replaces existing files.
	Force bool
}

// ServiceHosts are the names the API server uses to reach a webhook
// Service, plus loopback for local runs.
func ServiceHosts(service, namespace string) []string {
	return []string{
		service, service + "." + namespace, service + "." + namespace + ".svc",
		service + "." + namespace + ".svc.cluster.local", "localhost", "127.0.0.1", "::1",
	}
}

// ErrExists means a file would be overwritten without Force.
var ErrExists = errors.New("pki: file exists (use --force to replace it)")

// Generate writes ca.crt, ca.key, tls.crt and tls.key into dir. Keys are
// 0600.
func Generate(dir string, o Options) error {
	if o.Validity == 0 {
		o.Validity = 365 * 24 * time.Hour
	}
	if !o.Force {
		for _, f := range []string{CACert, CAKey, TLSCert, TLSKey} {
			if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
				return fmt.Errorf("%w: %s", ErrExists, filepath.Join(dir, f))
			}
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	now := time.Now().Add(-time.Minute)
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "stagegate-ca"},
		NotBefore:             now,
		NotAfter:              now.Add(10 * o.Validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return fmt.Errorf("pki: ca: %w", err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "stagegate"},
		NotBefore:    now,
		NotAfter:     now.Add(o.Validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range o.Hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return fmt.Errorf("pki: serving: %w", err)
	}
	if err := writeKey(filepath.Join(dir, CAKey), caKey); err != nil {
		return err
	}
	if err := writeKey(filepath.Join(dir, TLSKey), key); err != nil {
		return err
	}
	if err := writePEM(filepath.Join(dir, CACert), "CERTIFICATE", caDER, 0o644); err != nil {
		return err
	}
	// The serving certificate file carries the chain up to the CA.
	chain := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})...)
	return writeAtomic(filepath.Join(dir, TLSCert), chain, 0o644)
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

func writeKey(path string, k *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	return writePEM(path, "PRIVATE KEY", der, 0o600)
}

func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	return writeAtomic(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode)
}

// writeAtomic renames a complete temp file into place, so that a server
// reloading the certificate never reads half a file.
func writeAtomic(path string, b []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("pki: %w", err)
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("pki: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	return nil
}
