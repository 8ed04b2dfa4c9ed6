package admission

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// maxSearchDepth bounds the generic search for pod specs. Pod templates of
// real workloads sit at depth 2 to 5 (spec.template.spec,
// spec.jobTemplate.spec.template.spec, Knative's spec.template.spec); an
// object nested deeper than this is refused rather than walked without end.
const maxSearchDepth = 32

// podSpecKeys mark a JSON object as a pod spec: the API server requires a
// pod spec to have containers, and no other Kubernetes shape uses these
// names for something else.
var podSpecKeys = []string{"containers", "initContainers", "ephemeralContainers"}

// extractGeneric finds the pod specs of a kind admission has no typed shape
// for: a custom workload (an Argo Rollout, a Knative Service, an OpenKruise
// CloneSet), a PodTemplate, or a kind that runs no pods at all (ConfigMap,
// Secret, Service), which yields no images. An attacker who can create such
// an object gains nothing by putting images where no pod spec is: only pod
// specs are run, and the pods themselves are checked when created.
func extractGeneric(req *admissionv1.AdmissionRequest, w workloadInfo) (workloadInfo, error) {
	if len(req.Object.Raw) == 0 {
		return w, fmt.Errorf("%w: %s has no object", ErrDecode, formatGVK(req.Kind))
	}
	var head struct {
		Metadata objectMeta `json:"metadata"`
	}
	if err := decodeObject(req.Object.Raw, &head); err != nil {
		return w, fmt.Errorf("%s: %w", formatGVK(req.Kind), err)
	}
	var tree map[string]any
	if err := decodeObject(req.Object.Raw, &tree); err != nil {
		return w, fmt.Errorf("%s: %w", formatGVK(req.Kind), err)
	}
	s := searcher{}
	err := s.walk(tree, "", "", 0, nil)
	w.setMeta(head.Metadata, s.annotations)
	if err != nil {
		return w, fmt.Errorf("%w of %s %q: %v; if this kind runs no pods, exclude it from the webhook with `stagegate manifests --skip-resource %s`",
			ErrUnreadable, formatGVK(req.Kind), w.Name, err, resourceName(req.Resource))
	}
	w.Images = s.images
	return w, nil
}

// searcher collects the images of every pod spec in an object tree.
type searcher struct {
	images []containerImage
	// annotations are those of the first pod template found, where the
	// break-glass annotation of its pods would be.
	annotations map[string]string
}

// walk visits v at JSON pointer path, under key in parent (the object
// holding v, or nil).
func (s *searcher) walk(v any, path, key string, depth int, parent map[string]any) error {
	if depth > maxSearchDepth {
		return fmt.Errorf("at %s: nested deeper than %d levels", path, maxSearchDepth)
	}
	switch v := v.(type) {
	case map[string]any:
		if isPodSpec(v, key) {
			return s.podSpec(v, path, parent)
		}
		keys := make([]string, 0, len(v))
		for k := range v {
			// Metadata holds no pod spec; status reports, never runs.
			if k == "metadata" || (depth == 0 && k == "status") {
				continue
			}
			keys = append(keys, k)
		}
		slices.Sort(keys) // the same object always lists its images in the same order
		for _, k := range keys {
			if err := s.walk(v[k], path+"/"+escapePointer(k), k, depth+1, v); err != nil {
				return err
			}
		}
	case []any:
		for i, e := range v {
			if err := s.walk(e, path+"/"+strconv.Itoa(i), "", depth+1, nil); err != nil {
				return err
			}
		}
	}
	return nil
}

// isPodSpec says whether m is to be read as a pod spec: it has a list under
// one of podSpecKeys, or it is a "spec" with any value under them (so that a
// template whose containers are not a list is refused, not skipped). A
// ConfigMap's data key "containers" holds a string and is no pod spec.
func isPodSpec(m map[string]any, key string) bool {
	// Keys are matched ignoring case, so that a template whose only field
	// is "Containers" (which a controller decoding case-insensitively would
	// run) is read, and then refused by checkPodSpecCase, not skipped.
	for k, v := range m {
		if !slices.ContainsFunc(podSpecKeys, func(p string) bool { return strings.EqualFold(k, p) }) {
			continue
		}
		if _, list := v.([]any); list || v == nil || key == "spec" {
			return true
		}
	}
	return false
}

