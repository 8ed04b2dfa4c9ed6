package cluster_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stagegate/stagegate/internal/cluster"
)

// TestLeadershipChangesAndBarrier: the revocation-list publisher acts on
// these two. A follower's barrier fails naming the leader (its list could
// miss entries); the replica that becomes leader after the old one stops
// is told so, and its barrier then holds.
func TestLeadershipChangesAndBarrier(t *testing.T) {
	c := newCluster(t, 3)
	old := c.leader()
	changes := make([]<-chan struct{}, 3)
	for i, n := range c.nodes {
		ch, stop := n.LeadershipChanges()
		t.Cleanup(stop)
		changes[i] = ch
	}
	if err := c.nodes[old].Barrier(context.Background()); err != nil {
		t.Fatalf("leader's barrier: %v", err)
	}
	follower := (old + 1) % 3
	var nl *cluster.NotLeaderError
	if err := c.nodes[follower].Barrier(context.Background()); !errors.As(err, &nl) || nl.LeaderAddress != c.addrs[old] {
		t.Fatalf("follower's barrier: %v, want a NotLeaderError naming %s", err, c.addrs[old])
	}

	c.stop(old)
	now := c.leader()
	<-changes[now] // it was a follower, then candidate, then leader: told
	if !c.nodes[now].IsLeader() {
		t.Fatalf("node %d was told of a change but does not lead", now)
	}
	if err := c.nodes[now].Barrier(context.Background()); err != nil {
		t.Fatalf("new leader's barrier: %v", err)
	}
}
