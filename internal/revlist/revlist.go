// Package revlist makes and reads signed revocation lists.
//
// A cluster that follows another stagegate through the registry
// (registrySource) learns a revocation from the attestations attached to
// the image. Whoever can write to the registry can remove those, and the
// follower would never know that it missed one. The stagegate that revokes
// therefore also publishes, at one tag, a statement it signs again every
// few minutes: every revocation it has made, with when it said so. A
// follower that holds a recent list knows every revocation up to that
// moment; one whose newest list is older than its bound cannot, and the
// stages that require freshness refuse the promotions it imported
// (internal/federation). A list cannot be forged (it is signed), nor
// replayed for long (it carries its time), nor rolled back (a follower
// keeps the newest it has seen).
package revlist

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/signing"
)

// MaxBytes bounds a list's envelope, on publishing and on reading: a
// follower reads it from a registry that others can write to. At about
// 1.5 KB a revocation it holds some 20,000 of them.
const MaxBytes = 32 << 20

// Errors returned (wrapped) by this package.
var (
	// ErrInvalid means an envelope is no revocation list that one of the
	// trusted keys signed.
	ErrInvalid = errors.New("invalid revocation list")
	// ErrTooLarge means the list would exceed MaxBytes.
	ErrTooLarge = errors.New("revocation list too large")
)

// Ledger is what a Publisher reads.
type Ledger interface {
	Checkpoint() (string, error)
	Entries(start, limit uint64) ([]ledger.Entry, error)
}

// Signer signs the list's statement (signing.Signer).
type Signer interface {
	Sign(signing.Statement) ([]byte, error)
}

// Pusher stores the list's envelope at a tag (oci.Attacher).
type Pusher interface {
	PutEnvelope(ctx context.Context, reference string, envelope []byte, annotations map[string]string) error
}

// Leadership is what a Publisher of a cluster's replica asks of Raft
// (cluster.Node): only the leader publishes, so that the replicas do not
// each sign and push a list, racing at one tag.
type Leadership interface {
	// IsLeader reports, cheaply, whether this replica leads now.
	IsLeader() bool
	// Barrier returns once every entry committed before it was called is
	// in the local ledger, and fails on a replica that does not lead (a
	// deposed leader too): its list could miss a revocation.
	Barrier(ctx context.Context) error
}

// Publisher keeps the list at one reference up to date.
type Publisher struct {
	ledger    Ledger
	logKey    note.Verifier
	signer    Signer
	push      Pusher
	reference string
	every     time.Duration
	poll      time.Duration
	now       func() time.Time
	log       *slog.Logger
	leader    Leadership
	changes   <-chan struct{}

	mu      sync.Mutex
	scanned uint64            // entries read so far
	revs    []json.RawMessage // the revocations among them, in ledger order
}

// Option configures a Publisher.
type Option func(*Publisher)

// WithInterval sets how often the list is signed again when nothing
// changed. A follower's maxAge must be well above it.
func WithInterval(d time.Duration) Option { return func(p *Publisher) { p.every = d } }

// WithPoll sets how often the ledger is read for new revocations.
func WithPoll(d time.Duration) Option { return func(p *Publisher) { p.poll = d } }

// WithClock sets the clock that dates the lists.
func WithClock(now func() time.Time) Option { return func(p *Publisher) { p.now = now } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(p *Publisher) { p.log = l } }

// WithLeader makes the Publisher publish only while l leads, and look
// again at once whenever changes receives (cluster.Node's
// LeadershipChanges): a replica that becomes leader publishes at once,
// so that a failover never ages the list past a follower's bound. Every
// list it publishes is issued as of a Raft barrier (Publish).
func WithLeader(l Leadership, changes <-chan struct{}) Option {
	return func(p *Publisher) { p.leader, p.changes = l, changes }
}

// DefaultInterval is how often a list is signed again by default.
const DefaultInterval = 5 * time.Minute

