package ledger

import (
	"crypto/rand"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/note"
)

func testKeys(t *testing.T) (note.Signer, note.Verifier) {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, "stagegate.test/upgrade")
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return s, v
}

func appendFixed(t *testing.T, l *Ledger, e Entry) {
	t.Helper()
	if _, err := l.Append(func(_ Reader, index uint64) (*Entry, error) {
		e.Index, e.Time = index, time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
		return &e, nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestUpgradeRebuildsOldStateIndex makes the state index an older
// stagegate wrote (platform records without the indexes that contain them,
// and no rules number), then checks that a read-only Verify says what to
// do, and that opening the file writable rebuilds the index, after which a
// platform's revocation reaches its index.
func TestUpgradeRebuildsOldStateIndex(t *testing.T) {
	const repo = "reg/app"
	idx, p1, p2 := "sha256:"+strings.Repeat("1", 64), "sha256:"+strings.Repeat("2", 64), "sha256:"+strings.Repeat("3", 64)
	signer, verifier := testKeys(t)
	path := filepath.Join(t.TempDir(), "ledger.db")
	l, err := Open(path, WithSigner(signer), WithNoSync())
	if err != nil {
		t.Fatal(err)
	}
	appendFixed(t, l, Entry{Kind: KindPromotion, Repository: repo, Digest: idx, Platforms: []string{p1, p2}, Stage: "prod", Subject: "ci"})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	// What the old rules wrote: the same records without back-references.
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		st := tx.Bucket(bucketState)
		for _, p := range []string{p1, p2} {
			rec, err := decodeRecord(p, st.Get([]byte(p)), nil)
			if err != nil {
				return err
			}
			if len(rec.Indexes) != 1 {
				return fmt.Errorf("record of %s has indexes %v", p, rec.Indexes)
			}
			rec.Indexes = nil
			if err := st.Put([]byte(p), encodeRecord(p, rec)); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Delete(keyStateRules)
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	ro, err := Open(path, WithReadOnly())
	if err != nil {
		t.Fatal(err)
	}
	var ve *VerifyError
	if err := ro.Verify(verifier, nil); !errors.As(err, &ve) || !strings.Contains(ve.Reason, "older stagegate") {
		t.Fatalf("Verify of the old index: %v, want a mismatch that names the older rules", err)
	}
	if err := ro.Close(); err != nil {
		t.Fatal(err)
	}

	l, err = Open(path, WithSigner(signer), WithNoSync())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Verify(verifier, nil); err != nil {
		t.Fatalf("Verify after the upgrade: %v", err)
	}
	if err := l.View(func(r Reader) error {
		if st, _, err := r.State(idx, "prod"); err != nil || !st.Active() {
			return fmt.Errorf("index after the upgrade: %+v, %v", st, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	appendFixed(t, l, Entry{Kind: KindRevocation, Repository: repo, Digest: p1, Stage: "prod", Subject: "sec", Reason: "CVE"})
	st, _, err := l.State(idx, "prod")
	if err != nil || !st.Revoked || st.RevokedDigest != p1 {
		t.Fatalf("index after its platform's revocation: %+v, %v", st, err)
	}
	if err := l.Verify(verifier, nil); err != nil {
		t.Fatalf("Verify: %v", err)
	}
}

func TestUpgradeRules(t *testing.T) {
	signer, _ := testKeys(t)
	rulesOf := func(path string) uint64 {
		t.Helper()
		l, err := Open(path, WithReadOnly())
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		var n uint64
		_ = l.db.View(func(tx *bolt.Tx) error { n = txStateRules(tx); return nil })
		return n
	}
	tests := map[string]struct {
		stored  []byte // nil: none
		wantErr bool
	}{
		"new ledger":   {},
		"old rules":    {stored: be64(1)},
		"newer rules":  {stored: be64(stateRules + 1), wantErr: true},
		"current rule": {stored: be64(stateRules)},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "ledger.db")
			l, err := Open(path, WithSigner(signer), WithNoSync())
			if err != nil {
				t.Fatal(err)
			}
			if err := l.db.Update(func(tx *bolt.Tx) error {
				if tc.stored == nil {
					return tx.Bucket(bucketMeta).Delete(keyStateRules)
				}
				return tx.Bucket(bucketMeta).Put(keyStateRules, tc.stored)
			}); err != nil {
				t.Fatal(err)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			l, err = Open(path, WithSigner(signer), WithNoSync())
			if tc.wantErr {
				if err == nil {
					l.Close()
					t.Fatal("Open accepted a state index built by newer rules")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			if got := rulesOf(path); got != stateRules {
				t.Fatalf("rules after Open: %d, want %d", got, stateRules)
			}
		})
	}
}
