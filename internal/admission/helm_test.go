package admission

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/policy"
)

// helmSources are the source objects of the Helm tests, in namespace
// "shop": an OCI Helm repository, an HTTPS one, a HelmChart and an
// OCIRepository.
func helmSources() objectSources {
	return objectSources{
		{KindHelmRepository, "shop", "charts"}: json.RawMessage(`{"apiVersion":"source.toolkit.fluxcd.io/v1","kind":"HelmRepository","metadata":{"name":"charts","namespace":"shop"},
			"spec":{"type":"oci","url":"oci://registry.example.com/charts/"}}`),
		{KindHelmRepository, "shop", "https"}: json.RawMessage(`{"apiVersion":"source.toolkit.fluxcd.io/v1","kind":"HelmRepository","metadata":{"name":"https","namespace":"shop"},
			"spec":{"url":"https://charts.example.com"}}`),
		{KindHelmRepository, "shop", "oci-url-default-type"}: json.RawMessage(`{"apiVersion":"source.toolkit.fluxcd.io/v1","kind":"HelmRepository","metadata":{"name":"oci-url-default-type","namespace":"shop"},
			"spec":{"url":"oci://registry.example.com/charts"}}`),
		{KindHelmChart, "shop", "podinfo"}: json.RawMessage(`{"apiVersion":"source.toolkit.fluxcd.io/v1","kind":"HelmChart","metadata":{"name":"podinfo","namespace":"shop"},
			"spec":{"chart":"podinfo","version":"6.5.0","sourceRef":{"kind":"HelmRepository","name":"charts"}}}`),
		{KindOCIRepository, "shop", "podinfo-oci"}: json.RawMessage(`{"apiVersion":"source.toolkit.fluxcd.io/v1","kind":"OCIRepository","metadata":{"name":"podinfo-oci","namespace":"shop"},
			"spec":{"url":"oci://registry.example.com/charts/podinfo","ref":{"digest":"` + digestA + `"}}}`),
		{KindOCIRepository, "shop", "ranged"}: json.RawMessage(`{"apiVersion":"source.toolkit.fluxcd.io/v1","kind":"OCIRepository","metadata":{"name":"ranged","namespace":"shop"},
			"spec":{"url":"oci://registry.example.com/charts/podinfo","ref":{"semver":"6.x"}}}`),
	}
}

// errSources cannot tell, as an informer before its first sync.
type errSources struct{}

func (errSources) Source(string, string, string) (json.RawMessage, bool, error) {
	return nil, false, errors.New("cache not synced")
}

