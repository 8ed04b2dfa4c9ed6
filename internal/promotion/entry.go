package promotion

import (
	"fmt"
	"time"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/policy"
	"github.com/stagegate/stagegate/internal/registry"
	"github.com/stagegate/stagegate/internal/signing"
)

// Promoted is what a promotion entry records.
type Promoted struct {
	// Image is the resolved image; Stage, Reason, Evidence and Requester
	// come from the request.
	Image     registry.Resolved
	Stage     string
	Reason    string
	Evidence  map[string]any
	Requester policy.Identity
	// Time, PolicyDigest, Copies and VerifiedEvidence are what the
	// service adds: when, under which policy, the repositories the image
	// was copied to and the evidence attestations it verified.
	Time             time.Time
	PolicyDigest     string
	Copies           []string
	VerifiedEvidence map[string]any
	// RevocationOverride names the revocation this promotion overrides,
	// or is nil.
	RevocationOverride *signing.RevocationOverride
	// FreezeOverride is set on an emergency promotion during a freeze.
	FreezeOverride *signing.FreezeOverride
	// Request and Approvals are set when the promotion completes a
	// request (approvals.go).
	Request   *uint64
	Approvals []ledger.Approval
	// Set is set when the promotion is part of a promotion set (set.go).
	Set []ledger.SetMember
}

// PromotionEntry is the ledger entry at index that records p, with its
// attestation signed by signer. Promote records what it returns, once the
// policy allowed it; the bench signs its ledger fixtures with it, ahead of
// a bulk load, so that they hold what promotions write.
func PromotionEntry(signer Signer, index uint64, p Promoted) (*ledger.Entry, error) {
	img := p.Image
	pred := signing.PromotionPredicate{
		Stage: p.Stage, Repository: img.Repository, Platforms: img.Platforms,
		Requester: requester(p.Requester), Reason: p.Reason, Evidence: p.Evidence,
		Time: p.Time, LedgerIndex: index, PolicyDigest: p.PolicyDigest, Labels: img.Labels,
		PlatformLabels: img.PlatformLabels, Copies: p.Copies, VerifiedEvidence: p.VerifiedEvidence,
		RevocationOverride: p.RevocationOverride, FreezeOverride: p.FreezeOverride, Set: p.Set,
	}
	if p.Request != nil {
		r := *p.Request
		pred.Request = &r
		for _, a := range p.Approvals {
			pred.Approvals = append(pred.Approvals, signing.ApprovalRecord{LedgerIndex: a.Index, Subject: a.Subject,
				Groups: a.Groups, Time: a.Time, Reason: a.Reason})
		}
	}
	env, err := sign(signer, img.Repository, img.Digest, signing.PromotionPredicateType, pred)
	if err != nil {
		return nil, err
	}
	e := &ledger.Entry{
		Index: index, Kind: ledger.KindPromotion, Repository: img.Repository, Digest: img.Digest,
		Platforms: img.Platforms, Stage: p.Stage, Subject: p.Requester.Subject,
		Groups: p.Requester.Groups, Reason: p.Reason, Time: p.Time, Labels: img.Labels,
		PlatformLabels: img.PlatformLabels, Copies: p.Copies, Set: p.Set, Envelope: env,
	}
	if p.Request != nil {
		r := *p.Request
		e.Request, e.Approvals = &r, p.Approvals
	}
	e.FreezeOverride = p.FreezeOverride != nil
	if o := p.RevocationOverride; o != nil {
		idx := o.LedgerIndex
		e.OverridesRevocation = &idx
	}
	return e, nil
}

// sign makes the in-toto statement of pred about repo@digest and signs it.
func sign(signer Signer, repo, digest, predicateType string, pred any) ([]byte, error) {
	st, err := signing.NewStatement(repo, digest, predicateType, pred)
	if err != nil {
		return nil, fmt.Errorf("promotion: statement: %w", err)
	}
	env, err := signer.Sign(st)
	if err != nil {
		return nil, fmt.Errorf("promotion: sign: %w", err)
	}
	return env, nil
}
