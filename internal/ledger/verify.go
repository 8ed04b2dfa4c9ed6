package ledger

import (
	"bytes"
	"fmt"

	"github.com/transparency-dev/merkle/compact"
	bolt "go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/note"
)

// Verify checks the whole ledger: the checkpoint signature (with v), every
// entry's canonical bytes, index and validity, every stored tree node, the
// root against the checkpoint, and that the state and history indexes are
// exactly what the entries imply. check, if not nil, is called on each entry
// (the caller verifies attestations there). The error is a *VerifyError
// naming the first bad entry, or Index -1 for a problem not tied to one.
func (l *Ledger) Verify(v note.Verifier, check func(Entry) error) error {
	return l.db.View(func(tx *bolt.Tx) error { return verifyTx(tx, v, check) })
}

// verifyTx turns any panic from corrupted data (in bbolt or in decoding)
// into an error: the point of Verify is to report corruption, not crash on it.
func verifyTx(tx *bolt.Tx, v note.Verifier, check func(Entry) error) (err error) {
	cur := int64(-1)
	defer func() {
		if r := recover(); r != nil {
			err = &VerifyError{Index: cur, Reason: fmt.Sprintf("corrupted data: %v", r)}
		}
	}()

	size := txSize(tx)
	cpText := tx.Bucket(bucketMeta).Get(keyCheckpoint)
	var cp Checkpoint
	if cpText == nil {
		if size != 0 {
			return &VerifyError{Index: -1, Reason: fmt.Sprintf("no checkpoint for %d entries", size)}
		}
	} else {
		if cp, err = ParseCheckpoint(string(cpText), v); err != nil {
			return &VerifyError{Index: -1, Reason: "bad checkpoint", Err: err}
		}
		if cp.Size != size {
			return &VerifyError{Index: -1, Reason: fmt.Sprintf("checkpoint size %d, ledger size %d", cp.Size, size)}
		}
	}

	nodes := tx.Bucket(bucketNodes)
	var nodeErr error
	nodeCount := 0
	compare := func(id compact.NodeID, hash []byte) {
		nodeCount++
		if nodeErr == nil && !bytes.Equal(nodes.Get(nodeKey(id)), hash) {
			nodeErr = fmt.Errorf("tree node (%d,%d) missing or wrong", id.Level, id.Index)
		}
	}
	rng := rangeFactory.NewEmptyRange(0)
	states := newStateBatch(nil)
	history := map[string]bool{}

	c := tx.Bucket(bucketEntries).Cursor()
	i := uint64(0)
	for k, raw := c.First(); k != nil; k, raw = c.Next() {
		cur = int64(i)
		if i >= size {
			return &VerifyError{Index: cur, Reason: "entry beyond the checkpointed size"}
		}
		if !bytes.Equal(k, be64(i)) {
			return &VerifyError{Index: cur, Reason: fmt.Sprintf("missing (next stored key %x)", k)}
		}
		e, err := canonicalEntry(raw)
		if err != nil {
			return &VerifyError{Index: cur, Reason: "bad bytes", Err: err}
		}
		if e.Index != i {
			return &VerifyError{Index: cur, Reason: fmt.Sprintf("index field says %d", e.Index)}
		}
		if err := validateEntry(&e); err != nil {
			return &VerifyError{Index: cur, Reason: "invalid", Err: err}
		}
		if err := rng.Append(hasher.HashLeaf(raw), compare); err != nil {
			return &VerifyError{Index: cur, Reason: "tree", Err: err}
		}
		if nodeErr != nil {
			return &VerifyError{Index: cur, Reason: "stored tree disagrees", Err: nodeErr}
		}
		if check != nil {
			if err := check(e); err != nil {
				return &VerifyError{Index: cur, Reason: "entry check failed", Err: err}
			}
		}
		if err := states.apply(&e); err != nil {
			return &VerifyError{Index: cur, Reason: "state", Err: err}
		}
		for _, name := range historyNames(&e) {
			history[string(historyKey(name, i))] = true
		}
		i++
	}
	cur = -1
	if i != size {
		return &VerifyError{Index: int64(i), Reason: fmt.Sprintf("missing; ledger size is %d", size)}
	}
	if size > 0 {
		root, err := rng.GetRootHash(nil)
		if err != nil {
			return &VerifyError{Index: -1, Reason: "tree", Err: err}
		}
		if !bytes.Equal(root, cp.Root) {
			return &VerifyError{Index: -1, Reason: "recomputed root differs from the checkpoint root"}
		}
	}
	if n := nodes.Stats().KeyN; n != nodeCount {
		return &VerifyError{Index: -1, Reason: fmt.Sprintf("%d tree nodes stored, %d expected", n, nodeCount)}
	}
	return verifyIndexes(tx, states, history)
}

