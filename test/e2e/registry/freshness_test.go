package registry

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// attTag is the cosign attestation tag of ref (repository@sha256:hex).
func attTag(ref string) string {
	return repoOf(ref) + ":" + strings.Replace(digestOf(ref), ":", "-", 1) + ".att"
}

// Someone with write access to the registry puts back the image's
// attestations as they were before A revoked it, so that B, reading them
// again, sees only the promotion. A's signed revocation list still carries
// the revocation, and B refuses the image.
func (s *suite) testWithheldRevocation(t *testing.T) {
	ref := pushImage(t, s.reg, "e2e/withheld", nil)
	s.a.promote(t, ref, toProd...)
	ns := s.b.namespace(t, "prod-withheld", "prod")
	wantAllowed(t, "before revocation", s.b.create(t, pod(ns, "before", ref), true))

	anon := s.tools.anonymous(t)
	before := s.tools.craneDigest(t, anon, attTag(ref))
	const reason = "CVE-2099-0003 in libqux"
	s.a.mustRun(t, s.a.client("revoke", ref, "--stage", "prod", "--reason", reason, "-o", "/dev/null")...)
	if _, stderr, err := s.tools.exec(t, anon, s.tools.crane, "tag", repoOf(ref)+"@"+before, attTag(ref)[len(repoOf(ref))+1:]); err != nil {
		t.Fatalf("crane tag: %v\n%s", err, stderr)
	}
	if out, err := s.tools.verifyAttestation(t, anon, s.a.cosignPub(), revocationType, ref); err == nil {
		t.Fatalf("the revocation is still attached to the image, so this tests nothing:\n%s", out)
	}

	deadline := time.Now().Add(30 * time.Second)
	var last error
	for {
		last = s.b.create(t, pod(ns, "after", ref), true)
		if last != nil && strings.Contains(last.Error(), "denied the request") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("B still admits %s 30s after A revoked it, with the revocation withheld from the image; last answer: %v", ref, last)
		}
		time.Sleep(300 * time.Millisecond)
	}
	wantDenied(t, "after the withheld revocation", last, digestOf(ref), reason)
}

// A cluster that follows A but cannot read A's revocation list does not
// know whether A revoked what it promoted: its last stage refuses A's
// promotions and says why, the earlier stages admit them.
func (s *suite) testUnknownFreshness(t *testing.T) {
	missing := s.reg.Repo("stagegate/never-published") + ":latest"
	d := newNode(t, "cluster-d", nodeOptions{
		env: []string{"DOCKER_CONFIG=" + s.tools.anonymous(t)},
		config: fmt.Sprintf(`registries:
- {host: %q, insecure: true}
registrySource:
  enabled: true
  trustedKeys: [%q]
  refresh: 1s
  revocationLists: [%q]
stages:
- {name: stage, groups: [e2e], minSoak: 0s}
- {name: prod, groups: [e2e], minSoak: 0s}
`, s.reg.Addr, s.a.cosignPub(), missing),
	})
	ref := pushImage(t, s.reg, "e2e/unknown-freshness", nil)
	s.a.promote(t, ref, toProd...)

	review := func(stage string) *admissionv1.AdmissionResponse {
		t.Helper()
		raw, err := json.Marshal(pod("team", "p", ref))
		if err != nil {
			t.Fatal(err)
		}
		code, body := d.do(t, http.MethodPost, "/v1/reviews/"+stage, admissionv1.AdmissionReview{
			TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
			Request: &admissionv1.AdmissionRequest{UID: "u1", Operation: admissionv1.Create, Namespace: "team", Name: "p",
				Kind:     metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
				Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
				Object:   runtime.RawExtension{Raw: raw}},
		})
		if code != http.StatusOK {
			t.Fatalf("POST /v1/reviews/%s: %d %s", stage, code, body)
		}
		var ar admissionv1.AdmissionReview
		if err := json.Unmarshal(body, &ar); err != nil || ar.Response == nil {
			t.Fatalf("review answer %s: %v", body, err)
		}
		return ar.Response
	}
	if r := review("stage"); !r.Allowed {
		t.Fatalf("stage (no freshness required) refused A's promotion: %+v", r.Result)
	}
	r := review("prod")
	if r.Allowed {
		t.Fatal("prod admitted a promotion from a source whose revocation list cannot be read")
	}
	for _, want := range []string{digestOf(ref), `promoted to "prod" by another stagegate`, "requires a revocation list of " + missing, "reading it failed"} {
		if !strings.Contains(r.Result.Message, want) {
			t.Errorf("prod's refusal %q does not say %q", r.Result.Message, want)
		}
	}
}
