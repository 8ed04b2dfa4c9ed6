package ledger_test

import (
	"errors"
	"sync/atomic"
	"testing"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/ledger/ledgertest"
)

func TestImporter(t *testing.T) {
	l, v := ledgertest.New(t)
	var batch []*ledger.Entry
	for i := 0; i <= 50; i++ {
		e := promotion("reg/app", digest(i), "dev")
		e.Index = uint64(i)
		batch = append(batch, &e)
	}
	var checked atomic.Int64 // check runs on the import's workers
	bulkLoad(t, l, func(ledger.Entry) error { checked.Add(1); return nil }, batch...)
	if checked := checked.Load(); checked != 51 {
		t.Fatalf("check ran on %d entries, want 51", checked)
	}
	if size, _ := l.Size(); size != 51 {
		t.Fatalf("size %d, want 51", size)
	}
	if err := l.Verify(v, nil); err != nil {
		t.Fatalf("bulk-loaded ledger does not verify: %v", err)
	}
	st, ok, err := l.State(digest(37), "dev")
	if err != nil || !ok || !st.Active() || st.PromotedIndex != 37 {
		t.Fatalf("state of a bulk entry: %+v %v %v", st, ok, err)
	}
	rc, err := l.Receipt(20)
	if err != nil {
		t.Fatal(err)
	}
	if err := ledger.VerifyReceipt(rc, v, nil); err != nil {
		t.Fatalf("receipt of a bulk entry: %v", err)
	}
	if _, err := l.NewImporter(nil); !errors.Is(err, ledger.ErrNotEmpty) {
		t.Fatalf("NewImporter on a non-empty ledger: %v, want ErrNotEmpty", err)
	}
}

// TestImporterRefuses: a refused entry anywhere, in the first chunk or a
// later one, names that entry and leaves the ledger empty.
func TestImporterRefuses(t *testing.T) {
	const n = 12_000 // more than one write transaction
	refuse := errors.New("refused")
	tests := []struct {
		name  string
		bad   uint64
		index func(i uint64) uint64 // the Index field of entry i
		check func(ledger.Entry) error
	}{
		{"wrong index", 5, func(i uint64) uint64 {
			if i == 5 {
				return 6
			}
			return i
		}, nil},
		{"check fails in a later chunk", n - 1, func(i uint64) uint64 { return i }, func(e ledger.Entry) error {
			if e.Index == n-1 {
				return refuse
			}
			return nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, _ := ledgertest.New(t)
			im, err := l.NewImporter(tt.check)
			if err != nil {
				t.Fatal(err)
			}
			var addErr error
			for i := range uint64(n) {
				e := promotion("reg/app", digest(int(i)), "dev")
				e.Index = tt.index(i)
				if addErr = im.Add(&e); addErr != nil {
					break
				}
			}
			err = errors.Join(addErr, im.Close())
			var verr *ledger.VerifyError
			if !errors.As(err, &verr) || verr.Index != int64(tt.bad) {
				t.Fatalf("import: %v, want a *VerifyError for entry %d", err, tt.bad)
			}
			if size, _ := l.Size(); size != 0 {
				t.Fatalf("a refused import left size %d", size)
			}
			if es, _ := l.Entries(0, 1); len(es) != 0 {
				t.Fatal("a refused import left entries")
			}
		})
	}
}
