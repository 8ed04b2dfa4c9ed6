// Package forward is the peer port of a replicated stagegate: one mutual
// TLS 1.3 listener split by ALPN between Raft (internal/cluster) and an
// HTTP handler that takes the writes followers forward to the leader. It
// knows nothing of promotions: it moves authenticated HTTP requests.
package forward

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// Proto is the ALPN protocol of forwarded writes on the peer port.
const Proto = "stagegate-forward/1"

// handshakeTimeout bounds a peer's TLS handshake, so that a connection
// that says nothing holds no goroutine for long.
const handshakeTimeout = 10 * time.Second

// PeerURIPrefix starts the URI SAN that names a member ID in a peer
// certificate, "urn:stagegate:peer:stagegate-0", as `stagegate certs
// generate --peers` writes it.
const PeerURIPrefix = "urn:stagegate:peer:"

// CertNames reports whether cert names member id: in a URI SAN
// PeerURIPrefix+id, or as its common name. A DNS name never does: a
// server certificate for the member's host name is not a peer's.
func CertNames(cert *x509.Certificate, id string) bool {
	if id == "" {
		return false
	}
	for _, u := range cert.URIs {
		if u.String() == PeerURIPrefix+id {
			return true
		}
	}
	return cert.Subject.CommonName == id
}

// MemberOf returns the member of ids that cert names, or "".
func MemberOf(cert *x509.Certificate, ids []string) string {
	for _, id := range ids {
		if CertNames(cert, id) {
			return id
		}
	}
	return ""
}

// Mux is the peer port: it accepts mutual TLS 1.3 connections from
// certificates that name a member, and hands each to the listener of the
// protocol it negotiated.
type Mux struct {
	ln   net.Listener
	subs map[string]*subListener
	once sync.Once
	done chan struct{}
}

// Listen listens on addr with server (this node's certificate and the
// members' CA in ClientCAs; cloned, forced to TLS 1.3 with verified client
// certificates that name one of members) for protos.
func Listen(addr string, server *tls.Config, members []string, protos ...string) (*Mux, error) {
	if server == nil || server.ClientCAs == nil || len(server.Certificates) == 0 && server.GetCertificate == nil {
		return nil, errors.New("forward: the peer port needs a certificate and the members' CA")
	}
	cfg := server.Clone()
	cfg.MinVersion = tls.VersionTLS13
	cfg.ClientAuth = tls.RequireAndVerifyClientCert
	cfg.NextProtos = protos
	ids := append([]string(nil), members...)
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 || MemberOf(cs.PeerCertificates[0], ids) == "" {
			return errors.New("forward: the peer's certificate names no member")
		}
		return nil
	}
	ln, err := tls.Listen("tcp", addr, cfg)
	if err != nil {
		return nil, fmt.Errorf("forward: listen for peers: %w", err)
	}
	m := &Mux{ln: ln, subs: map[string]*subListener{}, done: make(chan struct{})}
	for _, p := range protos {
		m.subs[p] = &subListener{m: m, conns: make(chan net.Conn)}
	}
	go m.accept()
	return m, nil
}

// Addr is the address the port listens on.
func (m *Mux) Addr() net.Addr { return m.ln.Addr() }

// Listener is the listener of proto's connections (one given to Listen).
func (m *Mux) Listener(proto string) net.Listener { return m.subs[proto] }

// Close closes the port and every listener of it.
func (m *Mux) Close() error {
	var err error
	m.once.Do(func() {
		close(m.done)
		err = m.ln.Close()
	})
	return err
}

func (m *Mux) accept() {
	for {
		c, err := m.ln.Accept()
		if err != nil {
			select {
			case <-m.done:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			m.Close()
			return
		}
		go m.route(c.(*tls.Conn))
	}
}

// route finishes the handshake and hands the connection over; one that
// fails or negotiates no protocol of ours is closed.
func (m *Mux) route(c *tls.Conn) {
	_ = c.SetDeadline(time.Now().Add(handshakeTimeout))
	if err := c.Handshake(); err != nil {
		c.Close()
		return
	}
	_ = c.SetDeadline(time.Time{})
	sub := m.subs[c.ConnectionState().NegotiatedProtocol]
	if sub == nil {
		c.Close()
		return
	}
	select {
	case sub.conns <- peerConn{c}:
	case <-m.done:
		c.Close()
	}
}

// peerConn hides the *tls.Conn from net/http, which serves only the ALPN
// protocols it knows on one (it would close ours); the handshake's state
// stays reachable through ConnectionState (see NewServer).
type peerConn struct{ *tls.Conn }

type subListener struct {
	m     *Mux
	conns chan net.Conn
}

func (s *subListener) Accept() (net.Conn, error) {
	select {
	case c := <-s.conns:
		return c, nil
	case <-s.m.done:
		return nil, net.ErrClosed
	}
}

func (s *subListener) Close() error   { return s.m.Close() }
func (s *subListener) Addr() net.Addr { return s.m.Addr() }
