package cluster

import (
	"context"
	"errors"
	"fmt"

	"github.com/stagegate/stagegate/internal/ledger"
)

// Append is AppendContext without a bound.
func (n *Node) Append(build ledger.BuildFunc) (ledger.Receipt, error) {
	return n.AppendContext(context.Background(), build)
}

// AppendContext is ledger.Append through Raft, the append seam of the
// promotion service (promotion.ContextAppender): build decides on the
// leader's ledger with the entries pending before it in the same command
// (ledger.ViewPending), so a retried promotion finds its first attempt
// even before it is applied. When build answers with an *ExistsError, the
// receipt of that entry comes back with the error, as ledger.Append does;
// an entry that was pending is applied once Propose returns. On a
// follower it returns a *NotLeaderError: the forwarding layer sends the
// request to the leader instead.
func (n *Node) AppendContext(ctx context.Context, build ledger.BuildFunc) (ledger.Receipt, error) {
	rc, err := n.Propose(ctx, func(next uint64, pending []*ledger.Entry) ([]*ledger.Entry, error) {
		var e *ledger.Entry
		err := n.fsm.Ledger().ViewPending(pending, func(r ledger.Reader) error {
			var err error
			e, err = build(r, next)
			return err
		})
		if err != nil {
			return nil, err
		}
		return []*ledger.Entry{e}, nil
	})
	var exists *ledger.ExistsError
	if !errors.As(err, &exists) {
		return rc, err
	}
	rc, rerr := n.fsm.Ledger().Receipt(exists.Index)
	if rerr != nil {
		// The entry it repeats was pending in a command that did not
		// commit (leadership moved): the caller retries at the leader.
		if !n.IsLeader() {
			id, addr := n.Leader()
			return ledger.Receipt{}, errors.Join(&NotLeaderError{LeaderID: id, LeaderAddress: addr}, rerr)
		}
		return ledger.Receipt{}, fmt.Errorf("cluster: receipt of existing entry: %w", rerr)
	}
	return rc, err
}

// View reads the current ledger.
func (n *Node) View(fn func(ledger.Reader) error) error { return n.fsm.Ledger().View(fn) }

// AppendAllContext is ledger.AppendAll through Raft: the entries build
// makes go into one command, so they commit, and apply on every replica,
// together or not at all. Unlike AppendContext it returns build's refusal
// as it is, an *ExistsError included.
func (n *Node) AppendAllContext(ctx context.Context, build ledger.BuildAllFunc) ([]ledger.Receipt, error) {
	var first uint64
	var count int
	_, err := n.Propose(ctx, func(next uint64, pending []*ledger.Entry) ([]*ledger.Entry, error) {
		var es []*ledger.Entry
		err := n.fsm.Ledger().ViewPending(pending, func(r ledger.Reader) error {
			var err error
			es, err = build(r, next)
			return err
		})
		first, count = next, len(es)
		return es, err
	})
	if err != nil {
		return nil, err
	}
	indexes := make([]uint64, count)
	for i := range indexes {
		indexes[i] = first + uint64(i)
	}
	return n.Receipts(indexes)
}

// Receipts proves entries of the ledger this replica holds against its
// latest checkpoint (ledger.Receipts).
func (n *Node) Receipts(indexes []uint64) ([]ledger.Receipt, error) {
	return n.fsm.Ledger().Receipts(indexes)
}
