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

// RaftProto is the ALPN protocol of Raft's connections on a peer port
// shared with other traffic (NewTransport).
const RaftProto = "stagegate-raft/1"

// NewTransport returns the Raft transport on ln, a listener whose
// connections are already mutual TLS (a peer port split by ALPN), and
// dials peers with client, offering RaftProto. client must hold this
// node's certificate and the peers' CA; it is cloned and forced to TLS
// 1.3.
func NewTransport(ln net.Listener, advertise net.Addr, client *tls.Config, logOutput io.Writer) (*raft.NetworkTransport, error) {
	if ln == nil || client == nil || len(client.Certificates) == 0 && client.GetClientCertificate == nil {
		return nil, fmt.Errorf("%w: the Raft transport needs a listener and a client certificate", ErrConfig)
	}
	client = client.Clone()
	client.MinVersion = tls.VersionTLS13
	client.NextProtos = []string{RaftProto}
	stream := &tlsStream{Listener: ln, advertise: advertise, client: client}
	return raft.NewNetworkTransport(stream, 3, 10*time.Second, logOutput), nil
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
