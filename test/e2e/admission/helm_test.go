package admission

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/stagegate/stagegate/test/e2e/framework"
)

// Flux's Helm kinds, with their real CRDs (hack/tools.sh crds: source
// -controller's, and helm-controller's generated from its API module).
var (
	helmRepositoryGVR = schema.GroupVersionResource{Group: "source.toolkit.fluxcd.io", Version: "v1", Resource: "helmrepositories"}
	helmChartGVR      = schema.GroupVersionResource{Group: "source.toolkit.fluxcd.io", Version: "v1", Resource: "helmcharts"}
	helmReleaseGVR    = schema.GroupVersionResource{Group: "helm.toolkit.fluxcd.io", Version: "v2", Resource: "helmreleases"}
)

// The media types `helm push` gives a chart.
const (
	helmConfigType  types.MediaType = "application/vnd.cncf.helm.config.v1+json"
	helmContentType types.MediaType = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
)

// pushChart pushes a Helm chart as `helm push` lays it out (a chart
// archive, and Chart.yaml's fields as the config) to repo:version and
// returns its digest-pinned reference. note makes charts of the same
// version differ, so that a tag can be moved.
func (s *suite) pushChart(t *testing.T, repo, chart, version, note string) string {
	t.Helper()
	var tgz bytes.Buffer
	zw := gzip.NewWriter(&tgz)
	tw := tar.NewWriter(zw)
	chartYAML := []byte("apiVersion: v2\nname: " + chart + "\nversion: " + version + "\ndescription: " + note + "\n")
	if err := tw.WriteHeader(&tar.Header{Name: chart + "/Chart.yaml", Mode: 0o644, Size: int64(len(chartYAML))}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(chartYAML); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	cfgJSON, err := json.Marshal(map[string]string{"apiVersion": "v2", "name": chart, "version": version, "description": note})
	if err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag(s.reg.Repo(repo+"/"+chart+":"+strings.ReplaceAll(version, "+", "_")), name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	opts := []remote.Option{remote.WithTransport(s.reg.Transport()), remote.WithAuth(s.reg.Authenticator())}
	var descs []v1.Descriptor
	for _, l := range []v1.Layer{static.NewLayer(cfgJSON, helmConfigType), static.NewLayer(tgz.Bytes(), helmContentType)} {
		if err := remote.WriteLayer(tag.Context(), l, opts...); err != nil {
			t.Fatalf("push chart %s: %v", tag, err)
		}
		d, _ := l.Digest()
		n, _ := l.Size()
		mt, _ := l.MediaType()
		descs = append(descs, v1.Descriptor{MediaType: mt, Digest: d, Size: n})
	}
	m, err := json.Marshal(v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1, Config: descs[0], Layers: descs[1:]})
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Put(tag, chartManifest(m), opts...); err != nil {
		t.Fatalf("push chart manifest %s: %v", tag, err)
	}
	h, _, err := v1.SHA256(bytes.NewReader(m))
	if err != nil {
		t.Fatal(err)
	}
	return tag.Context().Digest(h.String()).String()
}

type chartManifest []byte

func (m chartManifest) RawManifest() ([]byte, error)        { return m, nil }
func (m chartManifest) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }

func helmRepository(ns, name, url, typ string) *unstructured.Unstructured {
	spec := map[string]any{"url": url, "interval": "5m"}
	if typ != "" {
		spec["type"] = typ
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "HelmRepository",
		"metadata": map[string]any{"name": name, "namespace": ns},
		"spec":     spec,
	}}
}

func helmChart(ns, name, repo, chart, version string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "HelmChart",
		"metadata": map[string]any{"name": name, "namespace": ns},
		"spec": map[string]any{"chart": chart, "version": version, "interval": "5m",
			"sourceRef": map[string]any{"kind": "HelmRepository", "name": repo}},
	}}
}

func helmRelease(ns, name string, spec map[string]any) *unstructured.Unstructured {
	spec["interval"] = "5m"
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease",
		"metadata": map[string]any{"name": name, "namespace": ns},
		"spec":     spec,
	}}
}

