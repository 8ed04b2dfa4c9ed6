package ledger

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// stateRecord is the value of the state bucket, one per digest, holding the
// last promotion and the last revocation per stage. Keeping every stage of a
// digest in one value is what makes State a single Get even though a
// revocation of AllStages must be folded in. It is stored with encodeRecord.
//
// A digest may stand for others: an index names its platform manifests,
// and a pod that names the index runs one of them. The rules, applied by
// stateBatch.apply whenever an entry is written, imported or re-derived
// by Verify:
//
//   - Revoking a digest revokes, in the same stage (or "*"), everything it
//     contains (Platforms, transitively), so that a pod pinned by platform
//     digest does not outlive the index's revocation, and every index
//     known to contain any of those (Indexes, transitively), so that a pod
//     naming the index does not run the revoked platform. A sibling
//     platform of a revoked one stays as it was: it is another image.
//   - Promoting an index does not lift a revocation of one of its
//     platforms that is in force in the stage: the policy was asked about
//     the index, not about the platform. The platform stays revoked, and
//     the index (and every index known to contain it) is revoked by that
//     revocation (stageMarks.Blocked) until it is promoted again while no
//     platform of it is revoked there. Promoting the platform's own digest
//     does lift its revocation, as it always has.
//
// The marks are written into every record concerned, so that a look-up
// never reads more than the digest's own record.
type stateRecord struct {
	Repository string
	// Platforms are the platform manifest digests promoted together with
	// this (index) digest.
	Platforms []string
	// Indexes are the digests of the indexes promoted with this digest
	// among their platforms: the back-reference that lets a revocation of
	// a platform reach them.
	Indexes []string
	Stages  map[string]*stageMarks
}

type stageMarks struct {
	Promoted *mark
	Revoked  *mark
	// Blocked is the revocation of a platform that was in force in this
	// stage when Promoted was written; Promoted does not lift it. Each
	// promotion in the stage sets it afresh.
	Blocked *mark
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
	// Foreign is, for a promotion, that its entry was imported from
	// another stagegate's registry attestation.
	Foreign bool
	// Origin is, for a revocation, the digest its entry names: a mark
	// written into the records of the platforms or indexes it reaches
	// says where it came from, which decides what a promotion lifts.
	Origin string
}

// effective returns the promotion of the record in stage and the
// revocation in force there (nil when none): the later of the stage's own
// revocation and the AllStages one wins over an earlier promotion, a later
// promotion wins over both, except over a Blocked revocation.
func (r *stateRecord) effective(stage string) (promo, rev *mark) {
	var own, blocked *mark
	if m := r.Stages[stage]; m != nil {
		promo, own, blocked = m.Promoted, m.Revoked, m.Blocked
	}
	if m := r.Stages[AllStages]; m != nil && m.Revoked != nil && (own == nil || m.Revoked.Index > own.Index) {
		own = m.Revoked
	}
	switch {
	case own != nil && (promo == nil || own.Index > promo.Index):
		return promo, own
	case promo != nil && blocked != nil:
		return promo, blocked
	}
	return promo, nil
}

