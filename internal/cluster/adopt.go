package cluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/hashicorp/raft"
)

// How a node without Raft state starts (Config.Start).
const (
	// StartBootstrap writes the member list as Raft's first log entry, on
	// every member alike: the way a new cluster forms.
	StartBootstrap = ""
	// StartAdopt makes the FSM's ledger as it is (a single node's, say)
	// the cluster's first state: after verifying it fully, a Raft snapshot
	// of it at index 1, term 1, carrying the member list, is all of
	// Raft's state. The other members start with StartJoin, and the leader
	// installs that snapshot into each.
	StartAdopt = "adopt"
	// StartJoin writes nothing: the node waits for a leader to send it
	// the log or a snapshot. A node without Raft state never campaigns, so
	// members that join cannot form a cluster of their own (with a ledger
	// of their own) while the adopting member is down.
	StartJoin = "join"
)

// ErrAdopt: a ledger that cannot be adopted (it fails verification, or
// the member has Raft state already).
var ErrAdopt = errors.New("cluster: adopt")

// HasState reports whether dir holds Raft state (log, stable store or
// snapshots), as NewNode would find it. It opens and closes the store, so
// it must not run while a node uses dir.
func HasState(dir string) (bool, error) {
	if _, err := os.Stat(filepath.Join(dir, "raft.db")); errors.Is(err, os.ErrNotExist) {
		return false, nil // never started: and do not create the store here
	}
	store, snaps, err := openStores(dir, nil)
	if err != nil {
		return false, err
	}
	defer store.Close()
	ok, err := raft.HasExistingState(store, store, snaps)
	if err != nil {
		return false, fmt.Errorf("cluster: %w", err)
	}
	return ok, nil
}

// adopt verifies the FSM's ledger in full (every entry's attestation with
// the FSM's check, the tree, the checkpoint, the indexes) and writes it as
// a snapshot at index 1 of term 1 with the members as the configuration.
// Raft's restore of it at start keeps the ledger as it is (FSM.holds): the
// adopted entries stay byte for byte what they were, so receipts issued by
// the single node still verify against the cluster's checkpoints.
func adopt(rc *raft.Config, fsm *FSM, stable raft.StableStore, snaps raft.SnapshotStore, trans raft.Transport, conf raft.Configuration) error {
	l := fsm.Ledger()
	size, err := l.Size()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrAdopt, err)
	}
	if size == 0 {
		return fmt.Errorf("%w: the ledger is empty: nothing to adopt", ErrAdopt)
	}
	if err := l.Verify(fsm.v, fsm.check); err != nil {
		return fmt.Errorf("%w: the ledger fails verification, nothing was changed: %w", ErrAdopt, err)
	}
	snap, err := fsm.Snapshot()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrAdopt, err)
	}
	sink, err := snaps.Create(raft.SnapshotVersionMax, 1, 1, conf, 1, trans)
	if err != nil {
		return fmt.Errorf("%w: snapshot: %w", ErrAdopt, err)
	}
	if err := snap.Persist(sink); err != nil { // closes or cancels sink
		return fmt.Errorf("%w: %w", ErrAdopt, err)
	}
	// As BootstrapCluster does: the term of the state just written.
	if err := stable.SetUint64([]byte("CurrentTerm"), 1); err != nil {
		return fmt.Errorf("%w: %w", ErrAdopt, err)
	}
	rc.Logger.Info("adopted the existing ledger as the cluster's first state", "entries", size)
	return nil
}
