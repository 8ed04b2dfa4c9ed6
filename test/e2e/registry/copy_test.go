package registry

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// Scenario 3: promotion to a stage with a target copies a 2-platform index
// to the authenticated registry (credentials from serve's Docker config):
// same digest, every platform, the attestation with it, and progress shown
// by `stagegate promote --progress plain`.
func (s *suite) testCopy(t *testing.T) {
	ref, children := pushIndex(t, s.reg, "e2e/multi")
	digest := digestOf(ref)
	target := s.prot.Repo("mirror/e2e/multi")
	s.a.promote(t, ref, "dev", "test")

	receipt := filepath.Join(t.TempDir(), "receipt.json")
	_, stderr, err := s.a.run(t, s.a.client("promote", ref, "--stage", "stage", "--reason", "e2e copy",
		"--progress", "plain", "-o", receipt)...)
	if err != nil {
		t.Fatalf("stagegate promote --stage stage: %v\n%s", err, stderr)
	}
	// One line per event: layers done/total and bytes done/total.
	progress := regexp.MustCompile(`(?m)^copying: \d+/\d+ layers, [\d.]+ [KMG]?i?B/[\d.]+ [KMG]?i?B`)
	if !progress.MatchString(stderr) {
		t.Errorf("stagegate promote --progress plain printed no progress line on stderr:\n%s", stderr)
	}
	b, err := os.ReadFile(receipt)
	if err != nil {
		t.Fatal(err)
	}
	rc := decodeReceipt(t, b)
	if !slices.Equal(rc.Entry.Copies, []string{target}) {
		t.Errorf("receipt copies = %v, want [%s]", rc.Entry.Copies, target)
	}
	if st := decodeEnvelope(t, rc.Entry.Envelope); !slices.Equal(st.Predicate.Copies, []string{target}) {
		t.Errorf("signed predicate copies = %v, want [%s]", st.Predicate.Copies, target)
	}

	if got := s.tools.craneDigest(t, s.protCreds, target+"@"+digest); got != digest {
		t.Errorf("crane digest at the target = %s, want %s", got, digest)
	}
	for _, c := range children {
		if !manifestExists(t, s.prot, target+"@"+c) {
			t.Errorf("platform manifest %s is missing at the target %s", c, target)
		}
	}
	if out, err := s.tools.verifyAttestation(t, s.protCreds, s.a.cosignPub(), promotionType, target+"@"+digest); err != nil {
		t.Errorf("cosign verify-attestation at the target: %v\n%s", err, out)
	}
	// The target needs credentials: the copy did not make it public.
	if out, err := s.tools.verifyAttestation(t, s.tools.anonymous(t), s.a.cosignPub(), promotionType, target+"@"+digest); err == nil {
		t.Errorf("cosign read the target without credentials:\n%s", out)
	}
}

// Scenario 3b: a stage whose target registry refuses the serve process
// (no credentials in its Docker config) answers 502 with a message about
// credentials and records nothing.
func (s *suite) testCopyNoCredentials(t *testing.T) {
	ref := pushImage(t, s.reg, "e2e/nocreds", nil)
	s.tools.attest(t, s.pipelineKey, "slsaprovenance1", provenance(ref), ref)
	if status, body := s.c.promoteAPI(t, ref, "verified"); status != http.StatusCreated {
		t.Fatalf("promote to verified: %d %s, want 201", status, body)
	}

	before := len(s.c.ledgerEntries(t))
	status, body := s.c.promoteAPI(t, ref, "mirror")
	if status != http.StatusBadGateway {
		t.Fatalf("promote to a target without credentials: %d %s, want 502", status, body)
	}
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil || !strings.Contains(e.Error, "credentials") {
		t.Errorf("502 body %s: want an error about credentials", body)
	}
	if after := len(s.c.ledgerEntries(t)); after != before {
		t.Errorf("ledger grew from %d to %d entries on a failed copy", before, after)
	}
	target := s.prot.Repo("nocreds/e2e/nocreds") + "@" + digestOf(ref)
	if manifestExists(t, s.prot, target) {
		t.Errorf("%s exists: the failed copy wrote to the target", target)
	}
}
