package admission

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/stagegate/stagegate/internal/admission"
	"github.com/stagegate/stagegate/internal/config"
	"github.com/stagegate/stagegate/test/e2e/framework"
)

// TestContinuousValidationEvict (issue 15): with onViolation: evict in
// stage test, `stagegate revoke` gets the running pods of that digest
// evicted through the Eviction API, as the generated RBAC allows and no
// more; a PodDisruptionBudget that allows no disruption keeps its pod
// running, with an Event that says so; a break-glass pod and the pods of a
// stage that only reports stay.
func TestContinuousValidationEvict(t *testing.T) {
	s := &suite{reg: framework.StartRegistry(t), api: framework.StartAPIServer(t)}
	kubeconfig := asInventory(t, s.api, func(c *config.Config) {
		c.Stages[1].OnViolation = config.OnViolationEvict
	})
	s.serve = framework.StartStagegate(t,
		framework.WithName("evict"),
		framework.WithToken("", "e2e-pipeline", "e2e"),
		framework.WithLogLevel("debug"),
		framework.WithConfig(fmt.Sprintf(`registries:
- host: %s
  insecure: true
stages:
- {name: dev, groups: [e2e], minSoak: 0s}
- {name: test, groups: [e2e], minSoak: 0s, onViolation: evict}
- {name: prod, groups: [e2e], minSoak: 0s}
continuousValidation:
  enabled: true
  kubeconfig: %s
  sweep: 1h
  evictRetry: 1s
  lease: {namespace: default, duration: 6s, renew: 4s, retry: 1s}
`, s.reg.Addr, kubeconfig)))
	s.bin, s.dir, s.configPath, s.token, s.url = s.serve.Bin, s.serve.Dir, s.serve.ConfigPath, s.serve.Token, s.serve.URL
	dyn, err := dynamic.NewForConfig(s.api.Config)
	if err != nil {
		t.Fatal(err)
	}
	cs := s.api.Clientset

	ref := s.pushImage(t, "evict")
	digest := digestOf(ref)
	s.promote(t, ref, "dev", "test")
	test := s.namespace(t, "cv-evict", "test")
	dev := s.namespace(t, "cv-report", "dev")
	running(t, cs, pod(test, "app", ref), nil)
	guarded := pod(test, "guarded", ref)
	guarded.Labels = map[string]string{"app": "guarded"}
	running(t, cs, guarded, []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}})
	glass := pod(test, "glass", ref)
	glass.Annotations = map[string]string{admission.BreakGlassAnnotation: "INC-1515: hotfix"}
	running(t, cs, glass, nil)
	running(t, cs, pod(dev, "app", ref), nil)
	blockingBudget(t, cs, test, "guarded")

	// Promoted: the break-glass is not needed, so not used.
	waitPolicyReport(t, dyn, test, "pass=3 fail=0 []")
	waitPolicyReport(t, dyn, dev, "pass=1 fail=0 []")
	_, stderr, err := s.run(t, s.client("revoke", ref, "--stage", "*", "--reason", "CVE-2026-1515", "-o", os.DevNull)...)
	if err != nil {
		t.Fatalf("stagegate revoke: %v\n%s", err, stderr)
	}
	if !strings.Contains(stderr, "running pods affected: 4\n") {
		t.Errorf("stagegate revoke does not count the 4 running pods:\n%s", stderr)
	}

	t.Run("a revoked pod is evicted", func(t *testing.T) {
		waitGone(t, cs, test, "app")
		waitEventReason(t, cs, test, "app", "StagegateEvicted")
	})
	t.Run("a PodDisruptionBudget holds its pod", func(t *testing.T) {
		waitEventReason(t, cs, test, "guarded", "StagegateEvictionBlocked")
		stays(t, cs, test, "guarded")
	})
	t.Run("a break-glass pod and a report-only stage's pods stay", func(t *testing.T) {
		es := s.ledgerEntries(t, 0)
		idx := es[len(es)-1].Index
		waitPolicyReport(t, dyn, dev, fmt.Sprintf("pass=0 fail=1 [app %s revoked %d]", digest, idx))
		waitPolicyReport(t, dyn, test, fmt.Sprintf("pass=0 fail=2 [glass %s break-glass %d; guarded %s revoked %d]", digest, idx, digest, idx))
		stays(t, cs, test, "glass")
		stays(t, cs, dev, "app")
	})
	t.Run("the retry evicts once the budget allows", func(t *testing.T) {
		if err := cs.PolicyV1().PodDisruptionBudgets(test).Delete(t.Context(), "guarded", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitGone(t, cs, test, "guarded")
		stays(t, cs, test, "glass")
	})
}

// running creates p and gives it the status a kubelet would: envtest has
// none.
func running(t *testing.T, cs kubernetes.Interface, p *corev1.Pod, conds []corev1.PodCondition) {
	t.Helper()
	p, err := cs.CoreV1().Pods(p.Namespace).Create(t.Context(), p, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Status.Phase = corev1.PodRunning
	p.Status.Conditions = conds
	if _, err := cs.CoreV1().Pods(p.Namespace).UpdateStatus(t.Context(), p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// blockingBudget creates a PodDisruptionBudget for the pods labelled
// app=name that allows no disruption, with the status the disruption
// controller would give it: envtest runs none, and the Eviction API holds
// requests for a budget that no controller observed.
func blockingBudget(t *testing.T, cs kubernetes.Interface, ns, name string) {
	t.Helper()
	one := intstr.FromInt32(1)
	pdb, err := cs.PolicyV1().PodDisruptionBudgets(ns).Create(t.Context(), &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       policyv1.PodDisruptionBudgetSpec{MinAvailable: &one, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pdb.Status = policyv1.PodDisruptionBudgetStatus{ObservedGeneration: pdb.Generation, CurrentHealthy: 1, DesiredHealthy: 1, ExpectedPods: 1}
	if _, err := cs.PolicyV1().PodDisruptionBudgets(ns).UpdateStatus(t.Context(), pdb, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func waitGone(t *testing.T, cs kubernetes.Interface, ns, name string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		t.Fatalf("pod %s/%s was not evicted: %v", ns, name, err)
	}
}

func stays(t *testing.T, cs kubernetes.Interface, ns, name string) {
	t.Helper()
	p, err := cs.CoreV1().Pods(ns).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil || p.DeletionTimestamp != nil {
		t.Fatalf("pod %s/%s: %v, want it running and not being deleted", ns, name, err)
	}
}

func waitEventReason(t *testing.T, cs kubernetes.Interface, ns, name, reason string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		evs, err := cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
		if err != nil {
			return false, err
		}
		for _, ev := range evs.Items {
			if ev.Reason == reason {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("no %s Event on %s/%s: %v", reason, ns, name, err)
	}
}
