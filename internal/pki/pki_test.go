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
