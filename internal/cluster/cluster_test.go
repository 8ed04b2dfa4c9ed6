package cluster_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stagegate/stagegate/internal/cluster"
	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/signing/signingtest"
)

// sink is a raft.SnapshotSink into memory.
type sink struct {
	bytes.Buffer
	closed, cancelled bool
}

func (s *sink) ID() string    { return "test" }
func (s *sink) Close() error  { s.closed = true; return nil }
func (s *sink) Cancel() error { s.cancelled = true; return nil }

func snapshotOf(t *testing.T, fsm *cluster.FSM) []byte {
	t.Helper()
	snap, err := fsm.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var s sink
	if err := snap.Persist(&s); err != nil || !s.closed {
		t.Fatalf("Persist: %v (closed %v)", err, s.closed)
	}
	snap.Release()
	return s.Bytes()
}

func TestSnapshotRestoresIntoFreshDirectory(t *testing.T) {
	c := newCluster(t, 1) // a cluster of one
	c.promote(digest(1), digest(2))
	c.promote(digest(3))
	want := c.converged(3)
	snap := snapshotOf(t, c.nodes[0].FSM())

	fresh := newFSM(t, c.k)
	if err := fresh.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	l := fresh.Ledger()
	if cp, err := l.Checkpoint(); err != nil || cp != want {
		t.Fatalf("restored checkpoint %q (%v), want %q", cp, err, want)
	}
	if err := l.Verify(signingtest.LogVerifier(t), c.k.check); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if st, ok, err := l.State(digest(3), "prod"); err != nil || !ok || !st.Active() {
		t.Fatalf("restored state of %s: %+v %v %v", digest(3), st, ok, err)
	}
	// A ledger that holds the snapshot's tree is kept as it is.
	if err := fresh.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
		t.Fatalf("Restore again: %v", err)
	}
	if fresh.Ledger() != l {
		t.Fatal("Restore replaced a ledger that already held the snapshot")
	}

	// A snapshot that does not verify replaces nothing.
	bad := bytes.Replace(snap, []byte(`"subject":"ci"`), []byte(`"subject":"cj"`), 1)
	if bytes.Equal(bad, snap) {
		t.Fatal("test did not tamper with the snapshot")
	}
	other := newFSM(t, c.k)
	if err := other.Restore(io.NopCloser(bytes.NewReader(bad))); err == nil {
		t.Fatal("Restore accepted a tampered snapshot")
	}
	if size, err := other.Ledger().Size(); err != nil || size != 0 {
		t.Fatalf("after a refused restore the ledger has %d entries (%v), want 0", size, err)
	}
}

func newFSM(t *testing.T, k *keys) *cluster.FSM {
	t.Helper()
	fsm, err := cluster.NewFSM(filepath.Join(t.TempDir(), "ledger.db"), k.open, signingtest.LogVerifier(t), k.check, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fsm.Close() })
	return fsm
}

func TestThreeNodesReplicateAndSurviveLeaderLoss(t *testing.T) {
	c := newCluster(t, 3)
	rc := c.promote(digest(1), digest(2))
	if rc.Entry.Index != 1 || rc.Entry.Digest != digest(2) {
		t.Fatalf("receipt of the last entry: index %d digest %s", rc.Entry.Index, rc.Entry.Digest)
	}
	c.promoteEach(3, 5)
	for i, n := range c.nodes {
		if st, ok, err := n.FSM().Ledger().State(digest(4), "prod"); err != nil || !ok || !st.Active() {
			t.Fatalf("node %d: state of %s: %+v %v %v", i, digest(4), st, ok, err)
		}
	}

	// A follower refuses to propose and names the leader.
	old := c.leader()
	follower := (old + 1) % 3
	_, err := c.nodes[follower].Propose(context.Background(), c.k.build(t, digest(99)))
	var nl *cluster.NotLeaderError
	if !errors.As(err, &nl) || nl.LeaderAddress != c.addrs[old] {
		t.Fatalf("Propose on a follower: %v, want a NotLeaderError naming %s", err, c.addrs[old])
	}

	// The leader goes; the other two elect a new one and keep committing.
	c.stop(old)
	if now := c.leader(); now == old {
		t.Fatalf("node %d is still leader after it stopped", old)
	}
	c.promote(digest(6))
	c.promote(digest(7), digest(8))
	c.converged(8)

	// The old leader restarts from its disk and catches up.
	c.start(old, nil)
	want := c.converged(8)
	c.promote(digest(9))
	if got := c.converged(9); got == want {
		t.Fatal("checkpoint did not move with a new entry")
	}
}

func TestEmptyReplicaCatchesUpThroughSnapshot(t *testing.T) {
	c := newCluster(t, 3, keepOneLog)
	c.promoteEach(1, 4)
	// Snapshot every node and drop the log behind it, so that a replica
	// with an empty disk can only catch up through InstallSnapshot.
	for i, n := range c.nodes {
		if err := n.Raft().Snapshot().Error(); err != nil {
			t.Fatalf("node %d: snapshot: %v", i, err)
		}
	}
	lead := c.leader()
	wiped := (lead + 1) % 3
	c.stop(wiped)
	if err := wipe(c.dirs[wiped]); err != nil {
		t.Fatal(err)
	}
	c.promote(digest(5))
	c.start(wiped, nil)
	c.converged(5)
	if _, err := c.nodes[wiped].FSM().Ledger().Receipt(4); err != nil {
		t.Fatalf("wiped replica: receipt of the entry after the snapshot: %v", err)
	}
	if s := c.nodes[wiped].Raft().Stats()["last_snapshot_index"]; s == "0" {
		t.Fatalf("wiped replica caught up without installing a snapshot (last_snapshot_index %s)", s)
	}
}

