package ledger

import (
	"bufio"
	"cmp"
	"fmt"
	"io"

	"github.com/transparency-dev/merkle/compact"
	bolt "go.etcd.io/bbolt"
)

// importWriter writes verified entries into an empty ledger in chunks of
// importChunk, rebuilding every index as it goes. The size and checkpoint
// are written by the last chunk only, so until then the ledger has no
// checkpoint and verifies as broken. Import (from its spool) and Importer
// (from memory) share it, and so share what an import leaves behind.
type importWriter struct {
	l       *Ledger
	rng     *compact.Range
	written uint64 // entries committed
}

func newImportWriter(l *Ledger) *importWriter {
	return &importWriter{l: l, rng: rangeFactory.NewEmptyRange(0)}
}

// write commits entries, raws[i] the bytes of entries[i], in one
// transaction. With seal, that transaction also writes the size and the
// checkpoint seal returns for it (called once the entries are in the tree).
func (w *importWriter) write(entries []Entry, raws [][]byte, seal func(size uint64) (string, error)) error {
	first := w.written == 0
	err := w.l.db.Update(func(tx *bolt.Tx) error {
		if first {
			if k, _ := tx.Bucket(bucketEntries).Cursor().First(); txSize(tx) != 0 || k != nil {
				return ErrNotEmpty
			}
		}
		states := newStateBatch(bucketLoader(tx.Bucket(bucketState)))
		for i := range entries {
			if err := writeEntry(tx, w.rng, states, &entries[i], raws[i]); err != nil {
				return err
			}
		}
		if err := states.flush(tx.Bucket(bucketState)); err != nil {
			return err
		}
		if seal == nil {
			return nil
		}
		size := w.written + uint64(len(entries))
		cp, err := seal(size)
		if err != nil {
			return err
		}
		return putMeta(tx, size, cp)
	})
	// Whatever a reader cached before this chunk may be out of date.
	w.l.cache.invalidate(nil, true)
	if err != nil {
		return err
	}
	w.written += uint64(len(entries))
	return nil
}

// fromSpool writes the size verified entries read from spool, the
// checkpoint with the last chunk.
func (w *importWriter) fromSpool(spool *bufio.Reader, size uint64, checkpoint string) error {
	seal := func(uint64) (string, error) { return checkpoint, nil }
	for first := true; first || w.written < size; first = false {
		n := min(size-w.written, importChunk)
		entries, raws := make([]Entry, 0, n), make([][]byte, 0, n)
		for uint64(len(raws)) < n {
			line, err := readLine(spool)
			if err != nil || line == nil {
				return fmt.Errorf("ledger: import: spool: %w", cmp.Or(err, io.ErrUnexpectedEOF))
			}
			e, err := decodeEntry(line)
			if err != nil {
				return fmt.Errorf("ledger: import: %w", err)
			}
			entries, raws = append(entries, e), append(raws, line)
		}
		var last func(uint64) (string, error)
		if w.written+n == size {
			last = seal
		}
		if err := w.write(entries, raws, last); err != nil {
			return err
		}
	}
	return nil
}

// undo removes what an import that failed with err wrote, and returns err,
// or, if even that fails, an error saying that the file must be deleted.
func (w *importWriter) undo(err error) error {
	if w.written == 0 {
		return err
	}
	werr := w.l.db.Update(wipeEntries)
	w.l.cache.invalidate(nil, true)
	if werr != nil {
		return fmt.Errorf("ledger: import failed after writing %d entries, and they could not be removed (%w): delete %s: %w", w.written, werr, w.l.path, err)
	}
	return err
}
