// Package cluster replicates the ledger with Raft (github.com/hashicorp/raft,
// on raft-boltdb/v2): every replica keeps its own bbolt ledger as the state
// machine and checks what it applies; the leader builds and signs entries
// and the checkpoint of the tree they make, and the log carries both to
// every replica. A single node is a cluster of one.
//
// The package is narrow on purpose, as Vault's and Consul's FSMs are: FSM
// applies one kind of command (a batch of pre-built entries and the
// leader's checkpoint), Node runs Raft around it and proposes on the
// leader. Forwarding a write from a follower to the leader is a separate
// layer on top of Node.Propose and Node.Leader (not written yet).
package cluster

import (
	"errors"
	"fmt"
)

// Sentinel errors; every error this package returns wraps one of these or
// an error of internal/ledger or hashicorp/raft.
var (
	// ErrNotLeader: Propose on a node that is not the leader. A
	// *NotLeaderError carries the leader's address, if known, for the
	// forwarding layer.
	ErrNotLeader = errors.New("cluster: not the leader")
	// ErrBadCommand: a log entry that does not decode as a command.
	ErrBadCommand = errors.New("cluster: bad command")
	// ErrConfig: a Config that cannot start a node.
	ErrConfig = errors.New("cluster: bad configuration")
	// ErrStale: a replica that lost contact with any leader for too long
	// (a *StaleError says how long).
	ErrStale = errors.New("cluster: stale replica")
)

// NotLeaderError is ErrNotLeader with the leader this node knows of.
type NotLeaderError struct {
	LeaderID, LeaderAddress string // empty: no leader known
}

func (e *NotLeaderError) Error() string {
	if e.LeaderAddress == "" {
		return ErrNotLeader.Error() + " (no leader known)"
	}
	return fmt.Sprintf("%s (leader %s at %s)", ErrNotLeader, e.LeaderID, e.LeaderAddress)
}

func (e *NotLeaderError) Unwrap() error { return ErrNotLeader }
