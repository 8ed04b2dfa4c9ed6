package ledger

import (
	"maps"
	"sync"

	bolt "go.etcd.io/bbolt"
)

// DefaultStateCache is how many digests' state records a Ledger keeps
// decoded in memory unless WithStateCache says otherwise. Admission asks
// about the same few thousand digests (the images a cluster runs) again and
// again, so a bounded cache of them keeps the look-up independent of how
// many entries the ledger holds: a bbolt Get of a random key in a 10^6-entry
// file walks pages that no longer fit the CPU caches. A record is a few
// hundred bytes, so the default costs a few MB at most.
const DefaultStateCache = 16384

// stateCache holds decoded state records by digest (a nil record: nothing
// known), shared read-only by every State call that hits.
//
// Staleness is ruled out without holding any lock across a bbolt
// transaction: a reader notes gen before its read transaction starts and
// may store what it read only if gen has not moved since; every writer,
// after its commit, deletes the digests it touched and moves gen. A reader
// whose snapshot predates the commit either stores before the writer's
// delete (and is deleted) or after it (and is refused).
type stateCache struct {
	max  int
	mu   sync.RWMutex
	gen  uint64
	recs map[string]*stateRecord
}

func newStateCache(max int) *stateCache {
	if max <= 0 {
		return nil
	}
	return &stateCache{max: max, recs: make(map[string]*stateRecord, min(max, 1024))}
}

// get returns the cached record of digest and whether there was one, and
// the generation a miss must pass to put.
func (c *stateCache) get(digest string) (rec *stateRecord, hit bool, gen uint64) {
	c.mu.RLock()
	rec, hit = c.recs[digest]
	gen = c.gen
	c.mu.RUnlock()
	return rec, hit, gen
}

func (c *stateCache) put(digest string, rec *stateRecord, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return // a write committed since the read began
	}
	if len(c.recs) >= c.max {
		// Drop about an eighth, chosen by map order, which Go randomises:
		// cheaper than LRU bookkeeping on every hit, and the working set
		// comes straight back.
		drop := c.max/8 + 1
		for d := range c.recs {
			delete(c.recs, d)
			if drop--; drop == 0 {
				break
			}
		}
	}
	c.recs[digest] = rec
}

// invalidate is called after a write transaction ends (committed or not)
// with the digests whose records it may have written; all reports that any
// record may have changed.
func (c *stateCache) invalidate(digests []string, all bool) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	if all {
		clear(c.recs)
		return
	}
	for _, d := range digests {
		delete(c.recs, d)
	}
}

// cachedState is State through the cache. Records are decoded whole (every
// stage) so that one serves every stage's question.
func (l *Ledger) cachedState(digest, stage string) (State, bool, error) {
	rec, hit, gen := l.cache.get(digest)
	if !hit {
		if err := l.db.View(func(tx *bolt.Tx) (err error) {
			rec, err = txRecord(tx, digest, nil)
			return err
		}); err != nil {
			return State{}, false, err
		}
		l.cache.put(digest, rec, gen)
	}
	if rec == nil {
		return State{Digest: digest, Stage: stage}, false, nil
	}
	st := rec.fold(digest, stage)
	// The record is shared: hand out a copy of the one map in it.
	st.Labels = maps.Clone(st.Labels)
	return st, true, nil
}
