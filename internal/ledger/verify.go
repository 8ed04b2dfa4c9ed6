package ledger

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"

	"github.com/transparency-dev/merkle/compact"
	bolt "go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/note"
)

// Verify checks the whole ledger: the checkpoint signature (with v), every
// entry's canonical bytes, index and validity, every stored tree node, the
// root against the checkpoint, and that the state and history indexes are
// exactly what the entries imply. check, if not nil, is called on each entry
// (the caller verifies attestations there). The error is a *VerifyError
// naming the first bad entry, or Index -1 for a problem not tied to one.
func (l *Ledger) Verify(v note.Verifier, check func(Entry) error) error {
	return l.db.View(func(tx *bolt.Tx) error { return verifyTx(tx, v, check) })
}

// verifyTx turns any panic from corrupted data (in bbolt or in decoding)
// into an error: the point of Verify is to report corruption, not crash on it.
//
// It streams: entries are read in order from one cursor, decoded and checked
// on a bounded pool of workers (check is the expensive part), and taken back
// in order, so at most a window of entries is in memory and the error still
// names the lowest bad index. All bbolt access stays on this goroutine (a Tx
// is not safe for concurrent use); workers only read entry bytes, which stay
// valid because the pool is drained before the transaction ends.
func verifyTx(tx *bolt.Tx, v note.Verifier, check func(Entry) error) (err error) {
	// Open refuses a file shorter than its pages (checkFile), but one cut
	// while it is open would still fault in the mapping: make that a panic
	// the recover below reports, on this goroutine and on the workers.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	cur := int64(-1)
	defer func() {
		if r := recover(); r != nil {
			err = &VerifyError{Index: cur, Reason: fmt.Sprintf("corrupted data: %v", r)}
		}
	}()

	size := txSize(tx)
	cpText := tx.Bucket(bucketMeta).Get(keyCheckpoint)
	var cp Checkpoint
	if cpText == nil {
		if size != 0 {
			return &VerifyError{Index: -1, Reason: fmt.Sprintf("no checkpoint for %d entries", size)}
		}
	} else {
		if cp, err = ParseCheckpoint(string(cpText), v); err != nil {
			return &VerifyError{Index: -1, Reason: "bad checkpoint", Err: err}
		}
		if cp.Size != size {
			return &VerifyError{Index: -1, Reason: fmt.Sprintf("checkpoint size %d, ledger size %d", cp.Size, size)}
		}
	}

	nodes := tx.Bucket(bucketNodes)
	var nodeErr error
	nodeCount := 0
	compare := func(id compact.NodeID, hash []byte) {
		nodeCount++
		if nodeErr == nil && !bytes.Equal(nodes.Get(nodeKey(id)), hash) {
			nodeErr = fmt.Errorf("tree node (%d,%d) missing or wrong", id.Level, id.Index)
		}
	}
	rng := rangeFactory.NewEmptyRange(0)
	ix := newIndexCheck(tx)

	pool := newCheckPool(check, "")
	defer pool.close()
	batch := pool.batch()
	submit := func(force bool) error {
		if len(batch.items) > 0 && (force || len(batch.items) == cap(batch.items)) {
			pool.submit(batch)
			batch = pool.batch()
		}
		for pool.busy(force) {
			for _, it := range pool.next().items {
				cur = int64(it.index)
				if it.err != nil {
					pool.abort()
					return it.err
				}
				if err := ix.add(&it.entry); err != nil {
					pool.abort()
					return err
				}
			}
		}
		return nil
	}

	c := tx.Bucket(bucketEntries).Cursor()
	i := uint64(0)
	for k, raw := c.First(); k != nil; k, raw = c.Next() {
		cur = int64(i)
		it := checkItem{index: i, raw: raw}
		switch {
		case i >= size:
			it.raw, it.pre = nil, &VerifyError{Index: cur, Reason: "entry beyond the checkpointed size"}
		case !bytes.Equal(k, be64(i)):
			it.raw, it.pre = nil, &VerifyError{Index: cur, Reason: fmt.Sprintf("missing (next stored key %x)", k)}
		default:
			if err := rng.Append(hasher.HashLeaf(raw), compare); err != nil {
				it.pre = &VerifyError{Index: cur, Reason: "tree", Err: err}
			} else if nodeErr != nil {
				it.pre = &VerifyError{Index: cur, Reason: "stored tree disagrees", Err: nodeErr}
			}
		}
		batch.items = append(batch.items, it)
		if it.pre != nil {
			// Earlier entries may still fail their check: report the first.
			if err := submit(true); err != nil {
				return err
			}
			return it.pre
		}
		if err := submit(false); err != nil {
			return err
		}
		i++
	}
	if err := submit(true); err != nil {
		return err
	}
	cur = -1
	if i != size {
		return &VerifyError{Index: int64(i), Reason: fmt.Sprintf("missing; ledger size is %d", size)}
	}
	if size > 0 {
		root, err := rng.GetRootHash(nil)
		if err != nil {
			return &VerifyError{Index: -1, Reason: "tree", Err: err}
		}
		if !bytes.Equal(root, cp.Root) {
			return &VerifyError{Index: -1, Reason: "recomputed root differs from the checkpoint root"}
		}
	}
	if n := nodes.Stats().KeyN; n != nodeCount {
		return &VerifyError{Index: -1, Reason: fmt.Sprintf("%d tree nodes stored, %d expected", n, nodeCount)}
	}
	return ix.finish()
}

