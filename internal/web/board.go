package web

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/registry"
)

// cellDigests bounds the digests a board cell remembers: the newest
// promotions of a repository to a stage. Older ones are on the image
// page; the board says how many there are.
const cellDigests = 3

// board is the projection of the ledger the board is drawn from: per
// repository and stage, the newest digests promoted there and the newest
// break-glass admission. It is folded from the entries as they are
// appended (catching up on each look), so that drawing a page reads the
// state of only the digests it shows. What a digest's state is (promoted,
// revoked, by whom) is always the ledger's State, not re-derived here.
type board struct {
	ledger Ledger

	mu    sync.Mutex
	seen  uint64
	repos map[string]*row
	names []string // sorted; nil when a repository was added since
	drawn *rowCache
}

type row struct {
	name  string
	cells map[string]*cell
}

type cell struct {
	digests []string // newest first
	older   int
	// breakGlass is the newest break-glass entry that admitted an image
	// of the repository in the stage.
	breakGlass *ledger.Entry
}

func newBoard(l Ledger) *board {
	return &board{ledger: l, repos: map[string]*row{}, drawn: newRowCache()}
}

// catchUp folds the entries appended since the last look.
func (b *board) catchUp() error {
	size, err := b.ledger.Size()
	if err != nil {
		return fmt.Errorf("web: board: %w", err)
	}
	for b.seen < size {
		es, err := b.ledger.EntriesPage(b.seen, 1000, 8<<20)
		if err != nil {
			return fmt.Errorf("web: board: %w", err)
		}
		if len(es) == 0 {
			return fmt.Errorf("web: board: no entry at %d of %d", b.seen, size)
		}
		for i := range es {
			b.fold(&es[i])
		}
		b.seen += uint64(len(es))
	}
	return nil
}

func (b *board) cell(repo, stage string) *cell {
	r, ok := b.repos[repo]
	if !ok {
		r = &row{name: repo, cells: map[string]*cell{}}
		b.repos[repo] = r
		b.names = nil
	}
	c, ok := r.cells[stage]
	if !ok {
		c = &cell{}
		r.cells[stage] = c
	}
	return c
}

func (b *board) fold(e *ledger.Entry) {
	switch e.Kind {
	case ledger.KindPromotion:
		for _, repo := range append([]string{e.Repository}, e.Copies...) {
			c := b.cell(repo, e.Stage)
			if i := slices.Index(c.digests, e.Digest); i >= 0 {
				c.digests = slices.Delete(c.digests, i, i+1)
			} else if len(c.digests) == cellDigests {
				c.digests = c.digests[:cellDigests-1]
				c.older++
			}
			c.digests = slices.Insert(c.digests, 0, e.Digest)
		}
	case ledger.KindBreakGlass:
		for _, img := range e.Images {
			ref, err := registry.ParseImage(img)
			if err != nil {
				continue
			}
			entry := *e
			entry.Envelope = nil
			b.cell(ref.Repository, e.Stage).breakGlass = &entry
		}
	case ledger.KindRequest:
		// A repository asked for but not yet promoted still gets a row,
		// so that its pending request shows.
		b.cell(e.Repository, e.Stage)
	}
}

// rows returns the repositories in order, with a filter on the name.
func (b *board) rows(repoFilter string) []*row {
	if b.names == nil {
		b.names = make([]string, 0, len(b.repos))
		for n := range b.repos {
			b.names = append(b.names, n)
		}
		slices.Sort(b.names)
	}
	out := make([]*row, 0, len(b.names))
	for _, n := range b.names {
		if repoFilter == "" || strings.Contains(n, repoFilter) {
			out = append(out, b.repos[n])
		}
	}
	return out
}
