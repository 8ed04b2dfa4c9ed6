package cluster

import (
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// Status is what one replica says of itself: `stagegate cluster status`
// shows one per member.
type Status struct {
	ID       string `json:"id"`
	Role     string `json:"role"` // leader, follower, candidate, shutdown
	Term     uint64 `json:"term"`
	LeaderID string `json:"leaderID,omitempty"`
	// CommitIndex is the Raft index this replica knows to be committed
	// (on a follower: the leader's commit index it last heard),
	// AppliedIndex the one its ledger has applied.
	CommitIndex  uint64 `json:"commitIndex"`
	AppliedIndex uint64 `json:"appliedIndex"`
	LastIndex    uint64 `json:"lastIndex"`
	// LastContact is when this replica last heard from a leader; zero on
	// the leader itself, and on a replica that never has.
	LastContact time.Time `json:"lastContact,omitzero"`
	// LedgerSize is the number of entries of its ledger.
	LedgerSize uint64 `json:"ledgerSize"`
}

// Status reports this replica's role, term, indexes and last contact.
func (n *Node) Status() Status {
	lid, _ := n.Leader()
	s := Status{ID: n.id, Role: roleOf(n.raft.State()), Term: n.raft.CurrentTerm(), LeaderID: lid,
		CommitIndex: n.raft.CommitIndex(), AppliedIndex: n.raft.AppliedIndex(), LastIndex: n.raft.LastIndex()}
	if s.Role != "leader" {
		s.LastContact = n.raft.LastContact()
	}
	s.LedgerSize, _ = n.fsm.Ledger().Size()
	return s
}

func roleOf(s raft.RaftState) string {
	switch s {
	case raft.Leader:
		return "leader"
	case raft.Follower:
		return "follower"
	case raft.Candidate:
		return "candidate"
	default:
		return "shutdown"
	}
}

// StaleError is a replica that has not heard from any leader for longer
// than it may: it may miss a revocation committed elsewhere.
type StaleError struct {
	For, After time.Duration
	Never      bool // not since it started
}

func (e *StaleError) Error() string {
	if e.Never {
		return fmt.Sprintf("this replica has not heard from a cluster leader since it started %s ago (cluster.staleAfter %s); it may miss revocations", e.For.Round(time.Second), e.After)
	}
	return fmt.Sprintf("this replica lost contact with the cluster leader for %s (cluster.staleAfter %s); it may miss revocations", e.For.Round(time.Second), e.After)
}

func (e *StaleError) Unwrap() error { return ErrStale }

// Stale returns a *StaleError when this replica is not the leader and its
// last contact with one (or, if it never had one, its start) is more than
// after before now. The leader is never stale by this measure: Raft makes
// a leader that loses its quorum step down within its lease (500ms).
func (n *Node) Stale(now time.Time, after time.Duration) error {
	if n.IsLeader() {
		return nil
	}
	last, never := n.raft.LastContact(), false
	if last.IsZero() {
		last, never = n.started, true
	}
	if d := now.Sub(last); d > after {
		return &StaleError{For: d, After: after, Never: never}
	}
	return nil
}

// Ready says whether this replica may take traffic: not stale, a leader
// known, and its ledger caught up to the commit index it last heard (the
// ledger verified every entry it applied, and the whole file when it
// opened). A replica that joins with an empty disk is not ready until it
// installed the snapshot and applied the log after it.
func (n *Node) Ready(now time.Time, after time.Duration) error {
	if err := n.Stale(now, after); err != nil {
		return err
	}
	if lid, _ := n.Leader(); lid == "" {
		return fmt.Errorf("%w: no cluster leader is known (an election is under way)", ErrNotReady)
	}
	if c, a := n.raft.CommitIndex(), n.raft.AppliedIndex(); a < c || c == 0 {
		return fmt.Errorf("%w: applied Raft index %d of %d committed: catching up", ErrNotReady, a, c)
	}
	return nil
}
