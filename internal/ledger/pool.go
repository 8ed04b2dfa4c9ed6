package ledger

import (
	"encoding/json"
	"fmt"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
)

// checkItem is one entry on its way through a checkPool.
type checkItem struct {
	index uint64
	raw   []byte       // the entry's bytes; nil when pre alone is the verdict
	src   *Entry       // instead of raw: an entry to encode first (Importer)
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
// while its one caller keeps reading, and hands them back to take in the
// order they were added: the first failure take meets is the lowest bad
// index however the workers interleave. At most window batches are in
// flight, which bounds memory whatever the ledger size.
//
// Verify, Import and Importer all read entries this way and differ only in
// what take does with a checked entry, so the batching and the draining
// live here once.
type checkPool struct {
	check   func(Entry) error
	prefix  string
	take    func(*checkItem) error
	jobs    chan *checkBatch
	cur     *checkBatch   // being filled
	pending []*checkBatch // submitted and not yet taken back, oldest first
	window  int
	err     error // the first error take returned; sticky
	stopped atomic.Bool
	wg      sync.WaitGroup
}

// newCheckPool starts the workers. take runs on the caller's goroutine,
// inside add and drain; an error from it stops the pool.
func newCheckPool(check func(Entry) error, prefix string, take func(*checkItem) error) *checkPool {
	n := runtime.GOMAXPROCS(0)
	p := &checkPool{check: check, prefix: prefix, take: take, jobs: make(chan *checkBatch, 4*n), window: 4 * n}
	p.cur = p.batch()
	p.wg.Add(n)
	for range n {
		go p.work()
	}
	return p
}

func (p *checkPool) batch() *checkBatch {
	return &checkBatch{items: make([]checkItem, 0, checkBatchSize), done: make(chan struct{})}
}

// add queues it, and hands back to take whatever the window no longer
// has room for. Once take has failed, add queues nothing and returns that
// error.
func (p *checkPool) add(it checkItem) error {
	if p.err != nil {
		return p.err
	}
	p.cur.items = append(p.cur.items, it)
	if len(p.cur.items) == cap(p.cur.items) {
		p.submit()
	}
	return p.collect(false)
}

// drain waits for everything added and hands it to take. It returns the
// first error take returned, now or before.
func (p *checkPool) drain() error {
	if p.err == nil {
		p.submit()
	}
	return p.collect(true)
}

func (p *checkPool) submit() {
	if len(p.cur.items) == 0 {
		return
	}
	p.pending = append(p.pending, p.cur)
	p.jobs <- p.cur
	p.cur = p.batch()
}

// collect takes batches back while the window is full or, when draining,
// while anything is pending.
func (p *checkPool) collect(drain bool) error {
	for p.err == nil && (len(p.pending) >= p.window || (drain && len(p.pending) > 0)) {
		b := p.pending[0]
		p.pending = p.pending[1:]
		<-b.done
		for i := range b.items {
			if err := p.take(&b.items[i]); err != nil {
				p.err = err
				p.abort()
				break
			}
		}
	}
	return p.err
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
	if it.src != nil {
		raw, err := json.Marshal(it.src)
		if err != nil {
			fail("bad bytes", fmt.Errorf("encode entry: %w", err))
			return
		}
		it.raw, it.src = raw, nil
	}
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
	it.entry = e
}

// verdict is take's usual first step: the error the workers found, as an
// error (nil stays nil, not a typed nil).
func (it *checkItem) verdict() error {
	if it.err != nil {
		return it.err
	}
	return nil
}
