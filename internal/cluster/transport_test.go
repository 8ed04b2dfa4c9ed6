package cluster_test

import (
	"crypto/tls"
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"github.com/stagegate/stagegate/internal/cluster"
)

// A peer must present a client certificate of the cluster's CA over TLS
// 1.3; anyone else learns nothing of the log. (That peers with the right
// certificates get through is what the cluster tests run on.)
func TestPeerTransportRefusesStrangers(t *testing.T) {
	k := newKeys(t)
	tr, err := cluster.NewTLSTransport("127.0.0.1:0", nil, k.server, k.client, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	tests := map[string]*tls.Config{
		"no client certificate": {RootCAs: k.client.RootCAs},
		"TLS 1.2":               {RootCAs: k.client.RootCAs, Certificates: k.client.Certificates, MaxVersion: tls.VersionTLS12},
	}
	for name, cfg := range tests {
		t.Run(name, func(t *testing.T) {
			conn, err := tls.Dial("tcp", string(tr.LocalAddr()), cfg)
			if err == nil {
				// In TLS 1.3 the server refuses a client's certificate
				// after the client finished its handshake: the alert
				// arrives on the first read. The deadline only keeps a
				// broken test from hanging; running into it fails.
				defer conn.Close()
				conn.SetReadDeadline(time.Now().Add(30 * time.Second))
				_, err = conn.Read(make([]byte, 1))
				if errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatal("the transport accepted the connection")
				}
			}
			if err == nil {
				t.Fatal("the transport accepted the connection")
			}
		})
	}
}
