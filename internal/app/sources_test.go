package app

import (
	"encoding/json"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/stagegate/stagegate/internal/admission"
	"github.com/stagegate/stagegate/internal/config"
	"github.com/stagegate/stagegate/test/e2e/framework"
)

// TestFluxSources: against a real API server with Flux's CRDs, a lookup
// is namespaced (a HelmRepository of one namespace is not found in
// another), finds objects made before and after the informers started
// (the latter from the cache or, until the watch brings them, from the
// API server), and says not found, without an error, for one that does
// not exist.
func TestFluxSources(t *testing.T) {
	api := framework.StartAPIServer(t)
	dir := framework.Tool(t, "crds", "crds")
	if _, err := envtest.InstallCRDs(api.Config, envtest.CRDInstallOptions{ErrorIfPathMissing: true, Paths: []string{
		filepath.Join(dir, "source.toolkit.fluxcd.io_helmrepositories.yaml"),
		filepath.Join(dir, "source.toolkit.fluxcd.io_helmcharts.yaml"),
		filepath.Join(dir, "source.toolkit.fluxcd.io_ocirepositories.yaml"),
	}}); err != nil {
		t.Fatalf("install Flux's CRDs: %v", err)
	}
	dyn, err := dynamic.NewForConfig(api.Config)
	if err != nil {
		t.Fatal(err)
	}
	gvr := schema.GroupVersionResource{Group: admission.FluxSourceGroup, Version: "v1", Resource: "helmrepositories"}
	create := func(ns, name, url string) {
		t.Helper()
		if _, err := api.Clientset.CoreV1().Namespaces().Get(t.Context(), ns, metav1.GetOptions{}); err != nil {
			if _, err := api.Clientset.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "HelmRepository",
			"metadata": map[string]any{"name": name, "namespace": ns},
			"spec":     map[string]any{"type": "oci", "url": url, "interval": "5m"},
		}}
		if _, err := dyn.Resource(gvr).Namespace(ns).Create(t.Context(), u, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	create("shop", "charts", "oci://registry.example.com/charts")

	s, err := buildSources(config.AdmissionSources{Enabled: true, Kubeconfig: api.KubeconfigPath})
	if err != nil {
		t.Fatal(err)
	}
	s.start()
	t.Cleanup(s.stop)
	create("shop", "late", "oci://registry.example.com/late")
	fns := make([]cache.InformerSynced, 0, len(s.synced))
	for _, f := range s.synced {
		fns = append(fns, f)
	}
	if !cache.WaitForCacheSync(t.Context().Done(), fns...) {
		t.Fatal("informers never synced")
	}

	tests := map[string]struct {
		kind, ns, name string
		wantURL        string // "" for not found
		wantErr        bool
	}{
		"made before start":          {kind: admission.KindHelmRepository, ns: "shop", name: "charts", wantURL: "oci://registry.example.com/charts"},
		"made after start":           {kind: admission.KindHelmRepository, ns: "shop", name: "late", wantURL: "oci://registry.example.com/late"},
		"another namespace":          {kind: admission.KindHelmRepository, ns: "other", name: "charts"},
		"does not exist":             {kind: admission.KindHelmRepository, ns: "shop", name: "nowhere"},
		"kind of another controller": {kind: "GitRepository", ns: "shop", name: "charts", wantErr: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			raw, found, err := s.Source(tc.kind, tc.ns, tc.name)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want an error: %v", err, tc.wantErr)
			}
			if found != (tc.wantURL != "") {
				t.Fatalf("found = %v, want %v", found, tc.wantURL != "")
			}
			if !found {
				return
			}
			var o struct {
				Spec struct{ URL string } `json:"spec"`
			}
			if err := json.Unmarshal(raw, &o); err != nil || o.Spec.URL != tc.wantURL {
				t.Fatalf("object %s (%v), want url %s", raw, err, tc.wantURL)
			}
		})
	}
}
