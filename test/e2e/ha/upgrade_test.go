package ha

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/signing/signingtest"
	"github.com/stagegate/stagegate/test/e2e/framework"
	"github.com/stagegate/stagegate/test/e2e/framework/process"
	"sigs.k8s.io/yaml"
)

// single is a single-node stagegate (no cluster section) on dataDir with
// the cluster's keys, registry and first token: the deployment before the
// upgrade.
func (h *ha) single(dataDir string) *framework.Stagegate {
	return framework.StartStagegate(h.t, framework.WithName("single"), framework.WithDataDir(dataDir),
		framework.WithKeys(func(dir string) { signingtest.WriteKeyDir(h.t, dir) }),
		framework.WithConfig(fmt.Sprintf("logOrigin: %s\nregistries:\n- {host: %q, insecure: true}\n", signingtest.LogName, h.reg.Addr)),
		framework.WithToken(h.tokens[0], "client-00", "pipeline", "release"))
}

// The upgrade: a single replica's ledger becomes member 0's
// state. The single node serves promotions and stops; its data directory
// becomes member 0's (as its volume becomes the claim data-stagegate-0);
// all three members start with cluster.adopt: sg-0, the other two empty.
// Member 0 adopts the ledger, the others install it through a snapshot,
// and then: all serve the same ledger (the single node's entries byte for
// byte, equal size and root), its receipts verify and its checkpoint is
// consistent with the cluster's (`ledger verify --from`), its promotions
// admit on every member, new promotions work through any member, and
// `ledger verify` passes on every replica.
func TestUpgradeFromSingleReplica(t *testing.T) {
	work := t.TempDir()
	var (
		oldRefs     []string
		oldEntries  []ledger.Entry
		receiptFile = filepath.Join(work, "receipt.json")
		oldCPFile   = filepath.Join(work, "single-checkpoint.txt")
	)
	h := newHA(t, 3, withAdopt("sg-0"), withBeforeStart(func(h *ha) {
		solo := h.single(h.nodes[0].DataDir)
		var last []byte
		for range 6 {
			ref := must(h.pushImage("app"))
			code, b, err := doAt(h, solo, ref)
			if err != nil || code != http.StatusCreated {
				t.Fatalf("single node: promote: %d %v %s", code, err, b)
			}
			if len(oldRefs) == 0 {
				writeFile(t, receiptFile, b)
			}
			oldRefs, last = append(oldRefs, ref), b
		}
		var rc ledger.Receipt
		if err := json.Unmarshal(last, &rc); err != nil {
			t.Fatal(err)
		}
		writeFile(t, oldCPFile, []byte(rc.Checkpoint))
		if err := solo.Stop(); err != nil {
			t.Fatal(err)
		}
		l, err := ledger.Open(filepath.Join(h.nodes[0].DataDir, "ledger.db"), ledger.WithReadOnly())
		if err != nil {
			t.Fatal(err)
		}
		oldEntries, err = l.Entries(0, 100)
		l.Close()
		if err != nil || len(oldEntries) != len(oldRefs) {
			t.Fatalf("single node's ledger: %d entries, %v", len(oldEntries), err)
		}
		// The operator's check before the upgrade (README): member 0's
		// own config passes, a joining member's is refused, and neither
		// writes anything (the adoption below still happens).
		out, stderr, err := h.nodes[0].Run(t, "cluster", "check-adopt", "--config", h.nodes[0].ConfigPath)
		if want := fmt.Sprintf("member sg-0 can adopt %s: %d entries verify", filepath.Join(h.nodes[0].DataDir, "ledger.db"), len(oldRefs)); err != nil || !strings.Contains(out, want) {
			t.Fatalf("cluster check-adopt on member 0: %v\n%s%s\nwant %q", err, out, stderr, want)
		}
		_, stderr, err = h.nodes[1].Run(t, "cluster", "check-adopt", "--config", h.nodes[1].ConfigPath, "--ledger", filepath.Join(h.nodes[0].DataDir, "ledger.db"))
		if err == nil || !strings.Contains(stderr, "this is member sg-1's config, and cluster.adopt names sg-0") {
			t.Fatalf("cluster check-adopt with member 1's config: %v\n%s", err, stderr)
		}
	}))

	if lead := h.leader(1); lead != 0 {
		t.Fatalf("leader is %s: only the adopting member can lead the first election", h.ids[lead])
	}
	for i := range h.nodes {
		got := h.entries(i)
		if len(got) != len(oldEntries) {
			t.Fatalf("%s holds %d entries, the single node had %d", h.ids[i], len(got), len(oldEntries))
		}
		for j := range got {
			if !bytes.Equal(canonical(t, got[j]), canonical(t, oldEntries[j])) {
				t.Fatalf("%s: entry %d differs from the single node's", h.ids[i], j)
			}
		}
		for _, ref := range oldRefs {
			h.mustAdmit(i, ref, true)
		}
	}

	// New promotions, through every member (followers forward them).
	var newRefs []string
	for i := range h.nodes {
		ref := must(h.pushImage("app"))
		h.mustPromote(i, ref)
		newRefs = append(newRefs, ref)
	}
	want := uint64(len(oldEntries) + len(newRefs))
	var cps []string
	h.waitFor("every member at the same size", func() bool {
		cps = cps[:0]
		for i := range h.nodes {
			var st clusterStatus
			h.get(i, "/v1/cluster", &st)
			if st.Members[i].LedgerSize != want {
				return false
			}
			var cp string
			h.get(i, "/v1/ledger/checkpoint", &cp)
			cps = append(cps, cp)
		}
		return true
	})
	for i, cp := range cps {
		if cp != cps[0] {
			t.Fatalf("%s's checkpoint at size %d differs from %s's:\n%s\n%s", h.ids[i], want, h.ids[0], cp, cps[0])
		}
	}
	for i := range h.nodes {
		for _, ref := range newRefs {
			h.mustAdmit(i, ref, true)
		}
	}

	keys := h.nodes[0].KeysDir
	run := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, h.nodes[0].Bin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("stagegate %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	if out := run("receipt", "verify", receiptFile, "--key", filepath.Join(keys, "cosign.pub"), "--log-key", filepath.Join(keys, "log.pub")); !strings.Contains(out, "receipt verified") {
		t.Fatalf("receipt verify: %s", out)
	}
	for i, sg := range h.nodes {
		if err := sg.Stop(); err != nil {
			t.Fatalf("%s: %v", h.ids[i], err)
		}
	}
	for i, sg := range h.nodes {
		h.ledgerVerify(i)
		// The single node's last checkpoint is a prefix of every replica's tree.
		run("ledger", "verify", "--config", sg.ConfigPath, "--from", oldCPFile)
	}
}

