package ledger

import (
	"errors"
	"fmt"
)

// Importer is Import for entries that are already in memory rather than in
// an export: bulk loading, such as benchmark fixtures, where one commit per
// entry (Append) would dominate. It gives what Import gives: every entry is
// checked as Import checks an export's (canonical bytes, contiguous indexes
// from 0, validity, then check, concurrently on GOMAXPROCS goroutines), into
// an empty ledger, in transactions of importChunk entries, and until Close
// the ledger has no checkpoint and verifies as broken. What Import takes
// from the export's signed checkpoint, Importer signs itself at Close with
// the ledger's signer, so the ledger must be opened WithSigner.
//
// There is no other way to write entries that no BuildFunc made: entries
// from elsewhere are imported, and their attestations checked.
type Importer struct {
	l    *Ledger
	pool *checkPool
	w    *importWriter
	next uint64 // index of the next entry Add gets

	entries []Entry // checked, not yet written
	raws    [][]byte
	err     error // the first failure; Add and Close return it
	closed  bool
}

// NewImporter starts a bulk import into l, which must be empty. check is
// as Import's. Close must be called, also after an error: it stops the
// workers.
func (l *Ledger) NewImporter(check func(Entry) error) (*Importer, error) {
	if l.db.IsReadOnly() {
		return nil, ErrReadOnly
	}
	if l.signer == nil {
		return nil, ErrNoSigner
	}
	if size, err := l.Size(); err != nil {
		return nil, err
	} else if size != 0 {
		return nil, ErrNotEmpty
	}
	im := &Importer{l: l, w: newImportWriter(l)}
	im.pool = newCheckPool(check, "import: ", im.take)
	return im, nil
}

// Add queues entries for checking and writing; entries[i] must carry Index
// = the number added before it. Add reads the entries later, on the
// workers, so they must not be changed until Close returns. A refused
// entry is a *VerifyError; after any error, what was written is removed
// and the Importer accepts nothing more.
func (im *Importer) Add(entries ...*Entry) error {
	if im.closed {
		return errors.New("ledger: import: importer closed")
	}
	for _, e := range entries {
		if im.err != nil {
			return im.err
		}
		if err := im.pool.add(checkItem{index: im.next, src: e}); err != nil {
			return im.fail(err)
		}
		im.next++
	}
	return im.err
}

// take writes checked entries in chunks; it runs inside add and drain.
func (im *Importer) take(it *checkItem) error {
	if err := it.verdict(); err != nil {
		return err
	}
	im.entries, im.raws = append(im.entries, it.entry), append(im.raws, it.raw)
	if len(im.entries) < importChunk {
		return nil
	}
	return im.flush(nil)
}

func (im *Importer) flush(seal func(uint64) (string, error)) error {
	err := im.w.write(im.entries, im.raws, seal)
	im.entries, im.raws = im.entries[:0], im.raws[:0]
	return err
}

func (im *Importer) fail(err error) error {
	if im.err == nil {
		im.err = im.w.undo(err)
	}
	return im.err
}

// Close checks and writes what is still queued, then the size and a
// checkpoint signed with the ledger's signer, in the last transaction. It
// returns the first error of the import; then nothing of it is left in the
// ledger. An Importer that got no entries writes nothing.
func (im *Importer) Close() error {
	if im.closed {
		return im.err
	}
	im.closed = true
	defer im.pool.close()
	if im.err != nil {
		return im.err
	}
	if err := im.pool.drain(); err != nil {
		return im.fail(err)
	}
	if im.w.written == 0 && len(im.entries) == 0 {
		return nil
	}
	err := im.flush(func(size uint64) (string, error) {
		root, err := im.w.rng.GetRootHash(nil)
		if err != nil {
			return "", fmt.Errorf("ledger: root: %w", err)
		}
		return signCheckpoint(im.l.signer, size, root)
	})
	if err != nil {
		return im.fail(err)
	}
	return im.l.guard.keep(im.l.db)
}
