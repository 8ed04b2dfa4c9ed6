package cluster_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"

	"github.com/stagegate/stagegate/internal/cluster"
	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/signing/signingtest"
)

// singleNode writes a single node's ledger of n promotions into dir, as
// serve without a cluster leaves it; bad, if not negative, is an entry
// whose attestation is signed with another deployment's key. It returns
// the receipts.
func singleNode(t *testing.T, k *keys, dir string, n, bad int) []ledger.Receipt {
	t.Helper()
	l, err := k.open(filepath.Join(dir, "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var out []ledger.Receipt
	for i := range n {
		b := *k
		if i == bad {
			b.att = signingtest.ForeignSigner(t)
		}
		build := b.build(t, digest(1000+i))
		rc, err := l.Append(func(_ ledger.Reader, index uint64) (*ledger.Entry, error) {
			es, err := build(index, nil)
			if err != nil {
				return nil, err
			}
			return es[0], nil
		})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, rc)
	}
	return out
}

// The upgrade from one node: member 0 adopts its single-node ledger, the
// others start empty and join; they install it through a snapshot and
// verify it, the adopted entries stay byte-identical (so the single
// node's receipts verify against the cluster's checkpoints), and new
// entries continue the same tree.
func TestAdoptSingleNodeLedger(t *testing.T) {
	c := laidOut(t, 3)
	old := singleNode(t, c.k, c.dirs[0], 5, -1)
	before, err := c.entriesOf(0)
	if err != nil {
		t.Fatal(err)
	}
	c.starts = []string{cluster.StartAdopt, cluster.StartJoin, cluster.StartJoin}
	for i := range 3 {
		c.start(i, nil)
	}
	if got := c.leader(); got != 0 {
		t.Fatalf("leader is node %d; only the adopting node 0 can campaign", got)
	}
	cp5 := c.converged(5)
	for i := 1; i < 3; i++ {
		got, err := c.entriesOf(i)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, before) {
			t.Fatalf("node %d's adopted entries are not the single node's bytes", i)
		}
		if s := c.nodes[i].Raft().Stats()["last_snapshot_index"]; s != "1" {
			t.Fatalf("node %d: last_snapshot_index %s, want 1 (the adopted snapshot)", i, s)
		}
	}
	c.promote(digest(1))
	cp6 := c.converged(6)
	v := signingtest.LogVerifier(t)
	older, err := ledger.ParseCheckpoint(cp5, v)
	if err != nil {
		t.Fatal(err)
	}
	newer, err := ledger.ParseCheckpoint(cp6, v)
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range c.nodes {
		l := n.FSM().Ledger()
		for _, rc := range old {
			if err := ledger.VerifyReceipt(rc, v, c.k.check); err != nil {
				t.Fatalf("node %d: old receipt %d: %v", i, rc.Entry.Index, err)
			}
			// The receipt's root is the cluster's at that size.
			p, err := l.ConsistencyProof(rc.Entry.Index+1, newer.Size)
			if err != nil {
				t.Fatal(err)
			}
			rcp, err := ledger.ParseCheckpoint(rc.Checkpoint, v)
			if err != nil {
				t.Fatal(err)
			}
			if err := ledger.VerifyConsistency(rcp, newer, p); err != nil {
				t.Fatalf("node %d: the old receipt's checkpoint is not consistent with the cluster's: %v", i, err)
			}
		}
		p, err := l.ConsistencyProof(older.Size, newer.Size)
		if err != nil {
			t.Fatal(err)
		}
		if err := ledger.VerifyConsistency(older, newer, p); err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
	}
	// Restarted, the adopting node keeps its ledger and does not adopt again.
	c.stop(0)
	c.start(0, nil)
	c.promote(digest(2))
	c.converged(7)
}

func TestAdoptRefuses(t *testing.T) {
	for name, tc := range map[string]struct {
		prepare func(t *testing.T, c *testCluster)
		want    string
	}{
		"a ledger that fails verification, naming the first bad entry": {
			prepare: func(t *testing.T, c *testCluster) { singleNode(t, c.k, c.dirs[0], 4, 2) },
			want:    "entry 2",
		},
		"an empty ledger": {
			prepare: func(*testing.T, *testCluster) {},
			want:    "nothing to adopt",
		},
	} {
		t.Run(name, func(t *testing.T) {
			c := laidOut(t, 3)
			tc.prepare(t, c)
			c.starts[0] = cluster.StartAdopt
			err := c.startErr(0)
			if !errors.Is(err, cluster.ErrAdopt) || !bytes.Contains([]byte(err.Error()), []byte(tc.want)) {
				t.Fatalf("got %v, want ErrAdopt naming %q", err, tc.want)
			}
			if has, err := cluster.HasState(filepath.Join(c.dirs[0], "raft")); err != nil || has {
				t.Fatalf("a refused adoption left Raft state (%v, %v)", has, err)
			}
		})
	}
}

// A node that already has Raft state never adopts: its own cluster's
// state is kept, and the ledger beside it is not made the cluster's.
func TestAdoptIgnoredWithRaftState(t *testing.T) {
	c := newCluster(t, 1)
	c.promoteEach(1, 2)
	c.stop(0)
	c.starts[0] = cluster.StartAdopt
	c.start(0, nil)
	c.leader()
	if s := c.nodes[0].Raft().Stats()["last_snapshot_index"]; s != "0" {
		t.Fatalf("last_snapshot_index %s: it adopted over its own Raft state", s)
	}
	c.promote(digest(3))
	c.converged(3)
}

// entriesOf is node i's entries as JSON, for byte comparisons.
func (c *testCluster) entriesOf(i int) ([]byte, error) {
	var l *ledger.Ledger
	if c.nodes[i] != nil {
		l = c.nodes[i].FSM().Ledger()
	} else {
		var err error
		if l, err = c.k.open(filepath.Join(c.dirs[i], "ledger.db")); err != nil {
			return nil, err
		}
		defer l.Close()
	}
	es, err := l.Entries(0, 1<<20)
	if err != nil {
		return nil, err
	}
	return json.Marshal(es)
}
