package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/stagegate/stagegate/test/e2e/framework"
)

// TestCheckDecidesAsTheWebhook: `stagegate check` says it decides "exactly
// as the webhook does". For digests that a follower knows only through its
// registry source (promoted by another stagegate, attested in the
// registry, absent from the follower's own ledger), check on the
// follower's ledger and the follower's webhook give the same answer, word
// for word: one digest promoted to prod, admitted, and one promoted only up
// to stage, refused in prod. Before check used the webhook's reviewer, it
// had no registry source and refused both.
func TestCheckDecidesAsTheWebhook(t *testing.T) {
	reg := framework.StartRegistry(t)
	registries := fmt.Sprintf("registries:\n- {host: %q, insecure: true}\n", reg.Addr)
	revocations := reg.Repo("stagegate/revocations") + ":latest"
	promoter := newNode(t, "check-promoter", nodeOptions{
		config: registries + fmt.Sprintf(`revocationList: {reference: %q}
stages:
- {name: dev, groups: [e2e], minSoak: 0s}
- {name: test, groups: [e2e], minSoak: 0s}
- {name: stage, groups: [e2e], minSoak: 0s, attest: true}
- {name: prod, groups: [e2e], minSoak: 0s, attest: true}
`, revocations),
	})
	follower := newNode(t, "check-follower", nodeOptions{
		config: registries + fmt.Sprintf(`registrySource:
  enabled: true
  trustedKeys: [%q]
  refresh: 1s
  revocationLists: [%q]
stages:
- {name: dev, groups: [e2e], minSoak: 0s}
- {name: test, groups: [e2e], minSoak: 0s}
- {name: stage, groups: [e2e], minSoak: 0s}
- {name: prod, groups: [e2e], minSoak: 0s}
`, promoter.cosignPub(), revocations),
	})

	admitted := pushImage(t, reg, "e2e/check-admitted", nil)
	promoter.promote(t, admitted, toProd...)
	refused := pushImage(t, reg, "e2e/check-refused", nil)
	promoter.promote(t, refused, "dev", "test", "stage")
	pods := map[string]string{"admitted": admitted, "refused": refused}

	// check reads the follower's ledger, which a running serve locks.
	if err := follower.serve.Stop(); err != nil {
		t.Fatalf("stop the follower: %v", err)
	}
	var manifest []string
	for name, ref := range pods {
		b, err := yaml.Marshal(pod("team", name, ref))
		if err != nil {
			t.Fatal(err)
		}
		manifest = append(manifest, string(b))
	}
	file := filepath.Join(t.TempDir(), "pods.yaml")
	writeFile(t, file, strings.Join(manifest, "---\n"), 0o644)
	stdout, stderr, err := follower.run(t, "check", "-f", file, "--stage", "prod", "-o", "json", "--config", follower.configPath)
	// One of the two is refused, so check exits 1.
	if _, ok := errors.AsType[*exec.ExitError](err); !ok {
		t.Fatalf("stagegate check: err = %v, want exit status 1\n%s\n%s", err, stdout, stderr)
	}
	var results []struct {
		Name, Message string
		Allowed       bool
	}
	if err := json.Unmarshal([]byte(stdout), &results); err != nil {
		t.Fatalf("stagegate check -o json: %v\n%s\n%s", err, stdout, stderr)
	}
	checked := map[string]admissionv1.AdmissionResponse{}
	for _, r := range results {
		checked[r.Name] = admissionv1.AdmissionResponse{Allowed: r.Allowed, Result: &metav1.Status{Message: r.Message}}
	}

	follower.serve.Start()
	// check wrote nothing: the follower's ledger still knows neither
	// digest, so the webhook too learns them from the registry alone.
	for name, ref := range pods {
		if es := follower.entriesOf(t, digestOf(ref)); len(es) != 0 {
			t.Fatalf("%s: the follower's ledger holds %d entries for %s after check, want none: %+v", name, len(es), digestOf(ref), es)
		}
	}
	for name, ref := range pods {
		c, ok := checked[name]
		if !ok {
			t.Errorf("check did not report pod %s: %s", name, stdout)
			continue
		}
		w := webhookReview(t, follower, "prod", pod("team", name, ref))
		if c.Allowed != w.Allowed {
			t.Errorf("%s (%s): check allowed = %v (%q), the webhook allowed = %v (%+v)", name, ref, c.Allowed, c.Result.Message, w.Allowed, w.Result)
			continue
		}
		if want := name == "admitted"; w.Allowed != want {
			t.Errorf("%s (%s): both allowed = %v, want %v (%+v)", name, ref, w.Allowed, want, w.Result)
		}
		if !w.Allowed && w.Result.Message != c.Result.Message {
			t.Errorf("%s: check says %q, the webhook says %q", name, c.Result.Message, w.Result.Message)
		}
	}
}

// webhookReview posts p to the node's webhook, as the API server would
// (POST /admission/validate/{stage}), and returns its answer.
func webhookReview(t *testing.T, n *node, stage string, p *corev1.Pod) *admissionv1.AdmissionResponse {
	t.Helper()
	raw, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	code, body := n.do(t, http.MethodPost, "/admission/validate/"+stage, admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{UID: "check-e2e", Operation: admissionv1.Create, Namespace: p.Namespace, Name: p.Name,
			Kind:     metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Object:   runtime.RawExtension{Raw: raw}},
	})
	if code != http.StatusOK {
		t.Fatalf("POST /admission/validate/%s: %d %s", stage, code, body)
	}
	var ar admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &ar); err != nil || ar.Response == nil {
		t.Fatalf("webhook answer %s: %v", body, err)
	}
	return ar.Response
}