// NewPublisher returns a Publisher of the revocations in l at reference
// (repository:tag). logKey verifies l's checkpoints.
func NewPublisher(l Ledger, logKey note.Verifier, s Signer, p Pusher, reference string, opts ...Option) *Publisher {
	pub := &Publisher{ledger: l, logKey: logKey, signer: s, push: p, reference: reference,
		every: DefaultInterval, poll: 2 * time.Second, now: time.Now, log: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(pub)
	}
	return pub
}

// Run publishes at once, then whenever a revocation reaches the ledger
// (it looks every poll interval, a read of the checkpoint) and at every
// interval, until ctx ends. Watching the ledger,
// rather than being told, catches revocations from any path: the API,
// an import, another replica. A failure is logged and retried at the
// next poll: followers whose list ages past their bound fail closed
// meanwhile. Under WithLeader, all of this happens only while leading,
// and a replica that becomes leader publishes at once.
func (p *Publisher) Run(ctx context.Context) {
	poll := time.NewTicker(p.poll)
	defer poll.Stop()
	var (
		last    time.Time
		due     = true // a publication is owed: at start, on leading, after a failure
		leading bool
	)
	look := func() {
		if p.leader != nil {
			if !p.leader.IsLeader() {
				leading = false
				return
			}
			if !leading {
				// The previous leader's last list may be as old as an
				// interval: this one does not wait for the next.
				leading, due = true, true
			}
		}
		changed, err := p.pending()
		if err != nil {
			p.log.Warn("reading the ledger for new revocations failed", "err", err)
		}
		if !due && !changed && p.now().Sub(last) < p.every {
			return
		}
		if _, err := p.Publish(ctx); err != nil {
			due = true
			if p.leader != nil && !p.leader.IsLeader() {
				leading = false // deposed meanwhile: the new leader publishes
				p.log.Info("not publishing the revocation list: this replica no longer leads", "err", err)
				return
			}
			if ctx.Err() == nil {
				p.log.Error("publishing the revocation list failed; followers will refuse foreign promotions in their fresh stages once theirs is too old",
					"reference", p.reference, "err", err)
			}
			return
		}
		last, due = p.now(), false
	}
	look()
	for {
		select {
		case <-ctx.Done():
			return
		case <-poll.C:
			look()
		case <-p.changes: // nil without WithLeader: never
			look()
		}
	}
}

// pending reads the entries appended since the last look and reports
// whether a revocation is among them, or a publication is due anyway.
func (p *Publisher) pending() (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	before := len(p.revs)
	if _, _, err := p.scanToCheckpoint(); err != nil {
		return false, err
	}
	return len(p.revs) > before, nil
}

// barrierWait bounds a Raft barrier before a publication.
const barrierWait = 10 * time.Second

// Publish signs the list of every revocation in the ledger now and stores
// it, and returns its predicate. Under WithLeader, the list is issued at
// the moment a Raft barrier began, and read after it: every revocation
// acknowledged before that moment is in it (committed before the
// barrier, or by a newer leader, in which case the barrier fails and
// nothing is published).
func (p *Publisher) Publish(ctx context.Context) (signing.RevocationListPredicate, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	issued := p.now().UTC()
	if p.leader != nil {
		bctx, cancel := context.WithTimeout(ctx, barrierWait)
		err := p.leader.Barrier(bctx)
		cancel()
		if err != nil {
			return signing.RevocationListPredicate{}, fmt.Errorf("revlist: only the cluster leader publishes, once its ledger holds every committed entry: %w", err)
		}
	}
	cpText, size, err := p.scanToCheckpoint()
	if err != nil {
		return signing.RevocationListPredicate{}, err
	}
	pred := signing.RevocationListPredicate{
		Issued: issued, TreeSize: size, Checkpoint: cpText, Revocations: p.revs,
	}
	sum := sha256.Sum256([]byte(cpText))
	st, err := signing.NewStatement(repositoryOf(p.reference), "sha256:"+hex.EncodeToString(sum[:]), signing.RevocationListPredicateType, pred)
	if err != nil {
		return pred, fmt.Errorf("revlist: %w", err)
	}
	env, err := p.signer.Sign(st)
	if err != nil {
		return pred, fmt.Errorf("revlist: sign: %w", err)
	}
	if len(env) > MaxBytes {
		return pred, fmt.Errorf("revlist: %w: %d bytes for %d revocations, more than the %d a follower reads", ErrTooLarge, len(env), len(p.revs), MaxBytes)
	}
	if err := p.push.PutEnvelope(ctx, p.reference, env, map[string]string{"predicateType": signing.RevocationListPredicateType}); err != nil {
		return pred, fmt.Errorf("revlist: publish to %s: %w", p.reference, err)
	}
	p.log.Debug("published the revocation list", "reference", p.reference, "revocations", len(p.revs), "treeSize", size)
	return pred, nil
}

