package admission

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/stagegate/stagegate/test/e2e/framework"
)

// The GitOps kinds that deploy OCI artifacts, with the real CRDs of Flux
// and Argo CD (hack/tools.sh crds takes them from their Go modules).
var (
	ociRepositoryGVR = schema.GroupVersionResource{Group: "source.toolkit.fluxcd.io", Version: "v1", Resource: "ocirepositories"}
	applicationGVR   = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "applications"}
)

// installGitOpsCRDs creates Flux's OCIRepository, HelmRepository, HelmChart
// and HelmRelease and Argo CD's Application CRDs and waits until all are
// served.
func (s *suite) installGitOpsCRDs(t *testing.T) {
	t.Helper()
	dir := framework.Tool(t, "crds", "crds")
	for _, f := range []string{"source.toolkit.fluxcd.io_ocirepositories.yaml", "application-crd.yaml",
		"source.toolkit.fluxcd.io_helmrepositories.yaml", "source.toolkit.fluxcd.io_helmcharts.yaml", "helm.toolkit.fluxcd.io_helmreleases.yaml"} {
		// create, not apply: Argo CD's CRD is larger than the annotation
		// client-side apply would keep.
		if _, stderr, err := s.api.Kubectl(t, "create", "-f", filepath.Join(dir, f)); err != nil {
			t.Fatalf("kubectl create %s: %v\n%s", f, err, stderr)
		}
	}
	for _, crd := range []string{"crd/ocirepositories.source.toolkit.fluxcd.io", "crd/applications.argoproj.io",
		"crd/helmrepositories.source.toolkit.fluxcd.io", "crd/helmcharts.source.toolkit.fluxcd.io", "crd/helmreleases.helm.toolkit.fluxcd.io"} {
		if _, stderr, err := s.api.Kubectl(t, "wait", "--for=condition=Established", "--timeout=60s", crd); err != nil {
			t.Fatalf("%s not established: %v\n%s", crd, err, stderr)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, gvr := range []schema.GroupVersionResource{ociRepositoryGVR, applicationGVR, helmRepositoryGVR, helmChartGVR, helmReleaseGVR} {
		for {
			_, err := s.dynamic(t).Resource(gvr).Namespace("default").List(t.Context(), metav1.ListOptions{})
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s not served: %v", gvr.Resource, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

func ociRepository(ns, name, url string, ref map[string]any) *unstructured.Unstructured {
	spec := map[string]any{"url": "oci://" + url, "interval": "5m"}
	if ref != nil {
		spec["ref"] = ref
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "OCIRepository",
		"metadata": map[string]any{"name": name, "namespace": ns},
		"spec":     spec,
	}}
}

func application(ns, name, stage string, sources ...map[string]any) *unstructured.Unstructured {
	list := make([]any, len(sources))
	for i, s := range sources {
		list[i] = s
	}
	meta := map[string]any{"name": name, "namespace": ns}
	if stage != "" {
		meta["labels"] = map[string]any{stageLabel: stage}
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
		"metadata": meta,
		"spec": map[string]any{
			"project":     "default",
			"destination": map[string]any{"server": "https://kubernetes.default.svc", "namespace": "shop"},
			"sources":     list,
		},
	}}
}

// testArtifacts: an artifact that is not an image (a Flux artifact) is
// promoted by digest like an image, and the objects that make Flux or Argo
// CD deploy it are checked like pods, with the same messages: a digest not
// promoted to the stage is refused naming it, a tag is resolved and then
// refused in prod, and a range that names no one artifact is refused.
func (s *suite) testArtifacts(t *testing.T, img images) {
	promoted, unpromoted := img.artifact, img.artifactNowhere
	repo, _, _ := strings.Cut(promoted, "@")
	digestOf := func(ref string) string { _, d, _ := strings.Cut(ref, "@"); return d }

	ns := s.namespace(t, "prod-gitops", "prod")
	argocd := s.namespace(t, "argocd-e2e", "")
	tests := map[string]struct {
		gvr  schema.GroupVersionResource
		obj  *unstructured.Unstructured
		deny []string // nil: created
		bad  []string // refused as unreadable (400), with these words
	}{
		"oci repository pinned to a promoted digest": {
			gvr: ociRepositoryGVR, obj: ociRepository(ns, "cfg", repo, map[string]any{"digest": digestOf(promoted)}),
		},
		"oci repository pinned to an unpromoted digest": {
			gvr: ociRepositoryGVR, obj: ociRepository(ns, "cfg-v2", repo, map[string]any{"digest": digestOf(unpromoted)}),
			deny: []string{`prod-gitops/OCIRepository/cfg-v2`, `ociRepository "cfg-v2"`, digestOf(unpromoted), `is not promoted to stage "prod"`},
		},
		"oci repository by tag in prod": {
			gvr: ociRepositoryGVR, obj: ociRepository(ns, "cfg-tag", repo, map[string]any{"tag": "v1"}),
			deny: []string{`ociRepository "cfg-tag"`, "referenced by tag", `stage "prod"`},
		},
		"oci repository by semver range": {
			gvr: ociRepositoryGVR, obj: ociRepository(ns, "cfg-semver", repo, map[string]any{"semver": ">=1.0.0"}),
			bad: []string{"spec.ref.semver", "pin spec.ref.digest"},
		},
		"application labelled prod, oci source at a promoted digest": {
			gvr: applicationGVR, obj: application(argocd, "shop", "prod",
				map[string]any{"repoURL": "https://github.com/example/shop.git", "targetRevision": "main", "path": "."},
				map[string]any{"repoURL": "oci://" + repo, "targetRevision": digestOf(promoted), "path": "."}),
		},
		"application labelled prod, oci source at an unpromoted digest": {
			gvr: applicationGVR, obj: application(argocd, "shop-v2", "prod",
				map[string]any{"repoURL": "oci://" + repo, "targetRevision": digestOf(unpromoted), "path": "."}),
			deny: []string{`applicationSource "sources[0]"`, digestOf(unpromoted), `is not promoted to stage "prod"`},
		},
		"application in an unlabelled namespace is not checked": {
			gvr: applicationGVR, obj: application(argocd, "shop-dev", "",
				map[string]any{"repoURL": "oci://" + repo, "targetRevision": digestOf(unpromoted), "path": "."}),
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := s.createCustom(t, tc.gvr, tc.obj)
			switch {
			case tc.deny != nil:
				framework.WantDenied(t, name, err, tc.deny...)
			case tc.bad != nil:
				if err == nil || !strings.Contains(err.Error(), "denied the request") {
					t.Fatalf("err = %v, want a webhook refusal", err)
				}
				for _, w := range tc.bad {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("message %q does not contain %q", err, w)
					}
				}
			default:
				framework.WantAllowed(t, name, err)
			}
		})
	}
}
