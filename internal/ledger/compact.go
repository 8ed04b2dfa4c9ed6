package ledger

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"time"

	bolt "go.etcd.io/bbolt"
)

// maxCompactSize bounds the files compacted on Close, so that shutting down
// a large ledger stays quick.
const maxCompactSize = 256 << 20

// lockTimeout bounds waiting for the file lock while compacting.
const lockTimeout = time.Second

// compactFile rewrites the closed bbolt file at path without its free
// pages. bbolt is copy-on-write: superseded copies of pages, entries
// included, linger in free pages until reused. They are not part of the
// ledger, and verify rightly ignores them, but an auditor who edits "the
// entry" in a copy of the file may hit a stale copy and see nothing
// detected. After a clean shutdown every entry is stored exactly once.
//
// The compacted file is written beside the original, synced, and renamed
// over it, so a crash at any point leaves one complete ledger.
func compactFile(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.Size() > maxCompactSize {
		return nil
	}
	tmp := path + ".compact"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	src, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: lockTimeout})
	if err != nil {
		return fmt.Errorf("compact: %w", err)
	}
	defer src.Close()
	dst, err := bolt.Open(tmp, 0o600, &bolt.Options{Timeout: lockTimeout})
	if err != nil {
		return fmt.Errorf("compact: %w", err)
	}
	if err := bolt.Compact(dst, src, 64<<20); err != nil {
		dst.Close()
		os.Remove(tmp)
		return fmt.Errorf("compact: %w", err)
	}
	if err := dst.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("compact: %w", err)
	}
	if err := src.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("compact: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("compact: %w", err)
	}
	dir, err := os.Open(filepath.Dir(path))
	if err != nil {
		return nil // renamed; only the directory sync is missing
	}
	defer dir.Close()
	_ = dir.Sync()
	return nil
}
