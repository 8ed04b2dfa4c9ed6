package reliability

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/test/e2e/framework"
)

const concurrentClients = 100

// result is one API answer.
type result struct {
	code int
	body []byte
	err  error
}

// all runs fn(i) for i in [0, n) at once (released together) and returns
// the answers by i.
func all(n int, fn func(i int) (int, []byte, error)) []result {
	out := make([]result, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			out[i].code, out[i].body, out[i].err = fn(i)
		})
	}
	close(start)
	wg.Wait()
	return out
}

// admissionWatch sends admission reviews until stopped: for digests whose
// promotion was acknowledged (which must be allowed), for the contested
// digest (which may go either way) and for a digest never promoted (which
// must be denied). Every answer must be well formed.
type admissionWatch struct {
	e         *env
	contested atomic.Pointer[string]
	unknown   string

	mu    sync.Mutex
	acked []string

	stop    chan struct{}
	wg      sync.WaitGroup
	reviews atomic.Int64
	errs    atomic.Int64
}

func (e *env) watchAdmission(workers int, unknown string) *admissionWatch {
	w := &admissionWatch{e: e, unknown: unknown, stop: make(chan struct{})}
	for n := range workers {
		w.wg.Go(func() { w.run(uint64(n)) })
	}
	return w
}

func (w *admissionWatch) ack(refs ...string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.acked = append(w.acked, refs...)
}

func (w *admissionWatch) run(seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 1))
	for i := 0; ; i++ {
		select {
		case <-w.stop:
			return
		default:
		}
		var ref string
		var want *bool
		allowed, denied := true, false
		w.mu.Lock()
		switch c := w.contested.Load(); {
		case i%3 == 0 && c != nil:
			ref = *c
		case i%3 == 1 || len(w.acked) == 0:
			ref, want = w.unknown, &denied
		default:
			ref, want = w.acked[rng.IntN(len(w.acked))], &allowed
		}
		w.mu.Unlock()
		resp, err := w.e.admit("dev", ref)
		w.reviews.Add(1)
		if err == nil && want != nil && resp.Allowed != *want {
			err = fmt.Errorf("allowed %v, want %v (%v)", resp.Allowed, *want, resp.Result)
		}
		if err != nil {
			if w.errs.Add(1) <= 10 {
				w.e.t.Errorf("admission of %s: %v", ref, err)
			}
		}
	}
}

// finish stops the watchers and checks that they ran.
func (w *admissionWatch) finish(t *testing.T) {
	close(w.stop)
	w.wg.Wait()
	t.Logf("%d admission reviews during the writes, %d bad answers", w.reviews.Load(), w.errs.Load())
	if w.reviews.Load() == 0 {
		t.Error("no admission review ran during the writes")
	}
}

