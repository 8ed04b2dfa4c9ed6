package ledger

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

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

// Import loads an export into this ledger, which must be empty. Everything is
// verified first (canonical entries with contiguous indexes from 0, check on
// each, the recomputed root against the checkpoint, the checkpoint signature
// via v); only then is anything written, in one transaction that also
// rebuilds every index and keeps the imported checkpoint. The export is held
// in memory while it is verified. Verification failures are *VerifyError.
func (l *Ledger) Import(r io.Reader, v note.Verifier, check func(Entry) error) error {
	if l.db.IsReadOnly() {
		return ErrReadOnly
	}
	lines, err := readLines(r)
	if err != nil {
		return fmt.Errorf("ledger: import: %w", err)
	}
	if len(lines) == 0 {
		return &VerifyError{Index: -1, Reason: "import: no checkpoint line"}
	}
	var trailer exportTrailer
	dec := json.NewDecoder(bytes.NewReader(lines[len(lines)-1]))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&trailer); err != nil || trailer.Checkpoint == "" {
		return &VerifyError{Index: -1, Reason: "import: last line is not a checkpoint", Err: err}
	}
	cp, err := ParseCheckpoint(trailer.Checkpoint, v)
	if err != nil {
		return &VerifyError{Index: -1, Reason: "import: bad checkpoint", Err: err}
	}
	lines = lines[:len(lines)-1]
	if uint64(len(lines)) != cp.Size {
		return &VerifyError{Index: -1, Reason: fmt.Sprintf("import: %d entries, checkpoint size %d", len(lines), cp.Size)}
	}

	entries := make([]Entry, len(lines))
	rng := rangeFactory.NewEmptyRange(0)
	for i, raw := range lines {
		e, err := canonicalEntry(raw)
		if err != nil {
			return &VerifyError{Index: int64(i), Reason: "import: bad bytes", Err: err}
		}
		if e.Index != uint64(i) {
			return &VerifyError{Index: int64(i), Reason: fmt.Sprintf("import: index field says %d", e.Index)}
		}
		if err := validateEntry(&e); err != nil {
			return &VerifyError{Index: int64(i), Reason: "import: invalid", Err: err}
		}
		if check != nil {
			if err := check(e); err != nil {
				return &VerifyError{Index: int64(i), Reason: "import: entry check failed", Err: err}
			}
		}
		if err := rng.Append(hasher.HashLeaf(raw), nil); err != nil {
			return &VerifyError{Index: int64(i), Reason: "import: tree", Err: err}
		}
		entries[i] = e
	}
	root := hasher.EmptyRoot()
	if len(lines) > 0 {
		if root, err = rng.GetRootHash(nil); err != nil {
			return &VerifyError{Index: -1, Reason: "import: tree", Err: err}
		}
	}
	if !bytes.Equal(root, cp.Root) {
		return &VerifyError{Index: -1, Reason: "import: recomputed root differs from the checkpoint root"}
	}

	return l.db.Update(func(tx *bolt.Tx) error {
		if k, _ := tx.Bucket(bucketEntries).Cursor().First(); txSize(tx) != 0 || k != nil {
			return ErrNotEmpty
		}
		rng := rangeFactory.NewEmptyRange(0)
		states := newStateBatch(bucketLoader(tx.Bucket(bucketState)))
		for i := range entries {
			if err := writeEntry(tx, rng, states, &entries[i], lines[i]); err != nil {
				return err
			}
		}
		if err := states.flush(tx.Bucket(bucketState)); err != nil {
			return err
		}
		return putMeta(tx, cp.Size, trailer.Checkpoint)
	})
}

// readLines splits r into non-empty lines. Lines have no length limit: an
// entry carries a whole DSSE envelope.
func readLines(r io.Reader) ([][]byte, error) {
	br := bufio.NewReader(r)
	var lines [][]byte
	for {
		line, err := br.ReadBytes('\n')
		if line = bytes.TrimSuffix(line, []byte("\n")); len(line) > 0 {
			lines = append(lines, line)
		}
		if errors.Is(err, io.EOF) {
			return lines, nil
		}
		if err != nil {
			return nil, err
		}
	}
}
