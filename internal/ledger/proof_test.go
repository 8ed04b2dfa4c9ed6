package ledger_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/ledger/ledgertest"
)

// referenceRoots recomputes, independently of the stored tree, the root of
// every prefix of the ledger from the entries' canonical bytes.
func referenceRoots(t *testing.T, entries []ledger.Entry) (leaves, roots [][]byte) {
	t.Helper()
	h := rfc6962.DefaultHasher
	rf := &compact.RangeFactory{Hash: h.HashChildren}
	r := rf.NewEmptyRange(0)
	roots = [][]byte{h.EmptyRoot()}
	for _, e := range entries {
		raw, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		leaf := h.HashLeaf(raw)
		leaves = append(leaves, leaf)
		if err := r.Append(leaf, nil); err != nil {
			t.Fatal(err)
		}
		root, err := r.GetRootHash(nil)
		if err != nil {
			t.Fatal(err)
		}
		roots = append(roots, root)
	}
	return leaves, roots
}

func TestProofs(t *testing.T) {
	l, v := ledgertest.New(t)
	const n = 37 // not a power of two, so ephemeral nodes are exercised
	for i := range n {
		mustAppend(t, l, promotion("reg/app", digest(i), "dev"))
	}
	entries, err := l.Entries(0, n)
	if err != nil {
		t.Fatal(err)
	}
	leaves, roots := referenceRoots(t, entries)
	h := rfc6962.DefaultHasher

	for size := uint64(1); size <= n; size++ {
		for index := range size {
			p, err := l.InclusionProof(index, size)
			if err != nil {
				t.Fatalf("InclusionProof(%d, %d): %v", index, size, err)
			}
			if !bytes.Equal(p.RootHash, roots[size]) {
				t.Fatalf("InclusionProof(%d, %d) root differs from reference", index, size)
			}
			if err := proof.VerifyInclusion(h, index, size, leaves[index], p.Hashes, roots[size]); err != nil {
				t.Fatalf("inclusion %d in %d: %v", index, size, err)
			}
		}
	}
	text, _ := l.Checkpoint()
	newest, err := ledger.ParseCheckpoint(text, v)
	if err != nil {
		t.Fatal(err)
	}
	for to := uint64(0); to <= n; to++ {
		for from := uint64(0); from <= to; from++ {
			p, err := l.ConsistencyProof(from, to)
			if err != nil {
				t.Fatalf("ConsistencyProof(%d, %d): %v", from, to, err)
			}
			if !bytes.Equal(p.FromRoot, roots[from]) || !bytes.Equal(p.ToRoot, roots[to]) {
				t.Fatalf("ConsistencyProof(%d, %d) roots differ from reference", from, to)
			}
			older := ledger.Checkpoint{Origin: newest.Origin, Size: from, Root: roots[from]}
			newer := ledger.Checkpoint{Origin: newest.Origin, Size: to, Root: roots[to]}
			if err := ledger.VerifyConsistency(older, newer, p); err != nil {
				t.Fatalf("consistency %d..%d: %v", from, to, err)
			}
			if from > 0 && from < to {
				// A rewritten older tree must not verify.
				bad := older
				bad.Root = roots[from-1]
				if err := ledger.VerifyConsistency(bad, newer, p); err == nil {
					t.Fatalf("consistency %d..%d verified against a wrong older root", from, to)
				}
			}
		}
	}
	if !bytes.Equal(newest.Root, roots[n]) || newest.Size != n {
		t.Fatalf("checkpoint %d differs from reference", newest.Size)
	}

	outOfRange := []struct{ a, b uint64 }{{0, n + 1}, {n, n}, {5, 3}}
	for _, c := range outOfRange {
		if _, err := l.InclusionProof(c.a, c.b); !errors.Is(err, ledger.ErrOutOfRange) {
			t.Errorf("InclusionProof(%d, %d): %v, want ErrOutOfRange", c.a, c.b, err)
		}
	}
	for _, c := range []struct{ a, b uint64 }{{0, n + 1}, {5, 3}} {
		if _, err := l.ConsistencyProof(c.a, c.b); !errors.Is(err, ledger.ErrOutOfRange) {
			t.Errorf("ConsistencyProof(%d, %d): %v, want ErrOutOfRange", c.a, c.b, err)
		}
	}
}

