// Package promotion is the promotion use case: resolve, decide, sign,
// record. It knows nothing of HTTP.
package promotion

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/oci"
	"github.com/stagegate/stagegate/internal/policy"
	"github.com/stagegate/stagegate/internal/registry"
	"github.com/stagegate/stagegate/internal/signing"
)

// Ledger is the part of *ledger.Ledger the use case needs.
type Ledger interface {
	Append(build ledger.BuildFunc) (ledger.Receipt, error)
	View(fn func(ledger.Reader) error) error
}

// ContextAppender is a Ledger whose appends the request's context bounds:
// a replicated ledger (internal/cluster) waits for a quorum, which a
// caller that gave up need not wait for. The Service uses it when its
// Ledger has it.
type ContextAppender interface {
	AppendContext(ctx context.Context, build ledger.BuildFunc) (ledger.Receipt, error)
}

// Signer signs in-toto statements as DSSE envelopes.
type Signer interface {
	Sign(st signing.Statement) ([]byte, error)
}

// Policy decides promotions.
type Policy interface {
	Promotion(ctx context.Context, in policy.PromotionInput) ([]string, error)
	Digest() string
}

// Resolver asks the registry what a reference points at.
type Resolver interface {
	Resolve(ctx context.Context, ref string) (registry.Resolved, error)
}

// Service promotes, revokes and records break-glass admissions.
type Service struct {
	ledger   Ledger
	signer   Signer
	policy   Policy
	resolver Resolver
	stages   []string
	now      func() time.Time
	log      *slog.Logger

	registry     Registry
	stageOpts    map[string]StageOptions
	evidenceKeys []*signing.Verifier

	pubMu    sync.Mutex
	pubLocks map[string]*imageLock

	observers     []func(ledger.Entry)
	duties        map[string]Duties
	approvalRules map[string]ApprovalRule
	replicas      ReplicaWaiter
	windows       map[string]WindowRule
}

// Option configures a Service.
type Option func(*Service)

// WithClock replaces time.Now, for tests of soak times.
func WithClock(now func() time.Time) Option { return func(s *Service) { s.now = now } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(s *Service) { s.log = l } }

// WithObserver calls fn with each promotion and revocation entry the
// Service records, once it is durable and before it is published to the
// registry: continuous validation re-checks the pods running its digest.
// fn runs on the request's goroutine and must not block.
func WithObserver(fn func(ledger.Entry)) Option {
	return func(s *Service) { s.observers = append(s.observers, fn) }
}

// observe tells the observers about e.
func (s *Service) observe(e ledger.Entry) {
	for _, fn := range s.observers {
		fn(e)
	}
}

