package ledger

import (
	"slices"

	bolt "go.etcd.io/bbolt"
)

// ViewPending runs fn with a view of the ledger as it will be once
// pending, entries that continue it and are not yet written (a replicated
// log's command being built), are applied: Size counts them, Entry
// returns them and State folds them in as Append would index them. A
// build on a replicated leader decides on this view, so that a retried
// promotion whose first attempt is still pending is answered with that
// attempt's entry rather than recorded twice.
func (l *Ledger) ViewPending(pending []*Entry, fn func(Reader) error) error {
	if len(pending) == 0 {
		return l.View(fn)
	}
	return l.db.View(func(tx *bolt.Tx) error {
		b := newStateBatch(bucketLoader(tx.Bucket(bucketState)))
		for _, e := range pending {
			if err := b.apply(e); err != nil {
				return err
			}
		}
		return fn(pendingReader{tx: tx, size: txSize(tx), pending: pending, states: b})
	})
}

type pendingReader struct {
	tx      *bolt.Tx
	size    uint64 // of the written ledger
	pending []*Entry
	states  *stateBatch
}

func (r pendingReader) Size() uint64 { return r.size + uint64(len(r.pending)) }

func (r pendingReader) State(digest, stage string) (State, bool, error) {
	if rec, ok := r.states.recs[digest]; ok {
		// The batch loads records it only looks at, too: known means
		// stored, or given a stage by a pending entry, as txState says.
		known := len(rec.Stages) > 0 || r.tx.Bucket(bucketState).Get([]byte(digest)) != nil
		if !known {
			return State{Digest: digest, Stage: stage}, false, nil
		}
		return rec.fold(digest, stage), true, nil
	}
	return txState(r.tx, digest, stage)
}

func (r pendingReader) Entry(index uint64) (Entry, error) {
	if index >= r.size && index-r.size < uint64(len(r.pending)) {
		return *r.pending[index-r.size], nil
	}
	return txEntry(r.tx, index)
}

// HistoryPage is txHistoryPage followed by the pending entries found under
// name, so that a build in a group commit sees the requests and answers
// pending before it as a single append would (approvals read a request's
// history in the write).
func (r pendingReader) HistoryPage(name string, start uint64, limit, maxBytes int) ([]Entry, bool, error) {
	page, more, err := txHistoryPage(r.tx, name, start, limit, maxBytes)
	if err != nil || more {
		return page, more, err
	}
	for _, e := range r.pending {
		if e.Index < start || !slices.Contains(historyNames(e), name) {
			continue
		}
		if limit > 0 && len(page) == limit {
			return page, true, nil
		}
		page = append(page, *e)
	}
	return page, false, nil
}
