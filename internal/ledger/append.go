package ledger

import (
	"errors"
	"fmt"

	"github.com/transparency-dev/merkle/compact"
	bolt "go.etcd.io/bbolt"
)

// Reader is a consistent view of the ledger inside one transaction.
type Reader interface {
	Size() uint64
	// State is what the ledger says about digest in stage; the bool is false
	// when nothing (in any stage) is known about the digest. An unreadable
	// state record is an error, as from Ledger.State: a caller deciding on
	// it must not take it for "nothing known" or for "inactive".
	State(digest, stage string) (State, bool, error)
	Entry(index uint64) (Entry, error)
}

// BuildFunc makes the entry to append at index, after checking the ledger
// through r. It runs inside the write transaction, so what it checks cannot
// change before the entry is written. It must set entry.Index = index, and
// should be quick: appends are serialised. Returning an error (possibly an
// *ExistsError) writes nothing.
type BuildFunc func(r Reader, index uint64) (*Entry, error)

type txReader struct{ tx *bolt.Tx }

func newTxReader(tx *bolt.Tx) txReader { return txReader{tx: tx} }

func (r txReader) Size() uint64 { return txSize(r.tx) }

func (r txReader) State(digest, stage string) (State, bool, error) {
	return txState(r.tx, digest, stage)
}

func (r txReader) Entry(index uint64) (Entry, error) { return txEntry(r.tx, index) }

func txEntry(tx *bolt.Tx, index uint64) (Entry, error) {
	v := tx.Bucket(bucketEntries).Get(be64(index))
	if v == nil {
		return Entry{}, fmt.Errorf("%w: entry %d", ErrNotFound, index)
	}
	e, err := decodeEntry(v)
	if err != nil {
		return Entry{}, fmt.Errorf("ledger: entry %d: %w", index, err)
	}
	return e, nil
}

// Append records the entry made by build, with its tree nodes, indexes and a
// newly signed checkpoint, in one durable transaction, and returns its
// receipt. If build returns an error matching *ExistsError, Append returns
// the receipt of that existing entry together with the error (which matches
// ErrExists), so callers can answer idempotently.
func (l *Ledger) Append(build BuildFunc) (Receipt, error) {
	if l.db.IsReadOnly() {
		return Receipt{}, ErrReadOnly
	}
	if l.signer == nil {
		return Receipt{}, ErrNoSigner
	}
	var rc Receipt
	var refused error
	var touched []string // every run's, in case bbolt reran fn
	defer func() { l.cache.invalidate(touched, false) }()
	// Batch lets concurrent appends share one transaction and so one fsync:
	// durable throughput then grows with concurrency instead of being capped
	// at one commit per entry. A call whose build refuses returns nil to
	// the batch after writing nothing, so it does not roll back the others;
	// bbolt may run fn more than once, so fn resets what it reports.
	err := l.db.Batch(func(tx *bolt.Tx) error {
		rc, refused = Receipt{}, nil
		size := txSize(tx)
		e, raw, err := l.prepare(tx, build, size)
		if err != nil {
			var exists *ExistsError
			if errors.As(err, &exists) {
				var rerr error
				if rc, rerr = txReceipt(tx, exists.Index); rerr != nil {
					return fmt.Errorf("ledger: receipt of existing entry: %w", rerr)
				}
			}
			refused = err
			return nil // nothing of this call was written
		}
		root, order, err := appendTx(tx, size, []*Entry{e}, [][]byte{raw})
		if err != nil {
			return err
		}
		touched = append(touched, order...)
		cp, err := signCheckpoint(l.signer, size+1, root)
		if err != nil {
			return err
		}
		if err := putMeta(tx, size+1, cp); err != nil {
			return err
		}
		rc, err = txReceipt(tx, size)
		return err
	})
	if err == nil || (errors.Is(refused, ErrExists) && rc.Checkpoint != "") {
		// An entry whose receipt goes out must outlive any rollback.
		if gerr := l.guard.keep(l.db); gerr != nil {
			return Receipt{}, fmt.Errorf("ledger: recorded, but not acknowledged: %w", gerr)
		}
	}
	if err == nil {
		err = refused
	}
	if err != nil {
		if errors.Is(err, ErrExists) && rc.Checkpoint != "" {
			return rc, err
		}
		return Receipt{}, err
	}
	return rc, nil
}

