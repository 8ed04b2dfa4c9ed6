package cluster

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"
	"github.com/stagegate/stagegate/internal/ledger"
	"golang.org/x/mod/sumdb/note"
)

// command is the one kind of Raft log entry: entries the leader built and
// signed, continuing the ledger, and its signed checkpoint of the tree
// they make.
type command struct {
	Entries    []*ledger.Entry `json:"entries"`
	Checkpoint string          `json:"checkpoint"`
}

// OpenFunc opens (creating if need be) the ledger file at path with the
// options of this replica: its signer, sync, cache. FSM calls it at start,
// for the temporary file a snapshot is imported into (the ledger's path
// plus ".restore"), and again after that file replaced the ledger. A
// checkpoint guard (ledger.WithCheckpointGuard) belongs to the ledger's
// own path only: the temporary file starts empty, which a guard would
// take for a rollback.
type OpenFunc func(path string) (*ledger.Ledger, error)

// FSM is the Raft state machine: one ledger file. Apply writes a command
// with ledger.ApplyReplicated, which checks every entry (check, typically
// signing.TrustedEntryCheck) and the leader's checkpoint (v) before it
// writes anything. A snapshot is the ledger's export; restoring one
// imports it (verifying everything) into a new file that then replaces
// the ledger.
//
// The ledger is durable by itself, so restoring is cheap when it already
// holds the snapshot's tree: a snapshot starts with the ledger's size and
// checkpoint at the snapshot's Raft index, and Restore keeps a ledger that
// extends that tree (same root at that size) as it is. That is the case at
// every restart, when Raft restores its last snapshot and then replays the
// log after it; ApplyReplicated accepts the entries the ledger already
// holds (same bytes) without writing them again. A ledger that lost its
// file, or is an older copy, is behind the snapshot and is replaced.
type FSM struct {
	path  string
	open  OpenFunc
	v     note.Verifier
	check func(ledger.Entry) error
	log   *slog.Logger

	mu sync.RWMutex // guards l; Restore replaces it
	l  *ledger.Ledger

	// applied, if set, is told of each entry of every command applied.
	applied atomic.Pointer[func(ledger.Entry)]
}

// OnApply has fn told of each entry of every command this replica applies,
// once it is durable, on leader and followers alike: what a follower
// learns by replication (a revocation made through the leader) reaches
// its readers at once, e.g. continuous validation's re-check of the pods
// that run it. A restart's replay tells fn again of entries the ledger
// held already, so fn must be idempotent. fn runs on Raft's apply loop:
// it must be quick and must not write to the ledger.
func (f *FSM) OnApply(fn func(ledger.Entry)) { f.applied.Store(&fn) }

// NewFSM opens the ledger at path with open.
func NewFSM(path string, open OpenFunc, v note.Verifier, check func(ledger.Entry) error, log *slog.Logger) (*FSM, error) {
	if v == nil || open == nil {
		return nil, fmt.Errorf("%w: the FSM needs a ledger opener and the log verifier", ErrConfig)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l, err := open(path)
	if err != nil {
		return nil, err
	}
	return &FSM{path: path, open: open, v: v, check: check, log: log, l: l}, nil
}

// Ledger is the current ledger. A snapshot install (Restore) closes it
// and opens its replacement, so callers take it again per request rather
// than keep it.
func (f *FSM) Ledger() *ledger.Ledger {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.l
}

// Close closes the ledger.
func (f *FSM) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.l.Close()
}

// Apply writes one committed command. Its result (nil or an error) is what
// the leader's Propose returns. A refusal is deterministic: every replica
// holds the same ledger and the same keys, so all refuse the same command
// and stay identical.
func (f *FSM) Apply(entry *raft.Log) any {
	if entry.Type != raft.LogCommand {
		return nil
	}
	var cmd command
	if err := json.Unmarshal(entry.Data, &cmd); err != nil {
		return fmt.Errorf("%w: raft index %d: %w", ErrBadCommand, entry.Index, err)
	}
	if err := f.Ledger().ApplyReplicated(cmd.Entries, cmd.Checkpoint, f.v, f.check); err != nil {
		f.log.Error("cluster: refused a replicated command", "raftIndex", entry.Index, "err", err)
		return fmt.Errorf("cluster: raft index %d: %w", entry.Index, err)
	}
	if fn := f.applied.Load(); fn != nil {
		for _, e := range cmd.Entries {
			(*fn)(*e)
		}
	}
	return nil
}

