package ledger

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Compaction rewrites a bbolt file without its free pages. bbolt is
// copy-on-write: superseded copies of pages, entries included, linger in
// free pages until reused. They are not part of the ledger, and verify
// rightly ignores them, but they take disk space, and an auditor who edits
// "the entry" in a copy of the file may hit a stale copy and see nothing
// detected. After a compaction every entry is stored exactly once.
//
// It rewrites the whole file, not only the free part, so it is never done
// behind the caller's back: Close compacts only WithCompactOnClose, and
// only when enough is free to be worth it; `stagegate ledger compact` does
// it on demand. (Every clean Close used to compact: at 10^6 entries that
// rewrote up to 2.8 GB on every stop of serve.)

// WithCompactOnClose makes Close of a writable ledger compact the file
// when its free pages hold at least minFree bytes: after an import, a
// rebuild of the indexes, or much churn, not on every stop. Without it,
// Close leaves the file as it is.
func WithCompactOnClose(minFree int64) Option {
	return func(o *options) { o.compactOnClose, o.compactMinFree = true, minFree }
}

// freeBytes is the space bbolt's free pages hold, and so what compacting
// would give back.
func freeBytes(db *bolt.DB) int64 {
	st := db.Stats()
	return int64(st.FreePageN+st.PendingPageN) * int64(db.Info().PageSize)
}

// Compact rewrites the closed ledger file at path without its free pages
// (see above). It holds a shared lock on the file throughout, so it fails
// with ErrLocked while a writer (serve) has it open; readers may go on
// reading the old file, which stays whole. The compacted file is written
// beside the original, checked to hold the same size and checkpoint,
// synced, and renamed over it, so a crash at any point leaves one complete
// ledger.
func Compact(path string) error {
	if err := checkFile(path); err != nil {
		return err
	}
	if fi, err := os.Stat(path); err != nil {
		return fmt.Errorf("ledger: compact: %w", err)
	} else if fi.Size() == 0 {
		return fmt.Errorf("ledger: compact: %s is empty", path)
	}
	return compactFile(path)
}

// lockTimeout bounds waiting for the file lock while compacting.
const lockTimeout = time.Second

func compactFile(path string) error {
	tmp := path + ".compact"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("ledger: compact: %w", err)
	}
	src, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: lockTimeout})
	if errors.Is(err, berrors.ErrTimeout) {
		return fmt.Errorf("%w: %s (is another stagegate running?)", ErrLocked, path)
	}
	if err != nil {
		return fmt.Errorf("ledger: compact: open %s: %w", path, err)
	}
	// src stays open, and so locked, until the rename is done: a writer
	// cannot start on the old file in between and lose what it writes.
	defer src.Close()
	fail := func(err error) error {
		os.Remove(tmp)
		return fmt.Errorf("ledger: compact: %w", err)
	}
	dst, err := bolt.Open(tmp, 0o600, &bolt.Options{Timeout: lockTimeout})
	if err != nil {
		return fail(err)
	}
	if err := bolt.Compact(dst, src, 64<<20); err != nil {
		dst.Close()
		return fail(err)
	}
	if err := sameLedger(src, dst); err != nil {
		dst.Close()
		return fail(err)
	}
	if err := dst.Close(); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(err)
	}
	dir, err := os.Open(filepath.Dir(path))
	if err != nil {
		return nil // renamed; only the directory sync is missing
	}
	defer dir.Close()
	_ = dir.Sync()
	return nil
}

// sameLedger is a cheap check of a copy before it replaces the original:
// the same size, checkpoint and number of entries.
func sameLedger(a, b *bolt.DB) error {
	type summary struct {
		size    uint64
		cp      []byte
		entries int
	}
	read := func(db *bolt.DB) (s summary, err error) {
		err = db.View(func(tx *bolt.Tx) error {
			meta, entries := tx.Bucket(bucketMeta), tx.Bucket(bucketEntries)
			if meta == nil || entries == nil {
				return errors.New("not a ledger: missing buckets")
			}
			s = summary{size: txSize(tx), cp: bytes.Clone(meta.Get(keyCheckpoint)), entries: entries.Stats().KeyN}
			return nil
		})
		return s, err
	}
	sa, err := read(a)
	if err != nil {
		return err
	}
	sb, err := read(b)
	if err != nil {
		return err
	}
	if sa.size != sb.size || sa.entries != sb.entries || !bytes.Equal(sa.cp, sb.cp) {
		return fmt.Errorf("the copy differs from the original (size %d/%d, entries %d/%d)", sa.size, sb.size, sa.entries, sb.entries)
	}
	return nil
}
