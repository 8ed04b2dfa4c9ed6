package inventory

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
)

// nsState is what the last evaluation of a namespace found: the answers
// come from it, so that a question costs no review.
type nsState struct {
	// pods are the running pods whose images are known, by name.
	pods []runningPod
	// violations are sorted by pod name.
	violations []Violation
}

// runningPod is a running pod, or a GitOps object, as the answers name it.
type runningPod struct {
	name       string
	kind       string
	owner      corev1.ObjectReference
	stage      string
	containers []Container
}

// key orders a namespace's pods and objects: a pod by its name, an object
// by kind and name, so that a pod and an object of the same name are two.
func (p runningPod) key() string { return objectKey(p.kind, p.name) }

func objectKey(kind, name string) string {
	if kind == "" || kind == "Pod" {
		return name
	}
	return kind + "/" + name
}

// reconcile recomputes ns's violations from the caches and the ledger, and,
// while this replica leads, writes its report, gauges and Events, and
// evicts. It is idempotent.
func (c *Controller) reconcile(ctx context.Context, ns string) error {
	nsObj, err := c.namespaces.Get(ns)
	if apierrors.IsNotFound(err) {
		// Its report went with it.
		c.forget(ns)
		return nil
	}
	if err != nil {
		return fmt.Errorf("inventory: namespace %q: %w", ns, err)
	}
	objs, err := c.pods.GetIndexer().ByIndex(cache.NamespaceIndex, ns)
	if err != nil {
		return fmt.Errorf("inventory: pods of namespace %q: %w", ns, err)
	}
	var (
		violations []Violation
		digests    []string
		pods       []runningPod
		passed     int
		staged     = nsObj.Labels[stageKey] != ""
	)
	// add evaluates s in stage st; an object in no stage is known by the
	// digests its references name.
	add := func(s subject, st string) error {
		var cs []Container
		if st == "" {
			cs = s.images(nil)
		} else {
			staged = true
			v, evaluated, err := evaluate(ctx, c.reviewer, s, st)
			if err != nil {
				return err
			}
			cs = evaluated
			if v == nil {
				passed++
			} else {
				violations = append(violations, *v)
			}
		}
		// A container is known by what it runs or what its tag names
		// now; a revocation of either re-checks it.
		known := slices.DeleteFunc(cs, func(c Container) bool { return c.runs() == "" })
		for _, k := range known {
			for _, d := range []string{k.Digest, k.Running} {
				if d != "" {
					digests = append(digests, d)
				}
			}
		}
		if len(known) > 0 {
			pods = append(pods, runningPod{name: s.name, kind: s.kind, owner: s.owner, stage: st, containers: known})
		}
		return nil
	}
	for _, obj := range objs {
		p, ok := obj.(*corev1.Pod)
		if !ok || !gated(p) {
			continue
		}
		if err := add(podSubject(p), stage(p, nsObj)); err != nil {
			return err
		}
	}
	gitops, err := c.gitopsObjects(ns)
	if err != nil {
		return err
	}
	for _, u := range gitops {
		if err := add(gitopsSubject(u), objectStage(u, nsObj)); err != nil {
			return err
		}
	}
	slices.SortFunc(violations, func(a, b Violation) int { return strings.Compare(a.key(), b.key()) })
	slices.SortFunc(pods, func(a, b runningPod) int { return strings.Compare(a.key(), b.key()) })
	c.index(ns, digests)
	c.track(ns, violations)
	c.mu.Lock()
	if len(pods) == 0 && len(violations) == 0 {
		delete(c.state, ns)
	} else {
		c.state[ns] = &nsState{pods: pods, violations: violations}
	}
	c.mu.Unlock()
	c.swept(ns)
	t := c.term.Load()
	if t == nil || t.ctx.Err() != nil {
		return nil
	}
	if err := c.publish(t, ns, violations, passed, staged); err != nil && t.ctx.Err() == nil {
		return err
	}
	// A term that ended mid-write leaves the writes to the next leader,
	// whose first sweep makes them.
	return nil
}

// publish writes what the leader writes for ns: gauges, Events, evictions
// and the report. Its calls end with the term.
func (c *Controller) publish(t *term, ns string, violations []Violation, passed int, staged bool) error {
	t.writing.RLock()
	defer t.writing.RUnlock()
	ctx := t.ctx
	if ctx.Err() != nil {
		return nil
	}
	c.metrics.set(ns, violations)
	c.announce(ctx, t, ns, violations)
	c.evictAll(ctx, t, ns, violations)
	if t.noReports.Load() {
		return nil
	}
	t.mu.Lock()
	had := t.reported[ns]
	t.mu.Unlock()
	if !staged {
		if !had {
			return nil
		}
		if err := c.reports.remove(ctx, ns); err != nil {
			return err
		}
		t.setReported(ns, false)
		return nil
	}
	if err := c.reports.write(ctx, ns, violations, passed); err != nil {
		// A namespace being deleted answers NotFound too: only a list
		// that finds no resource says the CRD went.
		if apierrors.IsNotFound(err) && c.reportsGone(ctx) && t.noReports.CompareAndSwap(false, true) {
			// Said once, and checked again at each sweep.
			c.metrics.reportsWritable(false)
			c.log.Error("inventory: PolicyReports cannot be written: the CRD is gone; checking again at each sweep",
				"resource", PolicyReportResource.String(), "err", err)
		}
		if t.noReports.Load() {
			return nil
		}
		return err
	}
	t.setReported(ns, true)
	return nil
}

