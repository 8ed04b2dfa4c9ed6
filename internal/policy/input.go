package policy

// The input documents below are part of stagegate's external contract: the
// Rego in policies/ reads them, and policies/README.md documents them with a
// JSON example each. Change them only compatibly.

// Identity is an authenticated requester of the promotion API.
type Identity struct {
	Subject string   `json:"subject"`
	Groups  []string `json:"groups"`
	// Method is how the identity was established: "token" or "mtls".
	Method string `json:"method,omitempty"`
}

// Image describes one image as stagegate resolved it.
type Image struct {
	// Reference is the reference as the user wrote it.
	Reference  string `json:"reference"`
	Repository string `json:"repository"`
	Tag        string `json:"tag,omitempty"`
	Digest     string `json:"digest"`
	// Platforms are the platform manifest digests when Digest is an index.
	Platforms []string          `json:"platforms,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
}

// StageState is the ledger state of one digest in one stage.
type StageState struct {
	Promoted   bool   `json:"promoted"`
	PromotedAt string `json:"promotedAt,omitempty"` // RFC 3339
	PromotedBy string `json:"promotedBy,omitempty"`
	Revoked    bool   `json:"revoked"`
	RevokedAt  string `json:"revokedAt,omitempty"` // RFC 3339
	RevokedBy  string `json:"revokedBy,omitempty"`
	Reason     string `json:"reason,omitempty"` // of the revocation
}

// PromotionInput is input for package stagegate.promotion.
type PromotionInput struct {
	Image     Image    `json:"image"`
	Stage     string   `json:"stage"`
	Requester Identity `json:"requester"`
	Reason    string   `json:"reason"`
	// Evidence is what the requester sent; VerifiedEvidence maps predicate
	// types to predicates whose attestations stagegate verified.
	Evidence         map[string]any `json:"evidence,omitempty"`
	VerifiedEvidence map[string]any `json:"verifiedEvidence,omitempty"`
	// States holds this digest's ledger state in every stage, keyed by stage.
	States map[string]StageState `json:"states"`
	Now    string                `json:"now"` // RFC 3339
	// Approvals are absent when a request to a stage with approvals is
	// made, and list the approvals when the last one completes it: a rule
	// on input.approvals applies at completion only.
	Approvals []Approval `json:"approvals,omitempty"`
	// Set lists every image of a promotion set (this one among them) when
	// the image is promoted as part of one, and is absent otherwise. The
	// policy is asked about each member with the same set, and the set is
	// recorded only if no member has a violation, so a rule may require
	// what must travel together (an image with its config artifact).
	Set []Image `json:"set,omitempty"`
}

// Approval is one approval of a promotion request.
type Approval struct {
	Subject string   `json:"subject"`
	Groups  []string `json:"groups"`
	Time    string   `json:"time"` // RFC 3339
	Reason  string   `json:"reason"`
}

// ContainerImage is one image of an admitted workload.
type ContainerImage struct {
	Container string `json:"container"`
	// Type is "container", "initContainer", "ephemeralContainer" or
	// "imageVolume" (then Container is the volume's name).
	Type string `json:"type"`
	Image
	// Pinned is true when the reference names a digest.
	Pinned bool       `json:"pinned"`
	State  StageState `json:"state"`
	// Error says why the digest could not be learned (e.g. registry down);
	// empty when it was.
	Error string `json:"error,omitempty"`
}

// Workload names the admitted object.
type Workload struct {
	Group       string            `json:"group"`
	Version     string            `json:"version"`
	Kind        string            `json:"kind"`
	Namespace   string            `json:"namespace"`
	Name        string            `json:"name"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// AdmissionInput is input for package stagegate.admission.
type AdmissionInput struct {
	Stage       string           `json:"stage"`
	Operation   string           `json:"operation"`
	SubResource string           `json:"subResource,omitempty"`
	DryRun      bool             `json:"dryRun"`
	User        Identity         `json:"user"`
	Workload    Workload         `json:"workload"`
	Images      []ContainerImage `json:"images"`
	// BreakGlass is the justification from the stagegate.dev/break-glass
	// annotation, empty when there is none.
	BreakGlass string `json:"breakGlass,omitempty"`
}

// AdmissionDecision is what package stagegate.admission decided.
type AdmissionDecision struct {
	Deny []string `json:"deny"`
	Warn []string `json:"warn"`
	// BreakGlassAllowed is the policy's word on whether a break-glass
	// annotation may override Deny for this request.
	BreakGlassAllowed bool `json:"breakGlassAllowed"`
}