// createStored creates u for real (not a dry run), so that serve's
// informers see it. What is reviewed right after may not be in their cache
// yet: serve then asks the API server, as it must for a HelmRepository and
// HelmChart applied together.
func (s *suite) createStored(t testing.TB, gvr schema.GroupVersionResource, u *unstructured.Unstructured) {
	t.Helper()
	if _, err := s.dynamic(t).Resource(gvr).Namespace(u.GetNamespace()).Create(t.Context(), u, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create %s %s/%s: %v", u.GetKind(), u.GetNamespace(), u.GetName(), err)
	}
}

// testHelm: Flux HelmCharts and HelmReleases that deploy a chart from an
// OCI Helm repository are checked like pods. A chart is pushed as helm
// push lays it out and promoted through serve by digest; its exact
// version is a tag, resolved and trusted only where the stage allows tags;
// a version that is not promoted, a range, a tag that moved, an HTTPS
// repository and a missing one are all refused, naming the object, and
// nothing refused is stored.
func (s *suite) testHelm(t *testing.T) {
	const chartsRepo = "e2e/charts"
	promoted := s.pushChart(t, chartsRepo, "podinfo", "6.5.0", "promoted")
	unpromoted := s.pushChart(t, chartsRepo, "podinfo", "6.6.0", "never promoted")
	s.promote(t, promoted, toProd...)
	// Promoted by its tag, which is then moved to another chart: the
	// promotion holds the digest the tag had, and the moved tag is not
	// trusted for it.
	s.pushChart(t, chartsRepo, "podinfo", "7.0.0", "promoted, then the tag moves")
	s.promote(t, s.reg.Repo(chartsRepo+"/podinfo:7.0.0"), toProd...)
	moved := s.pushChart(t, chartsRepo, "podinfo", "7.0.0", "what the tag points to now")
	digestOf := func(ref string) string { _, d, _ := strings.Cut(ref, "@"); return d }

	// Tags are allowed in stage, not in prod (the last stage).
	stg := s.namespace(t, "stage-helm", "stage")
	prod := s.namespace(t, "prod-helm", "prod")
	dev := s.namespace(t, "helm-sources", "")
	for _, ns := range []string{stg, prod} {
		// A HelmRepository names no artifact: it is admitted as it is.
		s.createStored(t, helmRepositoryGVR, helmRepository(ns, "charts", "oci://"+s.reg.Repo(chartsRepo), "oci"))
		s.createStored(t, helmRepositoryGVR, helmRepository(ns, "public", "https://charts.example.com", ""))
	}
	// An OCIRepository where nothing is checked, holding the unpromoted
	// chart: a HelmRelease in prod may not reach it across namespaces.
	s.createStored(t, ociRepositoryGVR, ociRepository(dev, "podinfo-dev", s.reg.Repo(chartsRepo+"/podinfo"), map[string]any{"digest": digestOf(unpromoted)}))
	s.createStored(t, ociRepositoryGVR, ociRepository(prod, "podinfo", s.reg.Repo(chartsRepo+"/podinfo"), map[string]any{"digest": digestOf(promoted)}))

	chartRef := func(ref string) string { return s.reg.Repo(chartsRepo + "/podinfo:" + ref) }
	fromRepo := func(repo, version string) map[string]any {
		return map[string]any{"chart": map[string]any{"spec": map[string]any{"chart": "podinfo", "version": version,
			"sourceRef": map[string]any{"kind": "HelmRepository", "name": repo}}}}
	}
	tests := map[string]struct {
		gvr  schema.GroupVersionResource
		obj  *unstructured.Unstructured
		deny []string // nil: created
		bad  []string // refused as unreadable, with these words
	}{
		"helm chart at a promoted version, tags allowed": {
			gvr: helmChartGVR, obj: helmChart(stg, "podinfo", "charts", "podinfo", "6.5.0"),
		},
		"helm chart at an unpromoted version": {
			gvr: helmChartGVR, obj: helmChart(stg, "podinfo-next", "charts", "podinfo", "6.6.0"),
			deny: []string{`stage-helm/HelmChart/podinfo-next`, `helmChart "podinfo-next"`, chartRef("6.6.0"), digestOf(unpromoted), `is not promoted to stage "stage"`},
		},
		"helm chart whose tag moved": {
			gvr: helmChartGVR, obj: helmChart(stg, "podinfo-moved", "charts", "podinfo", "7.0.0"),
			deny: []string{`helmChart "podinfo-moved"`, chartRef("7.0.0"), digestOf(moved), `is not promoted to stage "stage"`},
		},
		"helm chart by tag in prod": {
			gvr: helmChartGVR, obj: helmChart(prod, "podinfo", "charts", "podinfo", "6.5.0"),
			deny: []string{`prod-helm/HelmChart/podinfo`, `helmChart "podinfo"`, "referenced by tag", `stage "prod"`},
		},
		"helm chart semver range": {
			gvr: helmChartGVR, obj: helmChart(stg, "podinfo-range", "charts", "podinfo", ">=6.0.0"),
			bad: []string{`stage-helm/HelmChart/podinfo-range`, `spec.version ">=6.0.0" is a range`, "pin an exact version, or use an OCIRepository pinned by digest with chartRef"},
		},
		"helm chart from an https repository": {
			gvr: helmChartGVR, obj: helmChart(stg, "podinfo-https", "public", "podinfo", "6.5.0"),
			deny: []string{`helmChart "podinfo-https"`, `HelmRepository "stage-helm/public"`, "is not an OCI registry"},
		},
		"helm chart from a missing repository": {
			gvr: helmChartGVR, obj: helmChart(stg, "podinfo-lost", "nowhere", "podinfo", "6.5.0"),
			deny: []string{`helmChart "podinfo-lost"`, `HelmRepository "stage-helm/nowhere" is not found`},
		},
		"helm release chart template at a promoted version": {
			gvr: helmReleaseGVR, obj: helmRelease(stg, "web", fromRepo("charts", "6.5.0")),
		},
		"helm release chart template at an unpromoted version": {
			gvr: helmReleaseGVR, obj: helmRelease(stg, "web-next", fromRepo("charts", "6.6.0")),
			deny: []string{`stage-helm/HelmRelease/web-next`, `helmRelease "web-next"`, digestOf(unpromoted), `is not promoted to stage "stage"`},
		},
		"helm release chart template range": {
			gvr: helmReleaseGVR, obj: helmRelease(stg, "web-range", fromRepo("charts", "6.x")),
			bad: []string{`spec.chart.spec.version "6.x" is a range`, "pin an exact version"},
		},
		"helm release chartRef to a promoted oci repository": {
			gvr: helmReleaseGVR, obj: helmRelease(prod, "web", map[string]any{"chartRef": map[string]any{"kind": "OCIRepository", "name": "podinfo"}}),
		},
		"helm release chartRef across namespaces to an unpromoted chart": {
			gvr: helmReleaseGVR, obj: helmRelease(prod, "web-dev", map[string]any{"chartRef": map[string]any{"kind": "OCIRepository", "name": "podinfo-dev", "namespace": dev}}),
			deny: []string{`prod-helm/HelmRelease/web-dev`, `helmRelease "web-dev"`, digestOf(unpromoted), `is not promoted to stage "prod"`},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			// Stored for real, so that a refusal is seen to store nothing.
			_, err := s.dynamic(t).Resource(tc.gvr).Namespace(tc.obj.GetNamespace()).Create(t.Context(), tc.obj, metav1.CreateOptions{})
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
			_, err = s.dynamic(t).Resource(tc.gvr).Namespace(tc.obj.GetNamespace()).Get(t.Context(), tc.obj.GetName(), metav1.GetOptions{})
			if stored := err == nil; stored != (tc.deny == nil && tc.bad == nil) || (err != nil && !apierrors.IsNotFound(err)) {
				t.Errorf("%s stored = %v (err %v)", tc.obj.GetName(), stored, err)
			}
		})
	}
}