func TestReceiptOffline(t *testing.T) {
	l, v := ledgertest.New(t)
	for i := range 6 {
		mustAppend(t, l, promotion("reg/app", digest(i), "dev", digest(100+i)))
	}
	orig, err := l.Receipt(3)
	if err != nil {
		t.Fatal(err)
	}
	// A receipt travels as JSON.
	js, err := json.Marshal(orig)
	if err != nil {
		t.Fatal(err)
	}
	load := func() ledger.Receipt {
		var rc ledger.Receipt
		if err := json.Unmarshal(js, &rc); err != nil {
			t.Fatal(err)
		}
		return rc
	}
	if err := ledger.VerifyReceipt(load(), v, nil); err != nil {
		t.Fatalf("VerifyReceipt: %v", err)
	}
	checkErr := errors.New("bad attestation")
	if err := ledger.VerifyReceipt(load(), v, func(ledger.Entry) error { return checkErr }); !errors.Is(err, checkErr) {
		t.Fatalf("VerifyReceipt with failing check: %v", err)
	}
	_, otherV := ledgertest.Keys(t, ledgertest.Origin)

	tamper := map[string]func(rc *ledger.Receipt){
		"index":      func(rc *ledger.Receipt) { rc.Entry.Index = 2 },
		"kind":       func(rc *ledger.Receipt) { rc.Entry.Kind = ledger.KindRevocation },
		"repository": func(rc *ledger.Receipt) { rc.Entry.Repository = "reg/evil" },
		"digest":     func(rc *ledger.Receipt) { rc.Entry.Digest = digest(99) },
		"platforms":  func(rc *ledger.Receipt) { rc.Entry.Platforms = append(rc.Entry.Platforms, digest(98)) },
		"stage":      func(rc *ledger.Receipt) { rc.Entry.Stage = "prod" },
		"subject":    func(rc *ledger.Receipt) { rc.Entry.Subject = "mallory" },
		"groups":     func(rc *ledger.Receipt) { rc.Entry.Groups = []string{"admin"} },
		"reason":     func(rc *ledger.Receipt) { rc.Entry.Reason += "!" },
		"time":       func(rc *ledger.Receipt) { rc.Entry.Time = rc.Entry.Time.Add(time.Nanosecond) },
		"labels":     func(rc *ledger.Receipt) { rc.Entry.Labels["team"] = "b" },
		"workload":   func(rc *ledger.Receipt) { rc.Entry.Workload = "ns/Pod/x" },
		"images":     func(rc *ledger.Receipt) { rc.Entry.Images = []string{"x"} },
		"foreign":    func(rc *ledger.Receipt) { rc.Entry.Foreign = true },
		"envelope":   func(rc *ledger.Receipt) { rc.Entry.Envelope = []byte(`{"payload":"x"}`) },
		"proof hash": func(rc *ledger.Receipt) { rc.Inclusion.Hashes[0][0] ^= 1 },
		"proof size": func(rc *ledger.Receipt) { rc.Inclusion.TreeSize-- },
		"checkpoint": func(rc *ledger.Receipt) { rc.Checkpoint = rc.Checkpoint[:10] + "X" + rc.Checkpoint[11:] },
	}
	for name, f := range tamper {
		t.Run(name, func(t *testing.T) {
			rc := load()
			f(&rc)
			if err := ledger.VerifyReceipt(rc, v, nil); err == nil {
				t.Fatalf("tampered receipt (%s) verified", name)
			}
		})
	}
	t.Run("other key", func(t *testing.T) {
		if err := ledger.VerifyReceipt(load(), otherV, nil); err == nil {
			t.Fatal("receipt verified with another key")
		}
	})
}

func TestParseCheckpoint(t *testing.T) {
	l, v := ledgertest.New(t)
	mustAppend(t, l, promotion("reg/app", digest(1), "dev"))
	text, _ := l.Checkpoint()
	if _, err := ledger.ParseCheckpoint(text, v); err != nil {
		t.Fatal(err)
	}
	_, sameName := ledgertest.Keys(t, ledgertest.Origin)
	_, otherName := ledgertest.Keys(t, "other.example/log")
	tests := []struct {
		name string
		v    note.Verifier
	}{{"same name, other key", sameName}, {"other name", otherName}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ledger.ParseCheckpoint(text, tt.v); err == nil {
				t.Fatal("checkpoint verified with another key")
			}
		})
	}
	if want := fmt.Sprintf("%s\n1\n", ledgertest.Origin); !bytes.HasPrefix([]byte(text), []byte(want)) {
		t.Fatalf("checkpoint body %q does not start with %q", text, want)
	}
}
