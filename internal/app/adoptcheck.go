package app

import (
	"errors"
	"fmt"
	"os"

	"github.com/stagegate/stagegate/internal/cluster"
	"github.com/stagegate/stagegate/internal/config"
	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/signing"
)

// AdoptCheck is what CheckAdopt found: the ledger the member will adopt.
type AdoptCheck struct {
	Member  string
	Ledger  string
	Entries uint64
	RaftDir string
}

// CheckAdopt checks, offline and reading only, what the member that
// cluster.adopt names will check at its first start (a ledger that
// verifies in full with the config's keys), and what would make the
// upgrade go wrong with no error at all there: a config without adopt
// (a new empty cluster, and the old ledger left under it fails closed), a
// missing or empty ledger (the member joins rather than adopts, and no
// member can lead), Raft state already beside it (adopt is ignored).
// ledgerPath "" is cfg's. What it cannot see offline, that the other
// members start empty, the adopting member asks them at its start.
func CheckAdopt(cfg *config.Config, ledgerPath string) (AdoptCheck, error) {
	cc := cfg.Cluster
	if cc == nil {
		return AdoptCheck{}, errors.New("adopt check: this config has no cluster section: check the config the members will run (`stagegate manifests --adopt-ledger` writes it)")
	}
	if cc.Adopt == "" {
		return AdoptCheck{}, errors.New("adopt check: cluster.adopt is not set: the members would bootstrap a new, empty cluster, and a ledger left under one of them is not that cluster's (it fails closed); set cluster.adopt to the member that gets the ledger (`manifests --adopt-ledger`)")
	}
	if cc.NodeID != cc.Adopt {
		return AdoptCheck{}, fmt.Errorf("adopt check: this is member %s's config, and cluster.adopt names %s: check with the adopting member's (or set $%s=%s)", cc.NodeID, cc.Adopt, config.ClusterNodeIDEnv, cc.Adopt)
	}
	if cfg.RegistrySource.Enabled {
		return AdoptCheck{}, errors.New("adopt check: registrySource is not supported with cluster yet: serve refuses this config")
	}
	if ledgerPath == "" {
		ledgerPath = cfg.LedgerPath()
	}
	res := AdoptCheck{Member: cc.Adopt, Ledger: ledgerPath, RaftDir: cc.DataDir}
	has, err := cluster.HasState(cc.DataDir)
	if err != nil {
		return res, fmt.Errorf("adopt check: %w", err)
	}
	if has {
		return res, fmt.Errorf("adopt check: %s already holds Raft state: a member with Raft state ignores cluster.adopt, and a ledger put under it is not the cluster's; adopt only into a data directory that never ran as a cluster member", cc.DataDir)
	}
	if _, err := os.Stat(ledgerPath); err != nil {
		return res, fmt.Errorf("adopt check: no ledger to adopt: %w; member %s would start without one and join instead of adopting, and no member could lead", err, cc.Adopt)
	}
	v, lv, err := LoadVerifiers(cfg)
	if err != nil {
		return res, fmt.Errorf("adopt check: %w", err)
	}
	l, err := ledger.Open(ledgerPath, ledger.WithReadOnly(), ledger.WithReadAhead())
	if err != nil {
		return res, fmt.Errorf("adopt check: %w", err)
	}
	defer l.Close()
	if res.Entries, err = l.Size(); err != nil {
		return res, fmt.Errorf("adopt check: %w", err)
	}
	if res.Entries == 0 {
		return res, fmt.Errorf("adopt check: the ledger %s is empty: member %s would join instead of adopting, and no member could lead", ledgerPath, cc.Adopt)
	}
	// The very check adoption makes (cluster's adopt, with the FSM's
	// entry check): the keys are this config's, those the members mount.
	if err := l.Verify(lv, signing.CheckEntry(v)); err != nil {
		return res, fmt.Errorf("adopt check: the ledger %s fails verification with this config's keys, so adoption would refuse it: %w", ledgerPath, err)
	}
	return res, nil
}
