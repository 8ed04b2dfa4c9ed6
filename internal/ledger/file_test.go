package ledger_test

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/ledger/ledgertest"
)

// closedLedger writes n promotions to a real file, closes it (which
// compacts it) and returns its path, its bytes and the log verifier.
func closedLedger(t *testing.T, n int) (string, []byte, ledgertestVerifier) {
	t.Helper()
	s, v := ledgertest.Keys(t, ledgertest.Origin)
	path := filepath.Join(t.TempDir(), "ledger.db")
	l, err := ledger.Open(path, ledger.WithSigner(s), ledger.WithNoSync())
	if err != nil {
		t.Fatal(err)
	}
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
	return path, b, v
}

// usedBytes reads bbolt's high-water mark the simple way, to know where
// the used pages end: the meta of page 0 or 1 with the higher txid (its
// pgid field times its page size). Both copies are valid in the fixture.
func usedBytes(b []byte) int {
	meta := func(off int) (txid, reach int) {
		m := b[off+16:]
		ps := int(binary.NativeEndian.Uint32(m[8:]))
		return int(binary.NativeEndian.Uint64(m[48:])), int(binary.NativeEndian.Uint64(m[40:])) * ps
	}
	tx0, r0 := meta(0)
	tx1, r1 := meta(int(binary.NativeEndian.Uint32(b[16+8:])))
	if tx1 > tx0 {
		return r1
	}
	return r0
}

type ledgertestVerifier = interface {
	Name() string
	KeyHash() uint32
	Verify(msg, sig []byte) bool
}

// TestOpenRefusesTruncatedFile cuts a real ledger file at several offsets
// and opens it as `ledger verify` (read-only) and `serve` (writable) do:
// each must fail with a sentinel error naming the problem, not a SIGBUS.
func TestOpenRefusesTruncatedFile(t *testing.T) {
	_, full, v := closedLedger(t, 200)
	const page = 4096
	reach := usedBytes(full)
	if reach < 8*page || reach > len(full) {
		t.Fatalf("fixture: pages reach %d of %d bytes", reach, len(full))
	}
	tests := map[string]struct {
		size int
		want error
		msg  string
	}{
		"inside meta page 0":    {size: 50, want: ledger.ErrCorrupt, msg: "no valid bbolt meta page"},
		"after meta page 0":     {size: 100, want: ledger.ErrTruncated, msg: "ledger.db is 100 bytes but its pages reach"},
		"inside meta page 1":    {size: page + 10, want: ledger.ErrTruncated, msg: "the file was truncated"},
		"after both meta pages": {size: 2 * page, want: ledger.ErrTruncated, msg: "the file was truncated"},
		"half":                  {size: reach / 2 / page * page, want: ledger.ErrTruncated, msg: "but its pages reach"},
		"last used page cut":    {size: reach - page, want: ledger.ErrTruncated, msg: "restore it from a backup"},
		"one byte short":        {size: reach - 1, want: ledger.ErrTruncated, msg: "`stagegate ledger import` a verified export"},
		"used pages only":       {size: reach},
		"whole file":            {size: len(full)},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			for _, mode := range []string{"read-only", "writable"} {
				path := filepath.Join(t.TempDir(), "ledger.db")
				if err := os.WriteFile(path, full[:tc.size], 0o600); err != nil {
					t.Fatal(err)
				}
				opts := []ledger.Option{ledger.WithNoSync()}
				if mode == "read-only" {
					opts = append(opts, ledger.WithReadOnly())
				}
				l, err := ledger.Open(path, opts...)
				if tc.want == nil {
					if err != nil {
						t.Fatalf("%s: Open: %v", mode, err)
					}
					if err := l.Verify(v, nil); err != nil {
						t.Errorf("%s: Verify: %v", mode, err)
					}
					l.Close()
					continue
				}
				if err == nil {
					l.Close()
					t.Fatalf("%s: Open of a file cut to %d of %d bytes succeeded", mode, tc.size, len(full))
				}
				if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
					t.Errorf("%s: Open: %v; want %v mentioning %q", mode, err, tc.want, tc.msg)
				}
				if fi, _ := os.Stat(path); fi.Size() != int64(tc.size) {
					t.Errorf("%s: Open changed the file to %d bytes", mode, fi.Size())
				}
			}
		})
	}
}
