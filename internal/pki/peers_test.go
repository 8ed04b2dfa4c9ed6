package pki

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func peerOptions(ids ...string) PeerOptions {
	return PeerOptions{IDs: ids, Service: "stagegate-peers", Namespace: "stagegate-system"}
}

// handshake runs a real TLS handshake over loopback between a server with
// srv and a client with cli dialling serverName, and returns the peer ID
// each side saw and the error of each side.
func handshake(t *testing.T, srv, cli *tls.Config, serverName string) (clientSeen, serverSeen string, cerr, serr error) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", srv)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			serr = err
			return
		}
		defer c.Close()
		tc := c.(*tls.Conn)
		if serr = tc.Handshake(); serr != nil {
			return
		}
		st := tc.ConnectionState()
		serverSeen, serr = PeerID(st.VerifiedChains[0][0])
		// One byte back, so that the client sees the server's verdict on
		// its certificate (TLS 1.3 sends it after the client's Finished).
		_, serr2 := tc.Write([]byte{1})
		if serr == nil {
			serr = serr2
		}
	}()
	cfg := cli.Clone()
	cfg.ServerName = serverName
	c, err := tls.Dial("tcp", ln.Addr().String(), cfg)
	if err == nil {
		defer c.Close()
		st := c.ConnectionState()
		if st.Version != tls.VersionTLS13 {
			t.Errorf("TLS version %x, want 1.3", st.Version)
		}
		clientSeen, cerr = PeerID(st.VerifiedChains[0][0])
		if _, err := io.ReadFull(c, make([]byte, 1)); err != nil && cerr == nil {
			cerr = err
		}
	} else {
		cerr = err
	}
	<-done
	return clientSeen, serverSeen, cerr, serr
}

// Two generated peers complete mutual TLS 1.3 under the name the members
// list dials, each seeing the other's member ID; a certificate of another
// peer CA is refused in either direction.
func TestPeersHandshake(t *testing.T) {
	dir := t.TempDir()
	if err := GeneratePeers(dir, peerOptions("stagegate-0", "stagegate-1", "stagegate-2")); err != nil {
		t.Fatal(err)
	}
	other := t.TempDir()
	if err := GeneratePeers(other, peerOptions("stagegate-0")); err != nil {
		t.Fatal(err)
	}
	load := func(dir string) (*tls.Config, *tls.Config) {
		t.Helper()
		s, c, err := LoadPeerTLS(dir)
		if err != nil {
			t.Fatal(err)
		}
		return s, c
	}
	srv1, _ := load(filepath.Join(dir, "stagegate-1"))
	_, cli0 := load(filepath.Join(dir, "stagegate-0"))
	otherSrv, otherCli := load(filepath.Join(other, "stagegate-0"))
	const name1 = "stagegate-1.stagegate-peers.stagegate-system.svc"

	t.Run("mutual", func(t *testing.T) {
		for _, name := range []string{name1, name1 + ".cluster.local"} {
			clientSeen, serverSeen, cerr, serr := handshake(t, srv1, cli0, name)
			if cerr != nil || serr != nil {
				t.Fatalf("%s: client %v, server %v", name, cerr, serr)
			}
			if clientSeen != "stagegate-1" || serverSeen != "stagegate-0" {
				t.Errorf("%s: client saw %q, server saw %q", name, clientSeen, serverSeen)
			}
		}
	})
	// A foreign certificate, with the CA of the other side trusted, so
	// that the side under test is the one that must refuse.
	foreignCli := cli0.Clone()
	foreignCli.Certificates = otherCli.Certificates
	foreignSrv := otherSrv.Clone()
	foreignSrv.ClientCAs = srv1.ClientCAs
	tests := []struct {
		name     string
		srv, cli *tls.Config
		dial     string
		refuser  string // "server" or "client"
	}{
		{"client certificate of another CA", srv1, foreignCli, name1, "server"},
		{"server certificate of another CA", foreignSrv, cli0, name1, "client"},
		{"another member's name", srv1, cli0, "stagegate-2.stagegate-peers.stagegate-system.svc", "client"},
		{"another namespace", srv1, cli0, "stagegate-1.stagegate-peers.other.svc", "client"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, cerr, serr := handshake(t, tt.srv, tt.cli, tt.dial)
			refused := map[string]error{"server": serr, "client": cerr}[tt.refuser]
			// The side under test refuses, naming the certificate.
			if refused == nil || !strings.Contains(refused.Error(), "certificate") {
				t.Fatalf("the %s did not refuse the certificate: client %v, server %v", tt.refuser, cerr, serr)
			}
		})
	}
	t.Run("no client certificate", func(t *testing.T) {
		anon := cli0.Clone()
		anon.Certificates = nil
		if _, _, cerr, serr := handshake(t, srv1, anon, name1); cerr == nil && serr == nil {
			t.Fatal("server accepted a client without a certificate")
		}
	})
}