func TestExtractHelm(t *testing.T) {
	const chartRepo = "registry.example.com/charts"
	chart := func(spec string) string {
		return `{"apiVersion":"source.toolkit.fluxcd.io/v1","kind":"HelmChart","metadata":{"name":"web","namespace":"shop"},"spec":` + spec + `}`
	}
	release := func(spec string) string {
		return `{"apiVersion":"helm.toolkit.fluxcd.io/v2","kind":"HelmRelease","metadata":{"name":"web","namespace":"shop"},"spec":` + spec + `}`
	}
	fromRepo := func(repo, version string) string {
		return `{"chart":"podinfo","version":"` + version + `","sourceRef":{"kind":"HelmRepository","name":"` + repo + `"}}`
	}
	tests := map[string]struct {
		obj     string
		sources Sources // default helmSources()
		want    []containerImage
		wantErr string // ErrUnreadable with this text
		errWith string // one image whose Err holds this text
	}{
		"helm chart from an oci repository": {
			obj:  chart(fromRepo("charts", "6.5.0")),
			want: []containerImage{{Container: "web", Type: typeHelmChart, Image: chartRepo + "/podinfo:6.5.0", Path: "/spec/version"}},
		},
		"helm chart with build metadata is tagged with an underscore": {
			obj:  chart(fromRepo("charts", "6.5.0-rc.1+build.7")),
			want: []containerImage{{Container: "web", Type: typeHelmChart, Image: chartRepo + "/podinfo:6.5.0-rc.1_build.7", Path: "/spec/version"}},
		},
		"helm chart semver range is refused": {
			obj: chart(fromRepo("charts", ">=6.0.0")), wantErr: `spec.version ">=6.0.0" is a range`,
		},
		"helm chart short version is a range": {
			obj: chart(fromRepo("charts", "6.5")), wantErr: pinAdvice,
		},
		"helm chart without version asks for the newest": {
			obj: chart(`{"chart":"podinfo","sourceRef":{"kind":"HelmRepository","name":"charts"}}`), wantErr: "asks for the newest chart",
		},
		"helm chart range is refused even when its repository is unknown": {
			obj: chart(fromRepo("missing", "6.x")), wantErr: "is a range",
		},
		"helm chart from an https repository is refused": {
			obj: chart(fromRepo("https", "6.5.0")), errWith: `HelmRepository "shop/https" (type "", url "https://charts.example.com") is not an OCI registry`,
		},
		"helm chart from an oci url without type oci is refused": {
			obj: chart(fromRepo("oci-url-default-type", "6.5.0")), errWith: "is not an OCI registry",
		},
		"helm chart whose repository is not found": {
			obj: chart(fromRepo("missing", "6.5.0")), errWith: `HelmRepository "shop/missing" is not found`,
		},
		"helm chart whose repository cannot be looked up": {
			obj: chart(fromRepo("charts", "6.5.0")), sources: errSources{}, errWith: "cannot be looked up: cache not synced",
		},
		"helm chart without sources configured": {
			obj: chart(fromRepo("charts", "6.5.0")), sources: chainSources{}, errWith: `HelmRepository "shop/charts"`,
		},
		"helm chart sourceRef namespace is ignored, as Flux does": {
			obj:     chart(`{"chart":"podinfo","version":"6.5.0","sourceRef":{"kind":"HelmRepository","name":"charts","namespace":"other"}}`),
			want:    []containerImage{{Container: "web", Type: typeHelmChart, Image: chartRepo + "/podinfo:6.5.0", Path: "/spec/version"}},
			sources: helmSources(),
		},
		"helm chart from git is left alone": {
			obj: chart(`{"chart":"./charts/web","sourceRef":{"kind":"GitRepository","name":"shop"}}`),
		},
		"helm chart with an unknown source kind": {
			obj: chart(`{"chart":"web","version":"1.0.0","sourceRef":{"kind":"ConfigMap","name":"x"}}`), wantErr: `spec.sourceRef.kind "ConfigMap"`,
		},
		"helm chart name with a tag is refused": {
			obj: chart(`{"chart":"podinfo:evil","version":"1.0.0","sourceRef":{"kind":"HelmRepository","name":"charts"}}`), wantErr: "not a chart name",
		},
		"helm release chart template from an oci repository": {
			obj:  release(`{"chart":{"spec":` + fromRepo("charts", "6.5.0") + `}}`),
			want: []containerImage{{Container: "web", Type: typeHelmRelease, Image: chartRepo + "/podinfo:6.5.0", Path: "/spec/chart/spec/version"}},
		},
		"helm release chart template in another namespace": {
			obj:     release(`{"chart":{"spec":{"chart":"podinfo","version":"6.5.0","sourceRef":{"kind":"HelmRepository","name":"charts","namespace":"flux-system"}}}}`),
			errWith: `HelmRepository "flux-system/charts" is not found`,
		},
		"helm release chart template range is refused": {
			obj: release(`{"chart":{"spec":` + fromRepo("charts", "^6") + `}}`), wantErr: `spec.chart.spec.version "^6" is a range`,
		},
		"helm release chartRef to an oci repository": {
			obj:  release(`{"chartRef":{"kind":"OCIRepository","name":"podinfo-oci"}}`),
			want: []containerImage{{Container: "web", Type: typeHelmRelease, Image: chartRepo + "/podinfo@" + digestA, Path: "/spec/chartRef"}},
		},
		"helm release chartRef to a helm chart": {
			obj:  release(`{"chartRef":{"kind":"HelmChart","name":"podinfo","namespace":"shop"}}`),
			want: []containerImage{{Container: "web", Type: typeHelmRelease, Image: chartRepo + "/podinfo:6.5.0", Path: "/spec/chartRef"}},
		},
		"helm release chartRef across namespaces is looked up there": {
			obj:     release(`{"chartRef":{"kind":"OCIRepository","name":"podinfo-oci","namespace":"dev"}}`),
			errWith: `OCIRepository "dev/podinfo-oci" is not found`,
		},
		"helm release chartRef to a ranged oci repository": {
			obj: release(`{"chartRef":{"kind":"OCIRepository","name":"ranged"}}`), errWith: "spec.ref.semver",
		},
		"helm release chartRef of another kind": {
			obj: release(`{"chartRef":{"kind":"GitRepository","name":"x"}}`), wantErr: "neither OCIRepository nor HelmChart",
		},
		"helm release with a wrongly typed version": {
			obj: release(`{"chart":{"spec":{"chart":"podinfo","version":6,"sourceRef":{"kind":"HelmRepository","name":"charts"}}}}`), wantErr: "cannot decode",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			src := tc.sources
			if src == nil {
				src = helmSources()
			}
			w, err := extractWorkloadFrom(requestFor(t, []byte(tc.obj), admissionv1.Create, ""), nil, src)
			if tc.wantErr != "" {
				if !errors.Is(err, ErrUnreadable) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want ErrUnreadable with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.errWith != "" {
				if len(w.Images) != 1 || !strings.Contains(w.Images[0].Err, tc.errWith) {
					t.Fatalf("images = %+v, want one whose Err holds %q", w.Images, tc.errWith)
				}
				return
			}
			if !slices.Equal(w.Images, tc.want) {
				t.Fatalf("images = %+v\nwant %+v", w.Images, tc.want)
			}
		})
	}
}

