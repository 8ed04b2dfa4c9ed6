package ledger

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"runtime/debug"

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
	return l.db.View(func(tx *bolt.Tx) error { return verifyTx(tx, v, nil, check) })
}

// VerifyFrom is Verify for someone who verified the ledger up to from (an
// earlier checkpoint whose signature the caller checked, e.g. with
// ParseCheckpoint): it checks that the ledger extends from, since the
// stored tree at from.Size must hash to from.Root, and then checks only
// the entries after it, their tree nodes, and the latest checkpoint's
// root. A joining replica or yesterday's auditor does not pay again for
// the whole history. It does not check the state and history indexes,
// which depend on every entry; `serve` checks those at startup.
func (l *Ledger) VerifyFrom(v note.Verifier, from Checkpoint, check func(Entry) error) error {
	return l.db.View(func(tx *bolt.Tx) error { return verifyTx(tx, v, &from, check) })
}

// verifyTx turns any panic from corrupted data (in bbolt or in decoding)
// into an error: the point of Verify is to report corruption, not crash on it.
//
// It streams: entries are read in order from one cursor, decoded and checked
// on a bounded pool of workers (check is the expensive part), and taken back
// in order, so at most a window of entries is in memory and the error still
// names the lowest bad index. All bbolt access stays on this goroutine (a Tx
// is not safe for concurrent use); workers only read entry bytes, which stay
// valid because the pool is drained before the transaction ends.
//
// With from set, it starts from the compact range the stored tree holds at
// from.Size, once that range hashes to from.Root.
func verifyTx(tx *bolt.Tx, v note.Verifier, from *Checkpoint, check func(Entry) error) (err error) {
	// Open refuses a file shorter than its pages (checkFile), but one cut
	// while it is open would still fault in the mapping: make that a panic
	// the recover below reports, on this goroutine and on the workers.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	cur := int64(-1)
	defer func() {
		if r := recover(); r != nil {
			err = &VerifyError{Index: cur, Reason: fmt.Sprintf("corrupted data: %v", r)}
		}
	}()

	size := txSize(tx)
	cp, verr := storedCheckpoint(tx, v, size)
	if verr != nil {
		return verr
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
	var ix *indexCheck // whole-ledger checks: Verify only
	start := uint64(0)
	if from == nil {
		ix = newIndexCheck(tx)
	} else {
		if from.Size > size {
			return &VerifyError{Index: -1, Reason: fmt.Sprintf("the ledger has %d entries, fewer than the %d of the checkpoint it should extend: it is an older copy", size, from.Size), Err: ErrRolledBack}
		}
		if rng, err = loadRange(nodes, from.Size); err != nil {
			return &VerifyError{Index: -1, Reason: "tree", Err: err}
		}
		if root, err := rng.GetRootHash(nil); from.Size > 0 && (err != nil || !bytes.Equal(root, from.Root)) {
			return &VerifyError{Index: -1, Reason: fmt.Sprintf("the ledger's root at size %d differs from the checkpoint it should extend: its history was rewritten", from.Size), Err: ErrRolledBack}
		}
		start = from.Size
	}

	pool := newCheckPool(check, "", func(it *checkItem) error {
		cur = int64(it.index)
		if err := it.verdict(); err != nil {
			return err
		}
		if ix == nil {
			return nil
		}
		return ix.add(&it.entry)
	})
	defer pool.close()

	c := tx.Bucket(bucketEntries).Cursor()
	i := start
	for k, raw := c.Seek(be64(start)); k != nil; k, raw = c.Next() {
		cur = int64(i)
		it := checkItem{index: i, raw: raw}
		switch {
		case i >= size:
			it.raw, it.pre = nil, &VerifyError{Index: cur, Reason: "entry beyond the checkpointed size"}
		case !bytes.Equal(k, be64(i)):
			it.raw, it.pre = nil, &VerifyError{Index: cur, Reason: fmt.Sprintf("missing (next stored key %x)", k)}
		default:
			if err := rng.Append(hasher.HashLeaf(raw), compare); err != nil {
				it.pre = &VerifyError{Index: cur, Reason: "tree", Err: err}
			} else if nodeErr != nil {
				it.pre = &VerifyError{Index: cur, Reason: "stored tree disagrees", Err: nodeErr}
			}
		}
		if err := pool.add(it); err != nil {
			return err
		}
		if it.pre != nil {
			// Earlier entries may still fail their check: report the first.
			if err := pool.drain(); err != nil {
				return err
			}
			return it.pre
		}
		i++
	}
	if err := pool.drain(); err != nil {
		return err
	}
	cur = -1
	if i != size {
		return &VerifyError{Index: int64(i), Reason: fmt.Sprintf("missing; ledger size is %d", size)}
	}
	if size > 0 {
		if verr := rootMatches(rng, cp); verr != nil {
			return verr
		}
	}
	if ix == nil {
		return nil
	}
	if n := nodes.Stats().KeyN; n != nodeCount {
		return &VerifyError{Index: -1, Reason: fmt.Sprintf("%d tree nodes stored, %d expected", n, nodeCount)}
	}
	return ix.finish()
}

// indexCheck compares the state and history buckets with what the entries
// imply, fed the entries in order, without a whole-ledger map of either.
//
// History: each key an entry implies is looked up as the entry passes, and
// at the end the bucket must hold exactly as many keys; keys are unique, so
// that makes the two sets equal.
//
// State: a record depends on every entry touching its digest (a revocation
// reaches platforms promoted long before), so it is rebuilt with the same
// stateBatch code that writes it, in chunks of stateChunk entries, but kept
// between chunks in sealed form: each mark reduced to its index, its
// origin and a hash of its encoding. That costs tens of bytes per digest,
// none per entry. At the end every stored record, sealed the same way, must
// equal the rebuilt one, and must itself be canonically encoded.
type indexCheck struct {
	hist    *bolt.Bucket
	histCur *bolt.Cursor
	state   *bolt.Bucket
	nHist   int
	sealed  *sealedStore // digest -> encodeRecord of the sealed record
	batch   *stateBatch
	applied int
	rules   uint64 // what the file says its state index was built with
}

const stateChunk = 4096

func newIndexCheck(tx *bolt.Tx) *indexCheck {
	hist := tx.Bucket(bucketHistory)
	x := &indexCheck{hist: hist, histCur: hist.Cursor(), state: tx.Bucket(bucketState), sealed: newSealedStore(),
		rules: txStateRules(tx)}
	x.batch = x.newBatch()
	return x
}

func (x *indexCheck) newBatch() *stateBatch {
	return newStateBatch(x.sealed.get)
}

func (x *indexCheck) add(e *Entry) error {
	for _, name := range historyNames(e) {
		key := historyKey(name, e.Index)
		if k, _ := x.histCur.Seek(key); !bytes.Equal(k, key) {
			return &VerifyError{index: true, Index: int64(e.Index), Reason: fmt.Sprintf("history index lacks %q", name)}
		}
		x.nHist++
	}
	if err := x.batch.apply(e); err != nil {
		return &VerifyError{Index: int64(e.Index), Reason: "state", Err: err}
	}
	// The marks apply made are the only unsealed ones: everything else came
	// from the sealed store or from an earlier entry.
	for _, m := range x.batch.made {
		sealMark(m)
	}
	x.batch.made = x.batch.made[:0]
	if x.applied++; x.applied == stateChunk {
		x.flush()
	}
	return nil
}

func (x *indexCheck) flush() {
	_ = x.batch.encoded(func(d string, v []byte) error { x.sealed.put(d, v); return nil })
	x.batch, x.applied = x.newBatch(), 0
}

// sealTag is the By of a sealed mark; real marks are never sealed twice.
const sealTag = "\x00sealed"

// sealMark keeps of m only what identifies it: its index and a hash of its
// whole encoding. Its origin, which the record encodes beside the mark and
// which a later promotion reads, stays as it is, and so does Foreign,
// which the record encodes in its flags.
func sealMark(m *mark) {
	if m == nil || m.By == sealTag {
		return
	}
	sum := sha256.Sum256(appendMark(nil, m))
	*m = mark{Index: m.Index, By: sealTag, Reason: string(sum[:16]), Origin: m.Origin, Foreign: m.Foreign}
}

// disagrees is finish's error for the record of digest d; it is made
// only then, since finish runs once per digest on one goroutine.
func (x *indexCheck) disagrees(d string) *VerifyError {
	bad := &VerifyError{index: true, Index: -1, Reason: fmt.Sprintf("state index of %s disagrees with the entries", d)}
	if x.rules < stateRules {
		bad.Reason += fmt.Sprintf(" (it was built with the rules of an older stagegate, %d, not %d: "+
			"opening the ledger writable, as `stagegate serve` does, rebuilds it)", x.rules, stateRules)
	}
	return bad
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
		cp, verr := storedCheckpoint(tx, v, size)
		if verr != nil {
			return verr
		}
		if size == 0 {
			return nil
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
		if verr := rootMatches(rng, cp); verr != nil {
			return verr
		}
		return nil
	})
}