// checkItem is one entry on its way through a checkPool.
type checkItem struct {
	index uint64
	raw   []byte       // nil when pre alone is the verdict
	pre   *VerifyError // found while reading; reported after decoding errors
	entry Entry
	err   *VerifyError
}

type checkBatch struct {
	items []checkItem
	done  chan struct{}
}

// checkBatchSize amortises channel traffic over many ~100 µs checks.
const checkBatchSize = 64

// checkPool decodes, validates and checks entries on GOMAXPROCS workers
// while its one caller keeps reading, and hands batches back in the order
// they were submitted: the first failure the caller meets is the lowest bad
// index however the workers interleave. At most window batches are in
// flight, which bounds memory whatever the ledger size.
type checkPool struct {
	check   func(Entry) error
	prefix  string
	jobs    chan *checkBatch
	pending []*checkBatch // submitted and not yet taken back, oldest first
	window  int
	stopped atomic.Bool
	wg      sync.WaitGroup
}

func newCheckPool(check func(Entry) error, prefix string) *checkPool {
	n := runtime.GOMAXPROCS(0)
	p := &checkPool{check: check, prefix: prefix, jobs: make(chan *checkBatch, 4*n), window: 4 * n}
	p.wg.Add(n)
	for range n {
		go p.work()
	}
	return p
}

func (p *checkPool) batch() *checkBatch {
	return &checkBatch{items: make([]checkItem, 0, checkBatchSize), done: make(chan struct{})}
}

func (p *checkPool) submit(b *checkBatch) {
	p.pending = append(p.pending, b)
	p.jobs <- b
}

// busy reports whether the caller must take a batch back now: when the
// window is full, or, when draining, while anything is pending.
func (p *checkPool) busy(drain bool) bool {
	return len(p.pending) >= p.window || (drain && len(p.pending) > 0)
}

// next waits for the oldest pending batch.
func (p *checkPool) next() *checkBatch {
	b := p.pending[0]
	p.pending = p.pending[1:]
	<-b.done
	return b
}

// abort makes the workers skip what is still queued: its results will not
// be looked at once an earlier entry has failed.
func (p *checkPool) abort() { p.stopped.Store(true) }

// close stops the workers and waits for them; the entry bytes they hold may
// be bbolt memory, so this must happen before the transaction ends.
func (p *checkPool) close() {
	p.abort()
	close(p.jobs)
	p.wg.Wait()
}

func (p *checkPool) work() {
	defer p.wg.Done()
	debug.SetPanicOnFault(true) // see verifyTx; the goroutine ends with the pool
	for b := range p.jobs {
		for i := range b.items {
			if p.stopped.Load() {
				break
			}
			p.run(&b.items[i])
		}
		close(b.done)
	}
}

