package ledger_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/ledger/ledgertest"
)

const compactEntries = 30

// churned writes compactEntries entries one commit each, which leaves
// superseded copies of pages (entries among them) in free pages, and
// returns the ledger still open.
func churned(t *testing.T, opts ...ledger.Option) (*ledger.Ledger, note.Verifier) {
	t.Helper()
	s, v := ledgertest.Keys(t, ledgertest.Origin)
	l, err := ledger.Open(filepath.Join(t.TempDir(), "ledger.db"), append([]ledger.Option{ledger.WithSigner(s)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	for i := range compactEntries {
		mustAppend(t, l, promotion("reg/app", digest(i), "dev"))
	}
	return l, v
}

// copies counts how often each entry's bytes are in the file; compacted
// reports whether every entry is there exactly once.
func copies(t *testing.T, path string) (compacted bool) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	compacted = true
	for i := range compactEntries {
		switch c := bytes.Count(b, []byte(fmt.Sprintf(`{"index":%d,`, i))); {
		case c == 0:
			t.Fatalf("entry %d is not in the file", i)
		case c > 1:
			compacted = false
		}
	}
	return compacted
}

func verifies(t *testing.T, path string, v note.Verifier) {
	t.Helper()
	l, err := ledger.Open(path, ledger.WithReadOnly())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Verify(v, nil); err != nil {
		t.Fatalf("does not verify: %v", err)
	}
	if size, _ := l.Size(); size != compactEntries {
		t.Fatalf("size %d, want %d", size, compactEntries)
	}
}

// TestCloseCompactsOnlyWhenAsked: a plain Close leaves the file exactly as
// it was (stale copies of entries included); WithCompactOnClose compacts
// it when at least its threshold is free, so that every entry is stored
// once, and the ledger still verifies.
func TestCloseCompactsOnlyWhenAsked(t *testing.T) {
	tests := map[string]struct {
		opts []ledger.Option
		// readOnly: Close a read-only handle opened with opts instead; a
		// reader never rewrites the file, whatever it is told.
		readOnly bool
		want     bool // compacted
	}{
		"no option":         {want: false},
		"threshold reached": {opts: []ledger.Option{ledger.WithCompactOnClose(1)}, want: true},
		"threshold not met": {opts: []ledger.Option{ledger.WithCompactOnClose(1 << 40)}, want: false},
		"threshold zero":    {opts: []ledger.Option{ledger.WithCompactOnClose(0)}, want: true},
		"read-only":         {opts: []ledger.Option{ledger.WithCompactOnClose(0)}, readOnly: true, want: false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var l *ledger.Ledger
			var v note.Verifier
			if tc.readOnly {
				w, wv := churned(t)
				if err := w.Close(); err != nil {
					t.Fatal(err)
				}
				r, err := ledger.Open(w.Path(), append([]ledger.Option{ledger.WithReadOnly()}, tc.opts...)...)
				if err != nil {
					t.Fatal(err)
				}
				l, v = r, wv
			} else {
				l, v = churned(t, tc.opts...)
			}
			path := l.Path()
			before, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if copies(t, path) {
				t.Fatal("the churned file has no stale copies: the test shows nothing")
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			if got := copies(t, path); got != tc.want {
				t.Fatalf("compacted = %v after Close, want %v", got, tc.want)
			}
			if after, _ := os.ReadFile(path); !tc.want && !bytes.Equal(before, after) {
				t.Fatal("Close changed the file without compacting it")
			}
			verifies(t, path, v)
		})
	}
}

// TestCompact is `ledger compact`: it compacts a closed ledger, which
// still verifies, and refuses one a writer holds or one that is cut.
func TestCompact(t *testing.T) {
	l, v := churned(t)
	path := l.Path()
	if err := ledger.Compact(path); !errors.Is(err, ledger.ErrLocked) {
		t.Fatalf("Compact of an open ledger: %v, want ErrLocked", err)
	}
	l.Close()
	if err := ledger.Compact(path); err != nil {
		t.Fatal(err)
	}
	if !copies(t, path) {
		t.Fatal("entries are stored more than once after Compact")
	}
	verifies(t, path, v)
	if _, err := os.Stat(path + ".compact"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the working copy is left behind: %v", err)
	}

	b, _ := os.ReadFile(path)
	cut := filepath.Join(t.TempDir(), "ledger.db")
	os.WriteFile(cut, b[:len(b)/2/4096*4096], 0o600)
	if err := ledger.Compact(cut); !errors.Is(err, ledger.ErrTruncated) {
		t.Fatalf("Compact of a cut file: %v, want ErrTruncated", err)
	}
}

// BenchmarkCompact measures what a compaction costs per MB of ledger, the
// figure behind serve's WithCompactOnClose threshold.
func BenchmarkCompact(b *testing.B) {
	s, _ := ledgertest.Keys(b, ledgertest.Origin)
	path := filepath.Join(b.TempDir(), "ledger.db")
	l, err := ledger.Open(path, ledger.WithSigner(s), ledger.WithNoSync())
	if err != nil {
		b.Fatal(err)
	}
	for i := range 5000 {
		mustAppend(b, l, promotion("reg/app", digest(i), "dev"))
	}
	l.Close()
	fi, _ := os.Stat(path)
	b.SetBytes(fi.Size())
	for b.Loop() {
		if err := ledger.Compact(path); err != nil {
			b.Fatal(err)
		}
	}
}
