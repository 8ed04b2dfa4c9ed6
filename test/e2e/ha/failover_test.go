package ha

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stagegate/stagegate/internal/ledger"
)

// ack is an acknowledged promotion: the receipt's entry, as the leaf bytes
// the tree hashes.
type ack struct {
	index  uint64
	leaf   []byte
	digest string
	at     time.Time // when the receipt arrived
}

// loader is 16 clients promoting distinct digests, each through the
// members in turn (a round-robin Service), retrying an unanswered or
// failed promotion of the same image at the next member, as a pipeline
// retries.
type loader struct {
	h       *ha
	down    []atomic.Bool
	mu      sync.Mutex
	acks    []ack
	retries atomic.Int64
	wg      sync.WaitGroup
}

func (h *ha) startLoad(ctx context.Context) *loader {
	l := &loader{h: h, down: make([]atomic.Bool, len(h.nodes))}
	for w := range clients {
		l.wg.Go(func() { l.work(ctx, w) })
	}
	return l
}

// firstAfter is when the first receipt after t arrived.
func (l *loader) firstAfter(t time.Time) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	var first time.Time
	for _, a := range l.acks {
		if a.at.After(t) && (first.IsZero() || a.at.Before(first)) {
			first = a.at
		}
	}
	return first
}

func (l *loader) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acks)
}

func (l *loader) work(ctx context.Context, w int) {
	h := l.h
	node := w % len(h.nodes)
	for ctx.Err() == nil {
		ref, err := h.pushImage("app")
		if err != nil {
			h.t.Errorf("client %d: push: %v", w, err)
			return
		}
		for ctx.Err() == nil {
			for l.down[node].Load() {
				node = (node + 1) % len(h.nodes)
			}
			code, body, err := h.do(ctx, node, http.MethodPost, "/v1/promotions", h.tokens[w],
				map[string]string{"image": ref, "stage": "dev", "reason": "ha test"})
			node = (node + 1) % len(h.nodes)
			if err == nil && (code == http.StatusCreated || code == http.StatusOK) {
				var rc ledger.Receipt
				if err := json.Unmarshal(body, &rc); err != nil {
					h.t.Errorf("client %d: receipt: %v", w, err)
					return
				}
				if err := ledger.VerifyReceipt(rc, h.logV, h.check); err != nil {
					h.t.Errorf("client %d: receipt of %s does not verify: %v", w, ref, err)
					return
				}
				l.mu.Lock()
				l.acks = append(l.acks, ack{index: rc.Entry.Index, leaf: canonical(h.t, rc.Entry), digest: rc.Entry.Digest, at: time.Now()})
				l.mu.Unlock()
				break
			}
			if err == nil && code < 500 {
				h.t.Errorf("client %d: promote %s: %d %s", w, ref, code, body)
				return
			}
			l.retries.Add(1)
			select { // a member is down or an election is under way
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
}

// Done when: SIGKILL the leader under load, more than once. Every
// acknowledged promotion is then present, byte-identical, on every
// replica, the killed ones restarted; a retried promotion was recorded
// once; equal sizes have equal checkpoints; `ledger verify` passes on
// each.
func TestLeaderKillUnderLoad(t *testing.T) {
	h := newHA(t, 3)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	l := h.startLoad(ctx)
	h.waitFor("the first promotions", func() bool { return l.count() >= 20 })
	for round := range 2 {
		alive := 0
		for i := range h.nodes {
			if !l.down[i].Load() {
				alive = i
				break
			}
		}
		lead := h.leader(alive)
		before := l.count()
		l.down[lead].Store(true)
		h.nodes[lead].Kill()
		killed := time.Now()
		t.Logf("round %d: killed the leader %s after %d acknowledged promotions", round, h.ids[lead], before)
		h.waitFor("promotions after the kill", func() bool { return l.count() >= before+20 })
		// Reported, not asserted: from the kill to the first receipt
		// that arrived after it.
		t.Logf("round %d: failover: first acknowledged promotion %v after the kill", round, l.firstAfter(killed).Sub(killed).Round(time.Millisecond))
		h.nodes[lead].Start() // ready only once caught up
		l.down[lead].Store(false)
	}
	stop()
	l.wg.Wait()
	if t.Failed() {
		return
	}
	t.Logf("%d acknowledged promotions, %d retried requests", l.count(), l.retries.Load())

	h.checkAcks(l)
	for i, sg := range h.nodes {
		if err := sg.Stop(); err != nil {
			t.Fatalf("%s: stop: %v", sg.Name, err)
		}
		h.ledgerVerify(i)
	}
}

// checkAcks waits until every member holds one ledger, then checks that
// every member's is byte-identical with equal checkpoints, and that every
// promotion l acknowledged is in it as acknowledged, recorded once.
func (h *ha) checkAcks(l *loader) {
	t := h.t
	t.Helper()
	// Converged: every member applied all it committed, at one size.
	var size uint64
	h.waitFor("every member at one size", func() bool {
		var st clusterStatus
		h.get(0, "/v1/cluster", &st)
		size = st.Members[0].LedgerSize
		for _, m := range st.Members {
			if m.Error != "" || m.LedgerSize != size || m.AppliedIndex < m.CommitIndex {
				return false
			}
		}
		return true
	})
	var want []ledger.Entry
	var wantCP string
	for i := range h.nodes {
		es := h.entries(i)
		var cp string
		h.get(i, "/v1/ledger/checkpoint", &cp)
		if uint64(len(es)) != size {
			t.Fatalf("%s holds %d entries, want %d", h.ids[i], len(es), size)
		}
		if i == 0 {
			want, wantCP = es, cp
			continue
		}
		if cp != wantCP {
			t.Fatalf("%s's checkpoint at size %d differs:\n%s\nwant\n%s", h.ids[i], size, cp, wantCP)
		}
		for j := range es {
			if !bytes.Equal(canonical(t, es[j]), canonical(t, want[j])) {
				t.Fatalf("entry %d differs between %s and %s", j, h.ids[i], h.ids[0])
			}
		}
	}
	promoted := map[string]int{}
	for _, e := range want {
		if e.Kind == ledger.KindPromotion {
			promoted[e.Digest]++
		}
	}
	for _, a := range l.acks {
		if a.index >= size || !bytes.Equal(canonical(t, want[a.index]), a.leaf) {
			t.Fatalf("acknowledged entry %d (%s) is not in the ledger as acknowledged", a.index, a.digest)
		}
		if promoted[a.digest] != 1 {
			t.Fatalf("%s was recorded %d times", a.digest, promoted[a.digest])
		}
	}
}