// run gives the same verdict, in the same order of reasons, as the serial
// loop it replaced: bytes, index, validity, tree, then check.
func (p *checkPool) run(it *checkItem) {
	idx := int64(it.index)
	fail := func(reason string, err error) {
		it.err = &VerifyError{Index: idx, Reason: p.prefix + reason, Err: err}
	}
	defer func() {
		if r := recover(); r != nil {
			fail(fmt.Sprintf("corrupted data: %v", r), nil)
		}
	}()
	if it.raw == nil {
		it.err = it.pre
		return
	}
	e, err := canonicalEntry(it.raw)
	if err != nil {
		fail("bad bytes", err)
		return
	}
	if e.Index != it.index {
		fail(fmt.Sprintf("index field says %d", e.Index), nil)
		return
	}
	if err := validateEntry(&e); err != nil {
		fail("invalid", err)
		return
	}
	if it.pre != nil {
		it.err = it.pre
		return
	}
	if p.check != nil {
		if err := p.check(e); err != nil {
			fail("entry check failed", err)
			return
		}
	}
	it.raw = nil // the entry is what the caller needs now
	it.entry = e
}

// indexCheck compares the state and history buckets with what the entries
// imply, fed the entries in order, without a whole-ledger map of either.
//
// History: each key an entry implies is looked up as the entry passes, and
// at the end the bucket must hold exactly as many keys; keys are unique, so
// that makes the two sets equal.
//
// State: a record depends on every entry touching its digest (a revocation
// reaches platforms promoted long before), so it is rebuilt with the same
// stateBatch code that writes it, in chunks of stateChunk entries, but kept
// between chunks in sealed form: each mark reduced to its index, its
// origin and a hash of its encoding. That costs tens of bytes per digest,
// none per entry. At the end every stored record, sealed the same way, must
// equal the rebuilt one, and must itself be canonically encoded.
type indexCheck struct {
	hist    *bolt.Bucket
	histCur *bolt.Cursor
	state   *bolt.Bucket
	nHist   int
	sealed  *sealedStore // digest -> encodeRecord of the sealed record
	batch   *stateBatch
	applied int
	rules   uint64 // what the file says its state index was built with
}

const stateChunk = 4096

func newIndexCheck(tx *bolt.Tx) *indexCheck {
	hist := tx.Bucket(bucketHistory)
	x := &indexCheck{hist: hist, histCur: hist.Cursor(), state: tx.Bucket(bucketState), sealed: newSealedStore(),
		rules: txStateRules(tx)}
	x.batch = x.newBatch()
	return x
}

func (x *indexCheck) newBatch() *stateBatch {
	return newStateBatch(x.sealed.get)
}

func (x *indexCheck) add(e *Entry) error {
	for _, name := range historyNames(e) {
		key := historyKey(name, e.Index)
		if k, _ := x.histCur.Seek(key); !bytes.Equal(k, key) {
			return &VerifyError{index: true, Index: int64(e.Index), Reason: fmt.Sprintf("history index lacks %q", name)}
		}
		x.nHist++
	}
	if err := x.batch.apply(e); err != nil {
		return &VerifyError{Index: int64(e.Index), Reason: "state", Err: err}
	}
	// The marks apply made are the only unsealed ones: everything else came
	// from the sealed store or from an earlier entry.
	for _, m := range x.batch.made {
		sealMark(m)
	}
	x.batch.made = x.batch.made[:0]
	if x.applied++; x.applied == stateChunk {
		x.flush()
	}
	return nil
}

func (x *indexCheck) flush() {
	_ = x.batch.encoded(func(d string, v []byte) error { x.sealed.put(d, v); return nil })
	x.batch, x.applied = x.newBatch(), 0
}

// sealTag is the By of a sealed mark; real marks are never sealed twice.
const sealTag = "\x00sealed"

// sealMark keeps of m only what identifies it: its index and a hash of its
// whole encoding. Its origin, which the record encodes beside the mark and
// which a later promotion reads, stays as it is, and so does Foreign,
// which the record encodes in its flags.
func sealMark(m *mark) {
	if m == nil || m.By == sealTag {
		return
	}
	sum := sha256.Sum256(appendMark(nil, m))
	*m = mark{Index: m.Index, By: sealTag, Reason: string(sum[:16]), Origin: m.Origin, Foreign: m.Foreign}
}

