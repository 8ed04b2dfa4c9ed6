package admission

import (
	"fmt"
	"regexp"
	"strings"
)

// The types of policy.ContainerImage.Type for Helm charts that Flux
// deploys: a HelmChart's, and a HelmRelease's (from spec.chart or
// spec.chartRef). Container holds the object's name.
const (
	typeHelmChart   = "helmChart"
	typeHelmRelease = "helmRelease"
)

// exactVersion is a full semantic version (semver.org's grammar): what
// Flux matches exactly against a chart's tags. Anything else (a range such
// as "1.x" or ">=1.0.0", "*", or nothing, meaning the newest) lets Flux
// pick among the repository's tags, which names no one artifact.
var exactVersion = regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)` +
	`(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?` +
	`(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$`)

// pinAdvice ends the refusal of a chart version that names no one chart.
const pinAdvice = "pin an exact version, or use an OCIRepository pinned by digest with chartRef"

// chartTemplate is what a HelmChart's spec and a HelmRelease's
// spec.chart.spec have in common.
type chartTemplate struct {
	Chart     string `json:"chart"`
	Version   string `json:"version"`
	SourceRef struct {
		Kind      string `json:"kind"`
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"sourceRef"`
}

type helmChart struct {
	Metadata objectMeta    `json:"metadata"`
	Spec     chartTemplate `json:"spec"`
}

// helmChartArtifacts reads a HelmChart. Only a chart from a HelmRepository
// is an artifact stagegate can check; one from a GitRepository or Bucket
// is not in an OCI registry and is left alone, as Argo CD's Git sources
// are.
func helmChartArtifacts(raw []byte, ac artifactContext) ([]containerImage, objectMeta, error) {
	var o helmChart
	if err := decodeObject(raw, &o); err != nil {
		return nil, objectMeta{}, err
	}
	ac = ac.named(o.Metadata)
	// A HelmChart's sourceRef is local: its namespace is the chart's.
	o.Spec.SourceRef.Namespace = ""
	ci, err := chartArtifact(o.Spec, ac, typeHelmChart, "/spec")
	if err != nil || ci == nil {
		return nil, o.Metadata, err
	}
	return []containerImage{*ci}, o.Metadata, nil
}

// chartArtifact is the chart t names: <repository>/<chart>:<version> for
// a HelmRepository of type oci, nil for a source that is no Helm
// repository. A version that is no exact version is an error (the object
// names no one artifact, whatever the repository), checked before the
// repository is looked up so that the answer does not depend on what the
// cache holds. A repository that cannot be looked up, or is not of type
// oci, gives an image with Err: refused by the policy, so that the stage's
// mode and break-glass apply as for an image whose digest is unknown.
func chartArtifact(t chartTemplate, ac artifactContext, typ, path string) (*containerImage, error) {
	dot := strings.TrimPrefix(strings.ReplaceAll(path, "/", "."), ".") // spec.chart.spec
	switch t.SourceRef.Kind {
	case KindHelmRepository:
	case "GitRepository", "Bucket", "ExternalArtifact":
		return nil, nil
	default:
		return nil, fmt.Errorf("%s.sourceRef.kind %q is no Flux chart source", dot, t.SourceRef.Kind)
	}
	field := dot + ".version"
	if !exactVersion.MatchString(t.Version) {
		what := fmt.Sprintf("%s %q is a range", field, t.Version)
		if t.Version == "" || t.Version == "*" {
			what = fmt.Sprintf("%s %q asks for the newest chart", field, t.Version)
		}
		return nil, fmt.Errorf("%s of chart %q, which names no one artifact stagegate can check: %s", what, t.Chart, pinAdvice)
	}
	if t.Chart == "" || strings.ContainsAny(t.Chart, ":@") {
		return nil, fmt.Errorf("%s.chart %q is not a chart name", dot, t.Chart)
	}
	// Helm pushes a chart with its version as the tag, and "+" (build
	// metadata), which tags cannot hold, as "_".
	tag := strings.ReplaceAll(t.Version, "+", "_")
	if !revisionTag.MatchString(tag) {
		return nil, fmt.Errorf("%s %q cannot be an OCI tag", field, t.Version)
	}
	ns := t.SourceRef.Namespace
	if ns == "" {
		ns = ac.namespace
	}
	ci := &containerImage{Container: ac.name, Type: typ, Path: path + "/version", Image: t.Chart + ":" + tag}
	raw, why := lookupSource(ac.sources, KindHelmRepository, ns, t.SourceRef.Name)
	if why != "" {
		ci.Err = why
		return ci, nil
	}
	var repo struct {
		Spec struct {
			Type string `json:"type"`
			URL  string `json:"url"`
		} `json:"spec"`
	}
	if err := decodeObject(raw, &repo); err != nil {
		ci.Err = fmt.Sprintf("HelmRepository %q cannot be read: %v", ns+"/"+t.SourceRef.Name, err)
		return ci, nil
	}
	base, isOCI := strings.CutPrefix(repo.Spec.URL, "oci://")
	if repo.Spec.Type != "oci" || !isOCI || strings.Trim(base, "/") == "" {
		// An HTTP(S) Helm repository serves charts stagegate cannot
		// promote or check by digest; letting them through would make
		// every HelmRepository a way around the stage.
		ci.Err = fmt.Sprintf("HelmRepository %q (type %q, url %q) is not an OCI registry: stagegate checks only charts from a HelmRepository of type oci; push the chart to an OCI registry (helm push) and promote it",
			ns+"/"+t.SourceRef.Name, repo.Spec.Type, repo.Spec.URL)
		return ci, nil
	}
	ci.Image = strings.TrimRight(base, "/") + "/" + t.Chart + ":" + tag
	return ci, nil
}

type helmRelease struct {
	Metadata objectMeta `json:"metadata"`
	Spec     struct {
		ChartRef *struct {
			Kind      string `json:"kind"`
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"chartRef"`
		Chart *struct {
			Spec chartTemplate `json:"spec"`
		} `json:"chart"`
	} `json:"spec"`
}

// helmReleaseArtifacts reads a HelmRelease (helm.toolkit.fluxcd.io/v2).
// spec.chart.spec follows the HelmChart's rule. spec.chartRef names an
// OCIRepository or HelmChart that is admitted on its own, but in its own
// namespace's stage: a chartRef may cross namespaces, and a HelmRelease's
// stage label may add a stage its source was never checked for. So the
// HelmRelease is checked for the referenced object's artifact too, in the
// HelmRelease's stage.
func helmReleaseArtifacts(raw []byte, ac artifactContext) ([]containerImage, objectMeta, error) {
	var o helmRelease
	if err := decodeObject(raw, &o); err != nil {
		return nil, objectMeta{}, err
	}
	ac = ac.named(o.Metadata)
	if o.Spec.Chart != nil {
		ci, err := chartArtifact(o.Spec.Chart.Spec, ac, typeHelmRelease, "/spec/chart/spec")
		if err != nil || ci == nil {
			return nil, o.Metadata, err
		}
		return []containerImage{*ci}, o.Metadata, nil
	}
	ref := o.Spec.ChartRef
	if ref == nil {
		return nil, o.Metadata, nil
	}
	var read func([]byte, artifactContext) ([]containerImage, objectMeta, error)
	switch ref.Kind {
	case KindOCIRepository:
		read = ociRepositoryArtifacts
	case KindHelmChart:
		read = helmChartArtifacts
	default:
		return nil, o.Metadata, fmt.Errorf("spec.chartRef.kind %q is neither OCIRepository nor HelmChart", ref.Kind)
	}
	ns := ref.Namespace
	if ns == "" {
		ns = ac.namespace
	}
	fail := func(why string) ([]containerImage, objectMeta, error) {
		return []containerImage{{Container: ac.name, Type: typeHelmRelease, Path: "/spec/chartRef",
			Image: ref.Kind + "/" + ns + "/" + ref.Name, Err: why, NoTag: true}}, o.Metadata, nil
	}
	src, why := lookupSource(ac.sources, ref.Kind, ns, ref.Name)
	if why != "" {
		return fail("spec.chartRef: " + why)
	}
	// The referenced object's own source is looked up in its namespace.
	images, _, err := read(src, artifactContext{namespace: ns, name: ref.Name, sources: ac.sources})
	if err != nil {
		return fail(fmt.Sprintf("spec.chartRef: %s %q: %v", ref.Kind, ns+"/"+ref.Name, err))
	}
	for i := range images {
		images[i].Container, images[i].Type, images[i].Path = ac.name, typeHelmRelease, "/spec/chartRef"
	}
	return images, o.Metadata, nil
}
