package cluster

import (
	"context"
	"fmt"
	"sync"

	"github.com/hashicorp/raft"
)

// Barrier returns once every command committed before it was called is
// applied to this replica's ledger. It commits an entry of its own
// through a quorum, so it fails (wrapping a *NotLeaderError) on a
// replica that does not lead, and on a leader deposed without knowing
// it yet: what such a replica reads afterwards may miss what a newer
// leader committed. ctx's deadline bounds the wait.
func (n *Node) Barrier(ctx context.Context) error {
	if err := n.raft.Barrier(timeoutOf(ctx)).Error(); err != nil {
		return fmt.Errorf("cluster: barrier: %w", leaderErr(n, err))
	}
	return nil
}

// LeadershipChanges returns a channel that receives after this replica's
// Raft state changes (it became leader, or stopped leading), and a func
// that stops it. A receive says only that something changed, so a
// reader asks IsLeader: changes that come while one is pending merge into
// it, and the last one is never lost.
func (n *Node) LeadershipChanges() (<-chan struct{}, func()) {
	obs := make(chan raft.Observation, 1)
	o := raft.NewObserver(obs, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.RaftState)
		return ok
	})
	n.raft.RegisterObserver(o)
	out, done := make(chan struct{}, 1), make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-obs:
				select {
				case out <- struct{}{}:
				default: // one is pending already
				}
			}
		}
	}()
	var once sync.Once
	return out, func() {
		once.Do(func() {
			n.raft.DeregisterObserver(o)
			close(done)
		})
	}
}
