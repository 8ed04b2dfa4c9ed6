package admission

import (
	"fmt"
	"strconv"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kjson "sigs.k8s.io/json"

	"github.com/stagegate/stagegate/internal/policy"
	"github.com/stagegate/stagegate/internal/registry"
)

// BreakGlassAnnotation is the workload annotation whose non-empty value (the
// justification) asks to admit a workload despite a failed check.
const BreakGlassAnnotation = "stagegate.dev/break-glass"

// StageLabel is the namespace or pod label that selects a stage.
const StageLabel = "stagegate.dev/stage"

// The image types of policy.ContainerImage.Type. An image volume
// (spec.volumes[].image, GA in Kubernetes 1.36) is an image too: the pod
// mounts its files and can execute them, so it must be promoted like a
// container's image.
const (
	typeContainer          = "container"
	typeInitContainer      = "initContainer"
	typeEphemeralContainer = "ephemeralContainer"
	typeImageVolume        = "imageVolume"
)

// subResourceEphemeral is the only pod subresource that can add images.
const subResourceEphemeral = "ephemeralcontainers"

// The object shapes below hold only what admission reads: metadata and
// the containers' names and images. Decoding the full k8s.io/api types
// allocated every resource, probe and volume of the pod and was a third of
// the time of a review.
type objectMeta struct {
	// DeletionTimestamp is set once an object is being deleted: updates
	// then only remove finalizers (the garbage collector's), and no new
	// pod comes from it.
	DeletionTimestamp *string           `json:"deletionTimestamp"`
	Name              string            `json:"name"`
	GenerateName      string            `json:"generateName"`
	Namespace         string            `json:"namespace"`
	Labels            map[string]string `json:"labels"`
	Annotations       map[string]string `json:"annotations"`
}

type container struct {
	Name  string `json:"name"`
	Image string `json:"image"`
}

// volume is a pod volume; only image volumes matter to admission.
type volume struct {
	Name  string `json:"name"`
	Image *struct {
		Reference string `json:"reference"`
	} `json:"image"`
}