func (x *indexCheck) finish() error {
	x.flush()
	n := 0
	c := x.state.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		bad := &VerifyError{index: true, Index: -1, Reason: fmt.Sprintf("state index of %s disagrees with the entries", k)}
		if x.rules < stateRules {
			bad.Reason += fmt.Sprintf(" (it was built with the rules of an older stagegate, %d, not %d: "+
				"opening the ledger writable, as `stagegate serve` does, rebuilds it)", x.rules, stateRules)
		}
		rec, err := decodeRecord(string(k), v, nil)
		if err != nil || !bytes.Equal(encodeRecord(string(k), rec), v) {
			return bad
		}
		for _, m := range rec.Stages {
			sealMark(m.Promoted)
			sealMark(m.Revoked)
			sealMark(m.Blocked)
		}
		if want := x.sealed.get(string(k)); want == nil || !bytes.Equal(encodeRecord(string(k), rec), want) {
			return bad
		}
		n++
	}
	if n != x.sealed.len() {
		return &VerifyError{index: true, Index: -1, Reason: fmt.Sprintf("state index has %d digests, entries imply %d", n, x.sealed.len())}
	}
	if n := x.hist.Stats().KeyN; n != x.nHist {
		return &VerifyError{index: true, Index: -1, Reason: fmt.Sprintf("history index has %d keys, entries imply %d", n, x.nHist)}
	}
	return nil
}

// VerifyTail is the cheap startup check: the checkpoint signature, and the
// last n entries re-hashed into the stored tree prefix must give the
// checkpoint root. It catches a swapped file, a wrong key, or a torn tail.
func (l *Ledger) VerifyTail(v note.Verifier, n uint64) error {
	return l.db.View(func(tx *bolt.Tx) (err error) {
		cur := int64(-1)
		defer func() {
			if r := recover(); r != nil {
				err = &VerifyError{Index: cur, Reason: fmt.Sprintf("corrupted data: %v", r)}
			}
		}()
		size := txSize(tx)
		cpText := tx.Bucket(bucketMeta).Get(keyCheckpoint)
		if cpText == nil {
			if size == 0 {
				return nil
			}
			return &VerifyError{Index: -1, Reason: fmt.Sprintf("no checkpoint for %d entries", size)}
		}
		cp, err := ParseCheckpoint(string(cpText), v)
		if err != nil {
			return &VerifyError{Index: -1, Reason: "bad checkpoint", Err: err}
		}
		if cp.Size != size {
			return &VerifyError{Index: -1, Reason: fmt.Sprintf("checkpoint size %d, ledger size %d", cp.Size, size)}
		}
		start := size - min(n, size)
		nodes := tx.Bucket(bucketNodes)
		rng, err := loadRange(nodes, start)
		if err != nil {
			return &VerifyError{Index: -1, Reason: "tree prefix", Err: err}
		}
		for i := start; i < size; i++ {
			cur = int64(i)
			raw := tx.Bucket(bucketEntries).Get(be64(i))
			if raw == nil {
				return &VerifyError{Index: cur, Reason: "missing"}
			}
			e, err := canonicalEntry(raw)
			if err != nil {
				return &VerifyError{Index: cur, Reason: "bad bytes", Err: err}
			}
			if e.Index != i {
				return &VerifyError{Index: cur, Reason: fmt.Sprintf("index field says %d", e.Index)}
			}
			leaf := hasher.HashLeaf(raw)
			if !bytes.Equal(nodes.Get(nodeKey(compact.NewNodeID(0, i))), leaf) {
				return &VerifyError{Index: cur, Reason: "stored leaf hash differs"}
			}
			if err := rng.Append(leaf, nil); err != nil {
				return &VerifyError{Index: cur, Reason: "tree", Err: err}
			}
		}
		if size == 0 {
			return nil
		}
		root, err := rng.GetRootHash(nil)
		if err != nil {
			return &VerifyError{Index: -1, Reason: "tree", Err: err}
		}
		if !bytes.Equal(root, cp.Root) {
			return &VerifyError{Index: -1, Reason: "recomputed root differs from the checkpoint root"}
		}
		return nil
	})
}
