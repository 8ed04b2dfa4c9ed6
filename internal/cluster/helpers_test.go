package cluster_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stagegate/stagegate/internal/cluster"
	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/pki"
	"github.com/stagegate/stagegate/internal/policy"
	"github.com/stagegate/stagegate/internal/promotion"
	"github.com/stagegate/stagegate/internal/registry"
	"github.com/stagegate/stagegate/internal/signing"
	"github.com/stagegate/stagegate/internal/signing/signingtest"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// keys are one deployment's: every replica holds the same log key and
// attestation key, as the Secret mounted into every pod.
type keys struct {
	att     *signing.Signer
	check   func(ledger.Entry) error
	open    cluster.OpenFunc
	server  *tls.Config
	client  *tls.Config
	members []cluster.Member
}

func newKeys(t testing.TB) *keys {
	t.Helper()
	logS := signingtest.LogSigner(t)
	k := &keys{
		att:   signingtest.Signer(t),
		check: signing.CheckEntry(signingtest.Verifier(t)),
		open: func(path string) (*ledger.Ledger, error) {
			return ledger.Open(path, ledger.WithSigner(logS)) // fsync on
		},
	}
	k.server, k.client = peerTLS(t)
	return k
}

// peerTLS makes the CA, the serving and the client certificate with
// internal/pki, as `stagegate certs generate` does, and the two sides of
// peer mTLS from them.
func peerTLS(t testing.TB) (server, client *tls.Config) {
	t.Helper()
	dir := t.TempDir()
	if err := pki.Generate(dir, pki.Options{Hosts: []string{"127.0.0.1"}}); err != nil {
		t.Fatal(err)
	}
	if err := pki.GenerateClient(dir, "stagegate-peer", pki.Options{}); err != nil {
		t.Fatal(err)
	}
	pem, err := os.ReadFile(filepath.Join(dir, pki.CACert))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("no CA certificate")
	}
	srv, err := tls.LoadX509KeyPair(filepath.Join(dir, pki.TLSCert), filepath.Join(dir, pki.TLSKey))
	if err != nil {
		t.Fatal(err)
	}
	cli, err := tls.LoadX509KeyPair(filepath.Join(dir, pki.ClientCert), filepath.Join(dir, pki.ClientKey))
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{srv}, ClientCAs: pool},
		&tls.Config{Certificates: []tls.Certificate{cli}, RootCAs: pool}
}

// testCluster is n replicas in this process on loopback, each with its own
// directory (Raft state and ledger, fsync on).
type testCluster struct {
	t     testing.TB
	k     *keys
	dirs  []string
	addrs []string
	nodes []*cluster.Node // nil: down
	opts  []cluster.Option
	// starts is each node's Config.Start (default: bootstrap).
	starts []string
	// trans holds the transports laidOut made, until each node's first start.
	trans []*raft.NetworkTransport
}

func newCluster(t testing.TB, n int, opts ...cluster.Option) *testCluster {
	t.Helper()
	c := laidOut(t, n, opts...)
	for i := range n {
		c.start(i, nil)
	}
	return c
}

