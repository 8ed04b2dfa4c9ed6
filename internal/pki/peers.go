package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
)

// PeerURIPrefix starts the URI SAN that names a peer's member ID:
// "urn:stagegate:peer:stagegate-0". The ID is in a SAN of its own, not only
// in the DNS names, so that a node can tell which member is calling without
// parsing host names, and a DNS name alone never makes a certificate a
// peer's.
const PeerURIPrefix = "urn:stagegate:peer:"

// PeerOptions says which peer certificates to generate.
type PeerOptions struct {
	// IDs are the member IDs: the StatefulSet's pod names (stagegate-0,
	// ...). Each is a DNS label.
	IDs []string
	// Service is the headless Service of the peers and Namespace its
	// namespace: a member's DNS name is <id>.<service>.<namespace>.svc.
	Service, Namespace string
	// Hosts are more DNS names or IP addresses every peer certificate
	// carries, e.g. 127.0.0.1 for members on one machine.
	Hosts []string
	// Validity of the peer certificates; the CA lives ten times longer.
	Validity time.Duration
	// Force replaces the members' existing files. An existing CA is
	// reused, never replaced: the certificates of the members not listed
	// stay valid.
	Force bool
}

// ErrPeerOption means a PeerOptions value is unusable.
var ErrPeerOption = errors.New("pki: invalid peer option")

// dnsLabel is RFC 1123's label, as Kubernetes names pods and Services.
var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

func validLabel(what, s string) error {
	if len(s) > 63 || !dnsLabel.MatchString(s) {
		return fmt.Errorf("%w: %s %q must be a DNS label: lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters",
			ErrPeerOption, what, s)
	}
	return nil
}

// Validate reports the first unusable option, naming it.
func (o PeerOptions) Validate() error {
	if len(o.IDs) == 0 {
		return fmt.Errorf("%w: no member ID given (--peers)", ErrPeerOption)
	}
	for i, id := range o.IDs {
		if err := validLabel("peer", id); err != nil {
			return err
		}
		if slices.Contains(o.IDs[:i], id) {
			return fmt.Errorf("%w: peer %q listed twice", ErrPeerOption, id)
		}
	}
	if err := validLabel("service", o.Service); err != nil {
		return err
	}
	if err := validLabel("namespace", o.Namespace); err != nil {
		return err
	}
	for _, h := range o.Hosts {
		if h == "" || strings.ContainsAny(h, "/ :@") && net.ParseIP(h) == nil {
			return fmt.Errorf("%w: host %q must be a DNS name or an IP address", ErrPeerOption, h)
		}
	}
	if o.Validity < 0 {
		return fmt.Errorf("%w: validity %v is negative", ErrPeerOption, o.Validity)
	}
	return nil
}

// PeerHosts are the DNS names of member id behind the headless Service:
// the form the members list uses, and its cluster.local form.
func PeerHosts(id, service, namespace string) []string {
	n := id + "." + service + "." + namespace + ".svc"
	return []string{n, n + ".cluster.local"}
}

// PeerSecretName is the Secret that holds member id's directory, which the
// StatefulSet of `stagegate manifests --replicas` reads: the member ID is
// the pod's name, so the name is unique in the namespace.
func PeerSecretName(id string) string { return id + "-peer" }