// fold computes the State of digest in stage.
func (r *stateRecord) fold(digest, stage string) State {
	st := State{Digest: digest, Stage: stage, Repository: r.Repository}
	promo, rev := r.effective(stage)
	if promo != nil {
		st.Promoted = true
		st.PromotedIndex = promo.Index
		st.PromotedAt = promo.Time
		st.PromotedBy = promo.By
		st.Labels = promo.Labels
		st.Foreign = promo.Foreign
		if promo.Repository != "" {
			st.Repository = promo.Repository
		}
	}
	if rev != nil {
		st.Revoked = true
		st.RevokedIndex = rev.Index
		st.RevokedAt = rev.Time
		st.RevokedBy = rev.By
		st.RevokeReason = rev.Reason
		if rev.Origin != digest {
			st.RevokedDigest = rev.Origin
		}
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
	rec, err := decodeRecord(digest, v, want)
	if err != nil {
		return nil, fmt.Errorf("ledger: state of %s: %w", digest, err)
	}
	return rec, nil
}

// stateBatch applies entries to state records loaded on demand (from the
// bucket, or from nothing when Verify rebuilds the index) and writes back the
// ones it touched. Every record apply reads or writes (an index reached
// through a platform's back-reference too) is listed in order, and the
// writers invalidate exactly those digests in the state cache.
type stateBatch struct {
	load  func(digest string) []byte // nil: no stored record
	recs  map[string]*stateRecord
	order []string
	// made collects the marks apply creates, for Verify to seal.
	made []*mark
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
			if r, err = decodeRecord(digest, v, nil); err != nil {
				return nil, fmt.Errorf("ledger: state of %s: %w", digest, err)
			}
		}
	}
	b.recs[digest] = r
	b.order = append(b.order, digest)
	return r, nil
}

func (b *stateBatch) newMark(e *Entry, labels map[string]string) *mark {
	m := &mark{Index: e.Index, Time: e.Time, By: e.Subject, Repository: e.Repository, Labels: labels}
	switch e.Kind {
	case KindRevocation:
		m.Reason, m.Origin = e.Reason, e.Digest
	case KindPromotion:
		m.Foreign = e.Foreign
	}
	b.made = append(b.made, m)
	return m
}

// closure returns start and every digest reachable from it through next,
// in first-seen order, each once.
func (b *stateBatch) closure(start []string, next func(*stateRecord) []string) ([]string, error) {
	out := union(nil, start)
	for i := 0; i < len(out); i++ {
		r, err := b.record(out[i])
		if err != nil {
			return nil, err
		}
		out = union(out, next(r))
	}
	return out, nil
}

func platformsOf(r *stateRecord) []string { return r.Platforms }
func indexesOf(r *stateRecord) []string   { return r.Indexes }

func (b *stateBatch) apply(e *Entry) error {
	switch e.Kind {
	case KindPromotion:
		return b.applyPromotion(e)
	case KindRevocation:
		down, err := b.closure(append([]string{e.Digest}, e.Platforms...), platformsOf)
		if err != nil {
			return err
		}
		targets, err := b.closure(down, indexesOf)
		if err != nil {
			return err
		}
		m := b.newMark(e, nil)
		for _, d := range targets {
			r := b.recs[d] // loaded by closure
			if r.Repository == "" {
				r.Repository = e.Repository
			}
			stageOf(r, e.Stage).Revoked = m
		}
	}
	// Break-glass entries are a record of an exception, never a state change.
	return nil
}

