package ha

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/signing"
	"github.com/stagegate/stagegate/internal/signing/signingtest"
	"github.com/stagegate/stagegate/test/e2e/framework"
	"github.com/stagegate/stagegate/test/e2e/framework/process"
)

// clients is how many identities (and load workers) there are; the API
// rate-limits each identity, and the test measures the cluster.
const clients = 16

// ha is a three-member cluster on loopback: each member an installation
// of its own (config, serving certificate, data directory) with the same
// signing keys and tokens, as the pods of one StatefulSet.
type ha struct {
	t       *testing.T
	reg     *framework.Registry
	nodes   []*framework.Stagegate
	ids     []string
	tokens  []string
	clients []*http.Client
	logV    note.Verifier
	check   func(ledger.Entry) error
	tags    atomic.Int64
	// proxies stand in front of the peer ports, with withProxies.
	proxies []*proxy
}

type haOptions struct {
	proxies      bool
	staleAfter   string
	sharedCerts  bool
	nonVoter     int // member index + 1; 0: none
	extra        string
	extraOf      func(registry string) string
	adopt        string
	beforeStart  func(*ha)
	readyTimeout time.Duration
	tokens       []haToken
}

// haToken is one more API token every member accepts.
type haToken struct {
	token, subject string
	groups         []string
}

// withToken adds an API token, with its subject and groups, to every
// member: the harness's own clients are all in pipeline and release.
func withToken(token, subject string, groups ...string) haOption {
	return func(o *haOptions) { o.tokens = append(o.tokens, haToken{token, subject, groups}) }
}

// withReadyTimeout is how long each member may take to report ready.
func withReadyTimeout(d time.Duration) haOption { return func(o *haOptions) { o.readyTimeout = d } }

// withAdopt sets cluster.adopt to member id on every member.
func withAdopt(id string) haOption { return func(o *haOptions) { o.adopt = id } }

// withBeforeStart runs f once the members' installations exist, before
// any is started: to lay data under one, say.
func withBeforeStart(f func(*ha)) haOption { return func(o *haOptions) { o.beforeStart = f } }

// withNonVoter makes member i a non-voter.
func withNonVoter(i int) haOption { return func(o *haOptions) { o.nonVoter = i + 1 } }

// withSharedServingCert gives every member the first one's serving
// certificate, as one Secret behind one Service: the API server trusts
// one CA for the webhook, whichever replica answers.
func withSharedServingCert() haOption { return func(o *haOptions) { o.sharedCerts = true } }

type haOption func(*haOptions)

// withProxies puts a proxy in front of every member's peer port.
func withProxies() haOption { return func(o *haOptions) { o.proxies = true } }

// withConfig adds YAML to every member's config.
func withConfig(yaml string) haOption { return func(o *haOptions) { o.extra += yaml } }

// withConfigOf adds the YAML that f makes of the registry's address
// (host:port) to every member's config.
func withConfigOf(f func(registry string) string) haOption {
	return func(o *haOptions) { o.extraOf = f }
}

// withStaleAfter sets cluster.staleAfter.
func withStaleAfter(d string) haOption { return func(o *haOptions) { o.staleAfter = d } }

