package inventory

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/stagegate/stagegate/internal/admission"
)

// stripPod keeps of a pod what a review reads and a report names: a
// cluster's pods fill the informer's cache, and a pod's full spec and status
// are many times these few fields. It is the pods informer's
// cache.TransformFunc; anything else (a tombstone) passes unchanged.
func stripPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	out := &corev1.Pod{
		// The review decodes the object by its apiVersion and kind,
		// which the informer's objects lack.
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Namespace:         p.Namespace,
			Name:              p.Name,
			UID:               p.UID,
			ResourceVersion:   p.ResourceVersion,
			OwnerReferences:   p.OwnerReferences,
			DeletionTimestamp: p.DeletionTimestamp,
			Labels:            keep(p.Labels, admission.StageLabel),
			Annotations:       keep(p.Annotations, admission.BreakGlassAnnotation),
		},
		Spec: corev1.PodSpec{
			Containers:     images(p.Spec.Containers),
			InitContainers: images(p.Spec.InitContainers),
		},
		Status: corev1.PodStatus{Phase: p.Status.Phase,
			InitContainerStatuses:      imageIDs(p.Status.InitContainerStatuses),
			ContainerStatuses:          imageIDs(p.Status.ContainerStatuses),
			EphemeralContainerStatuses: imageIDs(p.Status.EphemeralContainerStatuses),
		},
	}
	for _, c := range p.Spec.EphemeralContainers {
		out.Spec.EphemeralContainers = append(out.Spec.EphemeralContainers, corev1.EphemeralContainer{
			EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: c.Name, Image: c.Image}})
	}
	for _, v := range p.Spec.Volumes {
		if v.Image != nil {
			out.Spec.Volumes = append(out.Spec.Volumes, corev1.Volume{Name: v.Name,
				VolumeSource: corev1.VolumeSource{Image: &corev1.ImageVolumeSource{Reference: v.Image.Reference}}})
		}
	}
	return out, nil
}

// imageIDs keeps of container statuses the digest each container runs, as
// the kubelet reports it (imageID, "repository@sha256:…"): what a pod named
// by tag runs, whatever the tag points at now or whether the registry
// answers. An imageID without a repository digest (a local image's config
// ID) names no manifest, and goes.
func imageIDs(ss []corev1.ContainerStatus) []corev1.ContainerStatus {
	var out []corev1.ContainerStatus
	for _, s := range ss {
		if runningDigest(s.ImageID) != "" {
			out = append(out, corev1.ContainerStatus{Name: s.Name, ImageID: s.ImageID})
		}
	}
	return out
}

// runningDigest is the manifest digest of a container status's imageID,
// "" when it names none.
func runningDigest(imageID string) string {
	i := strings.LastIndex(imageID, "@")
	if i < 0 || !strings.HasPrefix(imageID[i+1:], "sha256:") {
		return ""
	}
	return imageID[i+1:]
}

// stripNamespace keeps a namespace's name and stage label.
func stripNamespace(obj any) (any, error) {
	ns, ok := obj.(*corev1.Namespace)
	if !ok {
		return obj, nil
	}
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:            ns.Name,
		UID:             ns.UID,
		ResourceVersion: ns.ResourceVersion,
		Labels:          keep(ns.Labels, admission.StageLabel),
	}}, nil
}

func keep(m map[string]string, key string) map[string]string {
	if v, ok := m[key]; ok {
		return map[string]string{key: v}
	}
	return nil
}

func images(cs []corev1.Container) []corev1.Container {
	if len(cs) == 0 {
		return nil
	}
	out := make([]corev1.Container, len(cs))
	for i, c := range cs {
		out[i] = corev1.Container{Name: c.Name, Image: c.Image}
	}
	return out
}

// stage is the stage a pod runs in: its own label, as admission's object
// selector reads it first, else its namespace's.
func stage(p *corev1.Pod, ns *corev1.Namespace) string {
	if v, ok := p.Labels[admission.StageLabel]; ok {
		return v
	}
	if ns == nil {
		return ""
	}
	return ns.Labels[admission.StageLabel]
}

// gated is whether a pod's images run or may still run: a finished pod
// runs nothing, and one being deleted is leaving.
func gated(p *corev1.Pod) bool {
	switch p.Status.Phase {
	case corev1.PodSucceeded, corev1.PodFailed:
		return false
	}
	return p.DeletionTimestamp == nil
}

// changed is whether an update of a (stripped) pod may change its answer;
// status updates that only move the resourceVersion do not.
func changed(old, cur *corev1.Pod) bool {
	o, c := *old, *cur
	o.ResourceVersion, c.ResourceVersion = "", ""
	return !equality.Semantic.DeepEqual(&o, &c)
}

// stageKey is the label that names a stage.
const stageKey = admission.StageLabel

var everything = labels.Everything()
