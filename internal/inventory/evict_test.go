package inventory

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/stagegate/stagegate/internal/admission"
	"github.com/stagegate/stagegate/internal/ledger"
)

// waitGone polls until pod ns/name is gone, for at most a minute.
func (e *env) waitGone(t *testing.T, ns, name string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 20*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := e.cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		t.Fatalf("pod %s/%s was not evicted: %v", ns, name, err)
	}
}

// waitReason polls for an Event of reason on the object named name in ns.
func (e *env) waitReason(t *testing.T, ns, name, reason string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 20*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		evs, err := e.cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
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

// ready makes pod ns/name Ready, as a kubelet would: a PodDisruptionBudget
// protects only healthy pods.
func (e *env) ready(t *testing.T, ns, name string) {
	t.Helper()
	p, err := e.cs.CoreV1().Pods(ns).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: corev1.PodReady, Status: corev1.ConditionTrue})
	if _, err := e.cs.CoreV1().Pods(ns).UpdateStatus(t.Context(), p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// budget creates a PodDisruptionBudget for the pods labelled app=name that
// allows no disruption now, with the status the disruption controller
// would give it: envtest runs none, and the Eviction API waits for a
// budget that no controller has observed.
func (e *env) budget(t *testing.T, ns, name string) {
	t.Helper()
	one := intstr.FromInt32(1)
	pdb, err := e.cs.PolicyV1().PodDisruptionBudgets(ns).Create(t.Context(), &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       policyv1.PodDisruptionBudgetSpec{MinAvailable: &one, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pdb.Status = policyv1.PodDisruptionBudgetStatus{ObservedGeneration: pdb.Generation, CurrentHealthy: 1, DesiredHealthy: 1, ExpectedPods: 1}
	if _, err := e.cs.PolicyV1().PodDisruptionBudgets(ns).UpdateStatus(t.Context(), pdb, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func (e *env) exists(t *testing.T, ns, name string) {
	t.Helper()
	p, err := e.cs.CoreV1().Pods(ns).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil || p.DeletionTimestamp != nil {
		t.Fatalf("pod %s/%s: %v (deleting: %v), want it running", ns, name, err, err == nil && p.DeletionTimestamp != nil)
	}
}

// TestEvict: in an evicting stage, the leader evicts the pods whose digest
// is revoked or not promoted there, through the Eviction API, so that a
// PodDisruptionBudget holds them until it allows the disruption; it never
// evicts a break-glass pod, a pod of an unknown stage or of a stage that
// only reports, and a follower evicts nothing.
func TestEvict(t *testing.T) {
	e := newEnv(t, WithEviction([]string{"test", "prod", "qa"}, time.Minute))
	e.appendEntry(t, ledger.KindPromotion, digestA, "test", "")
	e.appendEntry(t, ledger.KindPromotion, digestA, "prod", "")
	e.appendEntry(t, ledger.KindPromotion, digestB, "test", "")
	for ns, st := range map[string]string{"test": "test", "prod": "prod", "staging": "stage", "qa": "qa"} {
		e.namespace(t, ns, st)
	}
	e.pod(t, "prod", "app", image(digestA), nil)
	e.pod(t, "prod", "guarded", image(digestA), func(p *corev1.Pod) { p.Labels = map[string]string{"app": "guarded"} })
	e.pod(t, "test", "ok", image(digestB), nil)
	e.pod(t, "test", "glass", image(digestC), func(p *corev1.Pod) {
		p.Annotations = map[string]string{admission.BreakGlassAnnotation: "INC-1234: hotfix"}
	})
	e.pod(t, "test", "unpromoted", image(digestC), nil)
	e.pod(t, "staging", "reported", image(digestC), nil)
	e.pod(t, "qa", "unknown", image(digestA), nil)
	e.ready(t, "prod", "guarded")
	e.budget(t, "prod", "guarded")

	e.run(t)
	e.waitViolations(t, ViolationQuery{Limit: 10}, "qa/unknown unknown stage; staging/reported not promoted; test/glass break-glass; test/unpromoted not promoted; next=")
	t.Run("a follower evicts nothing", func(t *testing.T) {
		e.exists(t, "test", "unpromoted")
	})

	e.lead(t)
	t.Run("a not-promoted pod is evicted", func(t *testing.T) {
		e.waitGone(t, "test", "unpromoted")
		e.waitReason(t, "test", "unpromoted", EventEvicted)
	})

	revocation := e.appendEntry(t, ledger.KindRevocation, digestA, ledger.AllStages, "CVE-2026-0001")
	e.ctrl.Invalidate(digestA)
	t.Run("a revoked pod is evicted", func(t *testing.T) {
		e.waitGone(t, "prod", "app")
		e.waitReason(t, "prod", "app", EventEvicted)
	})
	t.Run("a PodDisruptionBudget holds its pod", func(t *testing.T) {
		e.waitReason(t, "prod", "guarded", EventEvictionBlocked)
		e.exists(t, "prod", "guarded")
		e.waitReport(t, "prod", report{fail: 1, results: []result{{pod: "guarded", reason: "revoked", digest: digestA, ledgerIndex: fmt.Sprint(revocation)}}})
	})
	t.Run("never a break-glass, unknown-stage or report-only pod", func(t *testing.T) {
		for _, p := range [][2]string{{"test", "glass"}, {"qa", "unknown"}, {"staging", "reported"}, {"test", "ok"}} {
			e.exists(t, p[0], p[1])
		}
	})
	t.Run("the retry evicts once the budget allows", func(t *testing.T) {
		if err := e.cs.PolicyV1().PodDisruptionBudgets("prod").Delete(t.Context(), "guarded", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		e.exists(t, "prod", "guarded")
		// Nothing the controller watches changed: only the retry, on the
		// fake clock, can evict it now.
		e.clock.Step(time.Minute)
		e.waitGone(t, "prod", "guarded")
		e.waitReason(t, "prod", "guarded", EventEvicted)
	})
}
