package registry

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// provenance is a minimal SLSA v1 provenance predicate for ref, which
// `cosign attest --type slsaprovenance1` accepts.
func provenance(ref string) map[string]any {
	return map[string]any{
		"buildDefinition": map[string]any{
			"buildType":          "https://stagegate.dev/e2e/build/v1",
			"externalParameters": map[string]any{"image": ref},
		},
		"runDetails": map[string]any{
			"builder":  map[string]any{"id": "https://ci.example.com/e2e"},
			"metadata": map[string]any{"invocationId": "e2e-1"},
		},
	}
}

// Scenario 4: a stage that requires SLSA provenance by the pipeline key
// promotes an image attested with the real `cosign attest`, passes the
// verified predicate into the receipt, and refuses images without it or
// with provenance by another key.
func (s *suite) testEvidence(t *testing.T) {
	good := pushImage(t, s.reg, "e2e/built", nil)
	s.tools.attest(t, s.pipelineKey, "slsaprovenance1", provenance(good), good)
	none := pushImage(t, s.reg, "e2e/unbuilt", nil)
	other := pushImage(t, s.reg, "e2e/elsewhere", nil)
	s.tools.attest(t, s.untrustedKey, "slsaprovenance1", provenance(other), other)

	t.Run("provenance by the pipeline key", func(t *testing.T) {
		status, body := s.c.promoteAPI(t, good, "verified")
		if status != http.StatusCreated {
			t.Fatalf("promote: %d %s, want 201", status, body)
		}
		st := decodeEnvelope(t, decodeReceipt(t, body).Entry.Envelope)
		ev, ok := st.Predicate.VerifiedEvidence[provenanceType]
		if !ok {
			t.Fatalf("receipt predicate verifiedEvidence = %v, want %q", st.Predicate.VerifiedEvidence, provenanceType)
		}
		if b, _ := json.Marshal(ev); !strings.Contains(string(b), "https://ci.example.com/e2e") {
			t.Errorf("verified provenance %s does not carry the attested builder", b)
		}
	})
	for name, ref := range map[string]string{"no provenance": none, "provenance by an unlisted key": other} {
		t.Run(name, func(t *testing.T) {
			status, body := s.c.promoteAPI(t, ref, "verified")
			if status != http.StatusForbidden {
				t.Fatalf("promote: %d %s, want 403", status, body)
			}
			var denied struct {
				Violations []string `json:"violations"`
			}
			if err := json.Unmarshal(body, &denied); err != nil {
				t.Fatal(err)
			}
			if !slices.ContainsFunc(denied.Violations, func(v string) bool { return strings.Contains(v, provenanceType) }) {
				t.Errorf("violations %q do not name the missing predicate type %q", denied.Violations, provenanceType)
			}
		})
	}
}
