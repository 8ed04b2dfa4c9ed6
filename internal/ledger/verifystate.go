package ledger

import (
	"bytes"
	"fmt"
	"runtime"
	"runtime/debug"
	"sync"
)

// finishBatch is how many stored state records finish reads before its
// workers check them.
const finishBatch = 1024

// finish compares the stored state records with the rebuilt ones and the
// counts of both indexes. It runs after the last entry, with nothing left
// to overlap it, and a ledger holds a record per digest (a third of its
// entries in the benchmarks): checked on one goroutine it was a twentieth
// of verify's time with the other core idle. The cursor stays on this
// goroutine, as all bbolt access does; the workers only read record bytes,
// which stay valid for the transaction, and the sealed store, which
// nothing writes any more. The first bad record in key order is named, as
// before.
func (x *indexCheck) finish() error {
	x.flush()
	workers := runtime.GOMAXPROCS(0)
	var keys, vals [][]byte
	verdicts := make([]*VerifyError, finishBatch)
	n := 0
	check := func() *VerifyError {
		clear(verdicts)
		var wg sync.WaitGroup
		for w := 1; w < workers; w++ {
			wg.Go(func() {
				defer debug.SetPanicOnFault(debug.SetPanicOnFault(true)) // as in verifyTx
				x.checkRecords(keys, vals, verdicts, w, workers)
			})
		}
		x.checkRecords(keys, vals, verdicts, 0, workers)
		wg.Wait()
		for _, v := range verdicts[:len(keys)] {
			if v != nil {
				return v
			}
		}
		keys, vals = keys[:0], vals[:0]
		return nil
	}
	c := x.state.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		keys, vals = append(keys, k), append(vals, v)
		n++
		if len(keys) == finishBatch {
			if bad := check(); bad != nil {
				return bad
			}
		}
	}
	if bad := check(); bad != nil {
		return bad
	}
	if n != x.sealed.len() {
		return &VerifyError{index: true, Index: -1, Reason: fmt.Sprintf("state index has %d digests, entries imply %d", n, x.sealed.len())}
	}
	if n := x.hist.Stats().KeyN; n != x.nHist {
		return &VerifyError{index: true, Index: -1, Reason: fmt.Sprintf("history index has %d keys, entries imply %d", n, x.nHist)}
	}
	return nil
}

// checkRecords checks records w, w+stride, … of keys and vals, and sets
// the verdict of each bad one; a worker stops at its first.
func (x *indexCheck) checkRecords(keys, vals [][]byte, verdicts []*VerifyError, w, stride int) {
	for i := w; i < len(keys); i += stride {
		if verdicts[i] = x.checkRecord(keys[i], vals[i]); verdicts[i] != nil {
			return
		}
	}
}

// checkRecord checks one stored record: canonically encoded, and equal,
// once sealed, to the one the entries imply. A panic on corrupted bytes is
// reported as verifyTx reports one, since it may happen on a worker.
func (x *indexCheck) checkRecord(k, v []byte) (bad *VerifyError) {
	defer func() {
		if r := recover(); r != nil {
			bad = &VerifyError{Index: -1, Reason: fmt.Sprintf("corrupted data: %v", r)}
		}
	}()
	d := string(k)
	rec, err := decodeRecord(d, v, nil)
	if err != nil || !bytes.Equal(encodeRecord(d, rec), v) {
		return x.disagrees(d)
	}
	for _, m := range rec.Stages {
		sealMark(m.Promoted)
		sealMark(m.Revoked)
		sealMark(m.Blocked)
	}
	if want := x.sealed.get(d); want == nil || !bytes.Equal(encodeRecord(d, rec), want) {
		return x.disagrees(d)
	}
	return nil
}
