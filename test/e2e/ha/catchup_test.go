package ha

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/policy"
	"github.com/stagegate/stagegate/internal/promotion"
	"github.com/stagegate/stagegate/internal/registry"
	"github.com/stagegate/stagegate/internal/signing"
	"github.com/stagegate/stagegate/internal/signing/signingtest"
)

// catchUpEntriesEnv sets the size of TestEmptyDiskRejoinsThroughSnapshot's
// ledger; make soak runs it at 10^5.
const catchUpEntriesEnv = "STAGEGATE_HA_CATCHUP_ENTRIES"

// Done when: "Empty disk. Wipe a replica's data and restart it: it
// rejoins, catches up through a snapshot, verifies, and then serves. Test
// this at 10^5 entries too." The ledger is written ahead (real signed
// promotions, imported as `ledger import` does) and adopted by member 0,
// so the cluster starts at that size: the other two install it through a
// snapshot at once. Then a follower is wiped and restarted: the leader's
// log begins after the adopted snapshot, so it too can only catch up
// through a snapshot. It reports ready holding the leader's entries, its
// ledger passes `ledger verify`, and the time to ready is logged (a
// figure, not asserted).
func TestEmptyDiskRejoinsThroughSnapshot(t *testing.T) {
	n := 3000
	if v := os.Getenv(catchUpEntriesEnv); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			t.Fatalf("%s=%q: want a positive number of entries", catchUpEntriesEnv, v)
		}
	}
	var built time.Duration
	var spawned time.Time // the hook runs right before the members start
	h := newHA(t, 3, withAdopt("sg-0"), withReadyTimeout(30*time.Minute), withBeforeStart(func(h *ha) {
		start := time.Now()
		writeLedger(t, filepath.Join(h.nodes[0].DataDir, "ledger.db"), n)
		built = time.Since(start)
		spawned = time.Now()
	}))
	t.Logf("FIGURE ledger of %d entries written in %.1f s; then the cluster formed (member 0 verified and adopted it, the others installed it as a snapshot) in %.1f s from start to all ready",
		n, built.Seconds(), time.Since(spawned).Seconds())
	if lead := h.leader(0); lead != 0 {
		t.Fatalf("leader is %s, want the adopting sg-0", h.ids[lead])
	}
	for i := 1; i < 3; i++ {
		if out := h.nodes[i].Process().Output(); !strings.Contains(out, "Installed remote snapshot") {
			t.Fatalf("%s caught up without installing the adopted snapshot", h.ids[i])
		}
	}

	const f = 2
	if err := h.nodes[f].Stop(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(h.nodes[f].DataDir); err != nil {
		t.Fatal(err)
	}
	var refs []string
	for range 3 {
		ref := must(h.pushImage("app"))
		h.mustPromote(0, ref)
		refs = append(refs, ref)
	}
	want := uint64(n + len(refs))
	start := time.Now()
	p := h.nodes[f].Start() // returns once /readyz says ready
	took := time.Since(start)
	var st clusterStatus
	h.get(f, "/v1/cluster", &st)
	if got := st.Members[f].LedgerSize; got != want {
		t.Fatalf("%s reported ready holding %d entries, the leader %d", h.ids[f], got, want)
	}
	if !strings.Contains(p.Output(), "Installed remote snapshot") {
		t.Fatalf("%s rejoined without a snapshot", h.ids[f])
	}
	var cps [3]string
	for i := range h.nodes {
		h.get(i, "/v1/ledger/checkpoint", &cps[i])
	}
	if cps[f] != cps[0] || cps[1] != cps[0] {
		t.Fatalf("checkpoints differ at size %d:\n%s\n%s\n%s", want, cps[0], cps[1], cps[f])
	}
	for _, ref := range refs {
		h.mustAdmit(f, ref, true)
	}
	t.Logf("FIGURE empty-disk catch-up through a snapshot: %d entries, %.1f s from start to ready", want, took.Seconds())
	if err := h.nodes[f].Stop(); err != nil {
		t.Fatal(err)
	}
	h.ledgerVerify(f)
}

// writeLedger writes a single node's ledger of n promotions at path with
// the test keys, signed in parallel and imported (every attestation
// checked) without fsync.
func writeLedger(t *testing.T, path string, n int) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	l, err := ledger.Open(path, ledger.WithSigner(signingtest.LogSigner(t)), ledger.WithNoSync())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	imp, err := l.NewImporter(signing.CheckEntry(signingtest.Verifier(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer imp.Close()
	s := signingtest.Signer(t)
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const chunk = 4096
	for lo := 0; lo < n; lo += chunk {
		batch := make([]*ledger.Entry, min(chunk, n-lo))
		errs := make([]error, runtime.NumCPU())
		var wg sync.WaitGroup
		for w := range errs {
			wg.Go(func() {
				for i := w; i < len(batch) && errs[w] == nil; i += len(errs) {
					idx := lo + i
					batch[i], errs[w] = promotion.PromotionEntry(s, uint64(idx), promotion.Promoted{
						Image: registry.Resolved{Repository: fmt.Sprintf("registry.test/bulk/svc-%03d", idx%500), Digest: fmt.Sprintf("sha256:%064x", idx)},
						Stage: "dev", Reason: "bulk", Time: base.Add(time.Duration(idx) * time.Millisecond),
						Requester: policy.Identity{Subject: "client-00", Groups: []string{"pipeline"}},
					})
				}
			})
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		if err := imp.Add(batch...); err != nil {
			t.Fatal(err)
		}
	}
	if err := imp.Close(); err != nil {
		t.Fatal(err)
	}
}
