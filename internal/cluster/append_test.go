package cluster_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stagegate/stagegate/internal/cluster"
	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/policy"
	"github.com/stagegate/stagegate/internal/promotion"
	"github.com/stagegate/stagegate/internal/registry"
)

// promoteOnce is what Promote's build does with a promotion that is
// already there: answer with its entry.
// With started and gate, it says it started and then waits for gate.
func (k *keys) promoteOnce(t testing.TB, d string, started chan<- struct{}, gate <-chan struct{}) ledger.BuildFunc {
	return func(r ledger.Reader, index uint64) (*ledger.Entry, error) {
		if gate != nil {
			started <- struct{}{}
			<-gate
		}
		st, _, err := r.State(d, "prod")
		if err != nil {
			return nil, err
		}
		if st.Active() {
			return nil, &ledger.ExistsError{Index: st.PromotedIndex}
		}
		return promotion.PromotionEntry(k.att, index, promotion.Promoted{
			Image: registry.Resolved{Repository: "registry.test/app", Digest: d}, Stage: "prod",
			Reason: "release", Requester: policy.Identity{Subject: "ci"}, Time: t0,
		})
	}
}

// A retried promotion gets the first attempt's receipt, also when the
// first attempt is still pending in the same command.
func TestAppendIsIdempotentWithPendingEntries(t *testing.T) {
	c := newCluster(t, 3)
	n := c.nodes[c.leader()]
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// The first command is held in its build until the two attempts wait
	// behind it; they are then built into one command, the second seeing
	// the first as pending.
	started, gate := make(chan struct{}, 1), make(chan struct{})
	type result struct {
		rc  ledger.Receipt
		err error
	}
	first := make(chan result, 1)
	go func() {
		rc, err := n.AppendContext(ctx, c.k.promoteOnce(t, digest(1), started, gate))
		first <- result{rc, err}
	}()
	<-started
	attempts := make(chan result, 2)
	for range 2 {
		go func() {
			rc, err := n.AppendContext(ctx, c.k.promoteOnce(t, digest(2), nil, nil))
			attempts <- result{rc, err}
		}()
	}
	waitFor(t, "both attempts queued", func() bool { return n.Pending() == 2 })
	close(gate)
	if r := <-first; r.err != nil {
		t.Fatalf("first: %v", r.err)
	}
	a, b := <-attempts, <-attempts
	if a.err != nil {
		a, b = b, a
	}
	if a.err != nil || !errors.Is(b.err, ledger.ErrExists) {
		t.Fatalf("attempts: %v and %v, want one recorded and one existing", a.err, b.err)
	}
	if a.rc.Entry.Index != b.rc.Entry.Index || b.rc.Checkpoint == "" || string(a.rc.Entry.Envelope) != string(b.rc.Entry.Envelope) {
		t.Fatalf("the retry's receipt is for entry %d, the first's for %d", b.rc.Entry.Index, a.rc.Entry.Index)
	}
	c.converged(2)

	// On a follower, the seam says who leads.
	for i, f := range c.nodes {
		if f != n {
			if _, err := f.AppendContext(ctx, c.k.promoteOnce(t, digest(3), nil, nil)); !errors.Is(err, cluster.ErrNotLeader) {
				t.Fatalf("node %d: %v, want ErrNotLeader", i, err)
			}
			break
		}
	}
}
