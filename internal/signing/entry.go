package signing

import (
	"encoding/json"
	"fmt"

	"github.com/stagegate/stagegate/internal/ledger"
)

// predicateTypes maps each ledger entry kind to the predicate type of its
// attestation.
var predicateTypes = map[ledger.Kind]string{
	ledger.KindPromotion:  PromotionPredicateType,
	ledger.KindRevocation: RevocationPredicateType,
	ledger.KindBreakGlass: BreakGlassPredicateType,
	ledger.KindRequest:    RequestPredicateType,
	ledger.KindApproval:   ApprovalPredicateType,
	ledger.KindRejection:  RejectionPredicateType,
}

// PredicateTypeFor returns the predicate type of the attestation of an entry
// of kind k, and false for an unknown kind.
func PredicateTypeFor(k ledger.Kind) (string, bool) {
	t, ok := predicateTypes[k]
	return t, ok
}

// commonPredicate holds the predicate fields CheckEntry compares; every
// stagegate predicate has them.
type commonPredicate struct {
	Stage       string  `json:"stage"`
	LedgerIndex *uint64 `json:"ledgerIndex"`
	Workload    string  `json:"workload"`
	// FreezeOverride is compared with the entry's mark (freezeOverride).
	FreezeOverride *FreezeOverride `json:"freezeOverride"`
}

// CheckEntry returns the function that ledger verification calls for each
// entry: it verifies the entry's Envelope with v, then checks that the
// statement describes the entry (subject, digest, predicate type for the
// kind, stage, workload for break-glass, and ledger index unless the entry is
// foreign, since a foreign attestation carries the index of the ledger that
// made it).
func CheckEntry(v *Verifier) func(ledger.Entry) error {
	return func(e ledger.Entry) error {
		if len(e.Envelope) == 0 {
			return fmt.Errorf("signing: entry %d: %w: no envelope", e.Index, ErrEntryMismatch)
		}
		st, err := v.Verify(e.Envelope)
		if err != nil {
			return fmt.Errorf("signing: entry %d: %w", e.Index, err)
		}
		if err := matchEntry(st, e); err != nil {
			return fmt.Errorf("signing: entry %d: %w: %w", e.Index, ErrEntryMismatch, err)
		}
		return nil
	}
}

func matchEntry(st Statement, e ledger.Entry) error {
	want, ok := predicateTypes[e.Kind]
	if !ok {
		return fmt.Errorf("unknown entry kind %q", e.Kind)
	}
	if st.PredicateType != want {
		return fmt.Errorf("predicateType %q, entry kind %q wants %q", st.PredicateType, e.Kind, want)
	}
	if len(st.Subject) != 1 {
		return fmt.Errorf("%d subjects, want 1", len(st.Subject))
	}
	sub := st.Subject[0]
	if sub.Name != e.Repository {
		return fmt.Errorf("subject name %q, entry repository %q", sub.Name, e.Repository)
	}
	if got := "sha256:" + sub.Digest["sha256"]; got != e.Digest {
		return fmt.Errorf("subject digest %q, entry digest %q", got, e.Digest)
	}
	var p commonPredicate
	if err := json.Unmarshal(st.Predicate, &p); err != nil {
		return fmt.Errorf("predicate: %w", err)
	}
	if p.Stage != e.Stage {
		return fmt.Errorf("predicate stage %q, entry stage %q", p.Stage, e.Stage)
	}
	if e.Kind == ledger.KindBreakGlass && p.Workload != e.Workload {
		return fmt.Errorf("predicate workload %q, entry workload %q", p.Workload, e.Workload)
	}
	// An entry marked as a freeze override is one only if its signed
	// predicate says so: the mark changes who may approve a request. A
	// request's predicate and mark agree both ways; a promotion made
	// during a freeze before the mark existed has the predicate alone.
	if e.FreezeOverride && p.FreezeOverride == nil || e.Kind == ledger.KindRequest && !e.FreezeOverride && p.FreezeOverride != nil {
		return fmt.Errorf("predicate freezeOverride %v, entry freezeOverride %v", p.FreezeOverride != nil, e.FreezeOverride)
	}
	if e.Foreign {
		return nil
	}
	if p.LedgerIndex == nil {
		return fmt.Errorf("predicate has no ledgerIndex, entry index %d", e.Index)
	}
	if *p.LedgerIndex != e.Index {
		return fmt.Errorf("predicate ledgerIndex %d, entry index %d", *p.LedgerIndex, e.Index)
	}
	return nil
}
