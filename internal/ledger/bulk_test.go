package ledger_test

import (
	"testing"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/ledger/ledgertest"
)

func TestAppendEntries(t *testing.T) {
	l, v := ledgertest.New(t)
	mustAppend(t, l, promotion("reg/app", digest(0), "dev"))
	var batch []*ledger.Entry
	for i := 1; i <= 50; i++ {
		e := promotion("reg/app", digest(i), "dev")
		e.Index = uint64(i)
		batch = append(batch, &e)
	}
	if err := l.AppendEntries(batch); err != nil {
		t.Fatal(err)
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

	// A wrong index anywhere stores nothing.
	bad := promotion("reg/app", digest(99), "dev")
	bad.Index = 52 // should be 51
	if err := l.AppendEntries([]*ledger.Entry{&bad}); err == nil {
		t.Fatal("an entry with the wrong index was accepted")
	}
	if size, _ := l.Size(); size != 51 {
		t.Fatalf("a refused batch changed the size to %d", size)
	}
}
