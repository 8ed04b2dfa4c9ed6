// Package ledger is stagegate's append-only, tamper-evident log of promotion,
// revocation and break-glass entries.
//
// Entries live in a bbolt file. Their canonical JSON encoding is the leaf data
// of an RFC 6962 Merkle tree whose complete subtree hashes are stored beside
// them, so inclusion and consistency proofs cost O(log n) reads. Every append
// re-signs a checkpoint in the C2SP tlog-checkpoint signed-note format in the
// same transaction, and maintains a per-digest state index so that admission
// answers "is D active in stage S" with a single bbolt Get.
package ledger

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
	"golang.org/x/mod/sumdb/note"
)

// Bucket names. The layout is part of the on-disk format: Verify rebuilds
// every index bucket from the entries and compares.
var (
	bucketEntries = []byte("entries") // be64 index -> canonical entry JSON
	bucketNodes   = []byte("nodes")   // level(1) be64 index -> node hash
	bucketState   = []byte("state")   // digest -> encodeRecord(stateRecord)
	bucketHistory = []byte("history") // name 0x00 be64 index -> nil
	bucketMeta    = []byte("meta")

	keySize       = []byte("size")       // be64 number of entries
	keyCheckpoint = []byte("checkpoint") // latest signed checkpoint text
	// keyStateRules (upgrade.go) is in the meta bucket too.
)

var allBuckets = [][]byte{bucketEntries, bucketNodes, bucketState, bucketHistory, bucketMeta}

// Ledger is an open ledger file. It is safe for concurrent use.
type Ledger struct {
	db     *bolt.DB
	signer note.Signer
	path   string
	cache  *stateCache // nil: State reads bbolt every time
	guard  *guard      // nil: no WithCheckpointGuard
	log    *slog.Logger
	// stopReadAhead ends WithReadAhead's background read.
	stopReadAhead func()
	// compactOnClose: WithCompactOnClose, with its threshold.
	compactOnClose bool
	compactMinFree int64
}

type options struct {
	signer    note.Signer
	readOnly  bool
	noSync    bool
	timeout   time.Duration
	cache     int
	readAhead bool
	logger    *slog.Logger

	compactOnClose bool
	compactMinFree int64

	guardPath       string
	guardVerifier   note.Verifier
	startupVerifier note.Verifier
}

// Option configures Open.
type Option func(*options)

// WithSigner sets the key that signs checkpoints; it is needed to append.
// The checkpoint origin is s.Name().
func WithSigner(s note.Signer) Option { return func(o *options) { o.signer = s } }

// WithReadOnly opens the file with a shared lock and refuses writes, e.g. for
// `ledger verify` on a copy while the server runs.
func WithReadOnly() Option { return func(o *options) { o.readOnly = true } }

// WithNoSync skips fsync on commit. For tests and benchmarks only: a crash
// may lose acknowledged promotions.
func WithNoSync() Option { return func(o *options) { o.noSync = true } }

// WithStateCache sets how many digests' decoded state records State keeps
// in memory (default DefaultStateCache); 0 turns the cache off, so that
// every State reads the file.
func WithStateCache(n int) Option { return func(o *options) { o.cache = n } }

// WithReadAhead starts reading the whole file into the page cache in the
// background when it is opened, for callers that will read all of it, like
// Verify and Export: on a file the page cache does not hold, a sequential
// read ahead of the cursor is far quicker than faulting in one page at a
// time. (On a 2.8 GB, 10^6-entry ledger, cold, `ledger verify` took 212 s
// without it.)
func WithReadAhead() Option { return func(o *options) { o.readAhead = true } }

// WithLogger sets where the ledger reports what it does on its own: a
// rebuild of the state index under newer rules, an index repaired at
// startup. The default discards them; a library has no business writing
// to the process's global logger.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithLockTimeout bounds how long Open waits for the file lock (default 1s),
// so that a second server on the same file fails fast instead of hanging.
func WithLockTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// Open opens or creates the ledger at path. A new file gets mode 0600 and
// missing parent directories 0700.
func Open(path string, opts ...Option) (*Ledger, error) {
	o := options{timeout: time.Second, cache: DefaultStateCache}
	for _, opt := range opts {
		opt(&o)
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	if !o.readOnly {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("ledger: create directory: %w", err)
		}
	}
	if err := checkFile(path); err != nil {
		return nil, err
	}
	var rebuild, checked bool
	if o.startupVerifier != nil {
		if o.readOnly {
			return nil, errors.New("ledger: WithStartupVerify needs a writable ledger")
		}
		var err error
		if rebuild, checked, err = preVerify(path, &o); err != nil {
			return nil, err
		}
	}
	stopReadAhead := func() {}
	if o.readAhead {
		stopReadAhead = readAhead(path)
	}
	db, err := openLocked(path, &bolt.Options{
		Timeout:  o.timeout,
		ReadOnly: o.readOnly,
		NoSync:   o.noSync,
	})
	if err != nil {
		stopReadAhead()
	}
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s (is another stagegate running?)", ErrLocked, path)
	}
	var pathErr *fs.PathError
	if errors.As(err, &pathErr) {
		return nil, fmt.Errorf("ledger: %w", err) // it names the file already
	}
	if err != nil {
		return nil, fmt.Errorf("ledger: open %s: %w", path, err)
	}
	// A short batch window: a lone promotion waits at most this long for
	// company, while concurrent ones share a commit (see Append).
	db.MaxBatchDelay = 2 * time.Millisecond
	l := &Ledger{db: db, signer: o.signer, path: path, cache: newStateCache(o.cache), log: o.logger, stopReadAhead: stopReadAhead,
		compactOnClose: o.compactOnClose && !o.readOnly, compactMinFree: o.compactMinFree}
	if o.readOnly {
		err = db.View(func(tx *bolt.Tx) error {
			for _, name := range allBuckets {
				if tx.Bucket(name) == nil {
					return fmt.Errorf("ledger: %s: missing bucket %q", path, name)
				}
			}
			return nil
		})
	} else {
		err = db.Update(func(tx *bolt.Tx) error {
			for _, name := range allBuckets {
				if _, err := tx.CreateBucketIfNotExists(name); err != nil {
					return fmt.Errorf("ledger: create bucket %q: %w", name, err)
				}
			}
			return nil
		})
		if err == nil {
			err = upgradeState(db, o.logger)
		}
	}
	if err == nil && o.startupVerifier != nil && (rebuild || !checked) {
		err = l.postVerify(o.startupVerifier, rebuild)
	}
	if err == nil && o.guardPath != "" {
		if l.guard, err = newGuard(o.guardPath, o.guardVerifier, path, o.readOnly); err == nil {
			err = l.guard.check(db, path)
		}
	}
	if err != nil {
		stopReadAhead()
		_ = db.Close()
		return nil, err
	}
	return l, nil
}