func newHA(t *testing.T, n int, opts ...haOption) *ha {
	t.Helper()
	var o haOptions
	for _, opt := range opts {
		opt(&o)
	}
	if o.staleAfter == "" {
		o.staleAfter = "10s"
	}
	h := &ha{t: t, reg: framework.StartRegistry(t), logV: signingtest.LogVerifier(t), check: signing.CheckEntry(signingtest.Verifier(t))}
	peerDir := t.TempDir()
	var members []string
	addrs := make([]string, n)
	for i := range n {
		h.ids = append(h.ids, fmt.Sprintf("sg-%d", i))
		addrs[i] = fmt.Sprintf("127.0.0.1:%d", framework.FreePort(t))
		advertised := addrs[i]
		if o.proxies {
			p := newProxy(t, addrs[i])
			h.proxies = append(h.proxies, p)
			advertised = p.addr()
		}
		members = append(members, fmt.Sprintf("{id: %s, address: %q, nonVoter: %v}", h.ids[i], advertised, o.nonVoter == i+1))
	}
	writePeerCerts(t, peerDir, h.ids)
	for i := range clients {
		h.tokens = append(h.tokens, fmt.Sprintf("sgha_client_%02d_%s", i, strings.Repeat("x", 16)))
	}
	for i, id := range h.ids {
		cfg := fmt.Sprintf(`logOrigin: %s
registries:
- {host: %q, insecure: true}
cluster:
  nodeID: %s
  listen: %q
  staleAfter: %s
  members: [%s]
  tls: {caFile: %s, certFile: %s, keyFile: %s}
`, signingtest.LogName, h.reg.Addr, id, addrs[i], o.staleAfter, strings.Join(members, ", "),
			filepath.Join(peerDir, "ca.crt"), filepath.Join(peerDir, id, "tls.crt"), filepath.Join(peerDir, id, "tls.key"))
		if o.adopt != "" {
			cfg += fmt.Sprintf("  adopt: %s\n", o.adopt)
		}
		cfg += o.extra
		if o.extraOf != nil {
			cfg += o.extraOf(h.reg.Addr)
		}
		opts := []framework.StagegateOption{
			framework.WithName(id), framework.WithoutStart(),
			framework.WithKeys(func(dir string) { signingtest.WriteKeyDir(t, dir) }),
			framework.WithConfig(cfg),
		}
		if o.readyTimeout > 0 {
			opts = append(opts, framework.WithReadyTimeout(o.readyTimeout))
		}
		for c, tok := range h.tokens {
			opts = append(opts, framework.WithToken(tok, fmt.Sprintf("client-%02d", c), "pipeline", "release"))
		}
		for _, tok := range o.tokens {
			opts = append(opts, framework.WithToken(tok.token, tok.subject, tok.groups...))
		}
		sg := framework.StartStagegate(t, opts...)
		h.nodes = append(h.nodes, sg)
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{RootCAs: sg.CAPool(t), MinVersion: tls.VersionTLS12}
		tr.MaxIdleConnsPerHost = 64
		h.clients = append(h.clients, &http.Client{Transport: tr, Timeout: 60 * time.Second})
		t.Cleanup(tr.CloseIdleConnections)
	}
	if o.sharedCerts {
		for _, sg := range h.nodes[1:] {
			for _, f := range []string{"ca.crt", "tls.crt", "tls.key"} {
				b, err := os.ReadFile(filepath.Join(h.nodes[0].CertDir, f))
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(sg.CertDir, f), b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
		}
		for i, sg := range h.nodes {
			h.clients[i].Transport.(*http.Transport).TLSClientConfig.RootCAs = sg.CAPool(t)
		}
	}
	if o.beforeStart != nil {
		o.beforeStart(h)
	}
	// All at once: none is ready before a leader is elected.
	procs := make([]*process.Process, n)
	for i, sg := range h.nodes {
		procs[i] = sg.Spawn()
	}
	for i, sg := range h.nodes {
		if err := sg.WaitReady(procs[i]); err != nil {
			t.Fatalf("%s: %v\n%s", sg.Name, err, procs[i].Tail(8<<10))
		}
	}
	return h
}

// writePeerCerts writes a peer CA and, per member, <id>/tls.crt and
// tls.key as `stagegate certs generate --peers` does: CN and a URI SAN
// name the member, valid for server and client, for 127.0.0.1.
func writePeerCerts(t *testing.T, dir string, ids []string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "stagegate peer CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	writePEM(t, filepath.Join(dir, "ca.crt"), "CERTIFICATE", caDER)
	for i, id := range ids {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(i + 2)), Subject: pkix.Name{CommonName: id},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
			URIs:        []*url.URL{{Scheme: "urn", Opaque: "stagegate:peer:" + id}}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kb, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		writePEM(t, filepath.Join(dir, id, "tls.crt"), "CERTIFICATE", der)
		writePEM(t, filepath.Join(dir, id, "tls.key"), "EC PRIVATE KEY", kb)
	}
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// do sends one API request to node i.
func (h *ha) do(ctx context.Context, i int, method, path, token string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, h.nodes[i].URL+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := h.clients[i].Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// get fetches a read endpoint of node i that must answer 200 into v.
func (h *ha) get(i int, path string, v any) {
	h.t.Helper()
	code, b, err := h.do(context.Background(), i, http.MethodGet, path, h.tokens[0], nil)
	if err != nil || code != http.StatusOK {
		h.t.Fatalf("%s: GET %s: %d %v %s", h.ids[i], path, code, err, b)
	}
	if s, ok := v.(*string); ok {
		*s = string(b)
		return
	}
	if err := json.Unmarshal(b, v); err != nil {
		h.t.Fatalf("%s: GET %s: %v", h.ids[i], path, err)
	}
}

// clusterStatus is GET /v1/cluster as the test reads it.
type clusterStatus struct {
	Self    string `json:"self"`
	Members []struct {
		ID           string `json:"id"`
		Role         string `json:"role"`
		Term         uint64 `json:"term"`
		CommitIndex  uint64 `json:"commitIndex"`
		AppliedIndex uint64 `json:"appliedIndex"`
		LedgerSize   uint64 `json:"ledgerSize"`
		Error        string `json:"error"`
	} `json:"members"`
}

// waitFor polls cond until it holds; the bound only stops a broken test.
func (h *ha) waitFor(what string, cond func() bool) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			h.t.Fatalf("waiting for %s: %v", what, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// leader asks the running node from for the leader, waiting for one that
// every running node agrees on.
func (h *ha) leader(from int) int {
	h.t.Helper()
	at := -1
	h.waitFor("a leader", func() bool {
		code, b, err := h.do(context.Background(), from, http.MethodGet, "/v1/cluster", h.tokens[0], nil)
		if err != nil || code != http.StatusOK {
			return false
		}
		var st clusterStatus
		if json.Unmarshal(b, &st) != nil {
			return false
		}
		for i, m := range st.Members {
			if m.Role == "leader" {
				at = i
				return true
			}
		}
		return false
	})
	return at
}

// pushImage writes a new random image and returns its digest reference.
func (h *ha) pushImage(repo string) (string, error) {
	return h.reg.PushRandom(fmt.Sprintf("%s:t%d", repo, h.tags.Add(1)))
}

// entries fetches node i's whole ledger through the API.
func (h *ha) entries(i int) []ledger.Entry {
	h.t.Helper()
	var all []ledger.Entry
	for {
		var page struct {
			Entries []ledger.Entry `json:"entries"`
		}
		h.get(i, fmt.Sprintf("/v1/ledger/entries?start=%d&limit=1000", len(all)), &page)
		if len(page.Entries) == 0 {
			return all
		}
		all = append(all, page.Entries...)
	}
}

// ledgerVerify runs `stagegate ledger verify` on node i's stopped ledger.
func (h *ha) ledgerVerify(i int) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	sg := h.nodes[i]
	out, err := exec.CommandContext(ctx, sg.Bin, "ledger", "verify", "--config", sg.ConfigPath).CombinedOutput()
	if err != nil {
		h.t.Fatalf("%s: stagegate ledger verify: %v\n%s", sg.Name, err, out)
	}
}

func canonical(t testing.TB, e ledger.Entry) []byte {
	b, err := json.Marshal(&e)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