// index records the digests that run in ns.
func (c *Controller) index(ns string, digests []string) {
	slices.Sort(digests)
	digests = slices.Compact(digests)
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, d := range c.nsDigests[ns] {
		delete(c.byDigest[d], ns)
		if len(c.byDigest[d]) == 0 {
			delete(c.byDigest, d)
		}
	}
	if len(digests) == 0 {
		delete(c.nsDigests, ns)
		return
	}
	c.nsDigests[ns] = digests
	for _, d := range digests {
		if c.byDigest[d] == nil {
			c.byDigest[d] = map[string]struct{}{}
		}
		c.byDigest[d][ns] = struct{}{}
	}
}

// track sets each violation's Since, and remembers which pods of ns violate
// since when.
func (c *Controller) track(ns string, violations []Violation) {
	now := make(map[string]time.Time, len(violations))
	at := c.clock.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	before := c.violating[ns]
	for i, v := range violations {
		since, ok := before[v.UID]
		if !ok {
			since = at
		}
		violations[i].Since = since
		now[v.UID] = since
	}
	if len(now) == 0 {
		delete(c.violating, ns)
	} else {
		c.violating[ns] = now
	}
}

// announce emits an Event for each pod of ns that became violating in this
// term, and forgets those that no longer violate, so that violating again
// is announced again.
func (c *Controller) announce(ctx context.Context, t *term, ns string, violations []Violation) {
	var fresh []Violation
	now := make(map[string]bool, len(violations))
	t.mu.Lock()
	for _, v := range violations {
		now[v.UID] = true
		if !t.announced[ns][v.UID] {
			fresh = append(fresh, v)
		}
	}
	if len(now) == 0 {
		delete(t.announced, ns)
	} else {
		t.announced[ns] = now
	}
	t.mu.Unlock()
	for _, v := range fresh {
		ref := c.workload(ctx, v.Owner)
		msg := fmt.Sprintf("pod %s runs %s, which stage %q would not admit now (%s): %s", v.Pod, v.Image, v.Stage, v.Reason, v.Message)
		if !v.IsPod() {
			msg = fmt.Sprintf("%s %s deploys %s, which stage %q would not admit now (%s): %s", v.Kind, v.Pod, v.Image, v.Stage, v.Reason, v.Message)
		}
		c.recorder.Event(&ref, corev1.EventTypeWarning, EventViolation, truncate(msg, maxEventMessage))
		c.log.Warn("inventory: running object violates its stage", violationAttrs(v)...)
	}
}

// violationAttrs are the log attributes of v.
func violationAttrs(v Violation) []any {
	args := []any{"namespace", v.Namespace, "kind", v.Kind, "name", v.Pod, "stage", v.Stage, "image", v.Image, "digest", v.Digest, "reason", v.Reason}
	if v.HasLedgerIndex {
		args = append(args, "ledgerIndex", v.LedgerIndex)
	}
	return args
}

// maxEventMessage keeps an Event's message within what the events API
// accepts (a policy may deny with many long reasons).
const maxEventMessage = 1024

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n-len("…")], "") + "…"
}

// workload is the object people manage for a pod's owner: a ReplicaSet's
// Deployment, whose Events "kubectl describe deployment" shows, else the
// owner itself. It costs a GET, made only when a pod becomes violating.
func (c *Controller) workload(ctx context.Context, ref corev1.ObjectReference) corev1.ObjectReference {
	if ref.Kind != "ReplicaSet" || ref.APIVersion != "apps/v1" {
		return ref
	}
	rs, err := c.client.AppsV1().ReplicaSets(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
	if err != nil {
		c.log.Debug("inventory: owner of a ReplicaSet unknown; the Event goes on the ReplicaSet", "namespace", ref.Namespace, "replicaSet", ref.Name, "err", err)
		return ref
	}
	if o := metav1.GetControllerOf(rs); o != nil && o.Kind == "Deployment" && o.APIVersion == "apps/v1" {
		return corev1.ObjectReference{APIVersion: o.APIVersion, Kind: o.Kind, Namespace: ref.Namespace, Name: o.Name, UID: o.UID}
	}
	return ref
}

// forget drops a deleted namespace.
func (c *Controller) forget(ns string) {
	c.index(ns, nil)
	c.mu.Lock()
	delete(c.violating, ns)
	delete(c.state, ns)
	c.mu.Unlock()
	c.swept(ns)
	if t := c.term.Load(); t != nil {
		t.writing.RLock()
		if t.ctx.Err() == nil {
			c.metrics.set(ns, nil)
		}
		t.writing.RUnlock()
		t.mu.Lock()
		delete(t.reported, ns)
		delete(t.announced, ns)
		delete(t.blocked, ns)
		t.mu.Unlock()
	}
}

func (t *term) setReported(ns string, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if ok {
		t.reported[ns] = true
	} else {
		delete(t.reported, ns)
	}
}

// reportsGone is whether the PolicyReport resource is not served (its CRD
// was removed).
func (c *Controller) reportsGone(ctx context.Context) bool {
	_, err := c.reports.written(ctx)
	return apierrors.IsNotFound(err)
}