type podSpec struct {
	InitContainers      []container `json:"initContainers"`
	Containers          []container `json:"containers"`
	EphemeralContainers []container `json:"ephemeralContainers"`
	Volumes             []volume    `json:"volumes"`
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

// workloadKind is one kind whose pod spec admission knows how to find
// without the generic search (generic.go): the built-in kinds, decoded in
// the same pass as the review because nearly every review is one of them.
type workloadKind struct {
	gvk      metav1.GroupVersionKind
	resource string
	// pod returns the pod template's annotations (nil for a Pod), the pod
	// spec (nil when there is none) and the JSON pointer of the pod spec in
	// the object, which the mutating webhook patches.
	pod func(o *workloadObject) (map[string]string, *podSpec, string)
}

func podOfPod(o *workloadObject) (map[string]string, *podSpec, string) {
	return nil, &o.Spec.podSpec, "/spec"
}

func podOfTemplated(o *workloadObject) (map[string]string, *podSpec, string) {
	a, s := fromTemplate(o.Spec.Template)
	return a, s, "/spec/template/spec"
}

func podOfCronJob(o *workloadObject) (map[string]string, *podSpec, string) {
	if o.Spec.JobTemplate == nil {
		return nil, nil, ""
	}
	a, s := fromTemplate(o.Spec.JobTemplate.Spec.Template)
	return a, s, "/spec/jobTemplate/spec/template/spec"
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

// containerImage is one image as written in the pod spec: a container's,
// or an image volume's (Container then holds the volume's name).
type containerImage struct {
	Container string
	Type      string
	Image     string
	// Path is the JSON pointer of the image string in the object.
	Path string
	// Err, when set, says why the artifact an object names cannot be
	// known (e.g. its HelmRepository is not found); the review then
	// treats it as an image whose digest cannot be learned.
	Err string
	// NoTag says that an image with Err names no tag either (a chartRef
	// whose object is not found): the policy then sees it as pinned, so
	// that the refusal is Err's alone and not also "referenced by tag".
	NoTag bool
}

// workloadInfo is what admission learned from a request's object.
type workloadInfo struct {
	policy.Workload
	// BreakGlass is the justification of the break-glass annotation, from the
	// object or else from its pod template (which the pods will carry).
	BreakGlass string
	// BreakGlassAt is the break-glass-at annotation from the same place
	// as BreakGlass: a time set on the template does not date an
	// annotation on the object.
	BreakGlassAt string
	Images       []containerImage
	// Deleting is true for an object already being deleted.
	Deleting bool
}

// ID names the workload as "namespace/Kind/name", the form break-glass
// ledger entries use.
func (w workloadInfo) ID() string {
	return w.Namespace + "/" + w.Kind + "/" + w.Name
}

// extractWorkload finds the workload and its images in an admission request.
// Subresources other than pods/ephemeralcontainers cannot change images, so
// they yield a workload without images. obj is req.Object already decoded
// (only for the built-in kinds), or nil to decode req.Object.Raw here.
//
// The kinds that deploy OCI artifacts (artifacts.go) yield their artifact
// references. Any other kind is searched for pod specs (generic.go): a custom workload
// with a pod template is checked like a Deployment, and a kind with no pod
// spec at all yields no images. Only an object whose pod spec cannot be read
// is an error (ErrUnreadable), so that admission fails closed on it.
func extractWorkload(req *admissionv1.AdmissionRequest, obj *workloadObject) (workloadInfo, error) {
	return extractWorkloadFrom(req, obj, nil)
}

// extractWorkloadFrom is extractWorkload with src to look up the Flux
// source objects that a HelmChart or HelmRelease refers to.
func extractWorkloadFrom(req *admissionv1.AdmissionRequest, obj *workloadObject, src Sources) (workloadInfo, error) {
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
	if a, ok := lookupArtifactKind(req.Kind.Group, req.Kind.Kind); ok {
		return extractArtifacts(req, a, w, src)
	}
	k, known := lookupKind(req.Kind.Group, req.Kind.Kind)
	if !known {
		return extractGeneric(req, w)
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
	tmplAnnotations, spec, path := k.pod(obj)
	w.setMeta(obj.Metadata, tmplAnnotations)
	if spec != nil {
		w.Images = podImages(spec, path, nil)
	}
	return w, nil
}

// setMeta fills in what the object's metadata says, keeping the request's
// namespace and name when it has them.
func (w *workloadInfo) setMeta(meta objectMeta, tmplAnnotations map[string]string) {
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
	w.Deleting = meta.DeletionTimestamp != nil
	w.BreakGlass = strings.TrimSpace(meta.Annotations[BreakGlassAnnotation])
	w.BreakGlassAt = strings.TrimSpace(meta.Annotations[BreakGlassAtAnnotation])
	if w.BreakGlass == "" {
		w.BreakGlass = strings.TrimSpace(tmplAnnotations[BreakGlassAnnotation])
		w.BreakGlassAt = strings.TrimSpace(tmplAnnotations[BreakGlassAtAnnotation])
	}
}

// podImages appends to out the images of every init container, container,
// ephemeral container and image volume, in that order. path is the JSON
// pointer of spec in the object.
func podImages(spec *podSpec, path string, out []containerImage) []containerImage {
	if out == nil {
		out = make([]containerImage, 0, len(spec.InitContainers)+len(spec.Containers)+len(spec.EphemeralContainers))
	}
	add := func(list []container, field, typ string) {
		for i, c := range list {
			out = append(out, containerImage{Container: c.Name, Type: typ, Image: c.Image,
				Path: path + "/" + field + "/" + strconv.Itoa(i) + "/image"})
		}
	}
	add(spec.InitContainers, "initContainers", typeInitContainer)
	add(spec.Containers, "containers", typeContainer)
	add(spec.EphemeralContainers, "ephemeralContainers", typeEphemeralContainer)
	for i, v := range spec.Volumes {
		if v.Image != nil {
			out = append(out, containerImage{Container: v.Name, Type: typeImageVolume, Image: v.Image.Reference,
				Path: path + "/volumes/" + strconv.Itoa(i) + "/image/reference"})
		}
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
type imageRef = registry.ImageRef

// parseImage parses a pod's image reference as the kubelet resolves it
// (registry.ParseImage, the one parser of references).
func parseImage(s string) (imageRef, error) {
	if s == "" {
		return imageRef{}, fmt.Errorf("%w: empty image", ErrBadReference)
	}
	r, err := registry.ParseImage(s)
	if err != nil {
		return imageRef{}, fmt.Errorf("admission: %w", err)
	}
	return r, nil
}

// subject names the image's holder as the policy's messages do:
// container "app", initContainer "setup", imageVolume "data".
func (c containerImage) subject() string {
	t := c.Type
	if t == "" {
		t = typeContainer
	}
	return fmt.Sprintf("%s %q", t, c.Container)
}
