package ledger

import (
	"encoding/json"
	"fmt"
	"time"
)

// Kind says what an entry records.
type Kind string

// The kinds of ledger entries.
const (
	KindPromotion  Kind = "promotion"
	KindRevocation Kind = "revocation"
	KindBreakGlass Kind = "break-glass"
	// KindRequest asks for a promotion to a stage with approvals; it
	// changes no state. KindApproval and KindRejection answer one
	// (Entry.Request), and the promotion that completes it names it too.
	KindRequest   Kind = "request"
	KindApproval  Kind = "approval"
	KindRejection Kind = "rejection"
)

// RequestsName is the history name under which the requests to stage are
// found, in index order (Ledger.HistoryPage); RequestName that of one
// request, its approvals, its rejection and the promotion completing it.
func RequestsName(stage string) string { return "stagegate:requests:" + stage }

// RequestName: see RequestsName.
func RequestName(index uint64) string { return fmt.Sprintf("stagegate:request:%d", index) }

// Approval is one approval a promotion that completes a request lists.
type Approval struct {
	// Index is the approval's entry.
	Index   uint64    `json:"index"`
	Subject string    `json:"subject"`
	Groups  []string  `json:"groups,omitempty"`
	Time    time.Time `json:"time"`
	Reason  string    `json:"reason,omitempty"`
}

// AllStages is the stage of a revocation that withdraws a digest everywhere.
const AllStages = "*"

// Entry is one leaf of the ledger. Its canonical encoding (json.Marshal of the
// struct) is the RFC 6962 leaf data, so every field is covered by the tree.
type Entry struct {
	Index      uint64 `json:"index"`
	Kind       Kind   `json:"kind"`
	Repository string `json:"repository"`
	Digest     string `json:"digest"`
	// Platforms holds the platform manifest digests of a promoted index, so that
	// admission can match either without a registry call.
	Platforms []string  `json:"platforms,omitempty"`
	Stage     string    `json:"stage"`
	Subject   string    `json:"subject"`
	Groups    []string  `json:"groups,omitempty"`
	Reason    string    `json:"reason,omitempty"`
	Time      time.Time `json:"time"`
	// Labels are the image config labels of Digest. For an index, which has
	// no config of its own, they are the labels every platform image of it
	// shares (internal/registry), so that a policy reading the index's
	// labels learns only what holds whichever platform a node pulls.
	Labels map[string]string `json:"labels,omitempty"`
	// PlatformLabels holds the config labels of each platform image of a
	// promoted index, by platform digest; a platform without labels has no
	// key. Entries made before it existed lack it, and then every platform
	// is recorded with Labels, as they always were: omitempty keeps their
	// bytes, and so their leaf hashes, unchanged.
	PlatformLabels map[string]map[string]string `json:"platformLabels,omitempty"`
	// Copies are the repositories a promotion copied the image to, digest
	// unchanged.
	Copies []string `json:"copies,omitempty"`
	// Workload names the admitted object of a break-glass entry
	// (namespace/kind/name) and Images the images it ran.
	Workload string   `json:"workload,omitempty"`
	Images   []string `json:"images,omitempty"`
	// OverridesRevocation is, on a promotion, the index of the revocation
	// in the stage that it overrode (a revoked digest put back, on purpose,
	// by someone allowed to); absent on every other entry, so entries made
	// before it existed keep their bytes.
	OverridesRevocation *uint64 `json:"overridesRevocation,omitempty"`
	// Request is, on an approval, a rejection and the promotion that
	// completes a request, the index of the request entry.
	Request *uint64 `json:"request,omitempty"`
	// FreezeOverride marks, on a request, an emergency promotion asked
	// while the stage's windows closed it (it needs an approval from the
	// stage's freezeOverrideGroups), and, on a promotion, one made during
	// a freeze (its attestation says which and who approved it). Absent
	// otherwise, so entries made before it existed keep their bytes.
	FreezeOverride bool `json:"freezeOverride,omitempty"`
	// Approvals are, on the promotion that completes a request, the
	// approvals that completed it.
	Approvals []Approval `json:"approvals,omitempty"`
	// Set is, on a promotion made as part of a promotion set, every digest
	// of the set with the entry that promotes it (this one among them), so
	// that each member's entry and attestation names the whole set.
	Set []SetMember `json:"set,omitempty"`
	// Foreign marks an entry imported from a registry attestation made by
	// another stagegate; its Envelope is the original one.
	Foreign bool `json:"foreign,omitempty"`
	// Envelope is the DSSE envelope of the entry's attestation.
	Envelope json.RawMessage `json:"envelope,omitempty"`
}

// State is what the ledger says about one digest in one stage, folding in
// revocations for AllStages.
type State struct {
	Digest        string    `json:"digest"`
	Repository    string    `json:"repository"`
	Stage         string    `json:"stage"`
	Promoted      bool      `json:"promoted"`
	PromotedIndex uint64    `json:"promotedIndex"`
	PromotedAt    time.Time `json:"promotedAt"`
	PromotedBy    string    `json:"promotedBy"`
	// Foreign is that the promotion in force was imported from another
	// stagegate's registry attestation (registrySource), not made here.
	Foreign      bool      `json:"foreign,omitempty"`
	Revoked      bool      `json:"revoked"`
	RevokedIndex uint64    `json:"revokedIndex,omitempty"`
	RevokedAt    time.Time `json:"revokedAt,omitzero"`
	RevokedBy    string    `json:"revokedBy,omitempty"`
	RevokeReason string    `json:"revokeReason,omitempty"`
	// RevokedDigest is the digest the revocation named when it is not
	// Digest: a platform of this index, or an index this platform is in.
	RevokedDigest string            `json:"revokedDigest,omitempty"`
	Labels        map[string]string `json:"labels,omitempty"`
}

// Active reports whether the digest is promoted to the stage and not revoked
// since.
func (s State) Active() bool { return s.Promoted && !s.Revoked }

// InclusionProof proves that entry LeafIndex is in the tree of TreeSize leaves.
type InclusionProof struct {
	LeafIndex uint64   `json:"leafIndex"`
	TreeSize  uint64   `json:"treeSize"`
	RootHash  []byte   `json:"rootHash"`
	Hashes    [][]byte `json:"hashes"`
}

// ConsistencyProof proves that the tree of size To extends the tree of size From.
type ConsistencyProof struct {
	From     uint64   `json:"from"`
	To       uint64   `json:"to"`
	FromRoot []byte   `json:"fromRoot"`
	ToRoot   []byte   `json:"toRoot"`
	Hashes   [][]byte `json:"hashes"`
}

// Receipt is what a promotion returns: the entry (with its DSSE attestation),
// an inclusion proof and the signed checkpoint the proof leads to. Anyone with
// the public keys can check it offline.
type Receipt struct {
	Entry      Entry          `json:"entry"`
	Inclusion  InclusionProof `json:"inclusionProof"`
	Checkpoint string         `json:"checkpoint"`
}
