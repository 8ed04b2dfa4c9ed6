package promotion

import (
	"fmt"
	"strings"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/signing"
)

// Revocations are sticky: a digest revoked in a stage is not promoted
// there again by a plain promotion, such as a pipeline re-run that would
// otherwise silently put back what security withdrew. Putting it back is
// an override: asked for explicitly, with a reason, by a member of the
// stage's override groups, and recorded as such in the entry and its
// attestation.

// checkOverride refuses an override request that is malformed or from a
// requester who may not override in the stage, before anything is
// resolved or read: a refused override costs nothing and writes nothing.
func (s *Service) checkOverride(req Request) error {
	if !req.OverrideRevocation {
		return nil
	}
	if strings.TrimSpace(req.Reason) == "" {
		return fmt.Errorf("%w: overriding a revocation needs a reason", ErrInvalid)
	}
	return s.authorizeOverride(req.Requester, req.Stage)
}

// sticky decides a promotion of digest to a stage where its state is st:
// nothing to say when it is not revoked there, a *RevokedError when it is
// and req does not override, and the revocation overridden when it does.
// checkOverride has already let the requester override.
func (s *Service) sticky(req Request, digest string, st ledger.State) (*signing.RevocationOverride, error) {
	if !st.Revoked {
		return nil, nil
	}
	if !req.OverrideRevocation {
		return nil, &RevokedError{Stage: req.Stage, Digest: digest, Index: st.RevokedIndex, By: st.RevokedBy,
			At: st.RevokedAt, Reason: st.RevokeReason, OverrideGroups: s.duties[req.Stage].OverrideRevocation}
	}
	return &signing.RevocationOverride{LedgerIndex: st.RevokedIndex, RevokedBy: st.RevokedBy,
		RevokedAt: st.RevokedAt.UTC(), Reason: st.RevokeReason}, nil
}
