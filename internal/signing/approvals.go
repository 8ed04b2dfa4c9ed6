package signing

import "time"

// Predicate types of semi-automatic promotion: a request for a promotion
// to a stage with approvals, and each answer to it. The history of who
// approved what is signed like every other entry.
const (
	RequestPredicateType   = "https://stagegate.dev/promotion-request/v1"
	ApprovalPredicateType  = "https://stagegate.dev/approval/v1"
	RejectionPredicateType = "https://stagegate.dev/rejection/v1"
)

// RequestPredicate is the predicate of RequestPredicateType: what would be
// promoted, by whom, and how many approvals complete it.
type RequestPredicate struct {
	Stage        string    `json:"stage"`
	Repository   string    `json:"repository"`
	Platforms    []string  `json:"platforms,omitempty"`
	Requester    Requester `json:"requester"`
	Reason       string    `json:"reason,omitempty"`
	Time         time.Time `json:"time"`
	LedgerIndex  uint64    `json:"ledgerIndex"`
	PolicyDigest string    `json:"policyDigest,omitempty"`
	Required     int       `json:"required"`
	Expires      time.Time `json:"expires"`
	// RevocationOverride names the revocation in the stage the request
	// asks to override (overrideRevocation).
	RevocationOverride *RevocationOverride `json:"revocationOverride,omitempty"`
	// FreezeOverride marks an emergency promotion asked while the stage
	// was closed (freezeOverride): the freeze it asks to pass, which one
	// approval from the stage's freezeOverrideGroups lets it pass.
	FreezeOverride *FreezeOverride `json:"freezeOverride,omitempty"`
}

// AnswerPredicate is the predicate of ApprovalPredicateType and
// RejectionPredicateType: Requester is who approved or rejected.
type AnswerPredicate struct {
	Stage       string    `json:"stage"`
	Repository  string    `json:"repository"`
	Request     uint64    `json:"request"`
	Requester   Requester `json:"requester"`
	Reason      string    `json:"reason,omitempty"`
	Time        time.Time `json:"time"`
	LedgerIndex uint64    `json:"ledgerIndex"`
}

// ApprovalRecord is one approval as the completing promotion's predicate
// lists it.
type ApprovalRecord struct {
	LedgerIndex uint64    `json:"ledgerIndex"`
	Subject     string    `json:"subject"`
	Groups      []string  `json:"groups,omitempty"`
	Time        time.Time `json:"time"`
	Reason      string    `json:"reason,omitempty"`
}