// laidOut is newCluster's n directories and listening transports, with no
// node started yet.
func laidOut(t testing.TB, n int, opts ...cluster.Option) *testCluster {
	t.Helper()
	c := &testCluster{t: t, k: newKeys(t), nodes: make([]*cluster.Node, n), opts: opts, starts: make([]string, n)}
	transports := make([]*raft.NetworkTransport, n)
	for i := range n {
		c.dirs = append(c.dirs, t.TempDir())
		tr, err := cluster.NewTLSTransport("127.0.0.1:0", nil, c.k.server, c.k.client, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		transports[i] = tr
		c.addrs = append(c.addrs, string(tr.LocalAddr()))
		c.k.members = append(c.k.members, cluster.Member{ID: fmt.Sprintf("node-%d", i), Address: c.addrs[i]})
	}
	c.trans = transports
	t.Cleanup(func() {
		for i := range c.nodes {
			c.stop(i)
		}
	})
	return c
}

// start starts node i on its directory; tr is its transport, nil to
// listen again on its address.
func (c *testCluster) start(i int, tr *raft.NetworkTransport) {
	c.t.Helper()
	if tr == nil && c.trans[i] != nil {
		tr, c.trans[i] = c.trans[i], nil
	}
	if tr == nil {
		var err error
		if tr, err = cluster.NewTLSTransport(c.addrs[i], nil, c.k.server, c.k.client, io.Discard); err != nil {
			c.t.Fatal(err)
		}
	}
	fsm, err := cluster.NewFSM(filepath.Join(c.dirs[i], "ledger.db"), c.k.open, signingtest.LogVerifier(c.t), c.k.check, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	n, err := cluster.NewNode(cluster.Config{ID: c.k.members[i].ID, Dir: filepath.Join(c.dirs[i], "raft"), Members: c.k.members, Start: c.starts[i]}, fsm, tr, c.opts...)
	if err != nil {
		c.t.Fatal(err)
	}
	c.nodes[i] = n
}

// startErr is start for a node expected not to start: it returns NewNode's
// error and leaves the transport and the FSM closed.
func (c *testCluster) startErr(i int) error {
	c.t.Helper()
	tr := c.trans[i]
	fsm, err := cluster.NewFSM(filepath.Join(c.dirs[i], "ledger.db"), c.k.open, signingtest.LogVerifier(c.t), c.k.check, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	n, err := cluster.NewNode(cluster.Config{ID: c.k.members[i].ID, Dir: filepath.Join(c.dirs[i], "raft"), Members: c.k.members, Start: c.starts[i]}, fsm, tr, c.opts...)
	if err == nil {
		c.nodes[i] = n
		c.t.Fatalf("node %d started", i)
	}
	fsm.Close()
	return err
}

func (c *testCluster) stop(i int) {
	if c.nodes[i] == nil {
		return
	}
	if err := c.nodes[i].Shutdown(); err != nil {
		c.t.Errorf("shutdown node %d: %v", i, err)
	}
	c.nodes[i] = nil
}

// waitFor polls cond until it holds or ctx ends; the bound is generous
// because it only stops a broken test, it measures nothing.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// leader waits for a leader among the running nodes and returns its index.
func (c *testCluster) leader() int {
	c.t.Helper()
	at := -1
	waitFor(c.t, "a leader", func() bool {
		for i, n := range c.nodes {
			if n != nil && n.IsLeader() {
				at = i
				return true
			}
		}
		return false
	})
	return at
}

// promote proposes promotions of digests (one command) on the leader,
// retrying while leadership moves, and returns the receipt.
func (c *testCluster) promote(digests ...string) ledger.Receipt {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		rc, err := c.nodes[c.leader()].Propose(ctx, c.k.build(c.t, digests...))
		if err == nil {
			return rc
		}
		if !errors.Is(err, cluster.ErrNotLeader) || ctx.Err() != nil {
			c.t.Fatalf("Propose: %v", err)
		}
	}
}

// promoteEach promotes digest(from) to digest(to), one command each, and
// waits until every running node holds them (entry i is digest(i+1)).
func (c *testCluster) promoteEach(from, to int) {
	c.t.Helper()
	for i := from; i <= to; i++ {
		c.promote(digest(i))
	}
	c.converged(uint64(to))
}

// build signs one promotion per digest at next onward, as Promote does.
func (k *keys) build(t testing.TB, digests ...string) cluster.BuildFunc {
	return func(next uint64, _ []*ledger.Entry) ([]*ledger.Entry, error) {
		out := make([]*ledger.Entry, len(digests))
		for i, d := range digests {
			idx := next + uint64(i)
			e, err := promotion.PromotionEntry(k.att, idx, promotion.Promoted{
				Image: registry.Resolved{Repository: "registry.test/app", Digest: d}, Stage: "prod",
				Reason: "release", Requester: policy.Identity{Subject: "ci", Groups: []string{"ci"}},
				Time: t0.Add(time.Duration(idx) * time.Second),
			})
			if err != nil {
				return nil, err
			}
			out[i] = e
		}
		return out, nil
	}
}

func digest(n int) string { return fmt.Sprintf("sha256:%064x", n) }

// converged waits until every running node's ledger has size entries and
// then checks that they all hold the same checkpoint and verify.
func (c *testCluster) converged(size uint64) string {
	c.t.Helper()
	waitFor(c.t, fmt.Sprintf("every node at size %d", size), func() bool {
		for _, n := range c.nodes {
			if n == nil {
				continue
			}
			if s, err := n.FSM().Ledger().Size(); err != nil || s != size {
				return false
			}
		}
		return true
	})
	var want string
	for i, n := range c.nodes {
		if n == nil {
			continue
		}
		l := n.FSM().Ledger()
		cp, err := l.Checkpoint()
		if err != nil {
			c.t.Fatalf("node %d: %v", i, err)
		}
		if want == "" {
			want = cp
		} else if cp != want {
			c.t.Fatalf("node %d's checkpoint differs:\n%s\nwant\n%s", i, cp, want)
		}
		if err := l.Verify(signingtest.LogVerifier(c.t), c.k.check); err != nil {
			c.t.Fatalf("node %d: Verify: %v", i, err)
		}
	}
	return want
}

// wipe empties dir, as a new volume would be.
func wipe(dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	return os.MkdirAll(dir, 0o700)
}