// New returns a Service over the given stages, in pipeline order.
func New(l Ledger, signer Signer, pol Policy, res Resolver, stages []string, opts ...Option) *Service {
	s := &Service{ledger: l, signer: signer, policy: pol, resolver: res, stages: stages,
		now: time.Now, log: slog.New(slog.DiscardHandler), pubLocks: map[string]*imageLock{}}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Limits on what a request puts into a signed entry, which is kept
// forever and served to every auditor: a 1 MB break-glass justification
// once wrote a 2.3 MB entry.
const (
	maxReason = 1024
	// maxEvidence bounds the JSON of a promotion's evidence: links and
	// digests, not documents (those belong in attestations in the
	// registry, which requiredEvidence verifies).
	maxEvidence = 16 << 10
	// maxBreakGlassImages and maxName bound the rest of a break-glass
	// entry; admission caps images per review below this.
	maxBreakGlassImages = 128
	maxName             = 1024
)

// Request asks for a promotion.
type Request struct {
	Image     string
	Stage     string
	Reason    string
	Evidence  map[string]any
	Requester policy.Identity
	// OverrideRevocation puts back a digest that is revoked in the stage;
	// it needs a reason and a requester in the stage's override groups
	// (WithDuties). Without it such a promotion is refused with a
	// *RevokedError: revocations are sticky.
	OverrideRevocation bool
	// FreezeOverride is an emergency promotion while the stage is closed
	// (windows.go); it needs a reason, and a requester in the stage's
	// freeze override groups or their approval (freeze.go).
	FreezeOverride bool
	// Progress, if set, hears about the copy to a target repository.
	Progress oci.Progress

	// completes and approvals are set by Approve when the last approval
	// completes request completes (approvals.go).
	completes *uint64
	approvals []ledger.Approval
	// freezeBy approved the freeze override of the request completes.
	freezeBy string
	// set is every image of the promotion set the request is part of
	// (set.go), for the policy's input.set.
	set []policy.Image
}

// Result is the receipt and whether this request created it.
type Result struct {
	Receipt ledger.Receipt
	Created bool
	// Request is set when the promotion became, or found, a pending
	// request (a stage with approvals); Receipt is then the request's.
	Request *RequestView
	// Replicas, of a revocation in a cluster, says which replicas have
	// applied it (see WithReplicaWaiter); nil otherwise.
	Replicas *Replicas
}

// Promote resolves req.Image, asks the policy, signs and records the
// promotion, then publishes it to the registry as the stage asks
// (attestation, stage tag). With a target repository, the image is copied
// before anything is recorded. Promoting a digest that is already active in
// the stage returns the existing receipt with Created false, and publishes
// again, so a retry repairs a publication that failed.
func (s *Service) Promote(ctx context.Context, req Request) (Result, error) {
	if err := s.checkStage(req.Stage, false); err != nil {
		return Result{}, err
	}
	if req.Image == "" {
		return Result{}, fmt.Errorf("%w: image is required", ErrInvalid)
	}
	if err := checkReason(req.Reason); err != nil {
		return Result{}, err
	}
	if err := checkEvidence(req.Evidence); err != nil {
		return Result{}, err
	}
	if err := s.checkOverride(req); err != nil {
		return Result{}, err
	}
	rule, opening, err := s.admitWindow(&req, s.now().UTC()) // freeze.go
	if err != nil {
		return Result{}, err
	}
	img, err := s.resolver.Resolve(ctx, req.Image)
	if err != nil {
		return Result{}, wrap("resolve", err)
	}
	so := s.stageOpts[req.Stage]
	var evidence map[string]any
	if len(so.RequiredEvidence) > 0 && s.registry != nil {
		if evidence, err = s.verifiedEvidence(ctx, img, so.RequiredEvidence); err != nil {
			return Result{}, wrap("evidence", err)
		}
	}
	if opening {
		return s.openRequest(ctx, req, img, evidence, rule)
	}
	var copies []string
	if target := so.target(img.Repository); target != "" && s.registry != nil {
		// Ask the policy before copying, so that a refused promotion moves
		// no bytes; it is asked again when the entry is recorded.
		if err := s.ledger.View(func(r ledger.Reader) error {
			_, err := s.decide(ctx, r, req, img, evidence, s.now().UTC())
			return err
		}); err != nil && !errors.Is(err, ledger.ErrExists) {
			return Result{}, wrap("decide", err)
		}
		if err := s.registry.Copy(ctx, img.Repository, img.Digest, target, req.Progress); err != nil {
			return Result{}, wrap("copy", err)
		}
		copies = []string{target}
	}
	rc, err := s.append(ctx, func(r ledger.Reader, index uint64) (*ledger.Entry, error) {
		now := s.now().UTC()
		if err := s.checkCompletion(r, &req, now); err != nil {
			return nil, err
		}
		freeze, err := s.checkWindow(req, now) // again, at the entry's time
		if err != nil {
			return nil, err
		}
		override, err := s.decide(ctx, r, req, img, evidence, now)
		if err != nil {
			return nil, err
		}
		return PromotionEntry(s.signer, index, Promoted{
			Image: img, Stage: req.Stage, Reason: req.Reason, Evidence: req.Evidence, Requester: req.Requester,
			Time: now, PolicyDigest: s.policy.Digest(), Copies: copies, VerifiedEvidence: evidence,
			RevocationOverride: override, FreezeOverride: freeze, Request: req.completes, Approvals: req.approvals,
		})
	})
	created := err == nil
	if err != nil && !errors.Is(err, ledger.ErrExists) {
		return Result{}, wrap("record", err)
	}
	res := Result{Receipt: rc, Created: created}
	if created {
		s.log.Info("promoted", "repository", img.Repository, "digest", img.Digest, "stage", req.Stage,
			"subject", req.Requester.Subject, "index", rc.Entry.Index)
		s.observe(rc.Entry)
	}
	if err := s.publish(ctx, rc.Entry, so, true); err != nil {
		return res, err
	}
	return res, nil
}

// decide evaluates the promotion policy for req against the ledger as r
// shows it. It returns a *DeniedError with every violation, an
// *ledger.ExistsError when the digest is already active in the stage and
// the requester may promote it there, or a *RevokedError when it is
// revoked there and req does not override that. When req overrides a
// revocation, decide names it.
func (s *Service) decide(ctx context.Context, r ledger.Reader, req Request, img registry.Resolved, evidence map[string]any, now time.Time) (*signing.RevocationOverride, error) {
	states := make(map[string]policy.StageState, len(s.stages))
	var existing *ledger.ExistsError
	var target ledger.State
	for _, st := range s.stages {
		state, _, err := r.State(img.Digest, st)
		if err != nil {
			return nil, fmt.Errorf("promotion: state of %s in %s: %w", img.Digest, st, err)
		}
		states[st] = StageState(state)
		if st == req.Stage {
			target = state
			if state.Active() {
				existing = &ledger.ExistsError{Index: state.PromotedIndex}
			}
		}
	}
	in := policy.PromotionInput{
		Image: policy.Image{
			Reference: req.Image, Repository: img.Repository, Tag: img.Tag,
			Digest: img.Digest, Platforms: img.Platforms, Labels: img.Labels,
		},
		Stage:            req.Stage,
		Requester:        req.Requester,
		Reason:           req.Reason,
		Evidence:         req.Evidence,
		VerifiedEvidence: evidence,
		States:           states,
		Now:              now.Format(time.RFC3339),
		Approvals:        policyApprovals(req.approvals),
		Set:              req.set,
	}
	violations, err := s.policy.Promotion(ctx, in)
	if err != nil {
		return nil, fmt.Errorf("promotion: policy: %w", err)
	}
	// The policy is asked even when the digest is already there, so that
	// the existing receipt only goes to someone who may promote.
	if len(violations) > 0 {
		return nil, &DeniedError{Stage: req.Stage, Violations: violations}
	}
	if existing != nil {
		return nil, existing
	}
	// A platform revoked apart from this index is named first: no
	// override of the index lifts it.
	revoked, err := revokedPlatforms(r, img, req.Stage)
	if err != nil {
		return nil, err
	}
	if len(revoked) > 0 {
		return nil, &DeniedError{Stage: req.Stage, Violations: revoked}
	}
	return s.sticky(req, img.Digest, target)
}

// revokedPlatforms says which platforms of an index are revoked in stage by
// a revocation that a promotion of the index would not lift. The ledger
// would record such a promotion with the index revoked by that revocation
// (a promotion lifts only the revocations of the digest the policy was
// asked about, and those that reached the platform through it), so it is
// refused here rather than recorded to no effect. A revocation of an index
// that contains this one also reaches the platforms through it, and the
// ledger would lift it; it is refused here too, which errs on the safe
// side: promoting the platform first lifts it.
func revokedPlatforms(r ledger.Reader, img registry.Resolved, stage string) ([]string, error) {
	var out []string
	for _, p := range img.Platforms {
		st, _, err := r.State(p, stage)
		if err != nil {
			return nil, fmt.Errorf("promotion: state of platform %s in %s: %w", p, stage, err)
		}
		if !st.Revoked || st.RevokedDigest == img.Digest {
			continue
		}
		what := "it"
		if st.RevokedDigest != "" {
			what = st.RevokedDigest
		}
		out = append(out, fmt.Sprintf("platform %s of this index is revoked in %s (ledger entry %d revoked %s: %s): "+
			"promote that platform again first, or promote an index without it", p, stageWord(stage), st.RevokedIndex, what, st.RevokeReason))
	}
	return out, nil
}

// Revocation withdraws a digest from a stage, or from all with "*".
type Revocation struct {
	Digest     string
	Repository string
	Stage      string
	Reason     string
	Requester  policy.Identity
}

// Revoke records a signed revocation. Only the stage's revoke groups
// (WithDuties) may revoke: a revocation narrows what is admitted, but it
// also stops a running stage, so a stolen or groupless token must not be
// able to. Revoking what is already revoked returns the existing receipt
// with Created false.
func (s *Service) Revoke(ctx context.Context, req Revocation) (Result, error) {
	if !registry.ValidDigest(req.Digest) {
		return Result{}, fmt.Errorf("%w: digest %q must be sha256:<64 lowercase hex>", ErrInvalid, req.Digest)
	}
	if err := s.checkStage(req.Stage, true); err != nil {
		return Result{}, err
	}
	if err := s.authorizeRevoke(req.Requester, req.Stage); err != nil {
		return Result{}, err
	}
	if strings.TrimSpace(req.Reason) == "" {
		return Result{}, fmt.Errorf("%w: a revocation needs a reason", ErrInvalid)
	}
	if err := checkReason(req.Reason); err != nil {
		return Result{}, err
	}
	stages := s.stages
	if req.Stage != ledger.AllStages {
		stages = []string{req.Stage}
	}
	rc, err := s.append(ctx, func(r ledger.Reader, index uint64) (*ledger.Entry, error) {
		var repo string
		var copies []string
		active, revoked := false, false
		var lastRevoke uint64
		for _, st := range stages {
			state, _, err := r.State(req.Digest, st)
			if err != nil {
				return nil, fmt.Errorf("promotion: state of %s in %s: %w", req.Digest, st, err)
			}
			// A digest revoked only through another one (a platform of
			// this index, an index this platform is in) is not revoked
			// itself: its own revocation reaches more (the other
			// platforms of the index) and is attested on its digest.
			if state.Active() || state.Promoted && state.Revoked && state.RevokedDigest != "" {
				active = true
				repo = state.Repository
				// The revocation travels wherever the promotion was copied.
				if pe, err := r.Entry(state.PromotedIndex); err == nil {
					copies = appendNew(copies, pe.Copies...)
				}
			}
			if state.Revoked && state.RevokedIndex >= lastRevoke {
				revoked, lastRevoke = true, state.RevokedIndex
				if repo == "" {
					repo = state.Repository
				}
			}
		}
		if !active {
			if revoked {
				return nil, &ledger.ExistsError{Index: lastRevoke}
			}
			return nil, fmt.Errorf("%w: %s is not promoted to %s", ErrNotPromoted, req.Digest, stageWord(req.Stage))
		}
		if req.Repository != "" && req.Repository != repo {
			return nil, fmt.Errorf("%w: %s was promoted as %s, not %s", ErrInvalid, req.Digest, repo, req.Repository)
		}
		now := s.now().UTC()
		pred := signing.RevocationPredicate{Stage: req.Stage, Repository: repo,
			Requester: requester(req.Requester), Reason: req.Reason, Time: now, LedgerIndex: index}
		env, err := s.sign(repo, req.Digest, signing.RevocationPredicateType, pred)
		if err != nil {
			return nil, err
		}
		return &ledger.Entry{
			Index: index, Kind: ledger.KindRevocation, Repository: repo, Digest: req.Digest,
			Stage: req.Stage, Subject: req.Requester.Subject, Groups: req.Requester.Groups,
			Reason: req.Reason, Time: now, Copies: copies, Envelope: env,
		}, nil
	})
	created := err == nil
	if err != nil && !errors.Is(err, ledger.ErrExists) {
		return Result{}, wrap("record", err)
	}
	if created {
		s.log.Info("revoked", "digest", req.Digest, "stage", req.Stage, "subject", req.Requester.Subject, "index", rc.Entry.Index)
		s.observe(rc.Entry)
	}
	res := Result{Receipt: rc, Created: created}
	s.waitReplicas(ctx, &res)
	attest := false
	for _, st := range stages {
		attest = attest || s.stageOpts[st].Attest
	}
	if err := s.publish(ctx, rc.Entry, StageOptions{Attest: attest}, false); err != nil {
		return res, err
	}
	return res, nil
}

func appendNew(list []string, add ...string) []string {
	for _, a := range add {
		if !slices.Contains(list, a) {
			list = append(list, a)
		}
	}
	return list
}

// BreakGlass is a workload admitted despite a failed check, to be
// recorded: internal/admission decides it, RecordBreakGlass records it.
type BreakGlass struct {
	Stage string
	// Workload is "namespace/Kind/name".
	Workload      string
	Justification string
	User          string
	Groups        []string
	Images        []string
}

// RecordBreakGlass appends a signed break-glass entry. Its in-toto subject
// is the workload, named by the sha256 of its name, because a break-glass
// may concern images that have no digest at all.
func (s *Service) RecordBreakGlass(ctx context.Context, bg BreakGlass) (uint64, error) {
	if err := checkText("justification", bg.Justification); err != nil {
		return 0, err
	}
	if len(bg.Images) > maxBreakGlassImages {
		return 0, fmt.Errorf("%w: a break-glass names %d images, at most %d are recorded", ErrInvalid, len(bg.Images), maxBreakGlassImages)
	}
	for _, n := range append([]string{bg.Workload, bg.User}, bg.Images...) {
		if len(n) > maxName {
			return 0, fmt.Errorf("%w: a break-glass name or image is longer than %d bytes", ErrInvalid, maxName)
		}
	}
	sum := sha256.Sum256([]byte(bg.Workload))
	digest := "sha256:" + hex.EncodeToString(sum[:])
	rc, err := s.append(ctx, func(_ ledger.Reader, index uint64) (*ledger.Entry, error) {
		now := s.now().UTC()
		pred := signing.BreakGlassPredicate{Stage: bg.Stage, Workload: bg.Workload, Images: bg.Images,
			Requester: signing.Requester{Subject: bg.User, Groups: bg.Groups}, Reason: bg.Justification,
			Time: now, LedgerIndex: index}
		env, err := s.sign(bg.Workload, digest, signing.BreakGlassPredicateType, pred)
		if err != nil {
			return nil, err
		}
		return &ledger.Entry{
			Index: index, Kind: ledger.KindBreakGlass, Repository: bg.Workload, Digest: digest,
			Stage: bg.Stage, Subject: bg.User, Groups: bg.Groups, Reason: bg.Justification,
			Time: now, Workload: bg.Workload, Images: bg.Images, Envelope: env,
		}, nil
	})
	if err != nil {
		return 0, wrap("record break-glass", err)
	}
	s.log.Warn("break-glass admission recorded", "workload", bg.Workload, "stage", bg.Stage, "user", bg.User, "index", rc.Entry.Index)
	return rc.Entry.Index, nil
}

// append appends through the ledger's ContextAppender when it has one.
func (s *Service) append(ctx context.Context, build ledger.BuildFunc) (ledger.Receipt, error) {
	if ca, ok := s.ledger.(ContextAppender); ok {
		return ca.AppendContext(ctx, build)
	}
	return s.ledger.Append(build)
}

func (s *Service) sign(repo, digest, predicateType string, pred any) ([]byte, error) {
	return sign(s.signer, repo, digest, predicateType, pred)
}

func (s *Service) checkStage(stage string, allowAll bool) error {
	if stage == "" {
		return fmt.Errorf("%w: stage is required (one of %s)", ErrInvalid, strings.Join(s.stages, ", "))
	}
	if allowAll && stage == ledger.AllStages {
		return nil
	}
	if !slices.Contains(s.stages, stage) {
		return fmt.Errorf("%w: unknown stage %q (known: %s)", ErrInvalid, stage, strings.Join(s.stages, ", "))
	}
	return nil
}

func checkReason(r string) error { return checkText("reason", r) }

// checkText refuses free text that is too long for a ledger entry or holds
// control characters (which would forge lines in logs and terminals).
func checkText(what, r string) error {
	if len(r) > maxReason {
		return fmt.Errorf("%w: %s is %d bytes, longer than %d", ErrInvalid, what, len(r), maxReason)
	}
	for _, c := range r {
		if c < 0x20 && c != '\t' || c == 0x7f {
			return fmt.Errorf("%w: %s contains control characters", ErrInvalid, what)
		}
	}
	return nil
}

// checkEvidence refuses evidence whose JSON is larger than maxEvidence.
func checkEvidence(ev map[string]any) error {
	if len(ev) == 0 {
		return nil
	}
	b, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("%w: evidence: %v", ErrInvalid, err)
	}
	if len(b) > maxEvidence {
		return fmt.Errorf("%w: evidence is %d bytes of JSON, longer than %d: put documents in attestations and link them", ErrInvalid, len(b), maxEvidence)
	}
	return nil
}

func stageWord(stage string) string {
	if stage == ledger.AllStages {
		return "any stage"
	}
	return "stage " + stage
}

func requester(id policy.Identity) signing.Requester {
	return signing.Requester{Subject: id.Subject, Groups: id.Groups}
}

// StageState is what the policies, of promotion and of admission alike,
// read of a digest's ledger state in one stage. A time is given only with
// the fact it dates: PromotedAt when promoted, RevokedAt when revoked.
func StageState(s ledger.State) policy.StageState {
	out := policy.StageState{Promoted: s.Promoted, Revoked: s.Revoked, PromotedBy: s.PromotedBy,
		RevokedBy: s.RevokedBy, Reason: s.RevokeReason}
	if s.Promoted && !s.PromotedAt.IsZero() {
		out.PromotedAt = s.PromotedAt.UTC().Format(time.RFC3339)
	}
	if s.Revoked && !s.RevokedAt.IsZero() {
		out.RevokedAt = s.RevokedAt.UTC().Format(time.RFC3339)
	}
	return out
}
