package admission

import (
	"encoding/json"
	"errors"
	"fmt"

	"k8s.io/apimachinery/pkg/runtime/schema"
)

// FluxSourceGroup is the API group of the Flux source objects a HelmChart
// or HelmRelease refers to (HelmRepository, HelmChart, OCIRepository).
const FluxSourceGroup = "source.toolkit.fluxcd.io"

// The kinds Sources is asked for.
const (
	KindHelmRepository = "HelmRepository"
	KindHelmChart      = "HelmChart"
	KindOCIRepository  = "OCIRepository"
)

// SourceKinds are the kinds of group FluxSourceGroup that Sources must
// know, with their resource names: what an informer watches.
var SourceKinds = map[string]string{
	KindHelmRepository: "helmrepositories",
	KindHelmChart:      "helmcharts",
	KindOCIRepository:  "ocirepositories",
}

// Sources finds the Flux source objects that a HelmChart or HelmRelease
// names: a chart's artifact is only known from its HelmRepository's URL,
// and a HelmRelease's chartRef from the object it points to. serve answers
// from an informer's cache (no API call per review, as for the ledger);
// check -f from the objects in the same files.
type Sources interface {
	// Source returns the object of kind (one of SourceKinds) in
	// namespace as JSON, or found false when there is none. An error
	// means it cannot tell (e.g. its cache has not synced yet).
	Source(kind, namespace, name string) (obj json.RawMessage, found bool, err error)
}

// ErrNoSources means a HelmChart or HelmRelease names a source object and
// no Sources is configured to look it up (admission.sources in serve's
// config).
var ErrNoSources = errors.New("admission: no view of Flux source objects (admission.sources is not enabled)")

// WithSources lets the Reviewer look up the Flux source objects a
// HelmChart or HelmRelease refers to. Without it, such objects are refused:
// their artifact cannot be known.
func WithSources(s Sources) Option { return func(o *options) { o.sources = s } }

// sourceKey names a source object in a map.
type sourceKey struct{ kind, namespace, name string }

// objectSources are the source objects of a manifest, for check -f: the
// same decisions offline as the webhook makes from its cache.
type objectSources map[sourceKey]json.RawMessage

func (s objectSources) Source(kind, namespace, name string) (json.RawMessage, bool, error) {
	o, ok := s[sourceKey{kind, namespace, name}]
	return o, ok, nil
}

// add keeps obj when it is a Flux source object; namespace is where it is
// applied.
func (s objectSources) add(head objectHead, namespace string, obj json.RawMessage) {
	gv, err := schema.ParseGroupVersion(head.APIVersion)
	if _, ok := SourceKinds[head.Kind]; ok && err == nil && gv.Group == FluxSourceGroup && head.Metadata.Name != "" {
		s[sourceKey{head.Kind, namespace, head.Metadata.Name}] = obj
	}
}

// chainSources asks each in turn until one finds the object.
type chainSources []Sources

func (c chainSources) Source(kind, namespace, name string) (json.RawMessage, bool, error) {
	var errs []error
	for _, s := range c {
		if s == nil {
			continue
		}
		o, ok, err := s.Source(kind, namespace, name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if ok {
			return o, true, nil
		}
	}
	return nil, false, errors.Join(errs...)
}

// lookupSource returns the source object kind namespace/name, or the
// reason, worded for a denial, why it cannot be known.
func lookupSource(src Sources, kind, namespace, name string) (json.RawMessage, string) {
	what := fmt.Sprintf("%s %q", kind, namespace+"/"+name)
	if src == nil {
		return nil, fmt.Sprintf("%s: %v", what, ErrNoSources)
	}
	o, found, err := src.Source(kind, namespace, name)
	switch {
	case err != nil:
		return nil, fmt.Sprintf("%s cannot be looked up: %v", what, err)
	case !found:
		// Flux applies a HelmRepository and its HelmChart together and
		// retries what was refused, so a refusal here heals itself once
		// the repository exists.
		return nil, fmt.Sprintf("%s is not found, so stagegate cannot know which artifact it names (create it first; Flux retries)", what)
	}
	return o, ""
}
