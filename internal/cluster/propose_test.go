package cluster_test

import (
	"context"
	"testing"
	"time"

	"github.com/stagegate/stagegate/internal/cluster"
	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/signing/signingtest"
)

// hold proposes a build that blocks until release is closed, and returns
// once the leader is building it, so that what is proposed next waits and
// is committed together.
func hold(t *testing.T, c *testCluster, lead *cluster.Node, release chan struct{}) <-chan error {
	t.Helper()
	started := make(chan struct{})
	errc := make(chan error, 1)
	inner := c.k.build(t, digest(1000))
	go func() {
		_, err := lead.Propose(context.Background(), func(next uint64, pending []*ledger.Entry) ([]*ledger.Entry, error) {
			close(started)
			<-release
			return inner(next, pending)
		})
		errc <- err
	}()
	<-started
	return errc
}

// propose proposes build in the background and sends its result on the
// returned channel.
func proposeAsync(lead *cluster.Node, build cluster.BuildFunc) <-chan error {
	errc := make(chan error, 1)
	go func() {
		_, err := lead.Propose(context.Background(), build)
		errc <- err
	}()
	return errc
}

// Proposals that wait while a command is in flight are committed as one
// command, and each build sees the entries of the builds before it.
func TestGroupCommit(t *testing.T) {
	c := newCluster(t, 3)
	lead := c.nodes[c.leader()]
	release := make(chan struct{})
	first := hold(t, c, lead, release)

	second := proposeAsync(lead, c.k.build(t, digest(1)))
	waitFor(t, "one proposal waiting", func() bool { return lead.Pending() == 1 })
	var seen []*ledger.Entry
	buildThird := c.k.build(t, digest(2))
	third := proposeAsync(lead, func(next uint64, pending []*ledger.Entry) ([]*ledger.Entry, error) {
		seen = pending
		return buildThird(next, pending)
	})
	waitFor(t, "two proposals waiting", func() bool { return lead.Pending() == 2 })
	before := lead.Raft().LastIndex()
	close(release)
	for name, errc := range map[string]<-chan error{"first": first, "second": second, "third": third} {
		if err := <-errc; err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if len(seen) != 1 || seen[0].Digest != digest(1) {
		t.Fatalf("the third build saw %d pending entries, want the second's (%s)", len(seen), digest(1))
	}
	// The first command, then one for the other two.
	if got := lead.Raft().LastIndex() - before; got != 2 {
		t.Errorf("%d Raft log entries for three proposals, want 2 (one, then two together)", got)
	}
	c.converged(3)
}

// One build whose entries no replica would accept fails alone: the others
// of its command are committed without it.
func TestGroupCommitRefusesOnlyTheBadProposal(t *testing.T) {
	c := newCluster(t, 3)
	lead := c.nodes[c.leader()]
	release := make(chan struct{})
	first := hold(t, c, lead, release)

	stranger := &keys{att: signingtest.ForeignSigner(t)}
	good1 := proposeAsync(lead, c.k.build(t, digest(1)))
	waitFor(t, "one proposal waiting", func() bool { return lead.Pending() == 1 })
	bad := proposeAsync(lead, stranger.build(t, digest(2)))
	waitFor(t, "two proposals waiting", func() bool { return lead.Pending() == 2 })
	good2 := proposeAsync(lead, c.k.build(t, digest(3)))
	waitFor(t, "three proposals waiting", func() bool { return lead.Pending() == 3 })
	close(release)

	for name, errc := range map[string]<-chan error{"first": first, "good1": good1, "good2": good2} {
		if err := <-errc; err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if err := <-bad; err == nil {
		t.Fatal("entries signed with a foreign key committed")
	}
	c.converged(3)
	es, err := lead.FSM().Ledger().Entries(0, 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		if e.Digest == digest(2) {
			t.Fatalf("entry %d holds the refused proposal's digest", e.Index)
		}
	}
}

// A proposal whose caller gave up while it waited is not built.
func TestGivenUpProposalIsNotBuilt(t *testing.T) {
	c := newCluster(t, 1)
	lead := c.nodes[c.leader()]
	release := make(chan struct{})
	first := hold(t, c, lead, release)
	ctx, cancel := context.WithCancel(context.Background())
	built := make(chan struct{}, 1)
	errc := make(chan error, 1)
	go func() {
		_, err := lead.Propose(ctx, func(uint64, []*ledger.Entry) ([]*ledger.Entry, error) {
			built <- struct{}{}
			return nil, nil
		})
		errc <- err
	}()
	waitFor(t, "one proposal waiting", func() bool { return lead.Pending() == 1 })
	cancel()
	if err := <-errc; err == nil {
		t.Fatal("Propose with a cancelled context returned no error")
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	// A later proposal commits after the given-up one was dropped.
	c.promote(digest(5))
	select {
	case <-built:
		t.Fatal("the given-up proposal was built")
	case <-time.After(0):
	}
	c.converged(2)
}
