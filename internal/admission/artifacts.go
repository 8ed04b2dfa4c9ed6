package admission

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
)

// The types of policy.ContainerImage.Type for what GitOps controllers
// deploy from an OCI registry: the artifact is promoted by digest like an
// image, and the object that makes a controller pull it is checked like a
// pod. Container then holds the object's name or the source's index.
const (
	typeOCIRepository     = "ociRepository"
	typeApplicationSource = "applicationSource"
)

// artifactKind reads the OCI artifacts one kind makes a controller deploy.
type artifactKind struct {
	group, kind string
	artifacts   func(raw []byte, ac artifactContext) ([]containerImage, objectMeta, error)
}

// artifactContext is what an artifact kind's reader knows beside the
// object: where the request puts it, and the source objects it may refer
// to (nil when none can be looked up).
type artifactContext struct {
	namespace, name string
	sources         Sources
}

// named fills in the namespace and name the request did not give from the
// object's metadata.
func (ac artifactContext) named(meta objectMeta) artifactContext {
	if meta.Name != "" {
		ac.name = meta.Name
	}
	if ac.namespace == "" {
		ac.namespace = meta.Namespace
	}
	return ac
}

// artifactKinds are the kinds whose artifact references admission checks,
// whatever their API version: Flux's OCIRepository, HelmChart and
// HelmRelease (helm.go), and Argo CD's Application (its oci:// sources).
// Any other kind is searched for pod specs (generic.go). A HelmRepository
// names no artifact (only a registry), so it is not among them.
var artifactKinds = []artifactKind{
	{group: FluxSourceGroup, kind: KindOCIRepository, artifacts: ociRepositoryArtifacts},
	{group: FluxSourceGroup, kind: KindHelmChart, artifacts: helmChartArtifacts},
	{group: "helm.toolkit.fluxcd.io", kind: "HelmRelease", artifacts: helmReleaseArtifacts},
	{group: "argoproj.io", kind: "Application", artifacts: applicationArtifacts},
}

// artifactType reports whether t is the type of an artifact kind's
// reference rather than of a pod's image: such a reference is no image
// string in the object (a HelmChart's is its version), so nothing may
// patch it as one.
func artifactType(t string) bool {
	switch t {
	case typeOCIRepository, typeApplicationSource, typeHelmChart, typeHelmRelease:
		return true
	}
	return false
}

func lookupArtifactKind(group, kind string) (artifactKind, bool) {
	for _, k := range artifactKinds {
		if k.group == group && k.kind == kind {
			return k, true
		}
	}
	return artifactKind{}, false
}

// extractArtifacts fills in w from an object of an artifact kind; src
// looks up the source objects it refers to.
func extractArtifacts(req *admissionv1.AdmissionRequest, k artifactKind, w workloadInfo, src Sources) (workloadInfo, error) {
	if len(req.Object.Raw) == 0 {
		return w, fmt.Errorf("%w: %s has no object", ErrDecode, formatGVK(req.Kind))
	}
	images, meta, err := k.artifacts(req.Object.Raw, artifactContext{namespace: req.Namespace, name: req.Name, sources: src})
	w.setMeta(meta, nil)
	if err != nil {
		return w, fmt.Errorf("%w of %s %q: %v", ErrUnreadable, formatGVK(req.Kind), w.Name, err)
	}
	w.Images = images
	return w, nil
}

// ociRepository is what admission reads of a Flux OCIRepository.
type ociRepository struct {
	Metadata objectMeta `json:"metadata"`
	Spec     struct {
		URL string `json:"url"`
		Ref *struct {
			Digest       string `json:"digest"`
			Tag          string `json:"tag"`
			SemVer       string `json:"semver"`
			SemverFilter string `json:"semverFilter"`
		} `json:"ref"`
	} `json:"spec"`
}

