package ledger_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/ledger/ledgertest"
)

// After a clean Close, every entry is stored exactly once in the file, so
// editing "the entry" in a copy of the file always edits the live one.
func TestCloseLeavesOneCopyOfEachEntry(t *testing.T) {
	s, v := ledgertest.Keys(t, ledgertest.Origin)
	path := filepath.Join(t.TempDir(), "ledger.db")
	l, err := ledger.Open(path, ledger.WithSigner(s))
	if err != nil {
		t.Fatal(err)
	}
	const n = 30
	for i := range n {
		mustAppend(t, l, promotion("reg/app", digest(i), "dev"))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if c := bytes.Count(b, []byte(fmt.Sprintf(`{"index":%d,`, i))); c != 1 {
			t.Fatalf("entry %d is stored %d times after Close", i, c)
		}
	}
	l, err = ledger.Open(path, ledger.WithReadOnly())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Verify(v, nil); err != nil {
		t.Fatalf("compacted ledger does not verify: %v", err)
	}
	if size, _ := l.Size(); size != n {
		t.Fatalf("size %d after compaction, want %d", size, n)
	}
}
