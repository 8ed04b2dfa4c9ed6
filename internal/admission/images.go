package admission

import (
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kjson "sigs.k8s.io/json"

	"github.com/stagegate/stagegate/internal/policy"
)

// BreakGlassAnnotation is the workload annotation whose non-empty value (the
// justification) asks to admit a workload despite a failed check.
const BreakGlassAnnotation = "stagegate.dev/break-glass"

// The container types of policy.ContainerImage.Type.
const (
	typeContainer          = "container"
	typeInitContainer      = "initContainer"
	typeEphemeralContainer = "ephemeralContainer"
)

// subResourceEphemeral is the only pod subresource that can add images.
const subResourceEphemeral = "ephemeralcontainers"

// The object shapes below hold only what admission reads: metadata and
// the containers' names and images. Decoding the full k8s.io/api types
// allocated every resource, probe and volume of the pod and was a third of
// the time of a review.
type objectMeta struct {
	Name         string            `json:"name"`
	GenerateName string            `json:"generateName"`
	Namespace    string            `json:"namespace"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
}

type container struct {
	Name  string `json:"name"`
	Image string `json:"image"`
}

type podSpec struct {
	InitContainers      []container `json:"initContainers"`
	Containers          []container `json:"containers"`
	EphemeralContainers []container `json:"ephemeralContainers"`
}

type podTemplate struct {
	Metadata objectMeta `json:"metadata"`
	Spec     podSpec    `json:"spec"`
}

// workloadObject is every shape admission reads, in one type: a Pod's spec,
// a controller's spec.template and a CronJob's spec.jobTemplate.spec.template
// (pointers: a ReplicationController may have no template). One type for
// every kind lets the webhook decode the object in the same pass as the
// AdmissionReview around it, before it has looked at the request's kind.
type workloadObject struct {
	Metadata objectMeta `json:"metadata"`
	Spec     struct {
		podSpec
		Template    *podTemplate `json:"template"`
		JobTemplate *struct {
			Spec struct {
				Template *podTemplate `json:"template"`
			} `json:"spec"`
		} `json:"jobTemplate"`
	} `json:"spec"`
}

// workloadKind is one kind whose pod spec admission knows how to find.
type workloadKind struct {
	gvk      metav1.GroupVersionKind
	resource string
	// pod returns the pod template's annotations (nil for a Pod) and the
	// pod spec (nil when there is none).
	pod func(o *workloadObject) (map[string]string, *podSpec)
}

func podOfPod(o *workloadObject) (map[string]string, *podSpec) { return nil, &o.Spec.podSpec }

func podOfTemplated(o *workloadObject) (map[string]string, *podSpec) {
	return fromTemplate(o.Spec.Template)
}

func podOfCronJob(o *workloadObject) (map[string]string, *podSpec) {
	if o.Spec.JobTemplate == nil {
		return nil, nil
	}
	return fromTemplate(o.Spec.JobTemplate.Spec.Template)
}

// fromTemplate: a controller without a template runs no pods, hence no
// images.
func fromTemplate(t *podTemplate) (map[string]string, *podSpec) {
	if t == nil {
		return nil, nil
	}
	return t.Metadata.Annotations, &t.Spec
}

// workloadKinds are the kinds the webhook is registered for. The resource
// names let Check build the request the API server would send.
var workloadKinds = []workloadKind{
	{gvk("", "v1", "Pod"), "pods", podOfPod},
	{gvk("", "v1", "ReplicationController"), "replicationcontrollers", podOfTemplated},
	{gvk("apps", "v1", "Deployment"), "deployments", podOfTemplated},
	{gvk("apps", "v1", "ReplicaSet"), "replicasets", podOfTemplated},
	{gvk("apps", "v1", "StatefulSet"), "statefulsets", podOfTemplated},
	{gvk("apps", "v1", "DaemonSet"), "daemonsets", podOfTemplated},
	{gvk("batch", "v1", "Job"), "jobs", podOfTemplated},
	{gvk("batch", "v1", "CronJob"), "cronjobs", podOfCronJob},
}

func gvk(group, version, kind string) metav1.GroupVersionKind {
	return metav1.GroupVersionKind{Group: group, Version: version, Kind: kind}
}

// lookupKind finds a workload kind by group and kind. The version is not
// compared: every served version of these kinds keeps the pod template at the
// same place, and the API server converts to the webhook's matchPolicy anyway.
func lookupKind(group, kind string) (workloadKind, bool) {
	for _, k := range workloadKinds {
		if k.gvk.Group == group && k.gvk.Kind == kind {
			return k, true
		}
	}
	return workloadKind{}, false
}

// decodeObject decodes like the API server does: case-sensitive field names,
// so that "Image" cannot hide beside "image".
func decodeObject(raw []byte, into any) error {
	if err := kjson.UnmarshalCaseSensitivePreserveInts(raw, into); err != nil {
		return fmt.Errorf("%w: %v", ErrDecode, err)
	}
	return nil
}

// containerImage is one container's image as written in the pod spec.
type containerImage struct {
	Container string
	Type      string
	Image     string
}

// workloadInfo is what admission learned from a request's object.
type workloadInfo struct {
	policy.Workload
	// BreakGlass is the justification of the break-glass annotation, from the
	// object or else from its pod template (which the pods will carry).
	BreakGlass string
	Images     []containerImage
}

// ID names the workload as "namespace/Kind/name", the form break-glass
// ledger entries use.
func (w workloadInfo) ID() string {
	return w.Namespace + "/" + w.Kind + "/" + w.Name
}

// extractWorkload finds the workload and its images in an admission request.
// Subresources other than pods/ephemeralcontainers cannot change images, so
// they yield a workload without images. obj is req.Object already decoded,
// or nil to decode req.Object.Raw here.
func extractWorkload(req *admissionv1.AdmissionRequest, obj *workloadObject) (workloadInfo, error) {
	w := workloadInfo{Workload: policy.Workload{
		Group:     req.Kind.Group,
		Version:   req.Kind.Version,
		Kind:      req.Kind.Kind,
		Namespace: req.Namespace,
		Name:      req.Name,
	}}
	if req.SubResource != "" && !(req.Resource.Resource == "pods" && req.SubResource == subResourceEphemeral) {
		return w, nil
	}
	k, ok := lookupKind(req.Kind.Group, req.Kind.Kind)
	if !ok {
		return w, fmt.Errorf("%w: %s (stagegate checks Pods, Deployments, ReplicaSets, StatefulSets, DaemonSets, Jobs, CronJobs and ReplicationControllers)",
			ErrUnknownKind, formatGVK(req.Kind))
	}
	if obj == nil {
		if len(req.Object.Raw) == 0 {
			return w, fmt.Errorf("%w: %s has no object", ErrDecode, formatGVK(req.Kind))
		}
		obj = new(workloadObject)
		if err := decodeObject(req.Object.Raw, obj); err != nil {
			return w, fmt.Errorf("%s: %w", formatGVK(req.Kind), err)
		}
	}
	meta := obj.Metadata
	tmplAnnotations, spec := k.pod(obj)
	if w.Namespace == "" {
		w.Namespace = meta.Namespace
	}
	switch {
	case meta.Name != "":
		w.Name = meta.Name
	case w.Name == "":
		w.Name = meta.GenerateName
	}
	w.Labels = meta.Labels
	w.Annotations = meta.Annotations
	w.BreakGlass = strings.TrimSpace(meta.Annotations[BreakGlassAnnotation])
	if w.BreakGlass == "" {
		w.BreakGlass = strings.TrimSpace(tmplAnnotations[BreakGlassAnnotation])
	}
	if spec != nil {
		w.Images = podImages(spec)
	}
	return w, nil
}

// podImages lists the images of every container, init container and
// ephemeral container, in that order.
func podImages(spec *podSpec) []containerImage {
	out := make([]containerImage, 0, len(spec.InitContainers)+len(spec.Containers)+len(spec.EphemeralContainers))
	for _, c := range spec.InitContainers {
		out = append(out, containerImage{Container: c.Name, Type: typeInitContainer, Image: c.Image})
	}
	for _, c := range spec.Containers {
		out = append(out, containerImage{Container: c.Name, Type: typeContainer, Image: c.Image})
	}
	for _, c := range spec.EphemeralContainers {
		out = append(out, containerImage{Container: c.Name, Type: typeEphemeralContainer, Image: c.Image})
	}
	return out
}

func formatGVK(k metav1.GroupVersionKind) string {
	if k.Group == "" {
		return k.Version + "/" + k.Kind
	}
	return k.Group + "/" + k.Version + "/" + k.Kind
}

// imageRef is a parsed image reference.
type imageRef struct {
	// Name is the fully qualified reference, as the resolver is asked.
	Name       string
	Registry   string
	Repository string
	// Tag is informational when Digest is set.
	Tag    string
	Digest string
}

// parseImage parses a reference the way the kubelet resolves it: Docker Hub
// is the default registry and "latest" the default tag. A reference with both
// a tag and a digest is pinned by the digest.
func parseImage(s string) (imageRef, error) {
	if s == "" {
		return imageRef{}, fmt.Errorf("%w: empty image", ErrBadReference)
	}
	ref, err := name.ParseReference(s, name.WeakValidation)
	if err != nil {
		return imageRef{}, fmt.Errorf("%w: %v", ErrBadReference, err)
	}
	out := imageRef{
		Name:       ref.Name(),
		Registry:   ref.Context().RegistryStr(),
		Repository: ref.Context().Name(),
	}
	switch r := ref.(type) {
	case name.Digest:
		out.Digest = r.DigestStr()
		if !validSHA256(out.Digest) {
			return imageRef{}, fmt.Errorf("%w: %q: digest must be sha256 with 64 lowercase hex digits", ErrBadReference, s)
		}
		base := s[:strings.LastIndex(s, "@")]
		if t, err := name.NewTag(base, name.WithDefaultTag("")); err == nil {
			out.Tag = t.TagStr()
		}
	case name.Tag:
		out.Tag = r.TagStr()
	}
	return out, nil
}

// validSHA256 reports whether d is "sha256:" and 64 lowercase hex digits.
func validSHA256(d string) bool {
	hex, ok := strings.CutPrefix(d, "sha256:")
	if !ok || len(hex) != 64 {
		return false
	}
	for _, c := range hex {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