// scanToCheckpoint reads the latest checkpoint and scans the entries up
// to its size; the list then says exactly what that checkpoint covers.
func (p *Publisher) scanToCheckpoint() (cpText string, size uint64, err error) {
	cpText, err = p.ledger.Checkpoint()
	if errors.Is(err, ledger.ErrEmpty) {
		return "", 0, nil // nothing revoked yet, and that is worth saying
	}
	if err != nil {
		return "", 0, fmt.Errorf("revlist: checkpoint: %w", err)
	}
	cp, err := ledger.ParseCheckpoint(cpText, p.logKey)
	if err != nil {
		return "", 0, fmt.Errorf("revlist: %w", err)
	}
	return cpText, cp.Size, p.scan(cp.Size)
}

// scanChunk bounds the entries read per transaction while scanning.
const scanChunk = 4096

// scan adds the revocations of entries [p.scanned, size) to the list. Only
// this stagegate's own revocations are listed: followers trust its key.
func (p *Publisher) scan(size uint64) error {
	for p.scanned < size {
		es, err := p.ledger.Entries(p.scanned, min(scanChunk, size-p.scanned))
		if err != nil {
			return fmt.Errorf("revlist: read entries from %d: %w", p.scanned, err)
		}
		if len(es) == 0 {
			return fmt.Errorf("revlist: ledger has no entry %d below its checkpoint's size %d", p.scanned, size)
		}
		for _, e := range es {
			if e.Kind == ledger.KindRevocation && !e.Foreign && len(e.Envelope) > 0 {
				p.revs = append(p.revs, e.Envelope)
			}
		}
		p.scanned += uint64(len(es))
	}
	return nil
}

// repositoryOf is reference without its tag.
func repositoryOf(reference string) string {
	for i := len(reference) - 1; i >= 0; i-- {
		switch reference[i] {
		case ':':
			return reference[:i]
		case '/':
			return reference
		}
	}
	return reference
}

// Verify checks that one of keys signed envelope as a revocation list, and
// returns its predicate. The revocations in it are not verified here: each
// is an attestation of its own, imported as one.
func Verify(envelope []byte, keys []*signing.Verifier) (signing.RevocationListPredicate, error) {
	var errs []error
	for _, k := range keys {
		st, err := k.Verify(envelope)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if st.PredicateType != signing.RevocationListPredicateType {
			return signing.RevocationListPredicate{}, fmt.Errorf("revlist: %w: predicate type %q, want %q", ErrInvalid, st.PredicateType, signing.RevocationListPredicateType)
		}
		var p signing.RevocationListPredicate
		if err := json.Unmarshal(st.Predicate, &p); err != nil {
			return p, fmt.Errorf("revlist: %w: %w", ErrInvalid, err)
		}
		if p.Issued.IsZero() {
			return p, fmt.Errorf("revlist: %w: no issued time", ErrInvalid)
		}
		sum := sha256.Sum256([]byte(p.Checkpoint))
		if len(st.Subject) != 1 || st.Subject[0].Digest["sha256"] != hex.EncodeToString(sum[:]) {
			return p, fmt.Errorf("revlist: %w: its subject is not its checkpoint", ErrInvalid)
		}
		return p, nil
	}
	if len(keys) == 0 {
		return signing.RevocationListPredicate{}, fmt.Errorf("revlist: %w: no trusted keys (registrySource.trustedKeys)", ErrInvalid)
	}
	return signing.RevocationListPredicate{}, fmt.Errorf("revlist: %w: no trusted key verifies it: %w", ErrInvalid, errors.Join(errs...))
}