// storedCheckpoint is the checkpoint check Verify and VerifyTail share:
// the stored checkpoint, signed with v, at the ledger's size. An empty
// ledger may have none (the zero Checkpoint is returned).
func storedCheckpoint(tx *bolt.Tx, v note.Verifier, size uint64) (Checkpoint, *VerifyError) {
	text := tx.Bucket(bucketMeta).Get(keyCheckpoint)
	if text == nil {
		if size != 0 {
			return Checkpoint{}, &VerifyError{Index: -1, Reason: fmt.Sprintf("no checkpoint for %d entries", size)}
		}
		return Checkpoint{}, nil
	}
	cp, verr := checkpointAt(string(text), v, "")
	if verr != nil {
		return Checkpoint{}, verr
	}
	if cp.Size != size {
		return Checkpoint{}, &VerifyError{Index: -1, Reason: fmt.Sprintf("checkpoint size %d, ledger size %d", cp.Size, size)}
	}
	return cp, nil
}

// checkpointAt verifies a checkpoint's signature, for Verify and Import
// alike, as a *VerifyError whose reason starts with prefix.
func checkpointAt(text string, v note.Verifier, prefix string) (Checkpoint, *VerifyError) {
	cp, err := ParseCheckpoint(text, v)
	if err != nil {
		return Checkpoint{}, &VerifyError{Index: -1, Reason: prefix + "bad checkpoint", Err: err}
	}
	return cp, nil
}

// rootMatches compares the root of the entries read into rng with the
// checkpoint's.
func rootMatches(rng *compact.Range, cp Checkpoint) *VerifyError {
	root, err := rng.GetRootHash(nil)
	if err != nil {
		return &VerifyError{Index: -1, Reason: "tree", Err: err}
	}
	if !bytes.Equal(root, cp.Root) {
		return &VerifyError{Index: -1, Reason: "recomputed root differs from the checkpoint root"}
	}
	return nil
}