// openLocked is bolt.Open, on the file path names once the lock is held.
// Compact renames its copy over the file while holding the old one's lock,
// so an Open that opened the old file just before, and waited for its lock,
// would otherwise serve a file that no longer has a name, and every write
// to it would be lost.
func openLocked(path string, opts *bolt.Options) (*bolt.DB, error) {
	for tries := 0; ; tries++ {
		before, statErr := os.Stat(path)
		db, err := bolt.Open(path, 0o600, opts)
		if err != nil || statErr != nil || tries == 2 {
			return db, err
		}
		if after, err := os.Stat(path); err == nil && os.SameFile(before, after) {
			return db, nil
		}
		_ = db.Close()
	}
}

// Close releases the file. It leaves the file as it is, unless the
// ledger was opened WithCompactOnClose and enough of it is free.
func (l *Ledger) Close() error {
	l.stopReadAhead()
	free := int64(0)
	if l.compactOnClose {
		free = freeBytes(l.db)
	}
	if err := l.db.Close(); err != nil {
		return fmt.Errorf("ledger: close: %w", err)
	}
	if l.compactOnClose && free > 0 && free >= l.compactMinFree {
		l.log.Info("ledger: compacting on close", "path", l.path, "free bytes", free)
		if err := compactFile(l.path); err != nil {
			return fmt.Errorf("ledger: close: %w", err)
		}
	}
	return nil
}

// Path is the file the ledger was opened from.
func (l *Ledger) Path() string { return l.path }

// View runs fn with a consistent read-only view of the ledger.
func (l *Ledger) View(fn func(Reader) error) error {
	return l.db.View(func(tx *bolt.Tx) error { return fn(newTxReader(tx)) })
}

// Size is the number of entries.
func (l *Ledger) Size() (uint64, error) {
	var n uint64
	err := l.db.View(func(tx *bolt.Tx) error {
		n = txSize(tx)
		return nil
	})
	return n, err
}

// Checkpoint returns the latest signed checkpoint, or ErrEmpty. With
// WithCheckpointGuard, it is kept in the guard file before it is returned.
func (l *Ledger) Checkpoint() (string, error) {
	if err := l.guard.keep(l.db); err != nil {
		return "", err
	}
	var cp string
	err := l.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketMeta).Get(keyCheckpoint)
		if v == nil {
			return ErrEmpty
		}
		cp = string(v)
		return nil
	})
	return cp, err
}

// State returns what the ledger says about digest in stage; ok is false when
// no promotion or revocation of the digest (in any stage) is known.
// It is the admission hot path: a map look-up for a digest asked about
// recently, otherwise one read transaction and one Get.
func (l *Ledger) State(digest, stage string) (State, bool, error) {
	if l.cache != nil {
		return l.cachedState(digest, stage)
	}
	var (
		st State
		ok bool
	)
	err := l.db.View(func(tx *bolt.Tx) error {
		var err error
		st, ok, err = txState(tx, digest, stage)
		return err
	})
	return st, ok, err
}

// Entries returns at most limit entries starting at index start.
func (l *Ledger) Entries(start, limit uint64) ([]Entry, error) {
	return l.EntriesPage(start, limit, 0)
}

// EntriesPage is Entries that also stops, after the first entry, before
// the stored entries read pass maxBytes (0: no limit), so that a page of
// large entries never holds more than its answer may.
func (l *Ledger) EntriesPage(start, limit uint64, maxBytes int) ([]Entry, error) {
	var out []Entry
	err := l.db.View(func(tx *bolt.Tx) error {
		size := txSize(tx)
		if start > size {
			return fmt.Errorf("%w: start %d beyond size %d", ErrOutOfRange, start, size)
		}
		end := size
		if limit < end-start {
			end = start + limit
		}
		out = make([]Entry, 0, min(end-start, 64))
		c := tx.Bucket(bucketEntries).Cursor()
		i, read := start, 0
		for k, v := c.Seek(be64(start)); k != nil && i < end; k, v = c.Next() {
			if read += len(v); maxBytes > 0 && len(out) > 0 && read > maxBytes {
				return nil
			}
			e, err := decodeEntry(v)
			if err != nil {
				return fmt.Errorf("ledger: entry %d: %w", i, err)
			}
			out = append(out, e)
			i++
		}
		return nil
	})
	return out, err
}

func txSize(tx *bolt.Tx) uint64 {
	v := tx.Bucket(bucketMeta).Get(keySize)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

func be64(i uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], i)
	return b[:]
}

func hasPrefix(b, prefix []byte) bool {
	return len(b) >= len(prefix) && string(b[:len(prefix)]) == string(prefix)
}
