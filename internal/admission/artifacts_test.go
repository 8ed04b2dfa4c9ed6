package admission

import (
	"errors"
	"slices"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
)

func TestExtractArtifacts(t *testing.T) {
	const repo = "registry.example.com/shop/config"
	oci := func(ref string) string {
		return `{"apiVersion":"source.toolkit.fluxcd.io/v1","kind":"OCIRepository","metadata":{"name":"shop-config","namespace":"shop"},
			"spec":{"url":"oci://` + repo + `"` + ref + `}}`
	}
	app := func(sources string) string {
		return `{"apiVersion":"argoproj.io/v1alpha1","kind":"Application","metadata":{"name":"shop","namespace":"argocd","labels":{"stagegate.dev/stage":"prod"}},
			"spec":{` + sources + `}}`
	}
	tests := map[string]struct {
		obj     string
		want    []containerImage
		wantErr string
	}{
		"oci repository by digest": {
			obj:  oci(`,"ref":{"digest":"` + digestA + `","tag":"ignored"}`),
			want: []containerImage{{Container: "shop-config", Type: typeOCIRepository, Image: repo + "@" + digestA, Path: "/spec/ref/digest"}},
		},
		"oci repository by tag": {
			obj:  oci(`,"ref":{"tag":"1.0"}`),
			want: []containerImage{{Container: "shop-config", Type: typeOCIRepository, Image: repo + ":1.0", Path: "/spec/ref/tag"}},
		},
		"oci repository without ref is latest": {
			obj:  oci(``),
			want: []containerImage{{Container: "shop-config", Type: typeOCIRepository, Image: repo + ":latest", Path: "/spec/url"}},
		},
		"oci repository by semver range is refused": {
			obj:     oci(`,"ref":{"semver":">=1.0.0"}`),
			wantErr: "spec.ref.semver",
		},
		"oci repository with another scheme is refused": {
			obj:     `{"apiVersion":"source.toolkit.fluxcd.io/v1beta2","kind":"OCIRepository","metadata":{"name":"x"},"spec":{"url":"https://example.com/x"}}`,
			wantErr: "not an oci:// reference",
		},
		"application oci source by digest and tag": {
			obj: app(`"sources":[{"repoURL":"https://github.com/example/shop.git","targetRevision":"main"},
				{"repoURL":"oci://` + repo + `","targetRevision":"` + digestA + `"},
				{"repoURL":"oci://` + repo + `","targetRevision":"1.0"}]`),
			want: []containerImage{
				{Container: "sources[1]", Type: typeApplicationSource, Image: repo + "@" + digestA, Path: "/spec/sources/1/targetRevision"},
				{Container: "sources[2]", Type: typeApplicationSource, Image: repo + ":1.0", Path: "/spec/sources/2/targetRevision"},
			},
		},
		"application oci source with the scheme in capitals": {
			obj:  app(`"source":{"repoURL":"OCI://` + repo + `","targetRevision":"1.0"}`),
			want: []containerImage{{Container: "source", Type: typeApplicationSource, Image: repo + ":1.0", Path: "/spec/source/targetRevision"}},
		},
		"application chart from a helm repository is refused through the policy": {
			// A chart Argo CD pulls from an HTTP Helm repository (or from
			// OCI through a repository secret, without oci://) cannot be
			// checked by digest: like Flux's non-oci HelmRepository.
			obj: app(`"source":{"repoURL":"https://charts.example.com","chart":"shop","targetRevision":"1.2.3"}`),
			want: []containerImage{{Container: "source", Type: typeApplicationSource, Image: "shop:1.2.3", Path: "/spec/source/repoURL",
				Err: `source: chart "shop" from "https://charts.example.com" is not from an oci:// repository: stagegate checks only charts it can resolve by digest; ` +
					"push the chart to an OCI registry, promote it, and name it as repoURL oci://REGISTRY/REPO with a digest targetRevision"}},
		},
		"application git source only": {
			obj: app(`"source":{"repoURL":"https://github.com/example/shop.git","targetRevision":"HEAD"}`),
		},
		"application semver constraint is refused": {
			obj:     app(`"source":{"repoURL":"oci://` + repo + `","targetRevision":"^1.2"}`),
			wantErr: "names no one artifact",
		},
		"application empty revision is refused": {
			obj:     app(`"source":{"repoURL":"oci://` + repo + `"}`),
			wantErr: "names no one artifact",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			w, err := extractWorkload(requestFor(t, []byte(tc.obj), admissionv1.Create, ""), nil)
			if tc.wantErr != "" {
				if !errors.Is(err, ErrUnreadable) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want ErrUnreadable with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(w.Images, tc.want) {
				t.Fatalf("images = %+v\nwant %+v", w.Images, tc.want)
			}
		})
	}
}