// TestReviewHelm: a chart whose artifact cannot be known is refused by the
// policy, naming the object, the chart and the reason, so that warn mode
// admits it with a warning; a promoted chart is admitted.
func TestReviewHelm(t *testing.T) {
	const chartRef = "registry.example.com/charts/podinfo@" + digestA
	states := &fakeStates{states: map[[2]string]ledger.State{{digestA, "prod"}: {Promoted: true}}}
	pol := &fakePolicy{decide: func(in policy.AdmissionInput) (policy.AdmissionDecision, error) {
		var d policy.AdmissionDecision
		for _, ci := range in.Images {
			if ci.Error != "" {
				d.Deny = append(d.Deny, ci.Type+" "+ci.Container+": "+ci.Error)
			} else if !ci.State.Promoted {
				d.Deny = append(d.Deny, ci.Type+" "+ci.Container+": "+ci.Reference+" is not promoted")
			}
		}
		return d, nil
	}}
	release := func(name, ref string) []byte {
		return []byte(`{"apiVersion":"helm.toolkit.fluxcd.io/v2","kind":"HelmRelease","metadata":{"name":"` + name + `","namespace":"shop"},"spec":{"chartRef":` + ref + `}}`)
	}
	tests := map[string]struct {
		mode    Mode
		obj     []byte
		allowed bool
		want    string
	}{
		"chartRef to a promoted digest": {
			obj: release("web", `{"kind":"OCIRepository","name":"podinfo-oci"}`), allowed: true,
		},
		"chartRef not found": {
			obj: release("web", `{"kind":"OCIRepository","name":"gone"}`), want: `shop/HelmRelease/web in stage "prod": helmRelease web: spec.chartRef: OCIRepository "shop/gone" is not found`,
		},
		"chartRef not found in warn mode": {
			mode: ModeWarn, obj: release("web", `{"kind":"OCIRepository","name":"gone"}`), allowed: true, want: `OCIRepository "shop/gone" is not found`,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := NewReviewer(states, pol, WithSources(helmSources()), WithModes(map[string]Mode{"prod": tc.mode}))
			resp := r.Review(context.Background(), "prod", requestFor(t, tc.obj, admissionv1.Create, ""))
			if resp.Allowed != tc.allowed {
				t.Fatalf("allowed = %v, want %v (%+v)", resp.Allowed, tc.allowed, resp.Result)
			}
			got := strings.Join(resp.Warnings, "\n")
			if resp.Result != nil {
				got += resp.Result.Message
			}
			if !strings.Contains(got, tc.want) {
				t.Fatalf("answer %q does not contain %q", got, tc.want)
			}
			if tc.allowed && tc.mode == "" && pol.last.Images[0].Digest != digestA {
				t.Fatalf("policy saw %+v, want the chart at %s", pol.last.Images, chartRef)
			}
		})
	}
}