func TestFSMRefusesBadCommandsWritingNothing(t *testing.T) {
	c := newCluster(t, 1)
	c.promote(digest(1))
	want := c.converged(1)
	fsm := c.nodes[0].FSM()
	tests := map[string][]byte{
		"not a command": []byte("{"),
		"no entries":    []byte(`{"entries":[],"checkpoint":""}`),
	}
	for name, data := range tests {
		t.Run(name, func(t *testing.T) {
			res := fsm.Apply(&raft.Log{Index: 99, Type: raft.LogCommand, Data: data})
			if err, ok := res.(error); !ok || err == nil {
				t.Fatalf("Apply: %v, want an error", res)
			}
			if cp, _ := fsm.Ledger().Checkpoint(); cp != want {
				t.Fatal("checkpoint changed")
			}
		})
	}
	// A build that fails proposes nothing.
	_, err := c.nodes[0].Propose(context.Background(), func(uint64, []*ledger.Entry) ([]*ledger.Entry, error) { return nil, errors.New("policy says no") })
	if err == nil {
		t.Fatal("Propose: a failing build committed")
	}
	// Entries that every replica would refuse (signed with a key the
	// cluster does not trust) are refused before they enter the log.
	last := c.nodes[0].Raft().LastIndex()
	stranger := &keys{att: signingtest.ForeignSigner(t)}
	if _, err := c.nodes[0].Propose(context.Background(), stranger.build(t, digest(2))); err == nil {
		t.Fatal("Propose: entries signed with a foreign key committed")
	}
	if got := c.nodes[0].Raft().LastIndex(); got != last {
		t.Fatalf("the refused proposal entered the log: last index %d, was %d", got, last)
	}
	if got := c.converged(1); got != want {
		t.Fatal("checkpoint changed after a failed build")
	}
}

// A replica whose ledger file is lost while its Raft state is kept (or
// that is given an older copy) is behind its own last snapshot: it
// restores the snapshot at start, then replays the log.
func TestReplicaThatLostItsLedgerRestoresIt(t *testing.T) {
	c := newCluster(t, 3, keepOneLog)
	c.promoteEach(1, 3)
	lead := c.leader()
	lost := (lead + 1) % 3
	if err := c.nodes[lost].Raft().Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	c.promote(digest(4))
	c.converged(4)
	c.stop(lost)
	if err := os.Remove(filepath.Join(c.dirs[lost], "ledger.db")); err != nil {
		t.Fatal(err)
	}
	c.start(lost, nil)
	c.promote(digest(5))
	c.converged(5)
}

// Concurrent proposals are serialised: each is built at the index the one
// before it left, so all commit, contiguous, on every replica.
func TestConcurrentProposalsAllCommit(t *testing.T) {
	c := newCluster(t, 3)
	c.leader()
	const n = 16
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	errs := make(chan error, n)
	for i := range n {
		go func() {
			for {
				// Retry where leadership moved, as the forwarding layer
				// will; a retried digest may then be recorded twice.
				err := error(&cluster.NotLeaderError{}) // until a leader is found
				for _, node := range c.nodes {
					if node.IsLeader() {
						_, err = node.Propose(ctx, c.k.build(t, digest(100+i)))
						break
					}
				}
				if err == nil || !errors.Is(err, cluster.ErrNotLeader) || ctx.Err() != nil {
					errs <- err
					return
				}
				select { // poll for the next leader
				case <-ctx.Done():
				case <-time.After(20 * time.Millisecond):
				}
			}
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatalf("Propose: %v", err)
		}
	}
	size, err := c.nodes[c.leader()].FSM().Ledger().Size()
	if err != nil || size < n {
		t.Fatalf("leader has %d entries (%v), want at least %d", size, err, n)
	}
	c.converged(size)
	for i, node := range c.nodes {
		for d := range n {
			if st, ok, err := node.FSM().Ledger().State(digest(100+d), "prod"); err != nil || !ok || !st.Active() {
				t.Fatalf("node %d: state of %s: %+v %v %v", i, digest(100+d), st, ok, err)
			}
		}
	}
}

// keepOneLog makes a snapshot drop the log behind it.
var keepOneLog = cluster.WithRaftConfig(func(rc *raft.Config) { rc.TrailingLogs = 1 })

// TestOnApplyTellsEveryReplica: each replica's OnApply hears every entry it
// applies, followers included, which is how a follower's readers learn of a
// revocation made through the leader without waiting for a sweep.
func TestOnApplyTellsEveryReplica(t *testing.T) {
	c := newCluster(t, 3)
	var mu sync.Mutex
	heard := make([]map[string]bool, len(c.nodes))
	for i, n := range c.nodes {
		heard[i] = map[string]bool{}
		n.FSM().OnApply(func(e ledger.Entry) {
			mu.Lock()
			defer mu.Unlock()
			heard[i][e.Digest] = true
		})
	}
	c.promote(digest(1), digest(2))
	c.promote(digest(3))
	c.converged(3)
	waitFor(t, "every replica heard every entry", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, h := range heard {
			for _, d := range []string{digest(1), digest(2), digest(3)} {
				if !h[d] {
					return false
				}
			}
		}
		return true
	})
}
