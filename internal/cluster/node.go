package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// Member is one replica of the static member list.
type Member struct {
	ID      string
	Address string // host:port other members dial
	// NonVoter replicates the log and serves reads, but does not vote
	// nor count for a quorum: admission capacity without a slower commit.
	NonVoter bool
}

// Config says how to start a Node.
type Config struct {
	// ID is this node's member ID; it must be in Members.
	ID string
	// Dir holds Raft's state: raft.db (log and stable store, fsync on
	// every write) and snapshots/. The ledger lives wherever the FSM's
	// path says, usually beside it.
	Dir string
	// Members bootstraps a node that has no Raft state yet. Every member
	// is started with the same list, which Raft accepts from all of them.
	// One member is a cluster of one.
	Members []Member
	// Start says how a node without Raft state starts: StartBootstrap
	// (the default), StartAdopt or StartJoin. A node with Raft state
	// ignores it: it has started before.
	Start string
}

// Option changes a Node's defaults.
type Option func(*nodeOptions)

type nodeOptions struct {
	log  *slog.Logger
	raft func(*raft.Config)
}

// snapshotsKept is how many Raft snapshots stay on disk: the newest, and
// one to fall back on if it is damaged.
const snapshotsKept = 2

// WithLogger logs through l (Raft's own messages included).
func WithLogger(l *slog.Logger) Option { return func(o *nodeOptions) { o.log = l } }

// WithRaftConfig lets f change Raft's configuration after the defaults
// are set, e.g. timeouts or snapshot thresholds.
func WithRaftConfig(f func(*raft.Config)) Option { return func(o *nodeOptions) { o.raft = f } }

// Node is one replica: Raft, its stores, and the FSM.
type Node struct {
	id    string
	raft  *raft.Raft
	store *raftboltdb.BoltStore
	trans raft.Transport
	fsm   *FSM

	// proposals feeds the one goroutine that builds and commits (see
	// propose.go); stop ends it, and loopDone says it ended.
	proposals chan *proposal
	stop      chan struct{}
	loopDone  chan struct{}
}

// NewNode starts Raft for fsm on trans, bootstrapping from cfg.Members if
// cfg.Dir holds no Raft state yet. Once it returns a Node, the node owns
// trans and fsm: Shutdown closes them; after an error the caller still
// owns them.
func NewNode(cfg Config, fsm *FSM, trans raft.Transport, opts ...Option) (*Node, error) {
	o := nodeOptions{log: slog.New(slog.DiscardHandler)}
	for _, opt := range opts {
		opt(&o)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.Logger = hclog.FromStandardLogger(slog.NewLogLogger(o.log.Handler(), slog.LevelInfo), &hclog.LoggerOptions{Name: "raft", Level: hclog.Info})
	if o.raft != nil {
		o.raft(rc)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	store, snaps, err := openStores(cfg.Dir, rc.Logger)
	if err != nil {
		return nil, err
	}
	existing, err := raft.HasExistingState(store, store, snaps)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("cluster: %w", err)
	}
	if !existing && cfg.Start != StartJoin {
		servers := make([]raft.Server, len(cfg.Members))
		for i, m := range cfg.Members {
			suffrage := raft.Voter
			if m.NonVoter {
				suffrage = raft.Nonvoter
			}
			servers[i] = raft.Server{Suffrage: suffrage, ID: raft.ServerID(m.ID), Address: raft.ServerAddress(m.Address)}
		}
		conf := raft.Configuration{Servers: servers}
		if cfg.Start == StartAdopt {
			err = adopt(rc, fsm, store, snaps, trans, conf)
		} else if err = raft.BootstrapCluster(rc, store, store, snaps, trans, conf); err != nil {
			err = fmt.Errorf("cluster: bootstrap: %w", err)
		}
		if err != nil {
			store.Close()
			return nil, err
		}
	}
	r, err := raft.NewRaft(rc, fsm, store, store, snaps, trans)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("cluster: %w", err)
	}
	n := &Node{id: cfg.ID, raft: r, store: store, trans: trans, fsm: fsm,
		proposals: make(chan *proposal, maxPending), stop: make(chan struct{}), loopDone: make(chan struct{})}
	go n.proposeLoop()
	return n, nil
}

// openStores opens Raft's log and stable store (raft.db) and the snapshot
// store in dir.
func openStores(dir string, logger hclog.Logger) (*raftboltdb.BoltStore, *raft.FileSnapshotStore, error) {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db")})
	if err != nil {
		return nil, nil, fmt.Errorf("cluster: raft store: %w", err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, snapshotsKept, logger)
	if err != nil {
		store.Close()
		return nil, nil, fmt.Errorf("cluster: snapshot store: %w", err)
	}
	return store, snaps, nil
}

func (c Config) validate() error {
	switch c.Start {
	case StartBootstrap, StartAdopt, StartJoin:
	default:
		return fmt.Errorf("%w: unknown start %q", ErrConfig, c.Start)
	}
	if c.ID == "" || c.Dir == "" || len(c.Members) == 0 {
		return fmt.Errorf("%w: a node needs an ID, a directory and the member list", ErrConfig)
	}
	seen := map[string]bool{}
	for _, m := range c.Members {
		if m.ID == "" || m.Address == "" || seen[m.ID] {
			return fmt.Errorf("%w: member %q: every member needs a unique ID and an address", ErrConfig, m.ID)
		}
		seen[m.ID] = true
	}
	if !seen[c.ID] {
		return fmt.Errorf("%w: node %q is not in the member list", ErrConfig, c.ID)
	}
	return nil
}

// ID is this node's member ID.
func (n *Node) ID() string { return n.id }

// FSM is the node's state machine, whose Ledger admission reads.
func (n *Node) FSM() *FSM { return n.fsm }

// IsLeader reports whether this node is the leader now.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Leader is the leader this node knows of, empty if none: the seam for
// forwarding writes.
func (n *Node) Leader() (id, address string) {
	addr, lid := n.raft.LeaderWithID()
	return string(lid), string(addr)
}

// Raft exposes the engine for status and tests (state, stats, indexes).
func (n *Node) Raft() *raft.Raft { return n.raft }

// leaderErr turns Raft's "lost leadership" errors into a *NotLeaderError
// (wrapping both), so that the forwarding layer retries at the new leader.
func leaderErr(n *Node, err error) error {
	if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrLeadershipTransferInProgress) {
		id, addr := n.Leader()
		return errors.Join(&NotLeaderError{LeaderID: id, LeaderAddress: addr}, err)
	}
	return err
}

// timeoutOf is what is left of ctx's deadline, 0 (no timeout) without one.
func timeoutOf(ctx context.Context) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		return max(time.Until(d), time.Millisecond)
	}
	return 0
}

// Shutdown stops Raft, then closes its store, the transport and the
// ledger. The node's disk state stays for a restart.
func (n *Node) Shutdown() error {
	close(n.stop)
	<-n.loopDone
	err := n.raft.Shutdown().Error()
	if c, ok := n.trans.(interface{ Close() error }); ok {
		err = errors.Join(err, c.Close())
	}
	return errors.Join(err, n.store.Close(), n.fsm.Close())
}
