// Package signing holds stagegate's keys and attestations: cosign key pairs in
// cosign's own encrypted format, the signed-note key of the ledger's
// checkpoints, and in-toto statements signed as DSSE envelopes the way
// `cosign attest` makes them, so that `cosign verify-attestation` accepts them.
package signing

import (
	"encoding/json"
	"fmt"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/registry"
)

// Predicate types of stagegate attestations.
const (
	PromotionPredicateType  = "https://stagegate.dev/promotion/v1"
	RevocationPredicateType = "https://stagegate.dev/revocation/v1"
	BreakGlassPredicateType = "https://stagegate.dev/break-glass/v1"
	// RevocationListPredicateType is the signed list of every revocation
	// a stagegate has made, which the clusters that follow it through the
	// registry read to know how fresh their view is (internal/revlist).
	RevocationListPredicateType = "https://stagegate.dev/revocation-list/v1"
)

// StatementType is the in-toto Statement v1 type. cosign's key-based
// verify-attestation reads statements without checking _type (it decodes
// predicateType and subject only), so v1 is accepted there.
const StatementType = "https://in-toto.io/Statement/v1"

// PayloadType is the DSSE payload type of in-toto statements, the one
// `cosign attest` uses and `cosign verify-attestation` requires.
const PayloadType = "application/vnd.in-toto+json"

// Subject is an in-toto resource descriptor: Name is the repository, Digest
// maps "sha256" to the hex digest.
type Subject struct {
	Name   string            `json:"name"`
	Digest map[string]string `json:"digest"`
}

// Statement is an in-toto Statement v1.
type Statement struct {
	Type          string          `json:"_type"`
	Subject       []Subject       `json:"subject"`
	PredicateType string          `json:"predicateType"`
	Predicate     json.RawMessage `json:"predicate"`
}

// Requester is the authenticated identity that asked for an entry.
type Requester struct {
	Subject string   `json:"subject"`
	Groups  []string `json:"groups,omitempty"`
}

// PromotionPredicate is the predicate of PromotionPredicateType.
type PromotionPredicate struct {
	Stage      string `json:"stage"`
	Repository string `json:"repository"`
	// Platforms are the platform manifest digests of a promoted index.
	Platforms    []string       `json:"platforms,omitempty"`
	Requester    Requester      `json:"requester"`
	Reason       string         `json:"reason,omitempty"`
	Evidence     map[string]any `json:"evidence,omitempty"`
	Time         time.Time      `json:"time"`
	LedgerIndex  uint64         `json:"ledgerIndex"`
	PolicyDigest string         `json:"policyDigest,omitempty"`
	// Labels are the image config labels; for an index, those every
	// platform image of it shares.
	Labels map[string]string `json:"labels,omitempty"`
	// PlatformLabels are the config labels of each platform image of an
	// index, by platform digest. Predicates made before it existed lack
	// it; their platforms had Labels.
	PlatformLabels map[string]map[string]string `json:"platformLabels,omitempty"`
	// Copies are the repositories the image was copied to, digest unchanged.
	Copies []string `json:"copies,omitempty"`
	// VerifiedEvidence maps the predicate types of evidence attestations
	// that stagegate verified on the image to their predicates.
	VerifiedEvidence map[string]any `json:"verifiedEvidence,omitempty"`
	// RevocationOverride is set when the digest was revoked in the stage
	// and this promotion put it back (overrideRevocation): it names that
	// revocation. Reason is then why it was put back.
	RevocationOverride *RevocationOverride `json:"revocationOverride,omitempty"`
	// FreezeOverride is set on an emergency promotion made while the
	// stage was closed (freezeOverride); Reason is then why.
	FreezeOverride *FreezeOverride `json:"freezeOverride,omitempty"`
	// Request and Approvals are set when the promotion completes a
	// request: its ledger index and the approvals that completed it.
	Request   *uint64          `json:"request,omitempty"`
	Approvals []ApprovalRecord `json:"approvals,omitempty"`
	// Set is set when the digest was promoted as part of a promotion set:
	// every digest of the set with the ledger entry that promotes it.
	Set []ledger.SetMember `json:"set,omitempty"`
}

// RevocationOverride names the revocation a promotion overrode.
type RevocationOverride struct {
	// LedgerIndex is the revocation's entry.
	LedgerIndex uint64    `json:"ledgerIndex"`
	RevokedBy   string    `json:"revokedBy,omitempty"`
	RevokedAt   time.Time `json:"revokedAt,omitzero"`
	// Reason is the revocation's reason.
	Reason string `json:"reason,omitempty"`
}

