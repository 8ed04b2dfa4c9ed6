package inventory

import (
	"context"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/stagegate/stagegate/internal/admission"
	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/test/e2e/framework"
)

var (
	ociRepositories = schema.GroupVersionResource{Group: "source.toolkit.fluxcd.io", Version: "v1", Resource: "ocirepositories"}
	applications    = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "applications"}
)

// installGitOpsCRDs installs the real Flux OCIRepository and Argo CD
// Application CRDs (hack/tools.sh crds takes them from their Go modules).
func (e *env) installGitOpsCRDs(t *testing.T) {
	t.Helper()
	dir := framework.Tool(t, "crds", "crds")
	if _, err := envtest.InstallCRDs(e.api.Config, envtest.CRDInstallOptions{
		Paths: []string{
			filepath.Join(dir, "source.toolkit.fluxcd.io_ocirepositories.yaml"),
			filepath.Join(dir, "application-crd.yaml"),
		},
		ErrorIfPathMissing: true,
	}); err != nil {
		t.Fatalf("install the GitOps CRDs: %v", err)
	}
}

func ociRepositoryObject(ns, name, digest string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "OCIRepository",
		"metadata": map[string]any{"name": name, "namespace": ns},
		"spec":     map[string]any{"url": "oci://" + repo, "interval": "5m", "ref": map[string]any{"digest": digest}},
	}}
}

func applicationObject(ns, name, stage, digest string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
		"metadata": map[string]any{"name": name, "namespace": ns, "labels": map[string]any{admission.StageLabel: stage}},
		"spec": map[string]any{
			"project":     "default",
			"destination": map[string]any{"server": "https://kubernetes.default.svc", "namespace": "shop"},
			"sources": []any{
				map[string]any{"repoURL": "https://github.com/example/shop.git", "targetRevision": "main", "path": "."},
				map[string]any{"repoURL": "oci://" + repo, "targetRevision": digest, "path": "."},
			},
		},
	}}
}

func (e *env) create(t *testing.T, gvr schema.GroupVersionResource, u *unstructured.Unstructured) {
	t.Helper()
	if _, err := e.dyn.Resource(gvr).Namespace(u.GetNamespace()).Create(t.Context(), u, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create %s %s/%s: %v", u.GetKind(), u.GetNamespace(), u.GetName(), err)
	}
}