// ociRepositoryArtifacts reads spec.url and spec.ref as source-controller
// does: a digest wins over everything; else a semver range, which names no
// one artifact and is refused; else the tag, "latest" when none is given.
func ociRepositoryArtifacts(raw []byte, ac artifactContext) ([]containerImage, objectMeta, error) {
	var o ociRepository
	if err := decodeObject(raw, &o); err != nil {
		return nil, objectMeta{}, err
	}
	name := ac.named(o.Metadata).name
	repo, ok := strings.CutPrefix(o.Spec.URL, "oci://")
	if !ok || repo == "" {
		return nil, o.Metadata, fmt.Errorf("spec.url %q is not an oci:// reference", o.Spec.URL)
	}
	ci := containerImage{Container: name, Type: typeOCIRepository}
	ref := o.Spec.Ref
	switch {
	case ref != nil && ref.Digest != "":
		ci.Image, ci.Path = repo+"@"+ref.Digest, "/spec/ref/digest"
	case ref != nil && ref.SemVer != "":
		return nil, o.Metadata, fmt.Errorf("spec.ref.semver %q is a range, which names no one artifact stagegate can check: pin spec.ref.digest", ref.SemVer)
	case ref != nil && ref.Tag != "":
		ci.Image, ci.Path = repo+":"+ref.Tag, "/spec/ref/tag"
	default:
		ci.Image, ci.Path = repo+":latest", "/spec/url"
	}
	return []containerImage{ci}, o.Metadata, nil
}

// applicationSource is one source of an Argo CD Application.
type applicationSource struct {
	RepoURL        string `json:"repoURL"`
	TargetRevision string `json:"targetRevision"`
	// Chart is set on a source from a Helm repository.
	Chart string `json:"chart"`
}

type application struct {
	Metadata objectMeta `json:"metadata"`
	Spec     struct {
		Source  *applicationSource  `json:"source"`
		Sources []applicationSource `json:"sources"`
	} `json:"spec"`
}

// revisionTag is what a targetRevision must look like to be read as a tag
// (the OCI distribution spec's tag grammar); anything else (a semver
// constraint such as "^1.2", "*", an empty revision meaning the newest)
// names no one artifact.
var revisionTag = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)

// applicationArtifacts reads the oci:// sources of an Application: source
// and each of sources. Git and Helm-repository sources are not OCI
// artifacts and are left alone.
func applicationArtifacts(raw []byte, _ artifactContext) ([]containerImage, objectMeta, error) {
	var o application
	if err := decodeObject(raw, &o); err != nil {
		return nil, objectMeta{}, err
	}
	var out []containerImage
	add := func(s applicationSource, label, path string) error {
		// Case-insensitively: a scheme spelt "OCI://" must not pass as a
		// Git source if a controller reads it as OCI.
		if len(s.RepoURL) < len("oci://") || !strings.EqualFold(s.RepoURL[:len("oci://")], "oci://") {
			if s.Chart == "" {
				return nil // a Git source: no OCI artifact
			}
			// A chart from a Helm repository (HTTP, or OCI through a
			// repository secret without the oci:// scheme) is a chart
			// stagegate cannot check by digest: refused like Flux's
			// HelmRepository of another type than oci, through the
			// policy, so that modes and break-glass apply.
			out = append(out, containerImage{Container: label, Type: typeApplicationSource, Path: path + "/repoURL",
				Image: s.Chart + ":" + s.TargetRevision,
				Err: fmt.Sprintf("%s: chart %q from %q is not from an oci:// repository: stagegate checks only charts it can resolve by digest; "+
					"push the chart to an OCI registry, promote it, and name it as repoURL oci://REGISTRY/REPO with a digest targetRevision", label, s.Chart, s.RepoURL)})
			return nil
		}
		repo := s.RepoURL[len("oci://"):]
		ci := containerImage{Container: label, Type: typeApplicationSource, Path: path + "/targetRevision"}
		switch rev := s.TargetRevision; {
		case strings.HasPrefix(rev, "sha256:"):
			ci.Image = repo + "@" + rev
		case revisionTag.MatchString(rev):
			ci.Image = repo + ":" + rev
		default:
			return fmt.Errorf("%s.targetRevision %q of %s names no one artifact stagegate can check: pin a digest (sha256:…)", label, rev, s.RepoURL)
		}
		out = append(out, ci)
		return nil
	}
	if o.Spec.Source != nil {
		if err := add(*o.Spec.Source, "source", "/spec/source"); err != nil {
			return nil, o.Metadata, err
		}
	}
	for i, s := range o.Spec.Sources {
		if err := add(s, "sources["+strconv.Itoa(i)+"]", "/spec/sources/"+strconv.Itoa(i)); err != nil {
			return nil, o.Metadata, err
		}
	}
	return out, o.Metadata, nil
}
