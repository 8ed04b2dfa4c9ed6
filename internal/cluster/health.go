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
	// LedgerSize is the number of entries of its ledger, and Checkpoint
	// its latest signed checkpoint (empty for an empty ledger), which a
	// follower checks its own ledger against.
	LedgerSize uint64 `json:"ledgerSize"`
	Checkpoint string `json:"checkpoint,omitempty"`
}

// Status reports this replica's role, term, indexes and last contact.
func (n *Node) Status() Status {
	lid, _ := n.Leader()
	s := Status{ID: n.id, Role: roleOf(n.raft.State()), Term: n.raft.CurrentTerm(), LeaderID: lid,
		CommitIndex: n.raft.CommitIndex(), AppliedIndex: n.raft.AppliedIndex(), LastIndex: n.raft.LastIndex()}
	if s.Role != "leader" {
		s.LastContact = n.raft.LastContact()
	}
	l := n.fsm.Ledger()
	s.LedgerSize, _ = l.Size()
	s.Checkpoint, _ = l.Checkpoint()
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
	Never      bool // not caught up once since it started
}

func (e *StaleError) Error() string {
	if e.Never {
		return fmt.Sprintf("this replica has not yet caught up with the cluster leader since it started %s ago; it may miss revocations", e.For.Round(time.Second))
	}
	return fmt.Sprintf("this replica lost contact with the cluster leader for %s (cluster.staleAfter %s); it may miss revocations", e.For.Round(time.Second), e.After)
}

func (e *StaleError) Unwrap() error { return ErrStale }
