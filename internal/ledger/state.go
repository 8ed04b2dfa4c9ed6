package ledger

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// stateRecord is the value of the state bucket, one per digest, holding the
// last promotion and the last revocation per stage. Keeping every stage of a
// digest in one value is what makes State a single Get even though a
// revocation of AllStages must be folded in. It is stored with encodeRecord.
type stateRecord struct {
	Repository string
	// Platforms are the platform manifest digests promoted together with
	// this (index) digest: revoking the index revokes them too, otherwise a
	// pod pinned by platform digest would outlive the revocation.
	Platforms []string
	Stages    map[string]*stageMarks
}

type stageMarks struct {
	Promoted *mark
	Revoked  *mark
}

// mark copies from an entry what State reports, so that admission need not
// read the entry itself.
type mark struct {
	Index      uint64
	Time       time.Time
	By         string
	Repository string
	Reason     string
	Labels     map[string]string
}

// fold computes the State of digest in stage: the later of the stage's own
// revocation and the AllStages one wins over an earlier promotion, and a
// later promotion wins over both.
func (r *stateRecord) fold(digest, stage string) State {
	st := State{Digest: digest, Stage: stage, Repository: r.Repository}
	var promo, rev *mark
	if m := r.Stages[stage]; m != nil {
		promo, rev = m.Promoted, m.Revoked
	}
	if m := r.Stages[AllStages]; m != nil && m.Revoked != nil && (rev == nil || m.Revoked.Index > rev.Index) {
		rev = m.Revoked
	}
	if promo != nil {
		st.Promoted = true
		st.PromotedIndex = promo.Index
		st.PromotedAt = promo.Time
		st.PromotedBy = promo.By
		st.Labels = promo.Labels
		if promo.Repository != "" {
			st.Repository = promo.Repository
		}
	}
	if rev != nil && (promo == nil || rev.Index > promo.Index) {
		st.Revoked = true
		st.RevokedIndex = rev.Index
		st.RevokedAt = rev.Time
		st.RevokedBy = rev.By
		st.RevokeReason = rev.Reason
	}
	return st
}

// txState is the one-Get lookup shared by Ledger.State and Reader.State.
func txState(tx *bolt.Tx, digest, stage string) (State, bool, error) {
	rec, err := txRecord(tx, digest, func(s []byte) bool { return string(s) == stage || string(s) == AllStages })
	if err != nil || rec == nil {
		return State{Digest: digest, Stage: stage}, false, err
	}
	return rec.fold(digest, stage), true, nil
}

// txRecord reads and decodes the state record of digest (only the stages
// want accepts; all when want is nil), or nil when there is none.
func txRecord(tx *bolt.Tx, digest string, want func(stage []byte) bool) (*stateRecord, error) {
	v := tx.Bucket(bucketState).Get([]byte(digest))
	if v == nil {
		return nil, nil
	}
	rec, err := decodeRecord(v, want)
	if err != nil {
		return nil, fmt.Errorf("ledger: state of %s: %w", digest, err)
	}
	return rec, nil
}

// stateBatch applies entries to state records loaded on demand (from the
// bucket, or from nothing when Verify rebuilds the index) and writes back the
// ones it touched.
type stateBatch struct {
	load  func(digest string) []byte // nil: no stored record
	recs  map[string]*stateRecord
	order []string
}

func newStateBatch(load func(string) []byte) *stateBatch {
	return &stateBatch{load: load, recs: map[string]*stateRecord{}}
}

func (b *stateBatch) record(digest string) (*stateRecord, error) {
	if r, ok := b.recs[digest]; ok {
		return r, nil
	}
	r := &stateRecord{Stages: map[string]*stageMarks{}}
	if b.load != nil {
		if v := b.load(digest); v != nil {
			var err error
			if r, err = decodeRecord(v, nil); err != nil {
				return nil, fmt.Errorf("ledger: state of %s: %w", digest, err)
			}
		}
	}
	b.recs[digest] = r
	b.order = append(b.order, digest)
	return r, nil
}

func (b *stateBatch) apply(e *Entry) error {
	switch e.Kind {
	case KindPromotion:
		m := &mark{Index: e.Index, Time: e.Time, By: e.Subject, Repository: e.Repository, Labels: e.Labels}
		for i, d := range append([]string{e.Digest}, e.Platforms...) {
			r, err := b.record(d)
			if err != nil {
				return err
			}
			if e.Repository != "" {
				r.Repository = e.Repository
			}
			if i == 0 {
				r.Platforms = union(r.Platforms, e.Platforms)
			}
			stageOf(r, e.Stage).Promoted = m
		}
	case KindRevocation:
		m := &mark{Index: e.Index, Time: e.Time, By: e.Subject, Repository: e.Repository, Reason: e.Reason}
		r, err := b.record(e.Digest)
		if err != nil {
			return err
		}
		targets := union(append([]string{e.Digest}, e.Platforms...), r.Platforms)
		for _, d := range targets {
			r, err := b.record(d)
			if err != nil {
				return err
			}
			if r.Repository == "" {
				r.Repository = e.Repository
			}
			stageOf(r, e.Stage).Revoked = m
		}
	}
	// Break-glass entries are a record of an exception, never a state change.
	return nil
}

