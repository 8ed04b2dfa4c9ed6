package ledger

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	bolt "go.etcd.io/bbolt"
)

var (
	hasher       = rfc6962.DefaultHasher
	rangeFactory = &compact.RangeFactory{Hash: hasher.HashChildren}
)

// nodeKey orders nodes by level, then index.
func nodeKey(id compact.NodeID) []byte {
	var k [9]byte
	k[0] = byte(id.Level)
	binary.BigEndian.PutUint64(k[1:], id.Index)
	return k[:]
}

// getNode returns a copy of a stored node hash.
func getNode(b *bolt.Bucket, id compact.NodeID) ([]byte, error) {
	v := b.Get(nodeKey(id))
	if len(v) != hasher.Size() {
		return nil, fmt.Errorf("ledger: tree node (%d,%d) missing or malformed", id.Level, id.Index)
	}
	return bytes.Clone(v), nil
}

func getNodes(b *bolt.Bucket, ids []compact.NodeID) ([][]byte, error) {
	hashes := make([][]byte, len(ids))
	for i, id := range ids {
		h, err := getNode(b, id)
		if err != nil {
			return nil, err
		}
		hashes[i] = h
	}
	return hashes, nil
}

// loadRange rebuilds the compact range [0, size) from the stored perfect
// subtree roots: O(log size) reads.
func loadRange(b *bolt.Bucket, size uint64) (*compact.Range, error) {
	hashes, err := getNodes(b, compact.RangeNodes(0, size, nil))
	if err != nil {
		return nil, err
	}
	r, err := rangeFactory.NewRange(0, size, hashes)
	if err != nil {
		return nil, fmt.Errorf("ledger: tree of size %d: %w", size, err)
	}
	return r, nil
}

func rootAt(b *bolt.Bucket, size uint64) ([]byte, error) {
	if size == 0 {
		return hasher.EmptyRoot(), nil
	}
	r, err := loadRange(b, size)
	if err != nil {
		return nil, err
	}
	root, err := r.GetRootHash(nil)
	if err != nil {
		return nil, fmt.Errorf("ledger: root of size %d: %w", size, err)
	}
	return root, nil
}

// nodeWriter is a compact.VisitFn that stores each completed node. A visit
// cannot fail, so the first error is kept for the caller to check.
type nodeWriter struct {
	b   *bolt.Bucket
	err error
}

func (w *nodeWriter) visit(id compact.NodeID, hash []byte) {
	if w.err != nil {
		return
	}
	k := nodeKey(id)
	if old := w.b.Get(k); old != nil {
		// Nodes are immutable; an existing one means the size is wrong.
		w.err = fmt.Errorf("ledger: tree node (%d,%d) already stored", id.Level, id.Index)
		return
	}
	if err := w.b.Put(k, hash); err != nil {
		w.err = fmt.Errorf("ledger: put tree node: %w", err)
	}
}

func txInclusion(tx *bolt.Tx, index, size uint64) (InclusionProof, error) {
	if cur := txSize(tx); size > cur || index >= size {
		return InclusionProof{}, fmt.Errorf("%w: inclusion of %d in size %d (ledger size %d)", ErrOutOfRange, index, size, cur)
	}
	nodes, err := proof.Inclusion(index, size)
	if err != nil {
		return InclusionProof{}, fmt.Errorf("ledger: %w", err)
	}
	b := tx.Bucket(bucketNodes)
	hashes, err := proofHashes(b, nodes)
	if err != nil {
		return InclusionProof{}, err
	}
	root, err := rootAt(b, size)
	if err != nil {
		return InclusionProof{}, err
	}
	return InclusionProof{LeafIndex: index, TreeSize: size, RootHash: root, Hashes: hashes}, nil
}

func txConsistency(tx *bolt.Tx, from, to uint64) (ConsistencyProof, error) {
	if cur := txSize(tx); to > cur || from > to {
		return ConsistencyProof{}, fmt.Errorf("%w: consistency %d..%d (ledger size %d)", ErrOutOfRange, from, to, cur)
	}
	nodes, err := proof.Consistency(from, to)
	if err != nil {
		return ConsistencyProof{}, fmt.Errorf("ledger: %w", err)
	}
	b := tx.Bucket(bucketNodes)
	hashes, err := proofHashes(b, nodes)
	if err != nil {
		return ConsistencyProof{}, err
	}
	fromRoot, err := rootAt(b, from)
	if err != nil {
		return ConsistencyProof{}, err
	}
	toRoot, err := rootAt(b, to)
	if err != nil {
		return ConsistencyProof{}, err
	}
	return ConsistencyProof{From: from, To: to, FromRoot: fromRoot, ToRoot: toRoot, Hashes: hashes}, nil
}

// proofHashes reads the stored nodes a proof names and folds the ones that
// stand for an ephemeral (incomplete) subtree.
func proofHashes(b *bolt.Bucket, nodes proof.Nodes) ([][]byte, error) {
	hashes, err := getNodes(b, nodes.IDs)
	if err != nil {
		return nil, err
	}
	hashes, err = nodes.Rehash(hashes, hasher.HashChildren)
	if err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	return hashes, nil
}

// InclusionProof proves that entry index is in the tree of the given size.
func (l *Ledger) InclusionProof(index, size uint64) (InclusionProof, error) {
	var p InclusionProof
	err := l.db.View(func(tx *bolt.Tx) error {
		var err error
		p, err = txInclusion(tx, index, size)
		return err
	})
	return p, err
}

// ConsistencyProof proves that the tree of size to extends the tree of size from.
func (l *Ledger) ConsistencyProof(from, to uint64) (ConsistencyProof, error) {
	var p ConsistencyProof
	err := l.db.View(func(tx *bolt.Tx) error {
		var err error
		p, err = txConsistency(tx, from, to)
		return err
	})
	return p, err
}