// foldedFields are, per level of a pod spec, the fields admission reads.
// Kubernetes decodes built-in kinds case-sensitively, but a custom
// controller may decode its objects with encoding/json, which matches field
// names case-insensitively: {"image": "promoted", "Image": "other"} would
// then run "other". A key that differs from one of these only in case is
// refused.
var foldedFields = struct{ spec, container, volume, volumeImage []string }{
	spec:        append(slices.Clone(podSpecKeys), "volumes"),
	container:   []string{"image", "name"},
	volume:      []string{"image", "name"},
	volumeImage: []string{"reference"},
}

// checkFolded refuses keys of m that match one of fields only when case is
// ignored.
func checkFolded(m map[string]any, fields []string) error {
	for k := range m {
		for _, f := range fields {
			if k != f && strings.EqualFold(k, f) {
				return fmt.Errorf("field %q beside %q: field names are case-sensitive", k, f)
			}
		}
	}
	return nil
}

// checkPodSpecCase applies checkFolded to every level of a pod spec that
// admission reads.
func checkPodSpecCase(spec map[string]any) error {
	if err := checkFolded(spec, foldedFields.spec); err != nil {
		return err
	}
	for _, k := range podSpecKeys {
		list, _ := spec[k].([]any)
		for _, c := range list {
			if c, ok := c.(map[string]any); ok {
				if err := checkFolded(c, foldedFields.container); err != nil {
					return fmt.Errorf("%s: %w", k, err)
				}
			}
		}
	}
	vols, _ := spec["volumes"].([]any)
	for _, v := range vols {
		v, ok := v.(map[string]any)
		if !ok {
			continue
		}
		if err := checkFolded(v, foldedFields.volume); err != nil {
			return fmt.Errorf("volumes: %w", err)
		}
		if img, ok := v["image"].(map[string]any); ok {
			if err := checkFolded(img, foldedFields.volumeImage); err != nil {
				return fmt.Errorf("volumes: image: %w", err)
			}
		}
	}
	return nil
}

// podSpec decodes m with the same shape and strictness as a Pod's spec, so
// that an image hidden in a field of the wrong type is an error, not a miss.
func (s *searcher) podSpec(m map[string]any, path string, parent map[string]any) error {
	if err := checkPodSpecCase(m); err != nil {
		return fmt.Errorf("pod spec at %s: %v", path, err)
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("at %s: %v", path, err)
	}
	var spec podSpec
	if err := decodeObject(raw, &spec); err != nil {
		return fmt.Errorf("pod spec at %s: %v", path, err)
	}
	s.images = podImages(&spec, path, s.images)
	if s.annotations == nil && parent != nil {
		s.annotations = templateAnnotations(parent)
	}
	return nil
}

// templateAnnotations returns the string annotations of a pod template's
// metadata, next to its spec.
func templateAnnotations(tmpl map[string]any) map[string]string {
	meta, _ := tmpl["metadata"].(map[string]any)
	ann, _ := meta["annotations"].(map[string]any)
	out := make(map[string]string, len(ann))
	for k, v := range ann {
		if s, ok := v.(string); ok {
			out[k] = s
		}
	}
	return out
}

// escapePointer escapes a key for a JSON pointer (RFC 6901).
func escapePointer(k string) string {
	return strings.ReplaceAll(strings.ReplaceAll(k, "~", "~0"), "/", "~1")
}

// resourceName is the kubectl form of a resource: "widgets.example.com", or
// "pods" in the core group.
func resourceName(r metav1.GroupVersionResource) string {
	if r.Group == "" {
		return r.Resource
	}
	return r.Resource + "." + r.Group
}