// TestConcurrentWrites floods one server with simultaneous promotions and
// revocations while admission reviews run, and checks the ledger's
// serialisation: one entry per digest and stage, one entry per distinct
// digest, a promotion/revocation history that alternates, a final state that
// is the replay of that history, and admission answers that never see a
// half-written state.
func TestConcurrentWrites(t *testing.T) {
	reg := framework.StartRegistry(t)
	e := newEnv(t, reg, withTokens(concurrentClients))
	e.sg.Start()
	unknown := e.mustPush("concurrency/unknown")
	watch := e.watchAdmission(4, unknown)

	t.Run("identical promotions make one entry", func(t *testing.T) {
		ref := e.mustPush("concurrency/same")
		before := e.checkpoint().Size
		res := all(concurrentClients, func(i int) (int, []byte, error) { return e.promote(e.tokens[i], ref) })
		var created, existing int
		var leaf []byte
		for i, r := range res {
			if r.err != nil {
				t.Fatalf("client %d: %v", i, r.err)
			}
			switch r.code {
			case http.StatusCreated:
				created++
			case http.StatusOK:
				existing++
			default:
				t.Fatalf("client %d: %d %s", i, r.code, r.body)
			}
			rc, _, err := e.receipt(r.body)
			if err != nil {
				t.Fatalf("client %d: receipt: %v", i, err)
			}
			got := canonical(t, rc.Entry)
			if leaf == nil {
				leaf = got
			} else if !bytes.Equal(got, leaf) {
				t.Fatalf("client %d got another entry:\n%s\nwant\n%s", i, got, leaf)
			}
		}
		if created != 1 || existing != concurrentClients-1 {
			t.Errorf("%d created and %d existing, want 1 and %d", created, existing, concurrentClients-1)
		}
		if after := e.checkpoint().Size; after != before+1 {
			t.Errorf("ledger grew from %d to %d, want one entry", before, after)
		}
		watch.ack(ref)
	})

	t.Run("distinct promotions make one entry each", func(t *testing.T) {
		refs := e.pushMany("concurrency/distinct", concurrentClients)
		before := e.checkpoint().Size
		res := all(concurrentClients, func(i int) (int, []byte, error) { return e.promote(e.tokens[i], refs[i]) })
		seen := map[uint64]int{}
		for i, r := range res {
			if r.err != nil || r.code != http.StatusCreated {
				t.Fatalf("client %d: %d %v %s", i, r.code, r.err, r.body)
			}
			rc, _, err := e.receipt(r.body)
			if err != nil {
				t.Fatalf("client %d: receipt: %v", i, err)
			}
			if rc.Entry.Digest != digestOf(refs[i]) {
				t.Errorf("client %d: receipt for %s, promoted %s", i, rc.Entry.Digest, refs[i])
			}
			if j, dup := seen[rc.Entry.Index]; dup {
				t.Errorf("clients %d and %d both got index %d", j, i, rc.Entry.Index)
			}
			seen[rc.Entry.Index] = i
			if rc.Entry.Index < before || rc.Entry.Index >= before+concurrentClients {
				t.Errorf("client %d: index %d outside [%d, %d)", i, rc.Entry.Index, before, before+concurrentClients)
			}
		}
		if after := e.checkpoint().Size; after != before+concurrentClients {
			t.Errorf("ledger grew from %d to %d, want %d entries", before, after, concurrentClients)
		}
		watch.ack(refs...)
	})

	t.Run("interleaved promotions and revocations replay to the final state", func(t *testing.T) {
		const clients, ops = 20, 10
		ref := e.mustPush("concurrency/contested")
		digest := digestOf(ref)
		if code, body, err := e.promote(e.tokens[0], ref); err != nil || code != http.StatusCreated {
			t.Fatalf("promote: %d %v %s", code, err, body)
		}
		watch.contested.Store(&ref)
		var mu sync.Mutex
		created := map[uint64]bool{}
		res := all(clients, func(c int) (int, []byte, error) {
			rng := rand.New(rand.NewPCG(uint64(c), 2))
			for range ops {
				var code int
				var body []byte
				var err error
				if rng.IntN(2) == 0 {
					code, body, err = e.promote(e.tokens[c], ref)
				} else {
					code, body, err = e.revoke(e.tokens[c], digest)
				}
				if err != nil || (code != http.StatusCreated && code != http.StatusOK) {
					return code, body, err
				}
				rc, _, err := e.receipt(body)
				if err != nil {
					return code, body, err
				}
				if code == http.StatusCreated {
					mu.Lock()
					created[rc.Entry.Index] = true
					mu.Unlock()
				}
			}
			return http.StatusOK, nil, nil
		})
		for c, r := range res {
			if r.err != nil || r.code != http.StatusOK {
				t.Fatalf("client %d: %d %v %s", c, r.code, r.err, r.body)
			}
		}

		// Replay the ledger's entries for the digest in order.
		var hist []ledger.Entry
		for _, en := range e.entries() {
			if en.Digest == digest {
				hist = append(hist, en)
			}
		}
		active := false
		for i, en := range hist {
			want := ledger.KindPromotion
			if i%2 == 1 {
				want = ledger.KindRevocation
			}
			if en.Kind != want {
				t.Fatalf("entry %d is a %s after %d entries for the digest: promotions and revocations must alternate", en.Index, en.Kind, i)
			}
			if i > 0 && !created[en.Index] {
				t.Errorf("entry %d was written but no client got a 201 for it", en.Index)
			}
			active = en.Kind == ledger.KindPromotion
		}
		if len(hist) != len(created)+1 {
			t.Errorf("%d entries for the digest, %d acknowledged as created (+1 initial)", len(hist), len(created))
		}

		var view struct {
			States  map[string][]ledger.State `json:"states"`
			History []ledger.Entry            `json:"history"`
		}
		e.get("/v1/images/"+digest, &view)
		if len(view.History) != len(hist) {
			t.Fatalf("image view has %d history entries, ledger %d", len(view.History), len(hist))
		}
		for i := range hist {
			if view.History[i].Index != hist[i].Index {
				t.Errorf("image view history[%d] is entry %d, ledger order has %d", i, view.History[i].Index, hist[i].Index)
			}
		}
		dev := view.States["dev"]
		if len(dev) != 1 || dev[0].Active() != active {
			t.Fatalf("state in dev is %+v; replaying %d entries gives active=%v", dev, len(hist), active)
		}
		resp, err := e.admit("dev", ref)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Allowed != active {
			t.Errorf("admission allowed=%v, replayed state active=%v: %v", resp.Allowed, active, resp.Result)
		}
		t.Logf("%d entries for the contested digest, final state active=%v", len(hist), active)
	})

	watch.finish(t)
	if err := e.sg.Stop(); err != nil {
		t.Fatalf("serve exited with %v after SIGTERM", err)
	}
	e.mustLedgerVerify()
}
