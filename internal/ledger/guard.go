package ledger

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/note"
)

// WithCheckpointGuard keeps the newest checkpoint the ledger has handed out
// in the file at path, and makes Open refuse (ErrRolledBack) a ledger whose
// tree is smaller than that checkpoint or whose root at its size differs:
// an older copy of the file, e.g. one from before a revocation, would
// otherwise be served as if the revocation never happened. The file must
// be outside the ledger's directory (another volume: whoever can swap the
// ledger must not be able to swap the guard). v verifies the kept
// checkpoint before it is trusted. A missing guard is created from the
// ledger's current checkpoint (trust on first use).
func WithCheckpointGuard(path string, v note.Verifier) Option {
	return func(o *options) { o.guardPath, o.guardVerifier = path, v }
}

// guard is the file WithCheckpointGuard names. kept is the size of the
// checkpoint it holds; mu orders writers so that it only grows.
type guard struct {
	path     string
	v        note.Verifier
	readOnly bool // check only: a read-only ledger hands nothing out
	mu       sync.Mutex
	kept     uint64
}

func newGuard(path string, v note.Verifier, ledgerPath string, readOnly bool) (*guard, error) {
	if v == nil {
		return nil, errors.New("ledger: checkpoint guard: no log verifier")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("ledger: checkpoint guard: %w", err)
	}
	dir, err := filepath.Abs(filepath.Dir(ledgerPath))
	if err != nil {
		return nil, fmt.Errorf("ledger: checkpoint guard: %w", err)
	}
	if rel, err := filepath.Rel(dir, abs); err == nil && !strings.HasPrefix(rel, "..") {
		return nil, fmt.Errorf("ledger: checkpoint guard %s is inside the ledger's directory %s: "+
			"put it on another volume, or it can be rolled back with the ledger", path, dir)
	}
	return &guard{path: path, v: v, readOnly: readOnly}, nil
}

// check compares the kept checkpoint with the ledger and then keeps the
// ledger's own checkpoint if it is newer. It runs in Open, before anyone
// reads.
func (g *guard) check(db *bolt.DB, ledgerPath string) error {
	text, err := os.ReadFile(g.path)
	if errors.Is(err, os.ErrNotExist) {
		return g.keep(db)
	}
	if err != nil {
		return fmt.Errorf("ledger: checkpoint guard: %w", err)
	}
	kept, err := ParseCheckpoint(string(text), g.v)
	if err != nil {
		return fmt.Errorf("ledger: checkpoint guard %s does not verify with the log key (%w); "+
			"if it was replaced deliberately, remove it and start again", g.path, err)
	}
	howTo := fmt.Sprintf("restore the newer ledger to %s; or, only after auditing this one "+
		"(`stagegate ledger verify --checkpoint-file %s` says what it lacks), remove %s deliberately",
		ledgerPath, g.path, g.path)
	var size uint64
	var root []byte
	err = db.View(func(tx *bolt.Tx) error {
		size = txSize(tx)
		if size < kept.Size || kept.Size == 0 {
			return nil
		}
		var err error
		root, err = rootAt(tx.Bucket(bucketNodes), kept.Size)
		return err
	})
	if err != nil {
		return fmt.Errorf("ledger: checkpoint guard: root at size %d: %w", kept.Size, err)
	}
	if size < kept.Size {
		return fmt.Errorf("%w: %s has %d entries, but this server already published a checkpoint of %d (kept in %s): "+
			"it is an older copy of the ledger; %s", ErrRolledBack, ledgerPath, size, kept.Size, g.path, howTo)
	}
	if kept.Size > 0 && !bytes.Equal(root, kept.Root) {
		return fmt.Errorf("%w: %s's root at size %d is %s, but the checkpoint this server published (kept in %s) says %s: "+
			"its history was rewritten; %s", ErrRolledBack, ledgerPath, kept.Size, short(root), g.path, short(kept.Root), howTo)
	}
	g.kept = kept.Size
	return g.keep(db)
}

// keep writes the ledger's latest checkpoint to the guard file unless it
// already holds one at least as new. Callers run it after a commit and
// before they hand a checkpoint out.
func (g *guard) keep(db *bolt.DB) error {
	if g == nil || g.readOnly {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	var size uint64
	var cp []byte
	if err := db.View(func(tx *bolt.Tx) error {
		size = txSize(tx)
		cp = bytes.Clone(tx.Bucket(bucketMeta).Get(keyCheckpoint))
		return nil
	}); err != nil {
		return err
	}
	if size <= g.kept || cp == nil {
		return nil
	}
	if err := writeFileAtomic(g.path, cp); err != nil {
		return fmt.Errorf("ledger: checkpoint guard: %w", err)
	}
	g.kept = size
	return nil
}

// writeFileAtomic replaces path with b so that a crash leaves the old
// contents or the new, never a mix: temp file, fsync, rename, fsync dir.
func writeFileAtomic(path string, b []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// short is the start of a hash in hex, enough to tell two apart in a
// message.
func short(h []byte) string {
	if len(h) == 0 {
		return "(none)"
	}
	return fmt.Sprintf("%x…", h[:min(len(h), 6)])
}