// GeneratePeers writes, into dir, a peer CA (ca.crt, and ca.key, which
// stays with the operator), and per member a directory <id>/ holding
// ca.crt, tls.crt and tls.key: what that member's Secret holds, and all it
// needs. Each member's certificate is valid for both server and client
// authentication (mutual TLS), names the member's DNS names and, as CN and
// a URI SAN (PeerURIPrefix), its ID. Keys are ECDSA P-256, written 0600.
//
// An existing CA in dir (ca.crt and ca.key) signs the new certificates, so
// that members can be added or renewed later; existing member files are
// replaced only with Force. Nothing is written when a check fails.
func GeneratePeers(dir string, o PeerOptions) error {
	if err := o.Validate(); err != nil {
		return err
	}
	if o.Validity == 0 {
		o.Validity = 365 * 24 * time.Hour
	}
	if !o.Force {
		for _, id := range o.IDs {
			for _, f := range []string{CACert, TLSCert, TLSKey} {
				if p := filepath.Join(dir, id, f); exists(p) {
					return fmt.Errorf("%w: %s", ErrExists, p)
				}
			}
		}
	}
	ca, caKey, caDER, err := peerCA(dir, o.Validity)
	if err != nil {
		return err
	}
	for _, id := range o.IDs {
		if err := writePeer(filepath.Join(dir, id), id, o, ca, caKey, caDER); err != nil {
			return err
		}
	}
	return nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// peerCA loads the CA of dir, or makes one when dir has neither of its
// files. Half a CA (one file of the two) is refused: replacing it would
// orphan the certificates it signed.
func peerCA(dir string, validity time.Duration) (*x509.Certificate, *ecdsa.PrivateKey, []byte, error) {
	certPath, keyPath := filepath.Join(dir, CACert), filepath.Join(dir, CAKey)
	switch c, k := exists(certPath), exists(keyPath); {
	case c && k:
		pair, err := tls.LoadX509KeyPair(certPath, keyPath)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("pki: peer CA: %w", err)
		}
		key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
		if !ok {
			return nil, nil, nil, fmt.Errorf("pki: peer CA: %s is not an ECDSA key", keyPath)
		}
		ca, err := x509.ParseCertificate(pair.Certificate[0])
		if err != nil {
			return nil, nil, nil, fmt.Errorf("pki: peer CA: %w", err)
		}
		if !ca.IsCA {
			return nil, nil, nil, fmt.Errorf("pki: peer CA: %s is not a CA certificate", certPath)
		}
		return ca, key, pair.Certificate[0], nil
	case c || k:
		return nil, nil, nil, fmt.Errorf("pki: peer CA: %s and %s must both exist or both be absent; remove the other to make a new CA", certPath, keyPath)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, nil, fmt.Errorf("pki: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("pki: %w", err)
	}
	now := time.Now().Add(-time.Minute)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "stagegate-peer-ca"},
		NotBefore:             now,
		NotAfter:              now.Add(10 * validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("pki: peer CA: %w", err)
	}
	ca, _ := x509.ParseCertificate(der)
	if err := writeKey(keyPath, key); err != nil {
		return nil, nil, nil, err
	}
	if err := writePEM(certPath, "CERTIFICATE", der, 0o644); err != nil {
		return nil, nil, nil, err
	}
	return ca, key, der, nil
}

func writePeer(dir, id string, o PeerOptions, ca *x509.Certificate, caKey *ecdsa.PrivateKey, caDER []byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	uri, err := url.Parse(PeerURIPrefix + id)
	if err != nil {
		return fmt.Errorf("pki: peer %s: %w", id, err)
	}
	now := time.Now().Add(-time.Minute)
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: id},
		NotBefore:    now,
		NotAfter:     now.Add(o.Validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		// Every peer dials and is dialled: Raft and write forwarding go
		// both ways over one port.
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:    PeerHosts(id, o.Service, o.Namespace),
		URIs:        []*url.URL{uri},
	}
	for _, h := range o.Hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if !slices.Contains(tmpl.DNSNames, h) {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return fmt.Errorf("pki: peer %s: %w", id, err)
	}
	if err := writeKey(filepath.Join(dir, TLSKey), key); err != nil {
		return err
	}
	if err := writePEM(filepath.Join(dir, CACert), "CERTIFICATE", caDER, 0o644); err != nil {
		return err
	}
	return writePEM(filepath.Join(dir, TLSCert), "CERTIFICATE", der, 0o644)
}

// ErrNotPeer means a certificate names no peer ID.
var ErrNotPeer = errors.New("pki: certificate names no stagegate peer")

// PeerID returns the member ID a peer certificate names: its URI SAN under
// PeerURIPrefix, which must equal its CN. Call it on a certificate the
// peer CA has verified (tls.ConnectionState.VerifiedChains); it checks
// the naming, not the signature.
func PeerID(cert *x509.Certificate) (string, error) {
	var ids []string
	for _, u := range cert.URIs {
		if s := u.String(); strings.HasPrefix(s, PeerURIPrefix) {
			ids = append(ids, strings.TrimPrefix(s, PeerURIPrefix))
		}
	}
	if len(ids) != 1 || ids[0] != cert.Subject.CommonName || validLabel("peer", ids[0]) != nil {
		return "", fmt.Errorf("%w: CN %q, peer URIs %q", ErrNotPeer, cert.Subject.CommonName, ids)
	}
	return ids[0], nil
}

// LoadPeerTLS reads a member's files (ca.crt, tls.crt, tls.key in dir)
// into the server and client configurations of mutual TLS 1.3 between
// peers: each side presents its certificate and accepts only the peer CA's.
func LoadPeerTLS(dir string) (server, client *tls.Config, err error) {
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, TLSCert), filepath.Join(dir, TLSKey))
	if err != nil {
		return nil, nil, fmt.Errorf("pki: peer certificate: %w", err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, CACert))
	if err != nil {
		return nil, nil, fmt.Errorf("pki: peer CA: %w", err)
	}
	pool := x509.NewCertPool()
	if blk, _ := pem.Decode(caPEM); blk == nil || !pool.AppendCertsFromPEM(caPEM) {
		return nil, nil, fmt.Errorf("pki: peer CA: %s holds no PEM certificate", filepath.Join(dir, CACert))
	}
	server = &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{pair},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
	}
	client = &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{pair},
		RootCAs:      pool,
	}
	return server, client, nil
}
