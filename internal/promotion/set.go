package promotion

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/oci"
	"github.com/stagegate/stagegate/internal/policy"
	"github.com/stagegate/stagegate/internal/registry"
)

// SetRequest asks for a promotion set: several images (an image and its
// config artifact, or the images of one release) promoted to one stage
// together, all or nothing. Kargo calls such a bundle Freight; here each
// member gets the entry, attestation and stage tag a single promotion
// would, each entry names the whole set, and one receipt proves them all.
type SetRequest struct {
	Images         []string
	Stage          string
	Reason         string
	Evidence       map[string]any
	Requester      policy.Identity
	FreezeOverride bool
	// Progress, if set, hears about copies to target repositories.
	Progress oci.Progress
}

// SetResult is the set's receipt and whether this request recorded any of
// it: a retry of a recorded set, or a set whose every digest was already
// in the stage, records nothing and returns the receipts of the entries
// that hold it.
type SetResult struct {
	Receipt ledger.SetReceipt
	Created bool
}

// setLedger is a Ledger that can record a promotion set: every member's
// entry in one append, and receipts of several entries against one
// checkpoint. *ledger.Ledger and the replicated ledger (internal/cluster)
// have it.
type setLedger interface {
	Receipts(indexes []uint64) ([]ledger.Receipt, error)
}

type allAppender interface {
	AppendAll(build ledger.BuildAllFunc) ([]ledger.Receipt, error)
}

type allContextAppender interface {
	AppendAllContext(ctx context.Context, build ledger.BuildAllFunc) ([]ledger.Receipt, error)
}

// errSetHeld is a build's answer when every member is already in the
// stage: nothing to write, the receipts are those of the entries there.
var errSetHeld = errors.New("promotion: every member of the set is already in the stage")

// PromoteSet promotes every image of req to req.Stage, or none. Every
// image is resolved and the policy is asked about each, with input.set
// listing them all, before anything is written; one violation of one
// member refuses the set with every violation, each named by its image.
// A member already active in the stage is not recorded again: the set's
// receipt proves the entry that holds it. Stages with approvals take one
// image per request.
func (s *Service) PromoteSet(ctx context.Context, req SetRequest) (SetResult, error) {
	if err := s.checkSetRequest(req); err != nil {
		return SetResult{}, err
	}
	sl, ok := s.ledger.(setLedger)
	if !ok {
		return SetResult{}, fmt.Errorf("%w: this ledger cannot record promotion sets", ErrInvalid)
	}
	one := Request{Stage: req.Stage, Reason: req.Reason, Evidence: req.Evidence, Requester: req.Requester,
		FreezeOverride: req.FreezeOverride, Progress: req.Progress}
	if _, err := s.checkWindow(one, s.now().UTC()); err != nil {
		// A single image's emergency promotion from outside the override
		// groups opens a request one of them approves (freeze.go); a set
		// does not, as stages with approvals take one image per request.
		// Say so, or the pipeline reads "only groups … may" and stops.
		if fe, ok := errors.AsType[*ForbiddenError](err); ok && fe.Action == ActionFreezeOverride {
			fe.Detail = "a promotion set does not open a freeze-override request: promote each image on its own with freezeOverride, and a member of those groups approves each request"
		}
		return SetResult{}, err
	}
	imgs, err := s.resolveSet(ctx, req.Images)
	if err != nil {
		return SetResult{}, err
	}
	so := s.stageOpts[req.Stage]
	members := make([]Request, len(imgs))
	evidence := make([]map[string]any, len(imgs))
	set := make([]policy.Image, len(imgs))
	for i, img := range imgs {
		set[i] = policy.Image{Reference: req.Images[i], Repository: img.Repository, Tag: img.Tag,
			Digest: img.Digest, Platforms: img.Platforms, Labels: img.Labels}
		if len(so.RequiredEvidence) > 0 && s.registry != nil {
			if evidence[i], err = s.verifiedEvidence(ctx, img, so.RequiredEvidence); err != nil {
				return SetResult{}, fmt.Errorf("%s: %w", req.Images[i], wrap("evidence", err))
			}
		}
	}
	for i := range members {
		members[i] = one
		members[i].Image, members[i].set = req.Images[i], set
	}
	copies, err := s.copySet(ctx, members, imgs, evidence, so)
	if err != nil {
		return SetResult{}, err
	}
	// The build may run more than once (bbolt batches, Raft retries);
	// each run sets indexes afresh.
	var indexes []uint64
	var start uint64 // the first new entry's index
	_, err = s.appendAll(ctx, func(r ledger.Reader, next uint64) ([]*ledger.Entry, error) {
		es, idx, err := s.setEntries(ctx, r, next, members, imgs, evidence, copies)
		indexes, start = idx, next
		return es, err
	})
	created := err == nil
	if err != nil && !errors.Is(err, errSetHeld) {
		return SetResult{}, wrap("record set", err)
	}
	rcs, err := sl.Receipts(indexes)
	if err != nil {
		return SetResult{}, wrap("receipts", err)
	}
	res := SetResult{Receipt: ledger.SetReceipt{Stage: req.Stage, Receipts: rcs}, Created: created}
	for _, rc := range rcs {
		res.Receipt.Members = append(res.Receipt.Members, ledger.SetMember{
			Repository: rc.Entry.Repository, Digest: rc.Entry.Digest, LedgerIndex: rc.Entry.Index})
	}
	var errs []error
	for _, rc := range rcs {
		if created && rc.Entry.Index >= start {
			s.observe(rc.Entry)
		}
		if err := s.publish(ctx, rc.Entry, so, true); err != nil {
			errs = append(errs, err)
		}
	}
	if created {
		s.log.Info("promotion set recorded", "stage", req.Stage, "members", len(rcs), "subject", req.Requester.Subject,
			"indexes", indexes)
	}
	return res, errors.Join(errs...)
}