// Adoption refuses what would make two ledgers, changing nothing: the
// adopting member when another already has cluster state, and a joining
// member that holds a ledger of its own.
func TestUpgradeRefusesTwoLedgers(t *testing.T) {
	h := newHA(t, 3)
	h.mustPromote(0, must(h.pushImage("app")))
	solo := h.single(filepath.Join(t.TempDir(), "single"))
	if code, b, err := doAt(h, solo, must(h.pushImage("solo"))); err != nil || code != http.StatusCreated {
		t.Fatalf("single node: promote: %d %v %s", code, err, b)
	}
	if err := solo.Stop(); err != nil {
		t.Fatal(err)
	}
	soloLedger, err := os.ReadFile(filepath.Join(solo.DataDir, "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}

	// Member 0 is replaced by the single node's data, with adopt set on it,
	// while the others run the cluster they formed without that ledger.
	lead := h.leader(0)
	m := (lead + 1) % 3
	if err := h.nodes[m].Stop(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(h.nodes[m].DataDir); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(h.nodes[m].DataDir, "ledger.db"), soloLedger)
	setAdopt(t, h.nodes[m].ConfigPath, h.ids[m])
	p := h.nodes[m].Spawn()
	if err := waitExit(p); err == nil {
		t.Fatalf("%s adopted a ledger while the others have cluster state", h.ids[m])
	}
	if out := p.Tail(8 << 10); !strings.Contains(out, "already has cluster state") {
		t.Fatalf("%s refused without saying why:\n%s", h.ids[m], out)
	}
	if _, err := os.Stat(filepath.Join(h.nodes[m].DataDir, "raft", "snapshots")); err == nil {
		entries, _ := os.ReadDir(filepath.Join(h.nodes[m].DataDir, "raft", "snapshots"))
		if len(entries) > 0 {
			t.Fatalf("the refused adoption wrote a snapshot")
		}
	}

	// The same member, told that another member adopts, refuses to join
	// with a ledger of its own.
	setAdopt(t, h.nodes[m].ConfigPath, h.ids[lead])
	p = h.nodes[m].Spawn()
	if err := waitExit(p); err == nil {
		t.Fatalf("%s joined holding a ledger of its own", h.ids[m])
	}
	if out := p.Tail(8 << 10); !strings.Contains(out, "holds a ledger of 1 entries of its own") {
		t.Fatalf("%s refused without saying why:\n%s", h.ids[m], out)
	}
}

// waitExit waits for a serve expected to refuse to start; the bound only
// stops a broken test.
func waitExit(p *process.Process) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	err := p.Wait(ctx)
	if ctx.Err() != nil {
		p.Kill()
		return nil // still running: it did not refuse
	}
	return err
}

// setAdopt sets cluster.adopt in the config file at path.
func setAdopt(t *testing.T, path, id string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg["cluster"].(map[string]any)["adopt"] = id
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, out)
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
