package ledger

import (
	"errors"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/note"
)

// MaxSetMembers bounds a promotion set: one request, one policy decision,
// one transaction. An image and its config artifacts, or the few images
// of one release, are a handful; more is a batch job, not a release.
const MaxSetMembers = 32

// SetMember is one digest of a promotion set, with the entry that
// promotes it to the set's stage: an entry of the same append, or an
// earlier one when the digest was already there.
type SetMember struct {
	Repository  string `json:"repository"`
	Digest      string `json:"digest"`
	LedgerIndex uint64 `json:"ledgerIndex"`
}

// BuildAllFunc makes the entries to append at next, next+1, …, after
// checking the ledger through r, as BuildFunc does for one. Either all of
// them are written, in one transaction, or none.
type BuildAllFunc func(r Reader, next uint64) ([]*Entry, error)

// AppendAll records the entries build makes in one durable transaction,
// with one newly signed checkpoint, and returns their receipts against
// it. If build returns an error, nothing is written and AppendAll returns
// it, whatever it is (an *ExistsError included: a set decides itself what
// is already recorded).
func (l *Ledger) AppendAll(build BuildAllFunc) ([]Receipt, error) {
	if l.db.IsReadOnly() {
		return nil, ErrReadOnly
	}
	if l.signer == nil {
		return nil, ErrNoSigner
	}
	var rcs []Receipt
	var refused error
	var touched []string
	defer func() { l.cache.invalidate(touched, false) }()
	err := l.db.Batch(func(tx *bolt.Tx) error {
		rcs, refused = nil, nil
		size := txSize(tx)
		es, raws, err := l.prepareAll(tx, build, size)
		if err != nil {
			refused = err
			return nil // nothing of this call was written
		}
		root, order, err := appendTx(tx, size, es, raws)
		if err != nil {
			return err
		}
		touched = append(touched, order...)
		n := size + uint64(len(es))
		cp, err := signCheckpoint(l.signer, n, root)
		if err != nil {
			return err
		}
		if err := putMeta(tx, n, cp); err != nil {
			return err
		}
		for i := range es {
			rc, err := txReceipt(tx, size+uint64(i))
			if err != nil {
				return err
			}
			rcs = append(rcs, rc)
		}
		return nil
	})
	if err == nil && refused == nil {
		if gerr := l.guard.keep(l.db); gerr != nil {
			return nil, fmt.Errorf("ledger: recorded, but not acknowledged: %w", gerr)
		}
	}
	if err == nil {
		err = refused
	}
	if err != nil {
		return nil, err
	}
	return rcs, nil
}

// prepareAll runs build and checks and encodes its entries, as prepare
// does for one. It writes nothing.
func (l *Ledger) prepareAll(tx *bolt.Tx, build BuildAllFunc, size uint64) ([]*Entry, [][]byte, error) {
	es, err := build(newTxReader(tx), size)
	if err != nil {
		return nil, nil, err
	}
	if len(es) == 0 {
		return nil, nil, errors.New("ledger: build returned no entries")
	}
	out := make([]*Entry, len(es))
	raws := make([][]byte, len(es))
	for i, e := range es {
		one := func(Reader, uint64) (*Entry, error) { return e, nil }
		if out[i], raws[i], err = l.prepare(tx, one, size+uint64(i)); err != nil {
			return nil, nil, err
		}
	}
	return out, raws, nil
}

// Receipts proves each entry of indexes against the latest checkpoint, all
// against the same one, so that together they show one state of the log.
func (l *Ledger) Receipts(indexes []uint64) ([]Receipt, error) {
	if err := l.guard.keep(l.db); err != nil {
		return nil, err
	}
	var rcs []Receipt
	err := l.db.View(func(tx *bolt.Tx) error {
		rcs = make([]Receipt, 0, len(indexes))
		for _, i := range indexes {
			rc, err := txReceipt(tx, i)
			if err != nil {
				return err
			}
			rcs = append(rcs, rc)
		}
		return nil
	})
	return rcs, err
}

// SetReceipt is what a promotion set returns: each member's receipt, all
// against one checkpoint, in the order the set was asked for.
type SetReceipt struct {
	Stage    string      `json:"stage"`
	Members  []SetMember `json:"members"`
	Receipts []Receipt   `json:"receipts"`
}

// VerifySetReceipt checks a set receipt offline: every member's receipt
// (VerifyReceipt), one checkpoint for all, each receipt a promotion to the
// set's stage of the member it stands for, and every entry that names a
// set naming exactly these members, so that a receipt with a member left
// out, or one borrowed from another set, does not verify.
func VerifySetReceipt(sr SetReceipt, v note.Verifier, check func(Entry) error) error {
	n := len(sr.Receipts)
	switch {
	case n == 0:
		return errors.New("ledger: set receipt: no receipts")
	case n > MaxSetMembers:
		return fmt.Errorf("ledger: set receipt: %d receipts, at most %d", n, MaxSetMembers)
	case len(sr.Members) != n:
		return fmt.Errorf("ledger: set receipt: %d members but %d receipts", len(sr.Members), n)
	}
	for i, rc := range sr.Receipts {
		m, e := sr.Members[i], rc.Entry
		if rc.Checkpoint != sr.Receipts[0].Checkpoint {
			return fmt.Errorf("ledger: set receipt: member %d (%s) is proved against another checkpoint than member 1", i+1, m.Digest)
		}
		if err := VerifyReceipt(rc, v, check); err != nil {
			return fmt.Errorf("ledger: set receipt: member %d (%s): %w", i+1, m.Digest, err)
		}
		switch {
		case e.Kind != KindPromotion || e.Stage != sr.Stage:
			return fmt.Errorf("ledger: set receipt: member %d: entry %d is a %s in stage %q, not a promotion to %q",
				i+1, e.Index, e.Kind, e.Stage, sr.Stage)
		case e.Repository != m.Repository || e.Digest != m.Digest || e.Index != m.LedgerIndex:
			return fmt.Errorf("ledger: set receipt: member %d is %s@%s at entry %d, but its receipt is of %s@%s at entry %d",
				i+1, m.Repository, m.Digest, m.LedgerIndex, e.Repository, e.Digest, e.Index)
		case e.Set != nil && !slices.Equal(e.Set, sr.Members):
			return fmt.Errorf("ledger: set receipt: entry %d was recorded in a set of %d members that this receipt's %d do not match (a member left out, added or swapped)",
				e.Index, len(e.Set), n)
		}
	}
	return nil
}