// TestCheckHelmFromFiles: check -f finds a HelmRepository in the same
// manifest, even below the HelmChart that names it, in the namespace it is
// applied to.
func TestCheckHelmFromFiles(t *testing.T) {
	states := &fakeStates{states: map[[2]string]ledger.State{}}
	var seen []string
	pol := &fakePolicy{decide: func(in policy.AdmissionInput) (policy.AdmissionDecision, error) {
		var d policy.AdmissionDecision
		for _, ci := range in.Images {
			seen = append(seen, ci.Reference+"|"+ci.Error)
			d.Deny = append(d.Deny, "no")
		}
		return d, nil
	}}
	manifest := `apiVersion: source.toolkit.fluxcd.io/v1
kind: HelmChart
metadata: {name: web}
spec: {chart: podinfo, version: 6.5.0, sourceRef: {kind: HelmRepository, name: charts}}
---
apiVersion: source.toolkit.fluxcd.io/v1
kind: HelmChart
metadata: {name: elsewhere, namespace: other}
spec: {chart: podinfo, version: 6.5.0, sourceRef: {kind: HelmRepository, name: charts}}
---
apiVersion: source.toolkit.fluxcd.io/v1
kind: HelmRepository
metadata: {name: charts}
spec: {type: oci, url: "oci://registry.example.com/charts"}
`
	r := NewReviewer(states, pol)
	res, err := r.Check(context.Background(), "prod", strings.NewReader(manifest))
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 3 || res[0].Allowed || res[1].Allowed || !res[2].Allowed {
		t.Fatalf("results = %+v, want both charts refused and the repository allowed", res)
	}
	want := []string{
		"registry.example.com/charts/podinfo:6.5.0|image registry.example.com/charts/podinfo:6.5.0: " + ErrNoResolver.Error(),
		`podinfo:6.5.0|HelmRepository "other/charts" is not found`,
	}
	if len(seen) != 2 || seen[0] != want[0] || !strings.HasPrefix(seen[1], want[1]) {
		t.Fatalf("policy saw %q\nwant %q", seen, want)
	}
}

// TestPinLeavesArtifactKinds: the mutating webhook pins pods' tags only. A
// HelmChart's reference is its spec.version and an OCIRepository's its
// spec.ref.tag: writing "repo:tag@digest" there would break the object.
func TestPinLeavesArtifactKinds(t *testing.T) {
	res := &fakeResolver{digests: map[string]string{
		"registry.example.com/charts/podinfo:6.5.0": digestA,
		"registry.example.com/shop/config:1.0":      digestA,
	}}
	r := NewReviewer(&fakeStates{}, &fakePolicy{}, WithResolver(res), WithSources(helmSources()))
	for name, obj := range map[string]string{
		"helm chart": `{"apiVersion":"source.toolkit.fluxcd.io/v1","kind":"HelmChart","metadata":{"name":"web","namespace":"shop"},
			"spec":{"chart":"podinfo","version":"6.5.0","sourceRef":{"kind":"HelmRepository","name":"charts"}}}`,
		"oci repository": `{"apiVersion":"source.toolkit.fluxcd.io/v1","kind":"OCIRepository","metadata":{"name":"cfg","namespace":"shop"},
			"spec":{"url":"oci://registry.example.com/shop/config","ref":{"tag":"1.0"}}}`,
	} {
		t.Run(name, func(t *testing.T) {
			resp := r.Pin(context.Background(), "prod", requestFor(t, []byte(obj), admissionv1.Create, ""))
			if !resp.Allowed || resp.Patch != nil {
				t.Fatalf("Pin = allowed %v, patch %s; want allowed without a patch", resp.Allowed, resp.Patch)
			}
		})
	}
}
