package server

import (
	"crypto/tls"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/stagegate/stagegate/internal/secretfile"
)

// certReloader serves the certificate in certFile/keyFile and reloads it
// when either file changes, so that a rotated certificate (cert-manager, a
// mounted Secret) takes effect without a restart.
type certReloader struct {
	certFile, keyFile string

	mu      sync.Mutex
	cert    *tls.Certificate
	modCert time.Time
	modKey  time.Time
	checked time.Time
}

func newCertReloader(certFile, keyFile string) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile}
	if _, err := r.get(); err != nil {
		return nil, err
	}
	return r, nil
}

// getCertificate is tls.Config.GetCertificate. It stats the files at most
// once a second, so handshakes stay cheap.
func (r *certReloader) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.get()
}

func (r *certReloader) get() (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if r.cert != nil && now.Sub(r.checked) < time.Second {
		return r.cert, nil
	}
	r.checked = now
	ci, err := os.Stat(r.certFile)
	if err != nil {
		return r.keep(fmt.Errorf("server: certificate: %w", err))
	}
	ki, err := os.Stat(r.keyFile)
	if err != nil {
		return r.keep(fmt.Errorf("server: certificate key: %w", err))
	}
	if r.cert != nil && ci.ModTime().Equal(r.modCert) && ki.ModTime().Equal(r.modKey) {
		return r.cert, nil
	}
	// The serving key gets the same check as the signing keys: a key
	// others can read may already have leaked.
	if err := secretfile.Check(r.keyFile); err != nil {
		return r.keep(fmt.Errorf("server: certificate key: %w", err))
	}
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		// Half-written files during a rotation: keep serving the old pair.
		return r.keep(fmt.Errorf("server: certificate: %w", err))
	}
	r.cert, r.modCert, r.modKey = &cert, ci.ModTime(), ki.ModTime()
	return r.cert, nil
}

func (r *certReloader) keep(err error) (*tls.Certificate, error) {
	if r.cert != nil {
		return r.cert, nil
	}
	return nil, err
}
