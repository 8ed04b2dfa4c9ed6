package ha

import (
	"os"
	"sync"
	"testing"
)

// Done when: a replica whose data is wiped rejoins, catches up, verifies,
// and only then reports ready. (Here it catches up by the log: with a
// few hundred entries the leader has not compacted it into a snapshot;
// installing a snapshot into an empty replica is internal/cluster's
// TestEmptyReplicaCatchesUpThroughSnapshot.)
func TestEmptyDiskRejoins(t *testing.T) {
	h := newHA(t, 3)
	refs := make([]string, 60)
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Go(func() {
			for i := w; i < len(refs); i += 6 {
				refs[i] = must(h.pushImage("app"))
				h.mustPromote(i%3, refs[i])
			}
		})
	}
	wg.Wait()
	lead := h.leader(0)
	f := (lead + 1) % 3
	if err := h.nodes[f].Stop(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(h.nodes[f].DataDir); err != nil {
		t.Fatal(err)
	}
	// More while it is gone.
	for range 5 {
		h.mustPromote(lead, must(h.pushImage("app")))
	}
	var st clusterStatus
	h.get(lead, "/v1/cluster", &st)
	want := st.Members[lead].LedgerSize

	h.nodes[f].Start() // returns once /readyz says ready
	var mine clusterStatus
	h.get(f, "/v1/cluster", &mine)
	if got := mine.Members[f].LedgerSize; got < want {
		t.Fatalf("%s reported ready holding %d entries, the leader had %d before it started", h.ids[f], got, want)
	}
	for _, ref := range refs {
		h.mustAdmit(f, ref, true)
	}
	if err := h.nodes[f].Stop(); err != nil {
		t.Fatal(err)
	}
	h.ledgerVerify(f)
}
