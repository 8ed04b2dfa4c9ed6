// Package ledgertest opens throwaway ledgers for tests of packages that use
// the ledger.
package ledgertest

import (
	"crypto/rand"
	"path/filepath"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/stagegate/stagegate/internal/ledger"
)

// Origin is the checkpoint origin (key name) of ledgers made by New.
const Origin = "stagegate.test/ledger"

// Keys generates a fresh checkpoint key pair named name.
func Keys(t testing.TB, name string) (note.Signer, note.Verifier) {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		t.Fatalf("ledgertest: generate key: %v", err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatalf("ledgertest: signer: %v", err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatalf("ledgertest: verifier: %v", err)
	}
	return s, v
}

// New opens an empty ledger in t.TempDir(), signing with a fresh key and
// without fsync, and closes it when the test ends. It returns the verifier
// for its checkpoints. opts are applied after the defaults.
func New(t testing.TB, opts ...ledger.Option) (*ledger.Ledger, note.Verifier) {
	t.Helper()
	s, v := Keys(t, Origin)
	path := filepath.Join(t.TempDir(), "ledger.db")
	l, err := ledger.Open(path, append([]ledger.Option{ledger.WithSigner(s), ledger.WithNoSync()}, opts...)...)
	if err != nil {
		t.Fatalf("ledgertest: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("ledgertest: %v", err)
		}
	})
	return l, v
}
