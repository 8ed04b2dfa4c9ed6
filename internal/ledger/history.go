package ledger

import (
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// History returns every entry about a repository or a digest (including
// a platform digest of an index, a copy's repository and a break-glass
// image pinned by digest), in index order. Its size grows with what was
// written; serve answers clients with HistoryPage instead.
func (l *Ledger) History(repositoryOrDigest string) ([]Entry, error) {
	out, _, err := l.HistoryPage(repositoryOrDigest, 0, 0, 0)
	return out, err
}

// HistoryPage is History from index start on, with at most limit entries
// (0: no limit) and, after the first, no more than maxBytes of stored
// entries (0: no limit); more says whether entries follow the last one
// returned. The byte budget is applied while reading, so that a page of
// large entries never holds more than it will answer with.
// A page costs what it holds, not what the whole history holds: the
// history bucket's keys are the name and the big-endian index, so the
// cursor seeks straight to start.
func (l *Ledger) HistoryPage(repositoryOrDigest string, start uint64, limit, maxBytes int) (page []Entry, more bool, err error) {
	err = l.db.View(func(tx *bolt.Tx) error {
		page, more, err = txHistoryPage(tx, repositoryOrDigest, start, limit, maxBytes)
		return err
	})
	return page, more, err
}

// txHistoryPage is HistoryPage within tx.
func txHistoryPage(tx *bolt.Tx, name string, start uint64, limit, maxBytes int) (page []Entry, more bool, err error) {
	read := 0
	prefix := append([]byte(name), 0)
	entries := tx.Bucket(bucketEntries)
	c := tx.Bucket(bucketHistory).Cursor()
	for k, _ := c.Seek(historyKey(name, start)); k != nil && hasPrefix(k, prefix); k, _ = c.Next() {
		if len(k) != len(prefix)+8 {
			continue // a longer name that happens to share the prefix bytes
		}
		if limit > 0 && len(page) == limit {
			return page, true, nil
		}
		idx := k[len(prefix):]
		v := entries.Get(idx)
		if v == nil {
			return nil, false, fmt.Errorf("ledger: history of %q names missing entry %d", name, binary.BigEndian.Uint64(idx))
		}
		if read += len(v); maxBytes > 0 && len(page) > 0 && read > maxBytes {
			return page, true, nil
		}
		e, err := decodeEntry(v)
		if err != nil {
			return nil, false, fmt.Errorf("ledger: entry %d: %w", binary.BigEndian.Uint64(idx), err)
		}
		page = append(page, e)
	}
	return page, false, nil
}

// HistoryReader is a Reader that also reads history, as the Reader of
// Append and View does; a BuildFunc asserts it where it needs to (the
// approvals of a request are found by its history name).
type HistoryReader interface {
	Reader
	HistoryPage(name string, start uint64, limit, maxBytes int) ([]Entry, bool, error)
}

// HistoryPage is Ledger.HistoryPage inside the reader's transaction.
func (r txReader) HistoryPage(name string, start uint64, limit, maxBytes int) ([]Entry, bool, error) {
	return txHistoryPage(r.tx, name, start, limit, maxBytes)
}