// prepare runs build and checks and encodes its entry. It writes nothing.
func (l *Ledger) prepare(tx *bolt.Tx, build BuildFunc, size uint64) (*Entry, []byte, error) {
	e, err := build(newTxReader(tx), size)
	if err != nil {
		return nil, nil, err
	}
	if e == nil {
		return nil, nil, errors.New("ledger: build returned no entry")
	}
	if e.Index != size {
		return nil, nil, fmt.Errorf("ledger: entry index %d, want %d", e.Index, size)
	}
	if err := validateEntry(e); err != nil {
		return nil, nil, fmt.Errorf("ledger: %w", err)
	}
	raw, err := encodeEntry(e)
	if err != nil {
		return nil, nil, fmt.Errorf("ledger: %w", err)
	}
	// Index what was stored, not what build handed over: verifiers and
	// Import rebuild the state from the decoded bytes, and e.g. a
	// time.Local that equals UTC must give the same record.
	stored, err := decodeEntry(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("ledger: %w", err)
	}
	return &stored, raw, nil
}

// writeEntry stores one entry at rng.End(): its bytes, its tree nodes, its
// history keys, and applies it to states (which the caller flushes). It
// refuses to overwrite anything, so no code path can alter an entry.
func writeEntry(tx *bolt.Tx, rng *compact.Range, states *stateBatch, e *Entry, raw []byte) error {
	index := rng.End()
	entries := tx.Bucket(bucketEntries)
	key := be64(index)
	if entries.Get(key) != nil {
		return fmt.Errorf("ledger: entry %d already stored", index)
	}
	if err := entries.Put(key, raw); err != nil {
		return fmt.Errorf("ledger: put entry %d: %w", index, err)
	}
	w := &nodeWriter{b: tx.Bucket(bucketNodes)}
	if err := rng.Append(hasher.HashLeaf(raw), w.visit); err != nil {
		return fmt.Errorf("ledger: tree append: %w", err)
	}
	if w.err != nil {
		return w.err
	}
	hist := tx.Bucket(bucketHistory)
	for _, name := range historyNames(e) {
		if err := hist.Put(historyKey(name, index), nil); err != nil {
			return fmt.Errorf("ledger: put history: %w", err)
		}
	}
	return states.apply(e)
}

// bucketLoader reads stored state records; the batch decodes them at once,
// inside the transaction.
func bucketLoader(b *bolt.Bucket) func(string) []byte {
	return func(digest string) []byte { return b.Get([]byte(digest)) }
}

func putMeta(tx *bolt.Tx, size uint64, checkpoint string) error {
	meta := tx.Bucket(bucketMeta)
	if err := meta.Put(keySize, be64(size)); err != nil {
		return fmt.Errorf("ledger: put size: %w", err)
	}
	if err := meta.Put(keyCheckpoint, []byte(checkpoint)); err != nil {
		return fmt.Errorf("ledger: put checkpoint: %w", err)
	}
	return nil
}

// txReceipt proves entry index against the latest checkpoint.
func txReceipt(tx *bolt.Tx, index uint64) (Receipt, error) {
	size := txSize(tx)
	if index >= size {
		return Receipt{}, fmt.Errorf("%w: entry %d (size %d)", ErrNotFound, index, size)
	}
	e, err := txEntry(tx, index)
	if err != nil {
		return Receipt{}, err
	}
	p, err := txInclusion(tx, index, size)
	if err != nil {
		return Receipt{}, err
	}
	cp := tx.Bucket(bucketMeta).Get(keyCheckpoint)
	if cp == nil {
		return Receipt{}, fmt.Errorf("ledger: no checkpoint for size %d", size)
	}
	return Receipt{Entry: e, Inclusion: p, Checkpoint: string(cp)}, nil
}

// Receipt returns the receipt of entry index against the latest checkpoint.
func (l *Ledger) Receipt(index uint64) (Receipt, error) {
	if err := l.guard.keep(l.db); err != nil {
		return Receipt{}, err
	}
	var rc Receipt
	err := l.db.View(func(tx *bolt.Tx) error {
		var err error
		rc, err = txReceipt(tx, index)
		return err
	})
	return rc, err
}
