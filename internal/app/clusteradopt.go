package app

// The upgrade from one replica (config cluster.adopt): which way a
// member without Raft state starts, and the adopting member's check that
// no other member has started a cluster of its own.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/stagegate/stagegate/internal/cluster"
	"github.com/stagegate/stagegate/internal/config"
	"github.com/stagegate/stagegate/internal/forward"
)

// peerStatus is what a member answers on /peer/v1/status: its Status, and
// the member its config says adopts the ledger, which the adopting member
// compares with its own.
type peerStatusAnswer struct {
	cluster.Status
	Adopt string `json:"adopt,omitempty"`
}

// adoptWait bounds how long the adopting member waits for every other
// member to answer before it adopts: all must be running, started empty.
const adoptWait = 5 * time.Minute

// startMode decides how this member starts if it has no Raft state yet:
// without cluster.adopt every member bootstraps the member list (a new
// cluster); with it, the adopting member adopts its ledger and every
// other one joins. It refuses what would make two ledgers: a joining
// member that holds entries of its own, or an adoption while another
// member already has Raft state or names another adopter.
func (r *replica) startMode(ctx context.Context, ledgerSize uint64) (string, error) {
	cc := r.cfg
	if cc.Adopt == "" {
		return cluster.StartBootstrap, nil
	}
	has, err := cluster.HasState(cc.DataDir)
	if err != nil {
		return "", err
	}
	if has {
		return cluster.StartBootstrap, nil // started before: cluster.adopt did its work, or never applies
	}
	if cc.Adopt != cc.NodeID {
		if ledgerSize > 0 {
			return "", fmt.Errorf("cluster.adopt: member %s adopts its ledger, but this member (%s) holds a ledger of %d entries of its own and no cluster state: two ledgers cannot become one; move this member's ledger away (keep it with `stagegate ledger export`) and start it empty", cc.Adopt, cc.NodeID, ledgerSize)
		}
		r.log.Info("cluster: joining the cluster that adopts the ledger of another member", "adopt", cc.Adopt)
		return cluster.StartJoin, nil
	}
	if ledgerSize == 0 {
		// A wiped adopting member after the upgrade: the others hold the
		// cluster, and it joins them as any empty member does.
		r.log.Warn("cluster: cluster.adopt names this member, but its ledger is empty and it has no cluster state: it joins the cluster rather than adopting (remove cluster.adopt to start a new cluster)")
		return cluster.StartJoin, nil
	}
	if err := r.othersEmpty(ctx); err != nil {
		return "", err
	}
	return cluster.StartAdopt, nil
}

// othersEmpty waits until every other member answers on its peer port,
// and fails if any has Raft state or a ledger, or names another adopter.
func (r *replica) othersEmpty(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, adoptWait)
	defer cancel()
	fwd := forward.New(noLeader{}, nil, r.client, forward.WithLogger(r.log))
	checked := map[string]bool{}
	for round := 0; ; round++ {
		var waiting []string
		for _, m := range r.cfg.Members {
			if m.ID == r.cfg.NodeID || checked[m.ID] {
				continue
			}
			st, err := askStatus(ctx, fwd, r.cfg.NodeID, m)
			if err != nil {
				waiting = append(waiting, m.ID)
				continue
			}
			if st.Term > 0 || st.LastIndex > 0 || st.LedgerSize > 0 {
				return fmt.Errorf("cluster.adopt: member %s already has cluster state (term %d, last index %d, %d ledger entries): a cluster was started without this member's ledger, and adopting it now would make two ledgers; nothing was changed. Either start this member empty (remove its ledger) to join that cluster, or stop every member, empty the others' data and start again", m.ID, st.Term, st.LastIndex, st.LedgerSize)
			}
			if st.Adopt != r.cfg.Adopt {
				return fmt.Errorf("cluster.adopt: member %s is configured to adopt %q, this member %q: every member needs the same cluster.adopt", m.ID, st.Adopt, r.cfg.Adopt)
			}
			checked[m.ID] = true
		}
		if len(waiting) == 0 {
			return nil
		}
		if round%10 == 0 {
			r.log.Info("cluster: before adopting the ledger, waiting for every other member to answer, started empty", "waiting", waiting)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster.adopt: members %v did not answer on their peer ports within %s: adopting needs every member running, started empty, to check that none has started a cluster of its own: %w", waiting, adoptWait, ctx.Err())
		case <-time.After(time.Second):
		}
	}
}

func askStatus(ctx context.Context, fwd *forward.Forwarder, self string, m config.Member) (peerStatusAnswer, error) {
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	resp, err := fwd.Call(ctx, self, m.ID, m.Address, http.MethodGet, "/peer/v1/status", nil)
	if err != nil {
		return peerStatusAnswer{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return peerStatusAnswer{}, fmt.Errorf("status %d", resp.StatusCode)
	}
	var st peerStatusAnswer
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&st); err != nil {
		return peerStatusAnswer{}, err
	}
	return st, nil
}

// noLeader is the Leadership of a forwarder used only for Call, before
// the node exists.
type noLeader struct{}

func (noLeader) IsLeader() bool               { return false }
func (noLeader) Leader() (id, address string) { return "", "" }