// verifyIndexes compares the state and history buckets with what the
// entries imply, in both directions.
func verifyIndexes(tx *bolt.Tx, states *stateBatch, history map[string]bool) error {
	stored := tx.Bucket(bucketState)
	err := states.encoded(func(d string, want []byte) error {
		if got := stored.Get([]byte(d)); !bytes.Equal(got, want) {
			return &VerifyError{Index: -1, Reason: fmt.Sprintf("state index of %s disagrees with the entries", d)}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if n := stored.Stats().KeyN; n != len(states.order) {
		return &VerifyError{Index: -1, Reason: fmt.Sprintf("state index has %d digests, entries imply %d", n, len(states.order))}
	}
	n := 0
	c := tx.Bucket(bucketHistory).Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		if !history[string(k)] {
			return &VerifyError{Index: -1, Reason: fmt.Sprintf("history index has a stray key %q", k)}
		}
		n++
	}
	if n != len(history) {
		return &VerifyError{Index: -1, Reason: fmt.Sprintf("history index has %d keys, entries imply %d", n, len(history))}
	}
	return nil
}

// VerifyTail is the cheap startup check: the checkpoint signature, and the
// last n entries re-hashed into the stored tree prefix must give the
// checkpoint root. It catches a swapped file, a wrong key, or a torn tail.
func (l *Ledger) VerifyTail(v note.Verifier, n uint64) error {
	return l.db.View(func(tx *bolt.Tx) (err error) {
		cur := int64(-1)
		defer func() {
			if r := recover(); r != nil {
				err = &VerifyError{Index: cur, Reason: fmt.Sprintf("corrupted data: %v", r)}
			}
		}()
		size := txSize(tx)
		cpText := tx.Bucket(bucketMeta).Get(keyCheckpoint)
		if cpText == nil {
			if size == 0 {
				return nil
			}
			return &VerifyError{Index: -1, Reason: fmt.Sprintf("no checkpoint for %d entries", size)}
		}
		cp, err := ParseCheckpoint(string(cpText), v)
		if err != nil {
			return &VerifyError{Index: -1, Reason: "bad checkpoint", Err: err}
		}
		if cp.Size != size {
			return &VerifyError{Index: -1, Reason: fmt.Sprintf("checkpoint size %d, ledger size %d", cp.Size, size)}
		}
		start := size - min(n, size)
		nodes := tx.Bucket(bucketNodes)
		rng, err := loadRange(nodes, start)
		if err != nil {
			return &VerifyError{Index: -1, Reason: "tree prefix", Err: err}
		}
		for i := start; i < size; i++ {
			cur = int64(i)
			raw := tx.Bucket(bucketEntries).Get(be64(i))
			if raw == nil {
				return &VerifyError{Index: cur, Reason: "missing"}
			}
			e, err := canonicalEntry(raw)
			if err != nil {
				return &VerifyError{Index: cur, Reason: "bad bytes", Err: err}
			}
			if e.Index != i {
				return &VerifyError{Index: cur, Reason: fmt.Sprintf("index field says %d", e.Index)}
			}
			leaf := hasher.HashLeaf(raw)
			if !bytes.Equal(nodes.Get(nodeKey(compact.NewNodeID(0, i))), leaf) {
				return &VerifyError{Index: cur, Reason: "stored leaf hash differs"}
			}
			if err := rng.Append(leaf, nil); err != nil {
				return &VerifyError{Index: cur, Reason: "tree", Err: err}
			}
		}
		if size == 0 {
			return nil
		}
		root, err := rng.GetRootHash(nil)
		if err != nil {
			return &VerifyError{Index: -1, Reason: "tree", Err: err}
		}
		if !bytes.Equal(root, cp.Root) {
			return &VerifyError{Index: -1, Reason: "recomputed root differs from the checkpoint root"}
		}
		return nil
	})
}
