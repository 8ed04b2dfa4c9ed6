package app

import (
	"cmp"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"golang.org/x/mod/sumdb/note"

	"github.com/stagegate/stagegate/internal/ledger"
)

// overlay is the ledger a read-only App decides from when it has a registry
// source. `check` must decide a digest known only through the registry as
// the webhook does, and the webhook imports such a digest's entries into
// its ledger before deciding; check must not change the local ledger (it
// opens it read-only, and may be run on a copy). So imports go to a scratch
// ledger in a temporary directory, removed on Close.
//
// The ledger folds a digest's entries into its state (revocations of every
// stage, an index's platforms), and the overlay does not fold two ledgers
// into one: before the first import that concerns a digest (or one of its
// platforms), the digest's whole history in the local ledger is copied to
// the scratch ledger, which from then on answers for it, with the state the
// webhook's ledger would hold. Digests no import concerned are read from
// the local ledger.
type overlay struct {
	base    *ledger.Ledger
	scratch *ledger.Ledger
	dir     string

	mu sync.Mutex
	// moved holds the digests whose history is in scratch; copied the
	// local entries copied there (an index's entry is in the history of
	// each of its platforms too).
	moved  map[string]bool
	copied map[uint64]bool
}

func newOverlay(base *ledger.Ledger) (*overlay, error) {
	dir, err := os.MkdirTemp("", "stagegate-check-")
	if err != nil {
		return nil, fmt.Errorf("app: scratch ledger: %w", err)
	}
	// The scratch ledger's checkpoints are signed with a key made for it
	// and thrown away with it: nothing outside this process reads them.
	skey, _, err := note.GenerateKey(rand.Reader, "stagegate-check-scratch")
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("app: scratch ledger key: %w", err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("app: scratch ledger key: %w", err)
	}
	scratch, err := ledger.Open(filepath.Join(dir, "scratch.db"), ledger.WithSigner(signer), ledger.WithNoSync())
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return &overlay{base: base, scratch: scratch, dir: dir, moved: map[string]bool{}, copied: map[uint64]bool{}}, nil
}

// Close closes and removes the scratch ledger; the local one is the App's.
func (o *overlay) Close() error {
	return errors.Join(o.scratch.Close(), os.RemoveAll(o.dir))
}

func (o *overlay) source(digest string) *ledger.Ledger {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.moved[digest] {
		return o.scratch
	}
	return o.base
}

// State is admission's look-up.
func (o *overlay) State(digest, stage string) (ledger.State, bool, error) {
	return o.source(digest).State(digest, stage)
}

// History is the registry source's look-up of what is known of a digest.
func (o *overlay) History(key string) ([]ledger.Entry, error) {
	return o.source(key).History(key)
}

// Append records an import in the scratch ledger, after the local history
// of every digest it concerns.
func (o *overlay) Append(build ledger.BuildFunc) (ledger.Receipt, error) {
	// The registry source's builds ignore the reader and only number the
	// entry; build it once to learn its digests, and again in Append.
	probe, err := build(nil, 0)
	if err != nil {
		return ledger.Receipt{}, err
	}
	if err := o.move(append([]string{probe.Digest}, probe.Platforms...)); err != nil {
		return ledger.Receipt{}, err
	}
	return o.scratch.Append(build)
}

// move copies the local history of each digest not yet moved to scratch,
// each entry once and all in local ledger order.
func (o *overlay) move(digests []string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	var todo []ledger.Entry
	for _, d := range digests {
		if o.moved[d] {
			continue
		}
		hist, err := o.base.History(d)
		if err != nil {
			return err
		}
		for _, e := range hist {
			if !o.copied[e.Index] {
				o.copied[e.Index] = true
				todo = append(todo, e)
			}
		}
	}
	slices.SortFunc(todo, func(a, b ledger.Entry) int { return cmp.Compare(a.Index, b.Index) })
	for _, e := range todo {
		if _, err := o.scratch.Append(func(_ ledger.Reader, index uint64) (*ledger.Entry, error) {
			c := e
			c.Index = index
			return &c, nil
		}); err != nil {
			return fmt.Errorf("app: copy entry %d to the scratch ledger: %w", e.Index, err)
		}
	}
	for _, d := range digests {
		o.moved[d] = true
	}
	return nil
}