func stageOf(r *stateRecord, stage string) *stageMarks {
	m := r.Stages[stage]
	if m == nil {
		m = &stageMarks{}
		r.Stages[stage] = m
	}
	return m
}

// union appends to a the elements of b it lacks, keeping first-seen order so
// that a rebuild gives the same bytes.
func union(a, b []string) []string {
	for _, s := range b {
		found := false
		for _, t := range a {
			if s == t {
				found = true
				break
			}
		}
		if !found {
			a = append(a, s)
		}
	}
	return a
}

// encoded returns the records in the order they were first touched.
func (b *stateBatch) encoded(yield func(digest string, v []byte) error) error {
	for _, d := range b.order {
		if err := yield(d, encodeRecord(b.recs[d])); err != nil {
			return err
		}
	}
	return nil
}

func (b *stateBatch) flush(bk *bolt.Bucket) error {
	return b.encoded(func(d string, v []byte) error {
		if err := bk.Put([]byte(d), v); err != nil {
			return fmt.Errorf("ledger: put state of %s: %w", d, err)
		}
		return nil
	})
}

// historyNames are the names under which History finds an entry.
func historyNames(e *Entry) []string {
	names := []string{}
	add := func(s string) {
		if s != "" {
			names = union(names, []string{s})
		}
	}
	add(e.Repository)
	add(e.Digest)
	for _, p := range e.Platforms {
		add(p)
	}
	for _, c := range e.Copies {
		add(c)
	}
	// A break-glass entry may cover several images; digest-pinned ones are
	// findable by digest.
	for _, img := range e.Images {
		if i := strings.LastIndexByte(img, '@'); i >= 0 {
			add(img[i+1:])
		}
	}
	return names
}

func historyKey(name string, index uint64) []byte {
	k := make([]byte, 0, len(name)+9)
	k = append(k, name...)
	k = append(k, 0)
	return append(k, be64(index)...)
}

// validateEntry rejects entries that would corrupt the indexes or be
// meaningless; it runs on append, import and verify alike.
func validateEntry(e *Entry) error {
	var errs []error
	switch e.Kind {
	case KindPromotion:
		if e.Stage == "" || e.Stage == AllStages {
			errs = append(errs, fmt.Errorf("promotion needs a stage, not %q", e.Stage))
		}
		if e.Digest == "" {
			errs = append(errs, errors.New("promotion needs a digest"))
		}
	case KindRevocation:
		if e.Stage == "" {
			errs = append(errs, errors.New("revocation needs a stage or \"*\""))
		}
		if e.Digest == "" {
			errs = append(errs, errors.New("revocation needs a digest"))
		}
	case KindBreakGlass:
	default:
		errs = append(errs, fmt.Errorf("unknown kind %q", e.Kind))
	}
	for _, p := range e.Platforms {
		if p == "" {
			errs = append(errs, errors.New("empty platform digest"))
		}
	}
	for _, s := range append([]string{e.Repository, e.Digest}, e.Platforms...) {
		if strings.IndexByte(s, 0) >= 0 {
			errs = append(errs, errors.New("NUL byte in repository or digest"))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("invalid entry: %w", err)
	}
	return nil
}

// encodeEntry returns the canonical bytes of e, refusing an entry whose
// encoding does not survive a decode/encode round trip: the stored bytes are
// the leaf data, and verifiers recompute them from a decoded entry.
func encodeEntry(e *Entry) ([]byte, error) {
	raw, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encode entry: %w", err)
	}
	if _, err := canonicalEntry(raw); err != nil {
		return nil, err
	}
	return raw, nil
}

// canonicalEntry decodes raw and checks that it is exactly json.Marshal of
// the decoded entry.
func canonicalEntry(raw []byte) (Entry, error) {
	e, err := decodeEntry(raw)
	if err != nil {
		return Entry{}, err
	}
	again, err := json.Marshal(&e)
	if err != nil {
		return Entry{}, fmt.Errorf("re-encode entry: %w", err)
	}
	if !bytes.Equal(again, raw) {
		return Entry{}, errors.New("entry bytes are not canonical")
	}
	return e, nil
}

// decodeEntry copies everything out of raw, so raw may be a bbolt slice.
func decodeEntry(raw []byte) (Entry, error) {
	var e Entry
	if err := json.Unmarshal(raw, &e); err != nil {
		return Entry{}, fmt.Errorf("decode entry: %w", err)
	}
	return e, nil
}