// applyPromotion records a promotion of e.Digest and its platforms, each
// with its own labels, and the revocations of platforms it does not lift
// (see stateRecord).
func (b *stateBatch) applyPromotion(e *Entry) error {
	index, err := b.record(e.Digest)
	if err != nil {
		return err
	}
	var platforms []string
	for _, p := range union(nil, e.Platforms) {
		if p != e.Digest {
			platforms = append(platforms, p)
		}
	}
	// This index and those known to contain it: a revocation of one of
	// them reached the platforms through this index, and promoting it
	// lifts that as it lifts the index's own revocation. Any other
	// revocation of a platform in force in the stage, judged on the
	// ledger before this entry, stays.
	through, err := b.closure([]string{e.Digest}, indexesOf)
	if err != nil {
		return err
	}
	inForce := make([]*mark, len(platforms))
	var held *mark
	for i, p := range platforms {
		r, err := b.record(p)
		if err != nil {
			return err
		}
		if _, rev := r.effective(e.Stage); rev != nil && !slices.Contains(through, rev.Origin) {
			inForce[i] = rev
			if held == nil || rev.Index > held.Index {
				held = rev
			}
		}
	}
	promote := func(r *stateRecord, labels map[string]string, blocked *mark) {
		if e.Repository != "" {
			r.Repository = e.Repository
		}
		m := stageOf(r, e.Stage)
		m.Promoted, m.Blocked = b.newMark(e, labels), blocked
	}
	promote(index, e.Labels, held)
	index.Platforms = union(index.Platforms, e.Platforms)
	for i, p := range platforms {
		r := b.recs[p]
		labels := e.Labels // the meaning of entries without PlatformLabels
		if len(e.PlatformLabels) > 0 {
			labels = e.PlatformLabels[p]
		}
		promote(r, labels, inForce[i])
		r.Indexes = union(r.Indexes, []string{e.Digest})
	}
	if held == nil {
		return nil
	}
	// An index already promoted that contains this one now contains a
	// revoked platform too.
	for _, d := range through[1:] {
		m := b.recs[d].Stages[e.Stage]
		if m != nil && m.Promoted != nil && (m.Blocked == nil || held.Index > m.Blocked.Index) {
			m.Blocked = held
		}
	}
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
		if err := yield(d, encodeRecord(d, b.recs[d])); err != nil {
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
	// Requests are listed by stage, and each with its answers.
	if e.Kind == KindRequest {
		add(RequestsName(e.Stage))
		add(RequestName(e.Index))
	}
	if e.Request != nil {
		add(RequestName(*e.Request))
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
	case KindRequest, KindApproval, KindRejection:
		if e.Stage == "" || e.Stage == AllStages || e.Digest == "" {
			errs = append(errs, fmt.Errorf("%s needs a stage and a digest", e.Kind))
		}
		if (e.Kind == KindRequest) == (e.Request != nil) {
			errs = append(errs, fmt.Errorf("%s: only approvals and rejections name a request", e.Kind))
		}
	default:
		errs = append(errs, fmt.Errorf("unknown kind %q", e.Kind))
	}
	errs = append(errs, validateSet(e)...)
	for _, p := range e.Platforms {
		if p == "" {
			errs = append(errs, errors.New("empty platform digest"))
		}
	}
	if len(e.PlatformLabels) > 0 && e.Kind != KindPromotion {
		errs = append(errs, fmt.Errorf("platform labels in a %s entry", e.Kind))
	}
	// Labels of a digest the entry does not promote would be recorded
	// nowhere, and so mean nothing.
	for _, p := range slices.Sorted(maps.Keys(e.PlatformLabels)) {
		if !slices.Contains(e.Platforms, p) || p == e.Digest {
			errs = append(errs, fmt.Errorf("platform labels for %q, which is not a platform of the entry", p))
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

// validateSet checks a promotion's set: bounded, each digest once, and
// naming the entry itself, so that a set cannot be read as promoting what
// its entries do not.
func validateSet(e *Entry) []error {
	if e.Set == nil {
		return nil
	}
	var errs []error
	if e.Kind != KindPromotion {
		errs = append(errs, fmt.Errorf("a promotion set in a %s entry", e.Kind))
	}
	if n := len(e.Set); n == 0 || n > MaxSetMembers {
		errs = append(errs, fmt.Errorf("a promotion set of %d members (1 to %d)", n, MaxSetMembers))
	}
	self := false
	seen := map[string]bool{}
	for _, m := range e.Set {
		if seen[m.Digest] {
			errs = append(errs, fmt.Errorf("digest %q twice in the promotion set", m.Digest))
		}
		seen[m.Digest] = true
		if m.Digest == e.Digest && m.Repository == e.Repository && m.LedgerIndex == e.Index {
			self = true
		}
	}
	if !self {
		errs = append(errs, errors.New("the promotion set does not name the entry itself"))
	}
	return errs
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

// decodeEntry copies everything out of raw, so raw may be a bbolt slice.
func decodeEntry(raw []byte) (Entry, error) {
	var e Entry
	if err := json.Unmarshal(raw, &e); err != nil {
		return Entry{}, fmt.Errorf("decode entry: %w", err)
	}
	return e, nil
}
