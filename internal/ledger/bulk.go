package ledger

import (
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// AppendEntries appends ready-made entries in one transaction and one
// checkpoint. It is for bulk loading (benchmark fixtures, large imports
// done in chunks), where one commit per entry would dominate: entries[i]
// must carry Index = Size()+i, and each is checked as Append checks it.
// Either all are stored or none.
func (l *Ledger) AppendEntries(entries []*Entry) error {
	if l.db.IsReadOnly() {
		return ErrReadOnly
	}
	if l.signer == nil {
		return ErrNoSigner
	}
	if len(entries) == 0 {
		return nil
	}
	var touched []string
	defer func() { l.cache.invalidate(touched, false) }()
	err := l.db.Update(func(tx *bolt.Tx) error {
		size := txSize(tx)
		rng, err := loadRange(tx.Bucket(bucketNodes), size)
		if err != nil {
			return err
		}
		states := newStateBatch(bucketLoader(tx.Bucket(bucketState)))
		for i, in := range entries {
			want := size + uint64(i)
			if in.Index != want {
				return fmt.Errorf("ledger: bulk entry %d has index %d, want %d", i, in.Index, want)
			}
			if err := validateEntry(in); err != nil {
				return fmt.Errorf("ledger: bulk entry %d: %w", want, err)
			}
			raw, err := encodeEntry(in)
			if err != nil {
				return fmt.Errorf("ledger: %w", err)
			}
			stored, err := decodeEntry(raw)
			if err != nil {
				return fmt.Errorf("ledger: %w", err)
			}
			if err := writeEntry(tx, rng, states, &stored, raw); err != nil {
				return err
			}
		}
		touched = states.order
		if err := states.flush(tx.Bucket(bucketState)); err != nil {
			return err
		}
		root, err := rng.GetRootHash(nil)
		if err != nil {
			return fmt.Errorf("ledger: root: %w", err)
		}
		end := size + uint64(len(entries))
		cp, err := signCheckpoint(l.signer, end, root)
		if err != nil {
			return err
		}
		return putMeta(tx, end, cp)
	})
	if err != nil {
		return err
	}
	return l.guard.keep(l.db)
}
