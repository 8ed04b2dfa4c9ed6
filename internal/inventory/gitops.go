package inventory

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"

	"github.com/stagegate/stagegate/internal/admission"
)

// GitOpsKind is a GitOps kind whose objects make a controller deploy an
// OCI artifact: continuous validation checks them as admission does, when
// their CRD is installed. They are reported, never evicted: deleting one
// would not stop what its controller already applied, and would only make
// the GitOps tool fight stagegate.
type GitOpsKind struct {
	Group, Kind, Resource string
	// Versions are the versions the inventory can watch, preferred first;
	// it watches the first the API server serves.
	Versions []string
	// spec keeps of the object's spec what admission reads.
	spec func(map[string]any) map[string]any
}

// GitOpsKinds are Flux's OCIRepository and Argo CD's Application, the kinds
// admission reads an OCI artifact from (internal/admission/artifacts.go).
var GitOpsKinds = []GitOpsKind{
	{Group: "source.toolkit.fluxcd.io", Kind: "OCIRepository", Resource: "ocirepositories",
		Versions: []string{"v1", "v1beta2"}, spec: ociRepositorySpec},
	{Group: "argoproj.io", Kind: "Application", Resource: "applications",
		Versions: []string{"v1alpha1"}, spec: applicationSpec},
}

// ociRepositorySpec keeps spec.url and spec.ref, all admission reads; an
// OCIRepository's status, its larger part, goes.
func ociRepositorySpec(spec map[string]any) map[string]any {
	return pick(spec, "url", "ref")
}

// applicationSpec keeps of each source where it comes from: an
// Application's sources may carry whole Helm values files, and its status
// lists every resource it manages.
func applicationSpec(spec map[string]any) map[string]any {
	source := func(v any) any {
		m, ok := v.(map[string]any)
		if !ok {
			return v // admission refuses what it cannot read; so must the review
		}
		return pick(m, "repoURL", "targetRevision", "chart", "path")
	}
	out := map[string]any{}
	if s, ok := spec["source"]; ok {
		out["source"] = source(s)
	}
	if ss, ok := spec["sources"].([]any); ok {
		list := make([]any, len(ss))
		for i, s := range ss {
			list[i] = source(s)
		}
		out["sources"] = list
	} else if ss, ok := spec["sources"]; ok {
		out["sources"] = ss
	}
	return out
}

func pick(m map[string]any, keys ...string) map[string]any {
	out := map[string]any{}
	for _, k := range keys {
		if v, ok := m[k]; ok {
			out[k] = v
		}
	}
	return out
}

// stripObject is a GitOps informer's cache.TransformFunc: it keeps what a
// review reads and a report names.
func (k GitOpsKind) stripObject(obj any) (any, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return obj, nil
	}
	meta := map[string]any{"name": u.GetName(), "namespace": u.GetNamespace(), "uid": string(u.GetUID()),
		"resourceVersion": u.GetResourceVersion()}
	if l := keep(u.GetLabels(), admission.StageLabel); l != nil {
		meta["labels"] = map[string]any{admission.StageLabel: l[admission.StageLabel]}
	}
	if a := keep(u.GetAnnotations(), admission.BreakGlassAnnotation); a != nil {
		meta["annotations"] = map[string]any{admission.BreakGlassAnnotation: a[admission.BreakGlassAnnotation]}
	}
	if ts, ok, _ := unstructured.NestedFieldNoCopy(u.Object, "metadata", "deletionTimestamp"); ok {
		meta["deletionTimestamp"] = ts
	}
	out := map[string]any{"apiVersion": u.GetAPIVersion(), "kind": u.GetKind(), "metadata": meta}
	if spec, ok := u.Object["spec"].(map[string]any); ok {
		out["spec"] = k.spec(spec)
	}
	return &unstructured.Unstructured{Object: out}, nil
}

// gitopsSubject is the subject of a review of a GitOps object. The object
// is its own owner: people manage it, and its Events go on it.
func gitopsSubject(u *unstructured.Unstructured) subject {
	gv, _ := schema.ParseGroupVersion(u.GetAPIVersion())
	s := subject{apiVersion: u.GetAPIVersion(), kind: u.GetKind(), namespace: u.GetNamespace(), name: u.GetName(),
		uid: string(u.GetUID()), obj: u}
	s.owner = corev1.ObjectReference{APIVersion: s.apiVersion, Kind: s.kind, Namespace: s.namespace, Name: s.name, UID: u.GetUID()}
	s.images = func(learn func(container, image string) string) []Container {
		raw, err := u.MarshalJSON()
		if err != nil {
			return nil
		}
		// An object admission cannot read names no artifact; its review
		// refuses it, and says why.
		refs, _ := admission.ArtifactReferences(gv.Group, u.GetKind(), raw)
		out := make([]Container, 0, len(refs))
		for _, r := range refs {
			d := ""
			if learn != nil {
				d = learn(r.Source, r.Reference)
			}
			if d == "" {
				if i := strings.LastIndex(r.Reference, "@"); i >= 0 {
					d = r.Reference[i+1:]
				}
			}
			out = append(out, Container{Name: r.Source, Image: r.Reference, Digest: d})
		}
		return out
	}
	return s
}

