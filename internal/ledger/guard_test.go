package ledger_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/ledger/ledgertest"
)

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestCheckpointGuardRefusesRollback keeps a real ledger file from before
// a revocation, lets the server go on, and then starts on the old copy, on
// a rewritten history and on a tampered guard.
func TestCheckpointGuardRefusesRollback(t *testing.T) {
	s, v := ledgertest.Keys(t, ledgertest.Origin)
	otherS, _ := ledgertest.Keys(t, ledgertest.Origin)
	dataDir, guardDir := t.TempDir(), t.TempDir()
	path := filepath.Join(dataDir, "ledger.db")
	guardPath := filepath.Join(guardDir, "checkpoint")
	open := func(p string, opts ...ledger.Option) (*ledger.Ledger, error) {
		return ledger.Open(p, append([]ledger.Option{ledger.WithSigner(s), ledger.WithNoSync(), ledger.WithCheckpointGuard(guardPath, v)}, opts...)...)
	}
	l, err := open(path)
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, l, promotion("reg/app", digest(1), "prod"))
	mustAppend(t, l, promotion("reg/app", digest(2), "prod"))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	old := filepath.Join(t.TempDir(), "before-revocation.db")
	copyFile(t, path, old)

	l, err = open(path)
	if err != nil {
		t.Fatal(err)
	}
	rc := mustAppend(t, l, revocation("reg/app", digest(1), "prod"))
	// The receipt's checkpoint is kept before the receipt is handed out.
	if kept, err := os.ReadFile(guardPath); err != nil || string(kept) != rc.Checkpoint {
		t.Fatalf("guard holds %q (%v), want the receipt's checkpoint %q", kept, err, rc.Checkpoint)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	// A history of the same size but other entries.
	rewritten := filepath.Join(t.TempDir(), "rewritten.db")
	{
		r, err := ledger.Open(rewritten, ledger.WithSigner(s), ledger.WithNoSync())
		if err != nil {
			t.Fatal(err)
		}
		for i := range 4 {
			mustAppend(t, r, promotion("reg/other", digest(100+i), "prod"))
		}
		r.Close()
	}

	tests := map[string]struct {
		ledger string
		guard  func(t *testing.T) // prepares the guard file
		want   error
		msg    []string
	}{
		"current ledger": {ledger: path},
		"older copy": {ledger: old, want: ledger.ErrRolledBack,
			msg: []string{"has 2 entries, but this server already published a checkpoint of 3", "older copy",
				"restore the newer ledger", "stagegate ledger verify", "remove " + guardPath + " deliberately"}},
		"rewritten history": {ledger: rewritten, want: ledger.ErrRolledBack,
			msg: []string{"root at size 3 is", "history was rewritten"}},
		"guard signed by another key": {ledger: old, msg: []string{"does not verify with the log key"},
			guard: func(t *testing.T) {
				o, err := ledger.Open(filepath.Join(t.TempDir(), "l.db"), ledger.WithSigner(otherS), ledger.WithNoSync())
				if err != nil {
					t.Fatal(err)
				}
				for i := range 5 {
					mustAppend(t, o, promotion("reg/x", digest(i), "dev"))
				}
				cp, _ := o.Checkpoint()
				o.Close()
				os.WriteFile(guardPath, []byte(cp), 0o600)
			}},
		"guard removed after audit": {ledger: old, guard: func(t *testing.T) { os.Remove(guardPath) }},
	}
	for _, name := range []string{"current ledger", "older copy", "rewritten history", "guard signed by another key", "guard removed after audit"} {
		tc := tests[name]
		t.Run(name, func(t *testing.T) {
			saved, _ := os.ReadFile(guardPath)
			defer os.WriteFile(guardPath, saved, 0o600)
			if tc.guard != nil {
				tc.guard(t)
			}
			p := filepath.Join(t.TempDir(), "ledger.db")
			copyFile(t, tc.ledger, p)
			l, err := open(p)
			if tc.msg == nil {
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				l.Close()
				return
			}
			if err == nil {
				l.Close()
				t.Fatal("Open succeeded")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("Open: %v; want %v", err, tc.want)
			}
			for _, m := range tc.msg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("Open: %v\nwant it to mention %q", err, m)
				}
			}
		})
	}
	if len(tests) != 5 {
		t.Fatal("every case must be in the run order")
	}
}

func TestCheckpointGuardMustBeOutsideTheDataDir(t *testing.T) {
	s, v := ledgertest.Keys(t, ledgertest.Origin)
	dir := t.TempDir()
	_, err := ledger.Open(filepath.Join(dir, "ledger.db"), ledger.WithSigner(s), ledger.WithNoSync(),
		ledger.WithCheckpointGuard(filepath.Join(dir, "guard", "checkpoint"), v))
	if err == nil || !strings.Contains(err.Error(), "inside the ledger's directory") {
		t.Fatalf("Open: %v; want a refusal of a guard inside the data directory", err)
	}
}
