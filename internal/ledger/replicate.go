package ledger

import (
	"bytes"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/note"
)

// Replication (internal/cluster) splits Append in two. The leader builds
// and signs entries at the index the replicated log gives them and signs
// the checkpoint of the tree they make (Seal), without writing anything;
// then every replica, the leader included, writes them when the log
// applies them (ApplyReplicated), and checks on the way what it writes.
// The leader therefore never holds an entry that the others lack, and all
// replicas store the same bytes and the same checkpoint: the log key is
// Ed25519, whose note signatures are deterministic, and the checkpoint body
// has no timestamp, so even a checkpoint signed again would be identical.

// Seal returns the checkpoint, signed with the ledger's signer, of the tree
// this ledger would have after appending entries, which must continue at
// its size. It writes nothing: the leader calls it to make the command that
// every replica then applies with ApplyReplicated. The entries are checked
// as ApplyReplicated checks them (check may be nil), so that what every
// replica would refuse is refused before it enters the replicated log.
func (l *Ledger) Seal(entries []*Entry, check func(Entry) error) (string, error) {
	if l.signer == nil {
		return "", ErrNoSigner
	}
	if len(entries) == 0 {
		return "", errors.New("ledger: seal: no entries")
	}
	var cp string
	err := l.db.View(func(tx *bolt.Tx) error {
		size := txSize(tx)
		checked, raws, err := checkReplicated(entries, size, check)
		if err != nil {
			return err
		}
		rng, err := loadRange(tx.Bucket(bucketNodes), size)
		if err != nil {
			return err
		}
		for i := range checked {
			if err := rng.Append(hasher.HashLeaf(raws[i]), nil); err != nil {
				return fmt.Errorf("ledger: seal: tree append: %w", err)
			}
		}
		root, err := rng.GetRootHash(nil)
		if err != nil {
			return fmt.Errorf("ledger: seal: root: %w", err)
		}
		cp, err = signCheckpoint(l.signer, rng.End(), root)
		return err
	})
	return cp, err
}

// ApplyReplicated appends entries that another replica built and signed,
// with checkpoint, that replica's signed checkpoint of the resulting tree.
// The entries must continue at the ledger's size (contiguous indexes),
// each must pass the checks Import makes (canonical bytes, index,
// validity, then check, typically the attestation signature), checkpoint
// must verify with v, be for the new size, and its root must equal the
// root this ledger computes after appending them. Then the entries, their
// state (as Append indexes them) and checkpoint itself are written in one
// transaction, so every replica serves byte-identical checkpoints. On any
// mismatch nothing is written; the error names the entry (a *VerifyError)
// or both roots.
//
// Entries that the ledger already holds, byte for byte, are accepted
// without writing anything: a replicated log replays what a replica
// applied before it restarted.
func (l *Ledger) ApplyReplicated(entries []*Entry, checkpoint string, v note.Verifier, check func(Entry) error) error {
	if l.db.IsReadOnly() {
		return ErrReadOnly
	}
	if len(entries) == 0 {
		return errors.New("ledger: replicate: no entries")
	}
	cp, err := ParseCheckpoint(checkpoint, v)
	if err != nil {
		return fmt.Errorf("ledger: replicate: %w", err)
	}
	first := entries[0].Index
	if cp.Size != first+uint64(len(entries)) {
		return fmt.Errorf("ledger: replicate: checkpoint is for size %d, but the entries end at %d", cp.Size, first+uint64(len(entries)))
	}
	var touched []string
	defer func() { l.cache.invalidate(touched, false) }()
	var replayed bool
	err = l.db.Update(func(tx *bolt.Tx) error {
		size := txSize(tx)
		if first < size {
			replayed = true
			return sameAsStored(tx, entries, size)
		}
		checked, raws, err := checkReplicated(entries, size, check)
		if err != nil {
			return err
		}
		root, states, err := appendTx(tx, size, checked, raws)
		if err != nil {
			return err
		}
		if !bytes.Equal(root, cp.Root) {
			return fmt.Errorf("ledger: replicate: entries %d..%d lead to root %s, but the leader's checkpoint at size %d says %s",
				size, cp.Size-1, short(root), cp.Size, short(cp.Root))
		}
		touched = append(touched, states...)
		return putMeta(tx, cp.Size, checkpoint)
	})
	if err != nil || replayed {
		return err
	}
	return l.guard.keep(l.db)
}

// checkReplicated runs Import's per-entry checks (the shared check pool)
// on entries, which must start at index size, and returns them as stored,
// decoded from their canonical bytes, with those bytes.
func checkReplicated(entries []*Entry, size uint64, check func(Entry) error) ([]*Entry, [][]byte, error) {
	if entries[0].Index != size {
		return nil, nil, fmt.Errorf("ledger: replicate: entries start at %d, but the ledger has %d", entries[0].Index, size)
	}
	checked := make([]*Entry, 0, len(entries))
	raws := make([][]byte, 0, len(entries))
	pool := newCheckPool(check, "replicate: ", func(it *checkItem) error {
		if err := it.verdict(); err != nil {
			return err
		}
		e := it.entry
		checked, raws = append(checked, &e), append(raws, it.raw)
		return nil
	})
	defer pool.close()
	for i, e := range entries {
		if err := pool.add(checkItem{index: size + uint64(i), src: e}); err != nil {
			return nil, nil, err
		}
	}
	if err := pool.drain(); err != nil {
		return nil, nil, err
	}
	return checked, raws, nil
}

// sameAsStored accepts a replay: entries wholly below size whose bytes are
// those stored.
func sameAsStored(tx *bolt.Tx, entries []*Entry, size uint64) error {
	b := tx.Bucket(bucketEntries)
	for _, e := range entries {
		if e.Index >= size {
			return fmt.Errorf("ledger: replicate: entries from %d overlap the ledger's end at %d", entries[0].Index, size)
		}
		raw, err := encodeEntry(e)
		if err != nil {
			return fmt.Errorf("ledger: replicate: entry %d: %w", e.Index, err)
		}
		if !bytes.Equal(raw, b.Get(be64(e.Index))) {
			return fmt.Errorf("ledger: replicate: replayed entry %d differs from the stored one", e.Index)
		}
	}
	return nil
}

// appendTx writes entries (raws[i] the bytes of entries[i]) at size, with
// their tree nodes, history and state, and returns the new root and the
// digests whose state changed. It writes neither size nor checkpoint.
// Append and ApplyReplicated share it, so a replicated entry is indexed
// exactly as a local one.
func appendTx(tx *bolt.Tx, size uint64, entries []*Entry, raws [][]byte) ([]byte, []string, error) {
	rng, err := loadRange(tx.Bucket(bucketNodes), size)
	if err != nil {
		return nil, nil, err
	}
	states := newStateBatch(bucketLoader(tx.Bucket(bucketState)))
	for i, e := range entries {
		if err := writeEntry(tx, rng, states, e, raws[i]); err != nil {
			return nil, nil, err
		}
	}
	if err := states.flush(tx.Bucket(bucketState)); err != nil {
		return nil, nil, err
	}
	root, err := rng.GetRootHash(nil)
	if err != nil {
		return nil, nil, fmt.Errorf("ledger: root: %w", err)
	}
	return root, states.order, nil
}