// objectStage is the stage a GitOps object is checked in: its own label,
// else its namespace's, as for a pod.
func objectStage(u *unstructured.Unstructured, ns *corev1.Namespace) string {
	if v, ok := u.GetLabels()[stageKey]; ok {
		return v
	}
	if ns == nil {
		return ""
	}
	return ns.Labels[stageKey]
}

// gitopsInformer watches one GitOps kind.
type gitopsInformer struct {
	kind     GitOpsKind
	gvr      schema.GroupVersionResource
	informer cache.SharedIndexInformer
}

// watchGitOps starts an informer for each GitOps kind the API server now
// serves and none watches yet, and says once of each that it does not: a
// cluster without Flux or Argo CD is the common case, and its pods are
// watched all the same. Run calls it at its start and at each sweep, so
// that a CRD installed later is watched from the next sweep. It returns the
// informers it started.
func (c *Controller) watchGitOps(ctx context.Context) []cache.InformerSynced {
	c.gitopsMu.Lock()
	defer c.gitopsMu.Unlock()
	var started []cache.InformerSynced
	for _, k := range GitOpsKinds {
		if slices.ContainsFunc(c.gitops, func(g *gitopsInformer) bool { return g.kind.Kind == k.Kind && g.kind.Group == k.Group }) {
			continue
		}
		gvr, err := c.served(k)
		if err != nil {
			if !c.unserved[k.Kind] {
				c.log.Info("inventory: not watching a GitOps kind: its CRD is not installed, or not readable; checking again at each sweep",
					"kind", k.Kind, "group", k.Group, "err", err)
				c.unserved[k.Kind] = true
			}
			continue
		}
		inf := dynamicinformer.NewFilteredDynamicInformer(c.dyn, gvr, "", 0,
			cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc}, nil).Informer()
		if err := inf.SetTransform(k.stripObject); err != nil {
			c.log.Error("inventory: GitOps informer", "kind", k.Kind, "err", err)
			continue
		}
		if _, err := inf.AddEventHandler(handler(c.enqueue, changedObject)); err != nil {
			c.log.Error("inventory: GitOps informer", "kind", k.Kind, "err", err)
			continue
		}
		c.log.Info("inventory: watching a GitOps kind", "kind", k.Kind, "resource", gvr.String())
		delete(c.unserved, k.Kind)
		g := &gitopsInformer{kind: k, gvr: gvr, informer: inf}
		c.mu.Lock()
		c.gitops = append(c.gitops, g)
		c.mu.Unlock()
		c.informers.Go(func() { inf.RunWithContext(ctx) })
		started = append(started, inf.HasSynced)
	}
	return started
}

// served is the version of k the API server serves, found by discovery:
// an informer of a resource that is not served would list it in vain,
// and never sync.
func (c *Controller) served(k GitOpsKind) (schema.GroupVersionResource, error) {
	var last error
	for _, v := range k.Versions {
		gv := schema.GroupVersion{Group: k.Group, Version: v}
		list, err := c.client.Discovery().ServerResourcesForGroupVersion(gv.String())
		if err != nil {
			if !apierrors.IsNotFound(err) {
				last = err
			}
			continue
		}
		for _, r := range list.APIResources {
			if r.Name == k.Resource {
				return gv.WithResource(k.Resource), nil
			}
		}
	}
	if last != nil {
		return schema.GroupVersionResource{}, fmt.Errorf("inventory: discover %s: %w", k.Resource, last)
	}
	return schema.GroupVersionResource{}, fmt.Errorf("inventory: %s.%s is not served (versions %v)", k.Resource, k.Group, k.Versions)
}

// changedObject is whether an update of a (stripped) object may change its
// answer.
func changedObject(old, cur *unstructured.Unstructured) bool {
	o, n := old.DeepCopy(), cur.DeepCopy()
	o.SetResourceVersion("")
	n.SetResourceVersion("")
	return !equality.Semantic.DeepEqual(o.Object, n.Object)
}

// gitopsObjects is the GitOps objects of ns that the watched kinds cache.
func (c *Controller) gitopsObjects(ns string) ([]*unstructured.Unstructured, error) {
	c.mu.Lock()
	infs := slices.Clone(c.gitops)
	c.mu.Unlock()
	var out []*unstructured.Unstructured
	for _, g := range infs {
		objs, err := g.informer.GetIndexer().ByIndex(cache.NamespaceIndex, ns)
		if err != nil {
			return nil, fmt.Errorf("inventory: %s of namespace %q: %w", g.gvr.Resource, ns, err)
		}
		for _, o := range objs {
			if u, ok := o.(*unstructured.Unstructured); ok && u.GetDeletionTimestamp() == nil {
				out = append(out, u)
			}
		}
	}
	slices.SortFunc(out, func(a, b *unstructured.Unstructured) int {
		return strings.Compare(a.GetKind()+"/"+a.GetName(), b.GetKind()+"/"+b.GetName())
	})
	return out, nil
}