// checkSetRequest refuses a malformed set before anything is asked of the
// registry, the policy or the ledger.
func (s *Service) checkSetRequest(req SetRequest) error {
	if err := s.checkStage(req.Stage, false); err != nil {
		return err
	}
	switch n := len(req.Images); {
	case n == 0:
		return fmt.Errorf("%w: images are required", ErrInvalid)
	case n > ledger.MaxSetMembers:
		return fmt.Errorf("%w: a promotion set has at most %d images, not %d", ErrInvalid, ledger.MaxSetMembers, n)
	}
	for i, ref := range req.Images {
		if strings.TrimSpace(ref) == "" {
			return fmt.Errorf("%w: image %d of the set is empty", ErrInvalid, i+1)
		}
	}
	if err := checkReason(req.Reason); err != nil {
		return err
	}
	if err := checkEvidence(req.Evidence); err != nil {
		return err
	}
	if _, ok := s.approvalRules[req.Stage]; ok {
		// A request entry names one digest; approving a set as one is not
		// built yet, and approving its members one by one would not be
		// all or nothing.
		return fmt.Errorf("%w: stage %s needs approvals, which take one image per request; promote the images one by one",
			ErrInvalid, req.Stage)
	}
	return nil
}

// resolveSet resolves every image, naming the one that fails, and
// refuses a digest given twice.
func (s *Service) resolveSet(ctx context.Context, refs []string) ([]registry.Resolved, error) {
	imgs := make([]registry.Resolved, len(refs))
	first := map[string]int{}
	for i, ref := range refs {
		img, err := s.resolver.Resolve(ctx, ref)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ref, wrap("resolve", err))
		}
		if j, ok := first[img.Digest]; ok {
			return nil, fmt.Errorf("%w: %s and %s are the same digest %s", ErrInvalid, refs[j], ref, img.Digest)
		}
		first[img.Digest] = i
		imgs[i] = img
	}
	return imgs, nil
}

