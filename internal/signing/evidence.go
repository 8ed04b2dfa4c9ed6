package signing

import (
	"encoding/json"
	"slices"
	"strings"
)

// evidenceStatement is what VerifiedEvidence reads of a pipeline's
// statement. `cosign attest` writes in-toto Statement v0.1, and `cosign
// verify-attestation --key` does not look at _type, so neither does this.
type evidenceStatement struct {
	Subject       []Subject       `json:"subject"`
	PredicateType string          `json:"predicateType"`
	Predicate     json.RawMessage `json:"predicate"`
}

// VerifiedEvidence decides which attestations attached to an image with
// the given digest count as evidence: those that one of keys (a build
// pipeline's, say) signed, with the in-toto payload type, whose subject
// is the digest, as `cosign verify-attestation --key` decides without a
// transparency log. It returns their predicates keyed by predicate type,
// only the given types (none means all). When several have one type, the
// first key's first envelope wins. Envelopes that no key verifies are
// skipped: unverified is no evidence, not an error.
func VerifiedEvidence(digest string, envelopes [][]byte, keys []*Verifier, predicateTypes []string) map[string]any {
	out := map[string]any{}
	hex, ok := strings.CutPrefix(digest, "sha256:")
	if !ok {
		return out
	}
	for _, k := range keys {
		for _, env := range envelopes {
			payload, err := k.verifiedPayload(env)
			if err != nil {
				continue
			}
			var st evidenceStatement
			if json.Unmarshal(payload, &st) != nil || st.PredicateType == "" || !about(st.Subject, hex) {
				continue
			}
			if len(predicateTypes) > 0 && !slices.Contains(predicateTypes, st.PredicateType) {
				continue
			}
			if _, seen := out[st.PredicateType]; seen {
				continue
			}
			var pred any
			if err := json.Unmarshal(st.Predicate, &pred); err != nil {
				continue
			}
			out[st.PredicateType] = pred
		}
	}
	return out
}

// about reports whether one of subjects has the sha256 digest hex.
func about(subjects []Subject, hex string) bool {
	return slices.ContainsFunc(subjects, func(s Subject) bool { return s.Digest["sha256"] == hex })
}
