package ledger

import (
	"errors"
	"fmt"
	"log/slog"
	"os"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
	"golang.org/x/mod/sumdb/note"
)

// WithStartupVerify makes Open check the ledger before anyone can read
// it, as serve needs. Admission decides from the state index alone, and the
// index is only as good as the file: someone who can write the file can
// mark a revoked digest promoted without touching an entry. So every entry
// is re-hashed into the checkpoint root (signature checked with v), and the
// state and history indexes are compared with what those entries imply
// (Verify without the per-entry attestation check, which is the slow part).
// An index that disagrees is rebuilt from the entries, which the root has
// just vouched for, and checked again; a bad entry, tree or checkpoint
// makes Open fail with a *VerifyError. A writable ledger only.
//
// It reads the whole file, at about 20 µs an entry on a warm file (2
// shared cores: 0.21 s at 10^4 entries, 1.9 s at 10^5; see
// BenchmarkVerifyStartup). It reads through a read-only mapping of its own,
// closed before the ledger is opened for writing, so that the pages it
// touched leave serve's RSS with it: at 10^5 entries (a 292 MB file),
// verifying through the serving mapping left 280 MB of file pages in RSS;
// this way RssFile stays at 19 MB.
func WithStartupVerify(v note.Verifier) Option {
	return func(o *options) { o.startupVerifier = v }
}

// preVerify is the read-only pass of WithStartupVerify. rebuild reports an
// index that disagrees with sound entries; checked is false when the file
// could not be checked this way (new, or missing a bucket), and the
// writable handle must be verified instead.
func preVerify(path string, o *options) (rebuild, checked bool, err error) {
	if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
		return false, false, nil
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: o.timeout})
	if errors.Is(err, berrors.ErrTimeout) {
		return false, false, fmt.Errorf("%w: %s (is another stagegate running?)", ErrLocked, path)
	}
	if err != nil {
		return false, false, fmt.Errorf("ledger: open %s: %w", path, err)
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if tx.Bucket(name) == nil {
				return nil
			}
		}
		checked = true
		return verifyTx(tx, o.startupVerifier, nil, nil)
	})
	return startupVerdict(o.logger, path, err, checked)
}

// postVerify is WithStartupVerify on the writable handle, after preVerify
// found an index to rebuild or could not check.
func (l *Ledger) postVerify(v note.Verifier, rebuild bool) error {
	if !rebuild {
		var err error
		if rebuild, _, err = startupVerdict(l.log, l.path, l.Verify(v, nil), true); err != nil || !rebuild {
			return err
		}
	}
	if err := rebuildIndexes(l.db); err != nil {
		return err
	}
	l.cache.invalidate(nil, true)
	return l.Verify(v, nil)
}

func startupVerdict(log *slog.Logger, path string, err error, checked bool) (rebuild, ok bool, _ error) {
	var ve *VerifyError
	if errors.As(err, &ve) && ve.index {
		log.Warn("ledger: an index disagrees with the entries (edited file?); rebuilding the indexes from the verified entries",
			"path", path, "problem", ve.Error())
		return true, checked, nil
	}
	return false, checked, err
}

// rebuildIndexes replaces the state and history buckets with what the
// entries imply, in transactions of rebuildChunk entries so that the dirty
// pages stay few. A crash midway leaves indexes that the next
// WithStartupVerify rebuilds again.
func rebuildIndexes(db *bolt.DB) error {
	if err := rebuild(db, [][]byte{bucketState, bucketHistory}, true, nil); err != nil {
		return fmt.Errorf("ledger: rebuild indexes: %w", err)
	}
	return nil
}