// The files: one CA, per member the three files its Secret holds, keys
// 0600, certificates for both server and client authentication, the
// member's names and ID.
func TestGeneratePeersFiles(t *testing.T) {
	dir := t.TempDir()
	o := peerOptions("stagegate-0", "stagegate-1")
	o.Hosts = []string{"127.0.0.1", "peer.example"}
	if err := GeneratePeers(dir, o); err != nil {
		t.Fatal(err)
	}
	modes := map[string]os.FileMode{CACert: 0o644, CAKey: 0o600}
	for _, id := range o.IDs {
		modes[filepath.Join(id, CACert)] = 0o644
		modes[filepath.Join(id, TLSCert)] = 0o644
		modes[filepath.Join(id, TLSKey)] = 0o600
	}
	for name, want := range modes {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s mode = %v, want %v", name, fi.Mode().Perm(), want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "stagegate-0", CAKey)); err == nil {
		t.Error("the CA key is in a member's directory, which becomes its Secret")
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "stagegate-0", TLSCert), filepath.Join(dir, "stagegate-0", TLSKey))
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(pair.Certificate[0])
	caPEM, _ := os.ReadFile(filepath.Join(dir, CACert))
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		for _, host := range []string{"stagegate-0.stagegate-peers.stagegate-system.svc", "stagegate-0.stagegate-peers.stagegate-system.svc.cluster.local", "127.0.0.1", "peer.example"} {
			if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: host, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
				t.Errorf("usage %v, host %s: %v", usage, host, err)
			}
		}
	}
	if id, err := PeerID(cert); err != nil || id != "stagegate-0" || cert.Subject.CommonName != "stagegate-0" {
		t.Errorf("PeerID = %q, %v; CN %q", id, err, cert.Subject.CommonName)
	}
	memberCA, _ := os.ReadFile(filepath.Join(dir, "stagegate-1", CACert))
	if !bytes.Equal(memberCA, caPEM) {
		t.Error("a member's ca.crt is not the peer CA")
	}
}

// Existing files are kept: a second run fails naming the file, unless
// --force replaces the members' files; an existing CA signs added members;
// half a CA is refused.
func TestGeneratePeersKeepsFiles(t *testing.T) {
	dir := t.TempDir()
	if err := GeneratePeers(dir, peerOptions("stagegate-0")); err != nil {
		t.Fatal(err)
	}
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	ca, key0 := read(CACert), read("stagegate-0/tls.key")
	err := GeneratePeers(dir, peerOptions("stagegate-1", "stagegate-0"))
	if !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), filepath.Join(dir, "stagegate-0")) {
		t.Fatalf("second run = %v, want ErrExists naming stagegate-0's file", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "stagegate-1")); err == nil {
		t.Error("a refused run wrote stagegate-1")
	}
	if !bytes.Equal(read("stagegate-0/tls.key"), key0) {
		t.Error("a refused run replaced stagegate-0's key")
	}
	// Adding a member reuses the CA.
	if err := GeneratePeers(dir, peerOptions("stagegate-1")); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(read(CACert), ca) || !bytes.Equal(read("stagegate-1/ca.crt"), ca) {
		t.Error("adding a member replaced the CA")
	}
	if err := GeneratePeers(dir, PeerOptions{IDs: []string{"stagegate-0"}, Service: "stagegate-peers", Namespace: "stagegate-system", Force: true}); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(read("stagegate-0/tls.key"), key0) || !bytes.Equal(read(CACert), ca) {
		t.Error("--force did not replace the member's key, or replaced the CA")
	}
	// The renewed member and the added one still trust each other.
	srv, _, err := LoadPeerTLS(filepath.Join(dir, "stagegate-0"))
	if err != nil {
		t.Fatal(err)
	}
	_, cli, err := LoadPeerTLS(filepath.Join(dir, "stagegate-1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, cerr, serr := handshake(t, srv, cli, "stagegate-0.stagegate-peers.stagegate-system.svc"); cerr != nil || serr != nil {
		t.Fatalf("renewed and added members: client %v, server %v", cerr, serr)
	}

	half := t.TempDir()
	if err := os.WriteFile(filepath.Join(half, CACert), ca, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := GeneratePeers(half, peerOptions("stagegate-0")); err == nil || !strings.Contains(err.Error(), "both exist") {
		t.Errorf("half a CA = %v", err)
	}
}

func TestPeerOptionsValidate(t *testing.T) {
	tests := []struct {
		name string
		o    PeerOptions
		want string
	}{
		{"no members", peerOptions(), "no member ID given"},
		{"upper case", peerOptions("Stagegate-0"), `peer "Stagegate-0" must be a DNS label`},
		{"dotted", peerOptions("a.b"), `peer "a.b"`},
		{"empty", peerOptions("stagegate-0", ""), `peer ""`},
		{"twice", peerOptions("stagegate-0", "stagegate-0"), `"stagegate-0" listed twice`},
		{"too long", peerOptions(strings.Repeat("a", 64)), "at most 63"},
		{"service", PeerOptions{IDs: []string{"a"}, Service: "Peers", Namespace: "ns"}, `service "Peers"`},
		{"namespace", PeerOptions{IDs: []string{"a"}, Service: "peers", Namespace: ""}, `namespace ""`},
		{"host", PeerOptions{IDs: []string{"a"}, Service: "peers", Namespace: "ns", Hosts: []string{"https://x"}}, `host "https://x"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.o.Validate()
			if !errors.Is(err, ErrPeerOption) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want ErrPeerOption with %q", err, tt.want)
			}
			if err := GeneratePeers(t.TempDir(), tt.o); !errors.Is(err, ErrPeerOption) {
				t.Errorf("GeneratePeers = %v", err)
			}
		})
	}
	if err := peerOptions("stagegate-0").Validate(); err != nil {
		t.Errorf("valid options: %v", err)
	}
}

func TestPeerIDRefuses(t *testing.T) {
	dir := t.TempDir()
	if err := Generate(dir, Options{Hosts: []string{"stagegate-0"}}); err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, TLSCert), filepath.Join(dir, TLSKey))
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(pair.Certificate[0])
	// The webhook's serving certificate names a host, not a peer.
	if _, err := PeerID(cert); !errors.Is(err, ErrNotPeer) {
		t.Errorf("PeerID(serving certificate) = %v, want ErrNotPeer", err)
	}
}
