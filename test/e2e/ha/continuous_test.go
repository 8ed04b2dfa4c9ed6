package ha

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/stagegate/stagegate/test/e2e/framework"
)

// violationsAnswer is GET /v1/violations as the test reads it.
type violationsAnswer struct {
	Violations []struct {
		Namespace, Pod, Kind, Stage, Reason, Digest string
		LedgerIndex                                 *uint64
	} `json:"violations"`
}

// violations is node i's GET /v1/violations as "ns/pod reason digest
// index; …", or why it did not answer.
func (h *ha) violations(i int) string {
	code, b, err := h.do(context.Background(), i, http.MethodGet, "/v1/violations", h.tokens[0], nil)
	if err != nil || code != http.StatusOK {
		return fmt.Sprintf("%d %v %s", code, err, b)
	}
	var v violationsAnswer
	if err := json.Unmarshal(b, &v); err != nil {
		return err.Error()
	}
	var rows []string
	for _, x := range v.Violations {
		idx := "-"
		if x.LedgerIndex != nil {
			idx = fmt.Sprint(*x.LedgerIndex)
		}
		rows = append(rows, fmt.Sprintf("%s/%s %s %s %s", x.Namespace, x.Pod, x.Reason, x.Digest, idx))
	}
	return strings.Join(rows, "; ")
}

// TestContinuousValidationOnFollowers (issue 15): in a three-replica
// cluster on one Kubernetes API server, every replica keeps the inventory,
// and a revocation made through the Raft leader reaches a follower's
// GET /v1/violations as the follower applies it (FSM.OnApply), not at a
// sweep: the sweep is an hour.
func TestContinuousValidationOnFollowers(t *testing.T) {
	api := framework.StartAPIServer(t)
	if _, err := envtest.InstallCRDs(api.Config, envtest.CRDInstallOptions{
		Paths:              []string{filepath.Join(framework.RepoRoot(t), "internal", "manifests", "policyreport-crd.yaml")},
		ErrorIfPathMissing: true,
	}); err != nil {
		t.Fatalf("install the PolicyReport CRD: %v", err)
	}
	h := newHA(t, 3, withConfig(fmt.Sprintf(`continuousValidation:
  enabled: true
  kubeconfig: %s
  sweep: 1h
  lease: {namespace: default, duration: 6s, renew: 4s, retry: 1s}
`, api.KubeconfigPath)))
	lead := h.leader(0)
	f := (lead + 1) % len(h.nodes)

	image := must(h.pushImage("cv"))
	digest := digestOf(image)
	h.mustPromote(lead, image)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-cv", Labels: map[string]string{"stagegate.dev/stage": "dev"}}}
	if _, err := api.Clientset.CoreV1().Namespaces().Create(t.Context(), ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	p, err := api.Clientset.CoreV1().Pods("team-cv").Create(t.Context(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team-cv", Name: "app"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Status.Phase = corev1.PodRunning
	if _, err := api.Clientset.CoreV1().Pods("team-cv").UpdateStatus(t.Context(), p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Every replica answers, and the promoted pod violates nothing.
	for i := range h.nodes {
		h.waitFor(h.ids[i]+" to answer with no violation", func() bool { return h.violations(i) == "" })
	}

	code, b, err := h.do(context.Background(), lead, http.MethodPost, "/v1/revocations", h.tokens[0],
		map[string]string{"digest": digest, "stage": "dev", "reason": "CVE-2026-0015"})
	if err != nil || code != http.StatusCreated {
		t.Fatalf("revoke through the leader: %d %v %s", code, err, b)
	}
	var ans struct {
		RunningTotal int `json:"runningTotal"`
		Entry        struct {
			Index uint64 `json:"index"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(b, &ans); err != nil {
		t.Fatal(err)
	}
	if ans.RunningTotal != 1 {
		t.Errorf("the revocation's answer affects %d running pods, want 1: %s", ans.RunningTotal, b)
	}
	want := fmt.Sprintf("team-cv/app revoked %s %d", digest, ans.Entry.Index)
	for _, i := range []int{f, (f + 1) % len(h.nodes)} {
		h.waitFor(h.ids[i]+" (a follower) to report "+want, func() bool { return h.violations(i) == want })
	}
}
