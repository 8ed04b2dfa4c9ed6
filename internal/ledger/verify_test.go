package ledger_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/ledger/ledgertest"
)

// filledLedger appends n entries whose reasons are unique markers
// ("reason-0007"), so tests can find their bytes in the file.
func filledLedger(t *testing.T, n int) (*ledger.Ledger, note.Verifier) {
	t.Helper()
	l, v := ledgertest.New(t)
	for i := range n {
		e := promotion("reg/app", digest(i%3), []string{"dev", "test", "prod"}[i%3])
		e.Reason = fmt.Sprintf("reason-%04d", i)
		mustAppend(t, l, e)
	}
	return l, v
}

// corruptCopy copies the ledger file and replaces every occurrence of old by
// repl (same length) in the copy: stale copies of the page may linger in
// free pages, and the live one must be hit.
func corruptCopy(t *testing.T, path, old, repl string) string {
	t.Helper()
	if len(old) != len(repl) {
		t.Fatal("replacement must keep the length")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte(old)) {
		t.Fatalf("%q not found in the ledger file", old)
	}
	data = bytes.ReplaceAll(data, []byte(old), []byte(repl))
	cp := filepath.Join(t.TempDir(), "copy.db")
	if err := os.WriteFile(cp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return cp
}

func TestVerifyDetectsTampering(t *testing.T) {
	tests := []struct {
		name      string
		old, repl string
		wantIndex int64
		inTail    bool // within the last 3 entries, so VerifyTail(3) must catch it
	}{
		{"byte flipped in a value", `"reason":"reason-0006"`, `"reason":"reason-0x06"`, 6, false},
		{"byte flipped in a key", `"reason":"reason-0007"`, `"reasoN":"reason-0007"`, 7, true},
		{"byte flipped in the last entry", `"reason":"reason-0009"`, `"reason":"reason-0008"`, 9, true},
		{"state index edited", "\x03dev", "\x03deV", -1, false},
		{"byte flipped in a subject", `"subject":"ci@example.com","groups":["ci"],"reason":"reason-0002"`, `"subject":"ci@example.coM","groups":["ci"],"reason":"reason-0002"`, 2, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, v := filledLedger(t, 10)
			path := l.Path()
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			c, err := ledger.Open(corruptCopy(t, path, tt.old, tt.repl), ledger.WithReadOnly())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			var verr *ledger.VerifyError
			err = c.Verify(v, nil)
			t.Log(err)
			if !errors.As(err, &verr) || verr.Index != tt.wantIndex {
				t.Fatalf("Verify: %v, want a *VerifyError for entry %d", err, tt.wantIndex)
			}
			err = c.VerifyTail(v, 3)
			if tt.inTail && err == nil {
				t.Fatalf("VerifyTail(3) missed tampering of entry %d", tt.wantIndex)
			}
			if !tt.inTail && err != nil {
				t.Fatalf("VerifyTail(3) reported %v for an entry outside the tail", err)
			}
		})
	}
}

func TestVerifyClean(t *testing.T) {
	l, v := filledLedger(t, 10)
	var seen []uint64
	if err := l.Verify(v, func(e ledger.Entry) error { seen = append(seen, e.Index); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 10 || seen[9] != 9 {
		t.Fatalf("check called for %v", seen)
	}
	bad := errors.New("bad attestation")
	var verr *ledger.VerifyError
	err := l.Verify(v, func(e ledger.Entry) error {
		if e.Index == 4 {
			return bad
		}
		return nil
	})
	if !errors.As(err, &verr) || verr.Index != 4 || !errors.Is(err, bad) {
		t.Fatalf("Verify with failing check: %v", err)
	}
}

func TestVerifyCheckpointOtherKey(t *testing.T) {
	l, _ := filledLedger(t, 3)
	for _, name := range []string{ledgertest.Origin, "other.example/log"} {
		t.Run(name, func(t *testing.T) {
			_, other := ledgertest.Keys(t, name)
			var verr *ledger.VerifyError
			if err := l.Verify(other, nil); !errors.As(err, &verr) || verr.Index != -1 || !strings.Contains(err.Error(), "checkpoint") {
				t.Fatalf("Verify: %v, want a checkpoint *VerifyError", err)
			}
			if err := l.VerifyTail(other, 1); !errors.As(err, &verr) || verr.Index != -1 {
				t.Fatalf("VerifyTail: %v, want a checkpoint *VerifyError", err)
			}
		})
	}
}

func TestVerifyCheckpointSignedByAnotherKey(t *testing.T) {
	// A ledger whose checkpoints were signed by key B is refused by key A's
	// verifier even if both have the same name.
	l, v := filledLedger(t, 2)
	path := l.Path()
	l.Close()
	s2, _ := ledgertest.Keys(t, ledgertest.Origin)
	l2, err := ledger.Open(path, ledger.WithSigner(s2), ledger.WithNoSync())
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	mustAppend(t, l2, promotion("reg/app", digest(7), "dev"))
	var verr *ledger.VerifyError
	if err := l2.Verify(v, nil); !errors.As(err, &verr) || verr.Index != -1 {
		t.Fatalf("Verify: %v, want checkpoint *VerifyError", err)
	}
}

// TestVerifyReadAhead opens a closed ledger as `ledger verify` does, with the
// background read-ahead, and checks that it verifies and closes.
func TestVerifyReadAhead(t *testing.T) {
	l, v := filledLedger(t, 50)
	path := l.Path()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	ro, err := ledger.Open(path, ledger.WithReadOnly(), ledger.WithReadAhead())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := ro.Verify(v, func(ledger.Entry) error { n++; return nil }); err != nil || n != 50 {
		t.Fatalf("Verify: %v after %d entries", err, n)
	}
	if err := ro.Close(); err != nil {
		t.Fatal(err)
	}
	// A file that cannot be opened for reading ahead still opens (read-ahead
	// is a hint) or fails the way Open always does.
	if _, err := ledger.Open(filepath.Join(t.TempDir(), "missing", "x.db"), ledger.WithReadOnly(), ledger.WithReadAhead()); err == nil {
		t.Fatal("read-only open of a missing file succeeded")
	}
}
