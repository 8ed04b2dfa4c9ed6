package ledger_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/ledger/ledgertest"
)

// fileState reads the state straight from the file, past the cache.
func fileState(t *testing.T, l *ledger.Ledger, d, stage string) (ledger.State, bool) {
	t.Helper()
	var st ledger.State
	var ok bool
	if err := l.View(func(r ledger.Reader) error {
		var err error
		st, ok, err = r.State(d, stage)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return st, ok
}

// TestStateCacheFollowsWrites looks every digest up before and after each
// kind of write, so that a cached record that outlived its commit would
// show as a stale answer.
func TestStateCacheFollowsWrites(t *testing.T) {
	const repo = "registry.example.com/app"
	index, plat := digest(1), digest(2)
	steps := []struct {
		name   string
		write  ledger.Entry
		digest string
		stage  string
		active bool
	}{
		{"promote index with platform", promotion(repo, index, "dev", plat), plat, "dev", true},
		{"revoke index reaches platform", revocation(repo, index, "dev"), plat, "dev", false},
		{"promote again", promotion(repo, index, "dev", plat), index, "dev", true},
		{"promote other stage", promotion(repo, index, "prod", plat), index, "prod", true},
		{"revoke all stages", revocation(repo, index, ledger.AllStages), index, "prod", false},
	}
	for _, size := range []int{ledger.DefaultStateCache, 1} {
		t.Run(fmt.Sprintf("cache %d", size), func(t *testing.T) {
			l, _ := ledgertest.New(t, ledger.WithStateCache(size))
			// Cache "nothing known" first: a promotion must replace it.
			if _, ok, err := l.State(index, "dev"); err != nil || ok {
				t.Fatalf("State before any entry: ok=%v err=%v", ok, err)
			}
			for _, s := range steps {
				for _, d := range []string{index, plat} {
					_, _, _ = l.State(d, s.stage) // warm the cache with the old answer
				}
				mustAppend(t, l, s.write)
				st, ok, err := l.State(s.digest, s.stage)
				if err != nil || !ok {
					t.Fatalf("%s: State: ok=%v err=%v", s.name, ok, err)
				}
				if st.Active() != s.active {
					t.Fatalf("%s: active=%v, want %v (%+v)", s.name, st.Active(), s.active, st)
				}
				if want, _ := fileState(t, l, s.digest, s.stage); want.Active() != st.Active() || want.PromotedIndex != st.PromotedIndex || want.RevokedIndex != st.RevokedIndex {
					t.Fatalf("%s: cached %+v, file %+v", s.name, st, want)
				}
			}
		})
	}
}

func TestStateCacheImporter(t *testing.T) {
	l, _ := ledgertest.New(t)
	d := digest(7)
	if _, ok, _ := l.State(d, "dev"); ok {
		t.Fatal("known before any entry")
	}
	e := promotion("registry.example.com/app", d, "dev")
	e.Time = t0
	bulkLoad(t, l, nil, &e)
	if st, ok, _ := l.State(d, "dev"); !ok || !st.Active() {
		t.Fatalf("after an Importer: ok=%v %+v", ok, st)
	}
}

// TestStateCacheLabelsAreCopies: a caller that edits the labels it got must
// not change what the next caller is told.
func TestStateCacheLabelsAreCopies(t *testing.T) {
	l, _ := ledgertest.New(t)
	d := digest(3)
	mustAppend(t, l, promotion("registry.example.com/app", d, "dev"))
	st, _, _ := l.State(d, "dev")
	st.Labels["team"] = "mallory"
	again, _, _ := l.State(d, "dev")
	if again.Labels["team"] != "a" {
		t.Fatalf("labels after a caller's edit: %v", again.Labels)
	}
}

// TestStateCacheConcurrent runs look-ups of every digest while promotions
// and revocations of them commit, then checks that the cache agrees with
// the file for every digest. Run with -race to check the locking too.
func TestStateCacheConcurrent(t *testing.T) {
	l, _ := ledgertest.New(t, ledger.WithStateCache(8))
	const n = 24
	stop := make(chan struct{})
	var readers sync.WaitGroup
	for r := range 4 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for i := r; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, _, err := l.State(digest(i%n), "dev"); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	var writers sync.WaitGroup
	for i := range n {
		writers.Add(1)
		go func() {
			defer writers.Done()
			if _, err := l.Append(fixed(promotion("registry.example.com/app", digest(i), "dev"))); err != nil {
				t.Error(err)
			}
			if i%3 == 0 {
				if _, err := l.Append(fixed(revocation("registry.example.com/app", digest(i), "dev"))); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	writers.Wait()
	close(stop)
	readers.Wait()
	for i := range n {
		st, ok, err := l.State(digest(i), "dev")
		want, wok := fileState(t, l, digest(i), "dev")
		if err != nil || ok != wok || st.Active() != want.Active() || st.Active() != (i%3 != 0) {
			t.Errorf("digest %d: cached ok=%v active=%v, file ok=%v active=%v (err %v)", i, ok, st.Active(), wok, want.Active(), err)
		}
	}
}