// TestGitOpsObjects (issue 18): Flux OCIRepositories and Argo CD
// Applications that deploy an OCI artifact are inventoried and judged as
// pods are, once their CRDs are served: reported in their namespace's
// PolicyReport, named where their digest runs, re-checked on a revocation,
// and cleared by a promotion. Before the CRDs exist, pods are watched all
// the same.
func TestGitOpsObjects(t *testing.T) {
	e := newEnv(t)
	e.appendEntry(t, ledger.KindPromotion, digestA, "test", "")
	e.appendEntry(t, ledger.KindPromotion, digestB, "test", "")
	e.namespace(t, "flux", "test")
	e.namespace(t, "argocd", "") // Applications carry their stage themselves
	e.pod(t, "flux", "cfg", image(digestA), nil)
	e.start(t)

	t.Run("without the CRDs, pods are watched", func(t *testing.T) {
		e.waitReport(t, "flux", report{pass: 1})
	})

	e.installGitOpsCRDs(t)
	// A pod and an OCIRepository of the same name are two.
	e.create(t, ociRepositories, ociRepositoryObject("flux", "cfg", digestA))
	e.create(t, ociRepositories, ociRepositoryObject("flux", "other", digestB))
	e.create(t, applications, applicationObject("argocd", "shop", "test", digestC))

	t.Run("a CRD installed later is watched from the next sweep", func(t *testing.T) {
		err := wait.PollUntilContextTimeout(t.Context(), 10*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
			return e.clock.Waiters() >= 2, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		e.clock.Step(time.Hour)
		e.waitReport(t, "flux", report{pass: 3})
		e.waitReport(t, "argocd", report{fail: 1, results: []result{
			{pod: "shop", kind: "Application", reason: "not promoted", digest: digestC}}})
		e.waitAnswering(t)
		pods, total, err := e.ctrl.Running([]string{digestA}, "", 10)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := runningString(pods, total), "flux/cfg OCIRepository/cfg test [cfg]; flux/cfg Pod/cfg test [app]; total=2"; got != want {
			t.Errorf("Running(A) = %s\nwant %s", got, want)
		}
		if pods[0].Kind != "OCIRepository" || pods[1].Kind != "Pod" {
			t.Errorf("Running(A) kinds %q, %q; want OCIRepository, Pod", pods[0].Kind, pods[1].Kind)
		}
		e.waitEvent(t, "argocd", "Application", "shop")
	})

	revocation := e.appendEntry(t, ledger.KindRevocation, digestA, "test", "CVE-2026-0018")
	e.ctrl.Invalidate(digestA)
	idx := fmt.Sprint(revocation)

	t.Run("a revocation reaches the objects", func(t *testing.T) {
		e.waitReport(t, "flux", report{pass: 1, fail: 2, results: []result{
			{pod: "cfg", kind: "OCIRepository", reason: "revoked", digest: digestA, ledgerIndex: idx},
			{pod: "cfg", reason: "revoked", digest: digestA, ledgerIndex: idx},
		}})
		if got := e.gauge(t, "stagegate_running_violations", map[string]string{"namespace": "flux", "stage": "test", "reason": "revoked"}); got != 2 {
			t.Errorf("revoked gauge of flux = %v, want 2", got)
		}
		e.waitEvent(t, "flux", "OCIRepository", "cfg")
		// One per page: the pod and the object of the same name are
		// both listed.
		e.waitViolations(t, ViolationQuery{Namespace: "flux", Limit: 1}, "flux/cfg revoked; next=flux/OCIRepository/cfg")
		e.waitViolations(t, ViolationQuery{Namespace: "flux", Limit: 1, After: "flux/OCIRepository/cfg"}, "flux/cfg revoked; next=")
		vs, _, err := e.ctrl.Violations(ViolationQuery{Namespace: "flux", Limit: 10})
		if err != nil || len(vs) != 2 || vs[0].Kind != "OCIRepository" || vs[0].APIVersion != "source.toolkit.fluxcd.io/v1" || vs[1].Kind != "Pod" {
			t.Errorf("Violations of flux = %+v, %v; want the OCIRepository, then the pod", vs, err)
		}
	})

	e.appendEntry(t, ledger.KindPromotion, digestA, "test", "")
	e.ctrl.Invalidate(digestA)

	t.Run("promoting again clears them", func(t *testing.T) {
		e.waitReport(t, "flux", report{pass: 3})
		if _, err := e.dyn.Resource(ociRepositories).Namespace("flux").Get(t.Context(), "cfg", metav1.GetOptions{}); err != nil {
			t.Errorf("the OCIRepository is gone: %v", err)
		}
	})

	t.Run("a changed spec is re-checked at once", func(t *testing.T) {
		patch := fmt.Sprintf(`{"spec":{"ref":{"digest":%q}}}`, digestC)
		if _, err := e.dyn.Resource(ociRepositories).Namespace("flux").Patch(t.Context(), "other", "application/merge-patch+json", []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		e.waitReport(t, "flux", report{pass: 2, fail: 1, results: []result{
			{pod: "other", kind: "OCIRepository", reason: "not promoted", digest: digestC}}})
	})
}

// TestStripObject: what the GitOps informers keep reads as the whole
// object does to admission, and drops what admission does not read.
func TestStripObject(t *testing.T) {
	big := strings.Repeat("x", 10000)
	tests := map[string]struct {
		kind GitOpsKind
		obj  map[string]any
	}{
		"oci repository": {kind: GitOpsKinds[0], obj: map[string]any{
			"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "OCIRepository",
			"metadata": map[string]any{"name": "cfg", "namespace": "flux", "uid": "u1", "resourceVersion": "7",
				"labels":        map[string]any{admission.StageLabel: "prod", "team": big},
				"annotations":   map[string]any{"kubectl.kubernetes.io/last-applied-configuration": big},
				"managedFields": []any{map[string]any{"manager": big}}},
			"spec":   map[string]any{"url": "oci://" + repo, "interval": "5m", "ref": map[string]any{"tag": "v1"}},
			"status": map[string]any{"artifact": map[string]any{"metadata": map[string]any{"a": big}}},
		}},
		"application": {kind: GitOpsKinds[1], obj: map[string]any{
			"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
			"metadata": map[string]any{"name": "shop", "namespace": "argocd", "uid": "u2",
				"annotations": map[string]any{admission.BreakGlassAnnotation: "INC-1"}},
			"spec": map[string]any{
				"source": map[string]any{"repoURL": "oci://" + repo, "targetRevision": digestA, "helm": map[string]any{"values": big}},
				"sources": []any{
					map[string]any{"repoURL": "https://git.example/shop.git", "targetRevision": "main", "path": "."},
					map[string]any{"repoURL": "OCI://" + repo, "targetRevision": digestB, "helm": map[string]any{"values": big}},
				},
			},
			"status": map[string]any{"resources": []any{map[string]any{"name": big}}},
		}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			full := &unstructured.Unstructured{Object: tt.obj}
			before, _ := full.MarshalJSON()
			got, err := tt.kind.stripObject(full.DeepCopy())
			if err != nil {
				t.Fatal(err)
			}
			stripped := got.(*unstructured.Unstructured)
			after, _ := stripped.MarshalJSON()
			if len(after) > 1000 {
				t.Errorf("stripped object is %d bytes (of %d): %s", len(after), len(before), after)
			}
			wantRefs, err := admission.ArtifactReferences(tt.kind.Group, tt.kind.Kind, before)
			if err != nil {
				t.Fatal(err)
			}
			gotRefs, err := admission.ArtifactReferences(tt.kind.Group, tt.kind.Kind, after)
			if err != nil {
				t.Fatal(err)
			}
			if len(wantRefs) == 0 || !reflect.DeepEqual(gotRefs, wantRefs) {
				t.Errorf("references of the stripped object %v, of the whole %v", gotRefs, wantRefs)
			}
			if stripped.GetName() != full.GetName() || stripped.GetUID() != full.GetUID() ||
				stripped.GetLabels()[admission.StageLabel] != full.GetLabels()[admission.StageLabel] ||
				stripped.GetAnnotations()[admission.BreakGlassAnnotation] != full.GetAnnotations()[admission.BreakGlassAnnotation] {
				t.Errorf("stripped metadata %v, want name, uid, stage and break-glass of %v", stripped.Object["metadata"], full.Object["metadata"])
			}
		})
	}
}

// TestGitOpsNeverEvicted: eviction is for pods; a GitOps object of an
// evicting stage is reported only.
func TestGitOpsNeverEvicted(t *testing.T) {
	c := &Controller{evict: map[string]bool{"prod": true}}
	tests := map[string]struct {
		v    Violation
		want bool
	}{
		"pod":            {v: Violation{Kind: "Pod", Stage: "prod", Reason: ReasonRevoked}, want: true},
		"oci repository": {v: Violation{Kind: "OCIRepository", Stage: "prod", Reason: ReasonRevoked}},
		"application":    {v: Violation{Kind: "Application", Stage: "prod", Reason: ReasonNotPromoted}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if got := c.evictable(tt.v); got != tt.want {
				t.Errorf("evictable = %v, want %v", got, tt.want)
			}
		})
	}
}
