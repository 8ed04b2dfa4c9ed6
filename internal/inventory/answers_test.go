package inventory

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/stagegate/stagegate/internal/ledger"
)

// waitAnswering polls until the controller answers, for at most a minute.
func (e *env) waitAnswering(t *testing.T) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 20*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		_, _, err := e.ctrl.Running(nil, "", 1)
		return err == nil, nil
	})
	if err != nil {
		t.Fatalf("the controller never answered: %v", err)
	}
}

// waitViolations polls Violations(q) until it reads want ("ns/pod reason"
// for each, then "next=..."), for at most a minute.
func (e *env) waitViolations(t *testing.T, q ViolationQuery, want string) {
	t.Helper()
	var last string
	err := wait.PollUntilContextTimeout(t.Context(), 20*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		vs, next, err := e.ctrl.Violations(q)
		if err != nil {
			last = err.Error()
			return false, nil
		}
		last = ""
		for _, v := range vs {
			last += fmt.Sprintf("%s/%s %s; ", v.Namespace, v.Pod, v.Reason)
		}
		last += "next=" + next
		return last == want, nil
	})
	if err != nil {
		t.Fatalf("Violations(%+v): %v\n got %s\nwant %s", q, err, last, want)
	}
}

func runningString(pods []RunningPod, total int) string {
	s := ""
	for _, p := range pods {
		s += fmt.Sprintf("%s/%s %s/%s %s %v; ", p.Namespace, p.Name, p.Owner.Kind, p.Owner.Name, p.Stage, p.Containers)
	}
	return s + fmt.Sprint("total=", total)
}

// TestFollowerAnswers: every replica keeps the inventory and answers from
// it, but only the one that leads writes reports, gauges and Events; and
// nothing answers before the inventory is whole.
func TestFollowerAnswers(t *testing.T) {
	e := newEnv(t)
	e.appendEntry(t, ledger.KindPromotion, digestA, "test", "")
	e.appendEntry(t, ledger.KindPromotion, digestA, "prod", "")
	e.namespace(t, "test", "test")
	e.namespace(t, "prod", "prod")
	e.namespace(t, "plain", "")
	yes := true
	rs := e.deployment(t, "prod", "app", image(digestA))
	e.pod(t, "prod", "app-5d8f-x2k9", image(digestA), func(p *corev1.Pod) {
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs.Name, UID: rs.UID, Controller: &yes}}
	})
	e.pod(t, "test", "two", image(digestC), func(p *corev1.Pod) {
		p.Spec.InitContainers = []corev1.Container{{Name: "init", Image: image(digestA)}}
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "side", Image: image(digestA)})
	})
	e.pod(t, "plain", "loose", image(digestA), nil)
	e.pod(t, "test", "unpromoted", image(digestC), nil)

	if _, _, err := e.ctrl.Running([]string{digestA}, "", 10); !errors.Is(err, ErrNotSynced) {
		t.Fatalf("Running before Run = %v, want ErrNotSynced", err)
	}
	if _, _, err := e.ctrl.Violations(ViolationQuery{Limit: 10}); !errors.Is(err, ErrNotSynced) {
		t.Fatalf("Violations before Run = %v, want ErrNotSynced", err)
	}
	stopRun := e.run(t)
	e.waitAnswering(t)

	t.Run("where a digest runs", func(t *testing.T) {
		pods, total, err := e.ctrl.Running([]string{digestA}, "", 10)
		if err != nil {
			t.Fatal(err)
		}
		want := "plain/loose Pod/loose  [app]; prod/app-5d8f-x2k9 ReplicaSet/app-5d8f prod [app]; test/two Pod/two test [init side]; total=3"
		if got := runningString(pods, total); got != want {
			t.Errorf("Running(A)\n got %s\nwant %s", got, want)
		}
		pods, total, _ = e.ctrl.Running([]string{digestA}, "prod", 10)
		if got, want := runningString(pods, total), "prod/app-5d8f-x2k9 ReplicaSet/app-5d8f prod [app]; total=1"; got != want {
			t.Errorf("Running(A, prod)\n got %s\nwant %s", got, want)
		}
		// Bounded: the total still counts every pod.
		pods, total, _ = e.ctrl.Running([]string{digestA, digestC}, "", 1)
		if len(pods) != 1 || total != 4 {
			t.Errorf("Running(A, C) limit 1 = %d pods, total %d; want 1 of 4", len(pods), total)
		}
	})
	e.waitViolations(t, ViolationQuery{Limit: 10}, "test/two not promoted; test/unpromoted not promoted; next=")

	t.Run("a follower writes nothing", func(t *testing.T) {
		for _, ns := range []string{"test", "prod"} {
			if _, err := e.dyn.Resource(PolicyReportResource).Namespace(ns).Get(t.Context(), ReportName, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				t.Errorf("a follower's report in %s: %v, want none", ns, err)
			}
		}
		if got := e.gauge(t, "stagegate_running_violations", nil); got != 0 {
			t.Errorf("a follower's violations gauge = %v, want 0", got)
		}
		if got := e.events(t, "test", "unpromoted"); got != 0 {
			t.Errorf("a follower sent %d Events", got)
		}
	})

	stop := e.lead(t)
	t.Run("the leader writes", func(t *testing.T) {
		e.waitReport(t, "test", report{fail: 2, results: []result{
			{pod: "two", reason: "not promoted", digest: digestC}, {pod: "unpromoted", reason: "not promoted", digest: digestC},
		}})
		e.waitReport(t, "prod", report{pass: 1})
		e.waitEvent(t, "test", "Pod", "unpromoted")
		if got := e.gauge(t, "stagegate_running_violations", map[string]string{"namespace": "test"}); got != 2 {
			t.Errorf("violations gauge of test = %v, want 2", got)
		}
	})
	stop()

	t.Run("a term that ends drops the gauges, not the answers", func(t *testing.T) {
		if got := e.gauge(t, "stagegate_running_violations", nil); got != 0 {
			t.Errorf("violations gauge after the term = %v, want 0", got)
		}
		if _, total, err := e.ctrl.Running([]string{digestA}, "", 10); err != nil || total != 3 {
			t.Errorf("Running after the term = %d, %v; want 3", total, err)
		}
	})

	t.Run("pages of violations", func(t *testing.T) {
		e.pod(t, "prod", "bad", image(digestC), nil)
		e.waitViolations(t, ViolationQuery{Limit: 10}, "prod/bad not promoted; test/two not promoted; test/unpromoted not promoted; next=")
		e.waitViolations(t, ViolationQuery{Limit: 2}, "prod/bad not promoted; test/two not promoted; next=test/two")
		e.waitViolations(t, ViolationQuery{Limit: 2, After: "test/two"}, "test/unpromoted not promoted; next=")
		e.waitViolations(t, ViolationQuery{Limit: 10, Stage: "prod"}, "prod/bad not promoted; next=")
		e.waitViolations(t, ViolationQuery{Limit: 10, Namespace: "test", After: "test/two"}, "test/unpromoted not promoted; next=")
	})

	stopRun()
	t.Run("a stopped inventory does not answer", func(t *testing.T) {
		if _, _, err := e.ctrl.Running([]string{digestA}, "", 10); !errors.Is(err, ErrNotSynced) {
			t.Errorf("Running after Run = %v, want ErrNotSynced", err)
		}
		if _, _, err := e.ctrl.Violations(ViolationQuery{Limit: 10}); !errors.Is(err, ErrNotSynced) {
			t.Errorf("Violations after Run = %v, want ErrNotSynced", err)
		}
	})
}
