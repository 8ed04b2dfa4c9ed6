package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/stagegate/stagegate/internal/ledger"
)

// Member is one voter of the static member list.
type Member struct {
	ID      string
	Address string // host:port other members dial
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

	// propose holds one token: proposals are built at the ledger's size
	// after the previous one applied, so they run one at a time.
	propose chan struct{}
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
	store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(cfg.Dir, "raft.db")})
	if err != nil {
		return nil, fmt.Errorf("cluster: raft store: %w", err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.Dir, snapshotsKept, rc.Logger)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("cluster: snapshot store: %w", err)
	}
	existing, err := raft.HasExistingState(store, store, snaps)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("cluster: %w", err)
	}
	if !existing {
		servers := make([]raft.Server, len(cfg.Members))
		for i, m := range cfg.Members {
			servers[i] = raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(m.ID), Address: raft.ServerAddress(m.Address)}
		}
		if err := raft.BootstrapCluster(rc, store, store, snaps, trans, raft.Configuration{Servers: servers}); err != nil {
			store.Close()
			return nil, fmt.Errorf("cluster: bootstrap: %w", err)
		}
	}
	r, err := raft.NewRaft(rc, fsm, store, store, snaps, trans)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("cluster: %w", err)
	}
	return &Node{id: cfg.ID, raft: r, store: store, trans: trans, fsm: fsm, propose: make(chan struct{}, 1)}, nil
}

func (c Config) validate() error {
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

// BuildFunc makes the entries to append at next, the ledger's size once
// everything committed before is applied: entries[i].Index = next+i, each
// signed. It runs on the leader only, one proposal at a time, and must not
// write anything. What it reads in the leader's ledger (FSM().Ledger(),
// e.g. to answer a retried promotion idempotently) cannot change before
// its entries apply: only committed commands write, and none is pending.
type BuildFunc func(next uint64) ([]*ledger.Entry, error)

// Propose builds entries at the leader's next index, signs the checkpoint
// of the tree they make (ledger.Seal), and commits both through Raft. It
// returns once the command is committed on a quorum and applied on this
// node, with the receipt of its last entry, or the FSM's refusal. A
// follower returns a *NotLeaderError. If ctx ends first Propose returns
// ctx's error, but the command may still commit: callers retry
// idempotently, as across a failover.
func (n *Node) Propose(ctx context.Context, build BuildFunc) (ledger.Receipt, error) {
	select {
	case n.propose <- struct{}{}:
	case <-ctx.Done():
		return ledger.Receipt{}, ctx.Err()
	}
	type result struct {
		rc  ledger.Receipt
		err error
	}
	done := make(chan result, 1)
	go func() {
		// The token is released only when the command has applied (or
		// failed), even if the caller gave up: the next proposal must be
		// built after it.
		defer func() { <-n.propose }()
		rc, err := n.proposeLocked(ctx, build)
		done <- result{rc, err}
	}()
	select {
	case r := <-done:
		return r.rc, r.err
	case <-ctx.Done():
		return ledger.Receipt{}, ctx.Err()
	}
}

func (n *Node) proposeLocked(ctx context.Context, build BuildFunc) (ledger.Receipt, error) {
	if n.raft.State() != raft.Leader {
		id, addr := n.Leader()
		return ledger.Receipt{}, &NotLeaderError{LeaderID: id, LeaderAddress: addr}
	}
	timeout := timeoutOf(ctx)
	// A new leader may hold committed commands it has not applied (those
	// of the old term, committed by its no-op): wait for them, so that the
	// ledger's size is the next index.
	if n.raft.AppliedIndex() < n.raft.LastIndex() {
		if err := n.raft.Barrier(timeout).Error(); err != nil {
			return ledger.Receipt{}, fmt.Errorf("cluster: barrier: %w", leaderErr(n, err))
		}
	}
	l := n.fsm.Ledger()
	next, err := l.Size()
	if err != nil {
		return ledger.Receipt{}, err
	}
	entries, err := build(next)
	if err != nil {
		return ledger.Receipt{}, err
	}
	cp, err := l.Seal(entries, n.fsm.check)
	if err != nil {
		return ledger.Receipt{}, err
	}
	data, err := json.Marshal(command{Entries: entries, Checkpoint: cp})
	if err != nil {
		return ledger.Receipt{}, fmt.Errorf("cluster: encode command: %w", err)
	}
	f := n.raft.Apply(data, timeout)
	if err := f.Error(); err != nil {
		return ledger.Receipt{}, fmt.Errorf("cluster: apply: %w", leaderErr(n, err))
	}
	if err, ok := f.Response().(error); ok && err != nil {
		return ledger.Receipt{}, err
	}
	return n.fsm.Ledger().Receipt(next + uint64(len(entries)) - 1)
}

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
	err := n.raft.Shutdown().Error()
	if c, ok := n.trans.(interface{ Close() error }); ok {
		err = errors.Join(err, c.Close())
	}
	return errors.Join(err, n.store.Close(), n.fsm.Close())
}
