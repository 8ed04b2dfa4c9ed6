package server_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stagegate/stagegate/internal/api"
	"github.com/stagegate/stagegate/internal/pki"
	"github.com/stagegate/stagegate/internal/secretfile"
	"github.com/stagegate/stagegate/internal/server"
)

// clientCert makes a client certificate signed by the CA in dir.
func clientCert(t *testing.T, dir, cn string, org []string) tls.Certificate {
	t.Helper()
	caPair, err := tls.LoadX509KeyPair(filepath.Join(dir, pki.CACert), filepath.Join(dir, pki.CAKey))
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caPair.Certificate[0])
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn, Organization: org},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caPair.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// The server asks for client certificates when a client CA is set; the
// API then takes the subject from a verified certificate (CN, and O as
// groups), and a bearer token still works without one.
func TestMutualTLSIdentity(t *testing.T) {
	dir := t.TempDir()
	if err := pki.Generate(dir, pki.Options{Hosts: []string{"127.0.0.1"}}); err != nil {
		t.Fatal(err)
	}
	auth := api.NewAuthenticator(&api.TokenFile{Tokens: []api.Token{{SHA256: api.HashToken("tok"), Subject: "token-user"}}})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := auth.Authenticate(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		groups := slices.Sorted(slices.Values(id.Groups))
		io.WriteString(w, id.Subject+"|"+strings.Join(groups, ",")+"|"+id.Method)
	})
	srv, err := server.New(server.Config{
		Addr: "127.0.0.1:0", CertFile: filepath.Join(dir, pki.TLSCert), KeyFile: filepath.Join(dir, pki.TLSKey),
		ClientCAFile: filepath.Join(dir, pki.CACert),
	}, h, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	caPEM, _ := os.ReadFile(filepath.Join(dir, pki.CACert))
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	get := func(certs []tls.Certificate, token string) (int, string) {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: certs, MinVersion: tls.VersionTLS12}}}
		req, _ := http.NewRequest(http.MethodGet, "https://"+srv.Addr()+"/", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := c.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	if code, body := get([]tls.Certificate{clientCert(t, dir, "ci-bot", []string{"pipeline", "release"})}, ""); code != 200 || body != "ci-bot|pipeline,release|mtls" {
		t.Fatalf("with a client certificate: %d %q", code, body)
	}
	if code, body := get(nil, "tok"); code != 200 || body != "token-user||token" {
		t.Fatalf("with a token and no certificate: %d %q", code, body)
	}
	if code, _ := get(nil, ""); code != http.StatusUnauthorized {
		t.Fatalf("with neither: %d, want 401", code)
	}

	// A certificate from another CA is refused at the handshake.
	other := t.TempDir()
	if err := pki.Generate(other, pki.Options{Hosts: []string{"x"}}); err != nil {
		t.Fatal(err)
	}
	if code, msg := get([]tls.Certificate{clientCert(t, other, "intruder", nil)}, ""); code != 0 {
		t.Fatalf("a certificate from another CA got HTTP %d", code)
	} else if !strings.Contains(msg, "certificate") {
		t.Fatalf("handshake error %q does not mention the certificate", msg)
	}
}

// startTLS serves 200 on a fresh certificate pair in dir and returns the
// address and the CA pool.
func startTLS(t *testing.T, dir string) (string, *x509.CertPool) {
	t.Helper()
	if err := pki.Generate(dir, pki.Options{Hosts: []string{"127.0.0.1"}}); err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{
		Addr: "127.0.0.1:0", CertFile: filepath.Join(dir, pki.TLSCert), KeyFile: filepath.Join(dir, pki.TLSKey),
	}, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	caPEM, _ := os.ReadFile(filepath.Join(dir, pki.CACert))
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	return srv.Addr(), roots
}

// TLS 1.2 clients get AEAD suites only: a client offering only CBC-mode
// suites (which Go's own defaults still accept) fails the handshake.
func TestTLS12CipherSuites(t *testing.T) {
	addr, roots := startTLS(t, t.TempDir())
	tests := map[string]struct {
		suites []uint16
		ok     bool
	}{
		"AES-GCM":           {suites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}, ok: true},
		"ChaCha20-Poly1305": {suites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}, ok: true},
		"CBC with SHA-1":    {suites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}},
		"CBC with SHA-256":  {suites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12,
				CipherSuites: tc.suites, ServerName: "127.0.0.1"})
			if err == nil {
				conn.Close()
			}
			if (err == nil) != tc.ok {
				t.Fatalf("handshake err = %v, want success %v", err, tc.ok)
			}
		})
	}
	for _, s := range server.AEADCipherSuites {
		for _, insecure := range tls.InsecureCipherSuites() {
			if s == insecure.ID {
				t.Errorf("%s is in AEADCipherSuites", insecure.Name)
			}
		}
	}
}

// A serving key that group or others can read is refused at start, as the
// signing keys are.
func TestServingKeyPermissions(t *testing.T) {
	dir := t.TempDir()
	if err := pki.Generate(dir, pki.Options{Hosts: []string{"127.0.0.1"}}); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, pki.TLSKey)
	if err := os.Chmod(key, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := server.New(server.Config{Addr: "127.0.0.1:0", CertFile: filepath.Join(dir, pki.TLSCert), KeyFile: key},
		http.NotFoundHandler(), slog.New(slog.DiscardHandler))
	if !errors.Is(err, secretfile.ErrPermissions) || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("New with a 0644 key = %v, want a permissions error saying how to fix it", err)
	}
}
