package ledger_test

import (
	"errors"
	"fmt"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/ledger/ledgertest"
)

// VerifyFrom checks that the ledger extends an earlier checkpoint and then
// only the entries after it: tampering after it is named; the bytes of
// entries before it and the state index are left to Verify.
func TestVerifyFrom(t *testing.T) {
	// Ten entries whose reasons are markers (see filledLedger); kept is
	// the checkpoint an auditor saw at six.
	build := func(t *testing.T) (path, kept string, v note.Verifier) {
		l, v := filledLedger(t, 6)
		kept, err := l.Checkpoint()
		if err != nil {
			t.Fatal(err)
		}
		for i := 6; i < 10; i++ {
			e := promotion("reg/app", digest(i%3), []string{"dev", "test", "prod"}[i%3])
			e.Reason = fmt.Sprintf("reason-%04d", i)
			mustAppend(t, l, e)
		}
		path = l.Path()
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		return path, kept, v
	}
	tests := map[string]struct {
		old, repl string
		wantIndex int64 // -2: no error
		rollback  bool
	}{
		"untouched":                     {wantIndex: -2},
		"an entry after the checkpoint": {old: `"reason":"reason-0008"`, repl: `"reason":"reason-0x08"`, wantIndex: 8},
		// The stored tree still extends the checkpoint; the entry's bytes
		// were verified when the checkpoint was, and Verify re-reads them.
		"an entry before the checkpoint (Verify's to find)": {old: `"reason":"reason-0002"`, repl: `"reason":"reason-0x02"`, wantIndex: -2},
		"the state index (Verify's to find)":                {old: "\x03dev", repl: "\x03deV", wantIndex: -2},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			path, kept, v := build(t)
			from, err := ledger.ParseCheckpoint(kept, v)
			if err != nil {
				t.Fatal(err)
			}
			file := path
			if tt.old != "" {
				file = corruptCopy(t, path, tt.old, tt.repl)
			}
			c, err := ledger.Open(file, ledger.WithReadOnly())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			err = c.VerifyFrom(v, from, nil)
			if tt.wantIndex == -2 {
				if err != nil {
					t.Fatalf("VerifyFrom: %v, want nil", err)
				}
				if tt.old != "" && c.Verify(v, nil) == nil {
					t.Fatal("Verify missed what VerifyFrom leaves to it")
				}
				return
			}
			var verr *ledger.VerifyError
			if !errors.As(err, &verr) || verr.Index != tt.wantIndex || errors.Is(err, ledger.ErrRolledBack) != tt.rollback {
				t.Fatalf("VerifyFrom: %v, want a *VerifyError for index %d (rollback %v)", err, tt.wantIndex, tt.rollback)
			}
		})
	}
}

// A checkpoint larger than the ledger: the ledger is an older copy.
func TestVerifyFromOlderCopy(t *testing.T) {
	l, v := filledLedger(t, 4)
	from := ledger.Checkpoint{Origin: v.Name(), Size: 9, Root: make([]byte, 32)}
	err := l.VerifyFrom(v, from, nil)
	if !errors.Is(err, ledger.ErrRolledBack) {
		t.Fatalf("VerifyFrom a checkpoint of 9 on 4 entries: %v, want ErrRolledBack", err)
	}
}

// A ledger whose stored tree at the checkpoint's size hashes to another
// root does not extend the checkpoint: its history was rewritten.
func TestVerifyFromRewrittenHistory(t *testing.T) {
	s, v := ledgertest.Keys(t, ledgertest.Origin)
	l, _ := ledgertest.New(t, ledger.WithSigner(s))
	other, _ := ledgertest.New(t, ledger.WithSigner(s))
	for i := range 6 {
		mustAppend(t, l, promotion("reg/app", digest(i), "dev"))
		e := promotion("reg/other", digest(i), "dev")
		mustAppend(t, other, e)
	}
	kept, err := other.Checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	from, err := ledger.ParseCheckpoint(kept, v)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.VerifyFrom(v, from, nil); !errors.Is(err, ledger.ErrRolledBack) {
		t.Fatalf("VerifyFrom another history's checkpoint: %v, want ErrRolledBack", err)
	}
}
