package ledger

import (
	"bytes"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// rebuild empties the buckets named and fills the state index (and, with
// history, the history index) again from the entries, in transactions of
// rebuildChunk entries so that the dirty pages stay few. finish, if set,
// runs in the last transaction, so that what it records (the rules the
// index was built with) is committed with the index's last chunk and not
// before. A crash midway leaves a partial index that the caller's next
// check finds and rebuilds again. It is the one rebuild shared by the
// startup repair and the upgrade of older state rules.
func rebuild(db *bolt.DB, buckets [][]byte, history bool, finish func(tx *bolt.Tx) error) error {
	var size uint64
	if err := db.Update(func(tx *bolt.Tx) error {
		size = txSize(tx)
		for _, name := range buckets {
			if err := tx.DeleteBucket(name); err != nil {
				return err
			}
			if _, err := tx.CreateBucket(name); err != nil {
				return err
			}
		}
		if size == 0 && finish != nil {
			return finish(tx)
		}
		return nil
	}); err != nil {
		return err
	}
	for start := uint64(0); start < size; start += rebuildChunk {
		end := min(start+rebuildChunk, size)
		err := db.Update(func(tx *bolt.Tx) error {
			bk, hist := tx.Bucket(bucketState), tx.Bucket(bucketHistory)
			states := newStateBatch(bucketLoader(bk))
			c := tx.Bucket(bucketEntries).Cursor()
			k, raw := c.Seek(be64(start))
			for i := start; i < end; i++ {
				if !bytes.Equal(k, be64(i)) {
					return fmt.Errorf("entry %d missing (run `stagegate ledger verify`)", i)
				}
				e, err := decodeEntry(raw)
				if err != nil {
					return fmt.Errorf("entry %d: %w", i, err)
				}
				if history {
					for _, name := range historyNames(&e) {
						if err := hist.Put(historyKey(name, i), nil); err != nil {
							return err
						}
					}
				}
				if err := states.apply(&e); err != nil {
					return fmt.Errorf("entry %d: %w", i, err)
				}
				k, raw = c.Next()
			}
			if err := states.flush(bk); err != nil {
				return err
			}
			if end == size && finish != nil {
				return finish(tx)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}
