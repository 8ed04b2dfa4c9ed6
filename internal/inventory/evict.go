package inventory

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// evictTimeout bounds one eviction request.
const evictTimeout = 10 * time.Second

// evictable is whether v is a pod the leader evicts: one of an evicting
// stage that admission refuses for its digest alone. A break-glass pod was
// let in on purpose, and an unknown stage or a custom policy's refusal is
// a configuration to fix, not a digest to withdraw. A GitOps object is
// never evicted (GitOpsKind says why).
func (c *Controller) evictable(v Violation) bool {
	return c.evict[v.Stage] && v.IsPod() && (v.Reason == ReasonRevoked || v.Reason == ReasonNotPromoted)
}

// evictAll evicts ns's evictable pods, and marks ns for a retry when one
// could not be evicted.
func (c *Controller) evictAll(ctx context.Context, t *term, ns string, violations []Violation) {
	blocked := false
	for _, v := range violations {
		if c.evictable(v) && !c.evictPod(ctx, v) {
			blocked = true
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if blocked {
		t.blocked[ns] = true
	} else {
		delete(t.blocked, ns)
	}
}

// evictPod asks the Eviction API to evict v's pod, so that its
// PodDisruptionBudget holds, and reports whether there is nothing left to
// do: evicted, or already gone. The UID precondition keeps a new pod of the
// same name from being evicted for the old one's image.
func (c *Controller) evictPod(ctx context.Context, v Violation) bool {
	uid := types.UID(v.UID)
	// The Eviction API can hold a request for long, e.g. while no
	// disruption controller has observed the budget; the worker must not
	// wait with it.
	ectx, cancel := context.WithTimeout(ctx, evictTimeout)
	defer cancel()
	err := c.client.PolicyV1().Evictions(v.Namespace).Evict(ectx, &policyv1.Eviction{
		ObjectMeta:    metav1.ObjectMeta{Namespace: v.Namespace, Name: v.Pod},
		DeleteOptions: &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}},
	})
	attrs := violationAttrs(v)
	switch {
	case err == nil:
		ref := c.workload(ctx, v.Owner)
		c.recorder.Event(&ref, corev1.EventTypeWarning, EventEvicted, truncate(
			fmt.Sprintf("evicted pod %s: it runs %s, which stage %q would not admit now (%s): %s", v.Pod, v.Image, v.Stage, v.Reason, v.Message), maxEventMessage))
		c.log.Warn("inventory: evicted a running pod that violates its stage", attrs...)
		c.metrics.evictions.WithLabelValues(v.Stage, "evicted").Inc()
		return true
	case apierrors.IsNotFound(err), apierrors.IsConflict(err):
		// Gone, or replaced by a pod of the same name that is
		// evaluated on its own.
		return true
	case apierrors.IsTooManyRequests(err), errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
		ref := c.workload(ctx, v.Owner)
		c.recorder.Event(&ref, corev1.EventTypeWarning, EventEvictionBlocked, truncate(
			fmt.Sprintf("pod %s runs %s, which stage %q would not admit now (%s), but its eviction was refused (%v); retrying every %s",
				v.Pod, v.Image, v.Stage, v.Reason, err, c.retry), maxEventMessage))
		c.log.Warn("inventory: eviction blocked, by a PodDisruptionBudget; retrying", append(attrs, "err", err, "retry", c.retry)...)
		c.metrics.evictions.WithLabelValues(v.Stage, "blocked").Inc()
		return false
	default:
		c.log.Error("inventory: eviction failed; retrying", append(attrs, "err", err, "retry", c.retry)...)
		c.metrics.evictions.WithLabelValues(v.Stage, "failed").Inc()
		return false
	}
}