// snapshotHeader is a snapshot's first line: the ledger's size and
// checkpoint at the snapshot's Raft index. The export that follows may
// hold more entries (it is read later, while Apply goes on), which the
// log replay after the snapshot then finds already held.
type snapshotHeader struct {
	Size       uint64 `json:"size"`
	Checkpoint string `json:"checkpoint,omitempty"`
}

// Snapshot records the ledger's size and checkpoint now, between two
// Applies, and hands Raft the ledger to export. Export reads one bbolt
// transaction, so the export is consistent.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	l := f.Ledger()
	var h snapshotHeader
	var err error
	if h.Size, err = l.Size(); err != nil {
		return nil, fmt.Errorf("cluster: snapshot: %w", err)
	}
	if h.Size > 0 {
		if h.Checkpoint, err = l.Checkpoint(); err != nil {
			return nil, fmt.Errorf("cluster: snapshot: %w", err)
		}
	}
	return &snapshot{f: f, header: h}, nil
}

type snapshot struct {
	f      *FSM
	header snapshotHeader
}

func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	err := json.NewEncoder(sink).Encode(s.header) // one line
	if err == nil {
		s.f.mu.RLock()
		err = s.f.l.Export(sink)
		s.f.mu.RUnlock()
		if errors.Is(err, ledger.ErrEmpty) {
			err = nil // an empty ledger is a header alone
		}
	}
	if err != nil {
		sink.Cancel()
		return fmt.Errorf("cluster: snapshot: %w", err)
	}
	return sink.Close()
}

func (s *snapshot) Release() {}

// Restore makes the ledger hold the snapshot in rc. A ledger that already
// extends the snapshot's tree is kept. Otherwise the export is imported
// into a new file beside the ledger (Import verifies every entry, the
// root and the checkpoint), and only then renamed over the ledger, so a
// failure at any point leaves the old ledger in place.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	br := bufio.NewReaderSize(rc, 1<<20)
	var h snapshotHeader
	line, err := br.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("cluster: restore: header: %w", err)
	}
	if err := json.Unmarshal(line, &h); err != nil {
		return fmt.Errorf("cluster: restore: header: %w", err)
	}
	if held, err := f.holds(h); err != nil || held {
		return err
	}
	tmp := f.path + ".restore"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("cluster: restore: %w", err)
	}
	fresh, err := f.open(tmp)
	if err != nil {
		return fmt.Errorf("cluster: restore: %w", err)
	}
	if _, perr := br.Peek(1); perr == nil {
		err = fresh.Import(br, f.v, f.check)
	} else if perr != io.EOF {
		err = perr
	}
	if cerr := fresh.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("cluster: restore: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.l.Close(); err != nil {
		return fmt.Errorf("cluster: restore: close ledger: %w", err)
	}
	if err := os.Rename(tmp, f.path); err != nil {
		return f.reopen(fmt.Errorf("cluster: restore: %w", err))
	}
	if err := syncDir(filepath.Dir(f.path)); err != nil {
		return f.reopen(fmt.Errorf("cluster: restore: %w", err))
	}
	return f.reopen(nil)
}

// holds reports whether the ledger already extends the tree of h: at
// least as many entries, and the same root at h's size. h's checkpoint is
// verified first, so that a forged header cannot make a replica keep a
// ledger the cluster does not have.
func (f *FSM) holds(h snapshotHeader) (bool, error) {
	l := f.Ledger()
	size, err := l.Size()
	if err != nil {
		return false, fmt.Errorf("cluster: restore: %w", err)
	}
	if h.Size == 0 || size < h.Size {
		return h.Size == 0 && size == 0, nil
	}
	cp, err := ledger.ParseCheckpoint(h.Checkpoint, f.v)
	if err != nil {
		return false, fmt.Errorf("cluster: restore: header: %w", err)
	}
	if cp.Size != h.Size {
		return false, fmt.Errorf("cluster: restore: header: size %d, but its checkpoint is for %d", h.Size, cp.Size)
	}
	p, err := l.ConsistencyProof(h.Size, size)
	if err != nil {
		return false, fmt.Errorf("cluster: restore: %w", err)
	}
	return bytes.Equal(p.FromRoot, cp.Root), nil
}

// reopen opens the ledger file again after Restore closed it, and returns
// cause or the error of opening.
func (f *FSM) reopen(cause error) error {
	l, err := f.open(f.path)
	if err != nil {
		return errors.Join(cause, fmt.Errorf("cluster: restore: reopen ledger: %w", err))
	}
	f.l = l
	return cause
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
