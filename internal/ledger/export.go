package ledger

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/note"
)

// exportTrailer is the last line of an export.
type exportTrailer struct {
	Checkpoint string `json:"checkpoint"`
}

// Export writes the ledger as JSON lines: each entry's canonical bytes, then
// {"checkpoint":"..."}. It holds one read transaction for the whole copy, so
// the output is a consistent snapshot.
func (l *Ledger) Export(w io.Writer) error {
	return l.db.View(func(tx *bolt.Tx) error {
		cp := tx.Bucket(bucketMeta).Get(keyCheckpoint)
		if cp == nil {
			return ErrEmpty
		}
		bw := bufio.NewWriter(w)
		c := tx.Bucket(bucketEntries).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			bw.Write(v)
			bw.WriteByte('\n')
		}
		trailer, err := json.Marshal(exportTrailer{Checkpoint: string(cp)})
		if err != nil {
			return fmt.Errorf("ledger: export: %w", err)
		}
		bw.Write(trailer)
		bw.WriteByte('\n')
		if err := bw.Flush(); err != nil {
			return fmt.Errorf("ledger: export: %w", err)
		}
		return nil
	})
}

// importChunk is how many entries one write transaction of Import holds:
// bbolt splits and rebalances nodes at commit, so one transaction for a
// whole large export would be slow and hold everything in memory.
const importChunk = 10_000

// Import loads an export into this ledger, which must be empty. Everything is
// verified first (canonical entries with contiguous indexes from 0, check on
// each, the recomputed root against the checkpoint, the checkpoint signature
// via v), streaming: check runs concurrently on GOMAXPROCS goroutines, so it
// must be safe for concurrent use. Meanwhile the entries are spooled to a
// temporary file (mode 0600) beside the ledger, since r cannot be read twice.
// Only then is anything written, in transactions of importChunk entries that
// also rebuild every index; the size and the imported checkpoint are written
// by the last one, so until then the ledger has no checkpoint and verifies as
// broken. If a write fails midway, Import deletes what it wrote; if even that
// fails, the error says the file must be deleted. Verification failures are
// *VerifyError.
func (l *Ledger) Import(r io.Reader, v note.Verifier, check func(Entry) error) error {
	if l.db.IsReadOnly() {
		return ErrReadOnly
	}
	if size, err := l.Size(); err != nil {
		return err
	} else if size != 0 {
		return ErrNotEmpty
	}
	spool, err := os.CreateTemp(filepath.Dir(l.path), ".import-*")
	if err != nil {
		return fmt.Errorf("ledger: import: %w", err)
	}
	defer os.Remove(spool.Name())
	defer spool.Close()
	sw := bufio.NewWriter(spool)
	trailer, cp, err := verifyExport(r, v, check, sw)
	if err != nil {
		return err
	}
	if err := sw.Flush(); err != nil {
		return fmt.Errorf("ledger: import: spool: %w", err)
	}
	if _, err := spool.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("ledger: import: spool: %w", err)
	}
	w := newImportWriter(l)
	if err := w.fromSpool(bufio.NewReaderSize(spool, 1<<20), cp.Size, trailer); err != nil {
		return w.undo(err)
	}
	return l.guard.keep(l.db)
}

// verifyExport reads an export, verifies it and copies its entry lines to
// spool. It returns the checkpoint text and the parsed checkpoint. Problems
// are reported in the order the all-in-memory version used: the checkpoint
// line first, then the first bad entry, then the root.
func verifyExport(r io.Reader, v note.Verifier, check func(Entry) error, spool io.Writer) (string, Checkpoint, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	pool := newCheckPool(check, "import: ", (*checkItem).verdict)
	defer pool.close()
	rng := rangeFactory.NewEmptyRange(0)
	var entryErr error
	var prev []byte // the line before the current one: an entry unless it is the last
	n := uint64(0)
	for {
		line, err := readLine(br)
		if err != nil {
			return "", Checkpoint{}, fmt.Errorf("ledger: import: %w", err)
		}
		if line == nil {
			break
		}
		if prev != nil && entryErr == nil {
			if _, err := spool.Write(append(prev, '\n')); err != nil {
				return "", Checkpoint{}, fmt.Errorf("ledger: import: spool: %w", err)
			}
			it := checkItem{index: n, raw: prev}
			if err := rng.Append(hasher.HashLeaf(prev), nil); err != nil {
				it.pre = &VerifyError{Index: int64(n), Reason: "import: tree", Err: err}
			}
			entryErr = pool.add(it)
		}
		if prev != nil {
			n++
		}
		prev = line
	}
	if err := pool.drain(); entryErr == nil {
		entryErr = err
	}
	if prev == nil {
		return "", Checkpoint{}, &VerifyError{Index: -1, Reason: "import: no checkpoint line"}
	}
	var trailer exportTrailer
	dec := json.NewDecoder(bytes.NewReader(prev))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&trailer); err != nil || trailer.Checkpoint == "" {
		return "", Checkpoint{}, &VerifyError{Index: -1, Reason: "import: last line is not a checkpoint", Err: err}
	}
	cp, verr := checkpointAt(trailer.Checkpoint, v, "import: ")
	if verr != nil {
		return "", Checkpoint{}, verr
	}
	if n != cp.Size {
		return "", Checkpoint{}, &VerifyError{Index: -1, Reason: fmt.Sprintf("import: %d entries, checkpoint size %d", n, cp.Size)}
	}
	if entryErr != nil {
		return "", Checkpoint{}, entryErr
	}
	root := hasher.EmptyRoot()
	if n > 0 {
		var err error
		if root, err = rng.GetRootHash(nil); err != nil {
			return "", Checkpoint{}, &VerifyError{Index: -1, Reason: "import: tree", Err: err}
		}
	}
	if !bytes.Equal(root, cp.Root) {
		// Only the root is signed, so no one entry can be named here: the
		// per-entry attestation check names those whose signed fields
		// were edited.
		return "", Checkpoint{}, &VerifyError{Index: -1, Reason: fmt.Sprintf("import: the %d entries hash to root %s, but the checkpoint says %s: "+
			"an entry was edited in a field its attestation does not cover (reason, labels, time...), or entries were added, dropped or reordered",
			n, short(root), short(cp.Root))}
	}
	return trailer.Checkpoint, cp, nil
}

// wipeEntries empties every bucket a failed import may have written to.
func wipeEntries(tx *bolt.Tx) error {
	for _, name := range [][]byte{bucketEntries, bucketNodes, bucketState, bucketHistory} {
		if err := tx.DeleteBucket(name); err != nil {
			return err
		}
		if _, err := tx.CreateBucket(name); err != nil {
			return err
		}
	}
	return nil
}

// readLine returns the next non-empty line without its newline, or nil at
// the end. Lines have no length limit: an entry carries a whole DSSE
// envelope.
func readLine(br *bufio.Reader) ([]byte, error) {
	for {
		line, err := br.ReadBytes('\n')
		if line = bytes.TrimSuffix(line, []byte("\n")); len(line) > 0 {
			return line, nil
		}
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
	}
}