// copySet copies each member with a target repository, after the policy
// allowed the whole set, so that a refused set moves no bytes. A copy is
// idempotent; a set that fails later leaves copies nobody admits.
func (s *Service) copySet(ctx context.Context, members []Request, imgs []registry.Resolved, evidence []map[string]any, so StageOptions) ([][]string, error) {
	copies := make([][]string, len(imgs))
	var targets []int
	for i, img := range imgs {
		if so.target(img.Repository) != "" && s.registry != nil {
			targets = append(targets, i)
		}
	}
	if len(targets) == 0 {
		return copies, nil
	}
	if err := s.ledger.View(func(r ledger.Reader) error {
		_, _, err := s.setEntries(ctx, r, r.Size(), members, imgs, evidence, copies)
		return err
	}); err != nil && !errors.Is(err, errSetHeld) {
		return nil, wrap("decide", err)
	}
	for _, i := range targets {
		target := so.target(imgs[i].Repository)
		if err := s.registry.Copy(ctx, imgs[i].Repository, imgs[i].Digest, target, members[i].Progress); err != nil {
			return nil, fmt.Errorf("%s: %w", members[i].Image, wrap("copy", err))
		}
		copies[i] = []string{target}
	}
	return copies, nil
}

// setEntries decides every member on r and returns the entries to write
// at next, with the ledger index that holds each member. A member already
// active in the stage keeps its entry; when all are, it returns
// errSetHeld. Violations of all members come back together, each prefixed
// with its image.
func (s *Service) setEntries(ctx context.Context, r ledger.Reader, next uint64, members []Request, imgs []registry.Resolved,
	evidence []map[string]any, copies [][]string) ([]*ledger.Entry, []uint64, error) {
	now := s.now().UTC()
	freeze, err := s.checkWindow(members[0], now) // again, at the entries' time
	if err != nil {
		return nil, nil, err
	}
	indexes := make([]uint64, len(members))
	set := make([]ledger.SetMember, len(members))
	var fresh []int
	var violations []string
	for i, m := range members {
		_, err := s.decide(ctx, r, m, imgs[i], evidence[i], now)
		var exists *ledger.ExistsError
		var denied *DeniedError
		switch {
		case err == nil:
			indexes[i] = next + uint64(len(fresh))
			fresh = append(fresh, i)
		case errors.As(err, &exists):
			indexes[i] = exists.Index
		case errors.As(err, &denied):
			for _, v := range denied.Violations {
				violations = append(violations, m.Image+": "+v)
			}
		default:
			return nil, nil, fmt.Errorf("%s: %w", m.Image, err)
		}
		set[i] = ledger.SetMember{Repository: imgs[i].Repository, Digest: imgs[i].Digest, LedgerIndex: indexes[i]}
	}
	if len(violations) > 0 {
		return nil, nil, &DeniedError{Stage: members[0].Stage, Violations: violations}
	}
	if len(fresh) == 0 {
		return nil, indexes, errSetHeld
	}
	es := make([]*ledger.Entry, 0, len(fresh))
	for k, i := range fresh {
		m := members[i]
		e, err := PromotionEntry(s.signer, next+uint64(k), Promoted{
			Image: imgs[i], Stage: m.Stage, Reason: m.Reason, Evidence: m.Evidence, Requester: m.Requester,
			Time: now, PolicyDigest: s.policy.Digest(), Copies: copies[i], VerifiedEvidence: evidence[i],
			FreezeOverride: freeze, Set: set,
		})
		if err != nil {
			return nil, nil, err
		}
		es = append(es, e)
	}
	return es, indexes, nil
}

// appendAll appends a set's entries through the ledger's context-bound
// appender when it has one.
func (s *Service) appendAll(ctx context.Context, build ledger.BuildAllFunc) ([]ledger.Receipt, error) {
	switch l := s.ledger.(type) {
	case allContextAppender:
		return l.AppendAllContext(ctx, build)
	case allAppender:
		return l.AppendAll(build)
	}
	return nil, fmt.Errorf("%w: this ledger cannot record promotion sets", ErrInvalid)
}
