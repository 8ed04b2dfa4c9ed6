package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/stagegate/stagegate/internal/config"
)

// haBulkEnv adds the 10^6-entry catch-up to a run: forming that cluster
// by adoption and catching a wiped replica up take some 25 minutes on 2
// shared cores at the 10^5 rates (~100 s and ~46 s per 10^5 entries),
// more than a bench run should cost by default.
const haBulkEnv = "BENCH_HA_1E6"

// haBulkMillion is the size only haBulkEnv measures.
const haBulkMillion = 1_000_000

// BulkCatchUp is an empty replica's catch-up in a cluster whose ledger
// was bulk-loaded before it started (issue 14: "catch-up time of an empty
// replica at 10^5 and 10^6 entries").
type BulkCatchUp struct {
	// Entries is the fixture's size; Quick says it stands in for 10^5.
	Entries int  `json:"entries"`
	Quick   bool `json:"quick,omitempty"`
	// FormedSeconds is from starting the three members (member 0 adopting
	// the fixture ledger, the others installing it as a snapshot) to all
	// ready.
	FormedSeconds float64 `json:"formedSeconds"`
	// CatchUp is then a follower wiped and restarted, timed to /readyz.
	CatchUp CatchUpRun `json:"catchUp"`
}

// haBulk measures each of the plan's bulk sizes with a cluster of its
// own, once the section's cluster has stopped (the cores are shared).
func (r *Runner) haBulk(ctx context.Context, cfg *config.Config, token, peers string, ids []string, tlsCfg *tls.Config, logs string) error {
	for _, n := range r.plan.HABulk {
		if err := ctx.Err(); err != nil {
			return err
		}
		b, err := r.haBulkOne(ctx, n, cfg, token, peers, ids, tlsCfg, logs)
		if err != nil {
			return err
		}
		r.res.HA.Bulk = append(r.res.HA.Bulk, b)
		r.log.Info("ha empty disk, bulk-loaded", "entries", n, "formed", fmt.Sprintf("%.1f s", b.FormedSeconds),
			"catch-up", fmt.Sprintf("%.1f s", b.CatchUp.Seconds), "rejoined", b.CatchUp.Rejoined)
	}
	return nil
}

func (r *Runner) haBulkOne(ctx context.Context, n int, cfg *config.Config, token, peers string, ids []string, tlsCfg *tls.Config, logs string) (BulkCatchUp, error) {
	res := BulkCatchUp{Entries: n, Quick: r.plan.Mode == "quick"}
	// The fixture is cached in the workspace, signed with its keys, which
	// every member's config (haConfig) names too.
	if _, err := r.ws.fixture(ctx, n); err != nil {
		return res, err
	}
	dir, err := os.MkdirTemp(r.ws.dir, fmt.Sprintf("ha-bulk-%d-", n))
	if err != nil {
		return res, fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(dir)
	cl := &config.Cluster{StaleAfter: config.Duration(10 * time.Second), Adopt: ids[0]}
	for _, id := range ids {
		addr, err := freeAddr()
		if err != nil {
			return res, err
		}
		cl.Members = append(cl.Members, config.Member{ID: id, Address: addr})
	}
	var nodes []*haNode
	defer func() {
		for _, nd := range nodes {
			nd.p.stop()
		}
	}()
	for i, id := range ids {
		c := *cl
		c.NodeID, c.Listen = id, cl.Members[i].Address
		c.TLS = config.PeerTLS{CAFile: filepath.Join(peers, id, "ca.crt"), CertFile: filepath.Join(peers, id, "tls.crt"), KeyFile: filepath.Join(peers, id, "tls.key")}
		nd, err := r.haNode(dir, id, cfg, &c)
		if err != nil {
			return res, err
		}
		nd.log = fmt.Sprintf("ha-bulk-%d-%s.log", n, id)
		nodes = append(nodes, nd)
	}
	// The former single node's ledger becomes member 0's (README,
	// "upgrade"): a copy, as the fixture stays cached.
	if err := copyFile(filepath.Join(r.ws.fixtureDir(n), "ledger.db"), filepath.Join(nodes[0].dataDir, "ledger.db")); err != nil {
		return res, err
	}
	ready := 10*time.Minute + time.Duration(n/100_000)*5*time.Minute
	t0 := time.Now()
	for _, nd := range nodes {
		if nd.p, err = startProc(ctx, "stagegate-"+nd.id, filepath.Join(logs, nd.log), r.ws.bin, "serve", "--config", nd.cfgPath, "--log-level", "warn"); err != nil {
			return res, err
		}
		nd.p.health = nd.base + "/readyz"
	}
	for _, nd := range nodes {
		if err := nd.p.waitReady(ctx, tlsCfg, ready); err != nil {
			return res, err
		}
	}
	res.FormedSeconds = time.Since(t0).Seconds()
	w := &soakWriter{client: newClient(tlsCfg), stage: cfg.StageNames()[0]}
	if res.CatchUp, err = r.emptyDisk(ctx, w, nodes, token, logs, ready); err != nil {
		return res, err
	}
	if res.CatchUp.Rejoined < uint64(n) {
		return res, fmt.Errorf("bench: %s reported ready holding %d entries of the %d-entry fixture", res.CatchUp.Node, res.CatchUp.Rejoined, n)
	}
	return res, nil
}

// pow10 names n as 10^k when it is one.
func pow10(n int) string {
	k, m := 0, n
	for m >= 10 && m%10 == 0 {
		m /= 10
		k++
	}
	if m == 1 && k > 0 {
		return fmt.Sprintf("10^%d", k)
	}
	return fmt.Sprint(n)
}

// haBulkTargets are the bulk catch-up rows: 10^5 (10^4 in -quick, said
// so) and 10^6, reported, never judged.
func haBulkTargets(h *HAResult, add func(name, goal, value string, met *bool, note string)) {
	const goal = "reported, no goal"
	name := func(size string) string { return "empty-disk catch-up, bulk-loaded ledger of " + size + " entries" }
	var measured5, measured6 bool
	if h != nil {
		for _, b := range h.Bulk {
			c := b.CatchUp
			value := fmt.Sprintf("%.1f s to ready (%d entries once ready)", c.Seconds, c.Rejoined)
			note := fmt.Sprintf("cluster formed by adopting the fixture in %.1f s; a follower wiped, restarted, timed to /readyz (joined, caught up through a snapshot, as the leader's log starts after the adopted one, every entry verified)", b.FormedSeconds)
			size := pow10(b.Entries)
			switch {
			case b.Entries >= haBulkMillion:
				measured6 = true
			case b.Quick:
				measured5 = true
				size = "10^5"
				value = fmt.Sprintf("at %s in -quick: ", pow10(b.Entries)) + value
				note = "-quick uses " + pow10(b.Entries) + " entries in place of 10^5 (the full run uses 10^5); " + note
			default:
				measured5 = true
			}
			add(name(size), goal, value, nil, note)
		}
	}
	if !measured5 {
		add(name("10^5"), goal, "not measured", nil, "")
	}
	if !measured6 {
		add(name("10^6"), goal, "not measured: set "+haBulkEnv+"=1 to include it", nil,
			"about 25 min on 2 shared cores at the 10^5 rates (adoption ~100 s and catch-up ~46 s per 10^5 entries), too long for a default run")
	}
}
