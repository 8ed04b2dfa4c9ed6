package inventory

import (
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// RunningPod is a running pod that runs a digest asked for, or a GitOps
// object that deploys it.
type RunningPod struct {
	Namespace, Name string
	// Kind is "Pod", or the GitOps object's kind (OCIRepository,
	// Application).
	Kind string
	// Owner is the pod's controller (a ReplicaSet, a StatefulSet, a
	// Job), or the pod itself.
	Owner corev1.ObjectReference
	// Stage is the stage the pod runs in; empty in a namespace that has
	// none (such pods are known by the digests their references name).
	Stage string
	// Containers are the containers (or image volumes) that run it; for
	// a GitOps object, its sources that deploy it.
	Containers []string
}

// Running returns the running pods that run any of digests in stage (in any
// stage when stage is empty), by namespace and name, at most limit of them,
// and how many there are. It returns ErrNotSynced until the first
// evaluation of every namespace is done, and once Run has returned: an
// answer from a cache that is not whole would say "runs nowhere" wrongly.
func (c *Controller) Running(digests []string, stage string, limit int) ([]RunningPod, int, error) {
	if !c.answering.Load() {
		return nil, 0, ErrNotSynced
	}
	limit = max(limit, 0)
	want := make(map[string]bool, len(digests))
	for _, d := range digests {
		want[d] = true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	nsSet := map[string]bool{}
	for _, d := range digests {
		for ns := range c.byDigest[d] {
			nsSet[ns] = true
		}
	}
	nss := make([]string, 0, len(nsSet))
	for ns := range nsSet {
		nss = append(nss, ns)
	}
	slices.Sort(nss)
	var out []RunningPod
	total := 0
	for _, ns := range nss {
		st := c.state[ns]
		if st == nil {
			continue
		}
		for _, p := range st.pods {
			if stage != "" && p.stage != stage {
				continue
			}
			var names []string
			for _, ct := range p.containers {
				// Where it runs, not where it would run after a
				// restart: a moved tag does not move the pod.
				if want[ct.runs()] {
					names = append(names, ct.Name)
				}
			}
			if len(names) == 0 {
				continue
			}
			total++
			if len(out) < limit {
				out = append(out, RunningPod{Namespace: ns, Name: p.name, Kind: p.kind, Owner: p.owner, Stage: p.stage, Containers: names})
			}
		}
	}
	return out, total, nil
}

// ViolationQuery selects a page of violations.
type ViolationQuery struct {
	// Stage and Namespace, when set, keep only the violations of that
	// stage, or of that namespace.
	Stage, Namespace string
	// After is the key ("namespace/pod", "namespace/Kind/name" for a
	// GitOps object) of the last violation of the page before, "" for the
	// first page.
	After string
	// Limit is the most violations a page holds.
	Limit int
}

// Violations returns a page of the running pods that violate now, by
// namespace and pod, and the After of the next page ("" on the last). It
// returns ErrNotSynced as Running does.
func (c *Controller) Violations(q ViolationQuery) ([]Violation, string, error) {
	if !c.answering.Load() {
		return nil, "", ErrNotSynced
	}
	q.Limit = max(q.Limit, 1)
	afterNS, afterPod, _ := strings.Cut(q.After, "/")
	c.mu.Lock()
	defer c.mu.Unlock()
	var nss []string
	if q.Namespace != "" {
		if c.state[q.Namespace] != nil {
			nss = []string{q.Namespace}
		}
	} else {
		for ns, st := range c.state {
			if len(st.violations) > 0 && ns >= afterNS {
				nss = append(nss, ns)
			}
		}
		slices.Sort(nss)
	}
	var out []Violation
	for _, ns := range nss {
		if q.After != "" && ns < afterNS {
			continue
		}
		for _, v := range c.state[ns].violations {
			if q.After != "" && ns == afterNS && v.key() <= afterPod {
				continue
			}
			if q.Stage != "" && v.Stage != q.Stage {
				continue
			}
			if len(out) == q.Limit {
				last := out[len(out)-1]
				return out, last.Namespace + "/" + last.key(), nil
			}
			out = append(out, v)
		}
	}
	return out, "", nil
}