// FreezeOverride records what an emergency promotion overrode: the denied
// span (empty: it was outside every allowed span) and when the stage
// would have opened (zero: never).
type FreezeOverride struct {
	Window   string    `json:"window,omitempty"`
	NextOpen time.Time `json:"nextOpen,omitzero"`
	// ApprovedBy, on a promotion, is the member of freezeOverrideGroups
	// who let it pass: the requester (a direct emergency promotion) or
	// the approver of the request it completes (listed in approvals).
	ApprovedBy string `json:"approvedBy,omitempty"`
}

// RevocationPredicate is the predicate of RevocationPredicateType. Stage is
// a stage name or "*" for all stages.
type RevocationPredicate struct {
	Stage       string    `json:"stage"`
	Repository  string    `json:"repository"`
	Requester   Requester `json:"requester"`
	Reason      string    `json:"reason,omitempty"`
	Time        time.Time `json:"time"`
	LedgerIndex uint64    `json:"ledgerIndex"`
}

// BreakGlassPredicate is the predicate of BreakGlassPredicateType.
type BreakGlassPredicate struct {
	Stage       string    `json:"stage"`
	Workload    string    `json:"workload"`
	Images      []string  `json:"images,omitempty"`
	Requester   Requester `json:"requester"`
	Reason      string    `json:"reason"`
	Time        time.Time `json:"time"`
	LedgerIndex uint64    `json:"ledgerIndex"`
}

// RevocationListPredicate is the predicate of RevocationListPredicateType.
// The statement's subject is the list's repository, with the sha256 of
// Checkpoint as its digest.
type RevocationListPredicate struct {
	// Issued is when the list was signed; its age is what a follower
	// bounds (registrySource.freshness.maxAge).
	Issued time.Time `json:"issued"`
	// TreeSize and Checkpoint are the signing ledger's size and signed
	// checkpoint when the list was made: every revocation among its first
	// TreeSize entries is in Revocations.
	TreeSize   uint64 `json:"treeSize"`
	Checkpoint string `json:"checkpoint"`
	// Revocations are the DSSE envelopes of the revocations, in ledger
	// order, each as attached to its image: a follower verifies each one
	// on its own and imports it as it would from the image.
	Revocations []json.RawMessage `json:"revocations"`
}

// NewStatement builds an in-toto Statement v1 about digest ("sha256:<64 hex>")
// of repository, with the given predicate marshalled to JSON.
func NewStatement(repository, digest string, predicateType string, predicate any) (Statement, error) {
	if repository == "" {
		return Statement{}, fmt.Errorf("signing: %w: empty repository", ErrInvalidStatement)
	}
	if predicateType == "" {
		return Statement{}, fmt.Errorf("signing: %w: empty predicate type", ErrInvalidStatement)
	}
	h, err := parseDigest(digest)
	if err != nil {
		return Statement{}, err
	}
	p, err := json.Marshal(predicate)
	if err != nil {
		return Statement{}, fmt.Errorf("signing: marshal predicate: %w", err)
	}
	if len(p) == 0 || p[0] != '{' {
		return Statement{}, fmt.Errorf("signing: %w: predicate is not a JSON object", ErrInvalidStatement)
	}
	return Statement{
		Type:          StatementType,
		Subject:       []Subject{{Name: repository, Digest: map[string]string{h.Algorithm: h.Hex}}},
		PredicateType: predicateType,
		Predicate:     p,
	}, nil
}

// parseDigest accepts only sha256 digests: it is the one algorithm cosign's
// subject check (and the OCI registries we target) use.
func parseDigest(digest string) (v1.Hash, error) {
	if !registry.ValidDigest(digest) {
		return v1.Hash{}, fmt.Errorf("signing: %w: %q: want sha256:<64 lowercase hex>", ErrInvalidDigest, digest)
	}
	return v1.NewHash(digest)
}

// validate checks the shape of a decoded statement.
func (st Statement) validate() error {
	if st.Type != StatementType {
		return fmt.Errorf("signing: %w: _type %q, want %q", ErrInvalidStatement, st.Type, StatementType)
	}
	if len(st.Subject) == 0 {
		return fmt.Errorf("signing: %w: no subject", ErrInvalidStatement)
	}
	for i, s := range st.Subject {
		if s.Name == "" {
			return fmt.Errorf("signing: %w: subject %d has no name", ErrInvalidStatement, i)
		}
		d, ok := s.Digest["sha256"]
		if !ok {
			return fmt.Errorf("signing: %w: subject %d has no sha256 digest", ErrInvalidStatement, i)
		}
		if _, err := parseDigest("sha256:" + d); err != nil {
			return fmt.Errorf("signing: %w: subject %d: %w", ErrInvalidStatement, i, err)
		}
	}
	if st.PredicateType == "" {
		return fmt.Errorf("signing: %w: empty predicateType", ErrInvalidStatement)
	}
	if len(st.Predicate) == 0 || st.Predicate[0] != '{' {
		return fmt.Errorf("signing: %w: predicate is not a JSON object", ErrInvalidStatement)
	}
	return nil
}
