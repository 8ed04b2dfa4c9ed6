package cluster

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// tlsStream is a raft.StreamLayer over mutual TLS 1.3: the listener
// requires a client certificate that server.ClientCAs vouch for, and every
// dial presents client's certificate and checks the peer's against
// client.RootCAs. Peer traffic carries the whole ledger, so no peer is
// accepted on its address alone.
type tlsStream struct {
	net.Listener
	advertise net.Addr
	client    *tls.Config
}

// Dial connects to a peer; address is host:port as in the member list.
func (s *tlsStream) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: s.client}
	return d.Dial("tcp", string(address))
}

func (s *tlsStream) Addr() net.Addr {
	if s.advertise != nil {
		return s.advertise
	}
	return s.Listener.Addr()
}

// NewTLSTransport listens on bind for peers and returns the Raft transport
// over mutual TLS 1.3. advertise is the address the other members dial
// (nil: the listener's). server must hold this node's certificate and the
// CA of client certificates (ClientCAs); client this node's client
// certificate and the CA of the peers (RootCAs). Both are cloned and
// forced to TLS 1.3, and server to require and verify client certificates.
func NewTLSTransport(bind string, advertise net.Addr, server, client *tls.Config, logOutput io.Writer) (*raft.NetworkTransport, error) {
	if server == nil || client == nil || len(server.Certificates) == 0 && server.GetCertificate == nil || server.ClientCAs == nil {
		return nil, fmt.Errorf("%w: peer TLS needs a server certificate, client CAs and a client configuration", ErrConfig)
	}
	server, client = server.Clone(), client.Clone()
	server.MinVersion, client.MinVersion = tls.VersionTLS13, tls.VersionTLS13
	server.ClientAuth = tls.RequireAndVerifyClientCert
	ln, err := tls.Listen("tcp", bind, server)
	if err != nil {
		return nil, fmt.Errorf("cluster: listen for peers: %w", err)
	}
	stream := &tlsStream{Listener: ln, advertise: advertise, client: client}
	return raft.NewNetworkTransport(stream, 3, 10*time.Second, logOutput), nil
}
