package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestGenerate(t *testing.T) {
	dir := t.TempDir()
	if err := Generate(dir, Options{Hosts: ServiceHosts("stagegate", "stagegate-system")}); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]os.FileMode{CAKey: 0o600, TLSKey: 0o600, CACert: 0o644, TLSCert: 0o644} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s mode = %v, want %v", name, fi.Mode().Perm(), want)
		}
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, TLSCert), filepath.Join(dir, TLSKey))
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(pair.Certificate[0])
	caPEM, _ := os.ReadFile(filepath.Join(dir, CACert))
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	for _, host := range []string{"stagegate.stagegate-system.svc", "127.0.0.1", "localhost"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: host}); err != nil {
			t.Errorf("verify for %s: %v", host, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "evil.example"}); err == nil {
		t.Error("certificate verified for a name it does not carry")
	}
	if err := Generate(dir, Options{}); !errors.Is(err, ErrExists) {
		t.Fatalf("second Generate = %v, want ErrExists", err)
	}
	if err := Generate(dir, Options{Force: true, Hosts: []string{"x"}}); err != nil {
		t.Fatalf("forced Generate: %v", err)
	}
}

// A client certificate is signed by the CA of its directory, for client
// authentication only, and its key is private.
func TestGenerateClient(t *testing.T) {
	dir := t.TempDir()
	if err := Generate(dir, Options{Hosts: []string{"127.0.0.1"}}); err != nil {
		t.Fatal(err)
	}
	if err := GenerateClient(dir, "kube-apiserver", Options{}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, ClientKey)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("client key: %v %v", fi, err)
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, ClientCert), filepath.Join(dir, ClientKey))
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(pair.Certificate[0])
	caPEM, _ := os.ReadFile(filepath.Join(dir, CACert))
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("client certificate does not verify for client auth: %v", err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Error("client certificate also verifies for serving")
	}
	if cert.Subject.CommonName != "kube-apiserver" {
		t.Errorf("CN = %q", cert.Subject.CommonName)
	}
	if err := GenerateClient(dir, "again", Options{}); !errors.Is(err, ErrExists) {
		t.Errorf("second GenerateClient = %v, want ErrExists", err)
	}
}
