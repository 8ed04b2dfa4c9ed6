// Package server runs stagegate's one HTTPS listener: TLS 1.2+, certificate
// reload, timeouts and graceful shutdown.
package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"
)

// Config is the listener's configuration.
type Config struct {
	Addr         string
	CertFile     string
	KeyFile      string
	ClientCAFile string
	// RequireClientCert refuses, at the handshake, any client without a
	// certificate signed by ClientCAFile. Otherwise a certificate is
	// optional (tokens are the alternative), but one presented must verify.
	RequireClientCert bool
	// ShutdownTimeout bounds how long in-flight requests may take to finish.
	ShutdownTimeout time.Duration
}

// AEADCipherSuites are the TLS 1.2 suites the server accepts: ECDHE key
// exchange with an AEAD cipher only. Go's defaults still include CBC-mode
// suites, whose MAC-then-encrypt construction has a history of padding
// oracles. TLS 1.3 suites are all AEAD and not configurable.
var AEADCipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// Server is an HTTPS server.
type Server struct {
	cfg    Config
	srv    *http.Server
	ln     net.Listener
	logger *slog.Logger
}

// New listens on cfg.Addr. It does not serve until Serve is called.
func New(cfg Config, h http.Handler, logger *slog.Logger) (*Server, error) {
	certs, err := newCertReloader(cfg.CertFile, cfg.KeyFile)
	if err != nil {
		return nil, err
	}
	tlsCfg := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		CipherSuites:   AEADCipherSuites,
		GetCertificate: certs.getCertificate,
		NextProtos:     []string{"h2", "http/1.1"},
	}
	if cfg.ClientCAFile != "" {
		b, err := os.ReadFile(cfg.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("server: client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("server: client CA %s: no PEM certificates", cfg.ClientCAFile)
		}
		tlsCfg.ClientCAs = pool
		tlsCfg.ClientAuth = tls.VerifyClientCertIfGiven
		if cfg.RequireClientCert {
			tlsCfg.ClientAuth = tls.RequireAndVerifyClientCert
		}
	} else if cfg.RequireClientCert {
		return nil, errors.New("server: a client certificate is required but no client CA is set")
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = 20 * time.Second
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	srv := &http.Server{
		Handler:           h,
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}
	return &Server{cfg: cfg, srv: srv, ln: ln, logger: logger}, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Serve serves until ctx ends, then shuts down gracefully: in-flight
// requests finish (up to ShutdownTimeout) before Serve returns.
func (s *Server) Serve(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.ServeTLS(s.ln, "", "") }()
	select {
	case err := <-errc:
		return fmt.Errorf("server: %w", err)
	case <-ctx.Done():
	}
	s.logger.Info("shutting down", "timeout", s.cfg.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	if err := s.srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("server: shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("server: %w", err)
	}
	return nil
}

// Close closes the listener of a server that is not serving yet.
func (s *Server) Close() error { return s.ln.Close() }

// ServeAll serves every server until ctx ends or one of them fails, then
// shuts them all down gracefully. A listener that fails takes the others
// down with it: a stagegate without its webhook, or without its API, is
// not one to keep half-running.
func ServeAll(ctx context.Context, servers ...*Server) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, len(servers))
	for _, s := range servers {
		go func() {
			err := s.Serve(ctx)
			cancel()
			errc <- err
		}()
	}
	var errs []error
	for range servers {
		if err := <-errc; err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
