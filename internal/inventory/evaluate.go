package inventory

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/stagegate/stagegate/internal/admission"
)

// Reviewer is admission's decision: *admission.Reviewer. Continuous
// validation asks it, so that a running pod is judged exactly as a new one.
type Reviewer interface {
	Review(ctx context.Context, stage string, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse
}

// Reason is why a running pod would not be admitted now.
type Reason string

// The reasons of a violation.
const (
	ReasonNotPromoted  Reason = "not promoted"
	ReasonRevoked      Reason = "revoked"
	ReasonBreakGlass   Reason = "break-glass"
	ReasonUnknownStage Reason = "unknown stage"
	// ReasonDenied is any other refusal: a custom policy's rule, a tag
	// whose digest cannot be learned, a pod naming too many images.
	ReasonDenied Reason = "denied"
)

// Violation is one running pod that admission would refuse now, or that
// runs only by break-glass; or a GitOps object (Flux OCIRepository, Argo CD
// Application) whose OCI artifact admission would refuse now.
type Violation struct {
	// Pod is the name of the pod, or of the object Kind says.
	Namespace, Pod string
	// APIVersion and Kind are the object's: "v1" and "Pod" for a pod.
	APIVersion, Kind string
	UID              string
	Stage            string
	// Image and Digest name the first image at fault (Digest is empty when
	// it could not be learned).
	Image, Digest string
	Reason        Reason
	// Message says why, with the evidence: who revoked, when, and for what.
	Message string
	// LedgerIndex is the ledger entry in force (the revocation), when
	// there is one.
	LedgerIndex    uint64
	HasLedgerIndex bool
	// Since is when the controller first saw the pod violate (the
	// report's timestamp).
	Since time.Time
	// Owner is the pod's controller, or the pod (or object) itself.
	Owner corev1.ObjectReference
}

// IsPod is whether v is a pod's, not a GitOps object's.
func (v *Violation) IsPod() bool { return v.Kind == "" || v.Kind == "Pod" }

// key is v's place in its namespace's violations, and in a page's After:
// the pod's name, or an object's kind and name.
func (v *Violation) key() string { return objectKey(v.Kind, v.Pod) }

// subject is what one evaluation reviews: a pod, or a GitOps object that
// deploys an OCI artifact.
type subject struct {
	apiVersion, kind     string
	namespace, name, uid string
	owner                corev1.ObjectReference
	// obj is the (stripped) object as the review reads it.
	obj any
	// images lists what it runs or deploys, with the digest learn finds
	// (learn may be nil).
	images func(learn func(container, image string) string) []Container
}

func podSubject(p *corev1.Pod) subject {
	return subject{apiVersion: "v1", kind: "Pod", namespace: p.Namespace, name: p.Name, uid: string(p.UID),
		owner: owner(p), obj: p,
		images: func(learn func(container, image string) string) []Container { return containers(p, learn) }}
}

// evaluate reviews s in stage as a dry-run CREATE and returns its violation,
// if any, and the images it runs with their digests (for Invalidate's index
// and the answers to "where does this digest run?").
func evaluate(ctx context.Context, r Reviewer, s subject, stage string) (*Violation, []Container, error) {
	raw, err := json.Marshal(s.obj)
	if err != nil {
		return nil, nil, fmt.Errorf("inventory: encode %s %s/%s: %w", s.kind, s.namespace, s.name, err)
	}
	req, err := admission.DryRunRequest(s.uid, raw)
	if err != nil {
		return nil, nil, fmt.Errorf("inventory: %s %s/%s: %w", s.kind, s.namespace, s.name, err)
	}
	var tr admission.Trace
	resp := r.Review(admission.WithTrace(ctx, &tr), stage, req)
	learned := make(map[string]string, len(tr.Images))
	for _, im := range tr.Images {
		if im.Digest != "" {
			learned[im.Container+"\x00"+im.Image] = im.Digest
		}
	}
	cs := s.images(func(c, image string) string { return learned[c+"\x00"+image] })
	return classify(s, stage, resp, &tr), cs, nil
}

// Container is one image a running pod runs, and its digest when known.
type Container struct {
	Name, Image string
	// Digest is the image's digest as the review learned it (the tag's
	// digest now), or as the reference names it.
	Digest string
	// Running is the digest the container runs, as the kubelet reports
	// it, when it does: it differs from Digest when the tag moved since
	// the container started, and is known when the tag cannot be
	// resolved.
	Running string
}

// runs is the digest the container runs: the kubelet's word, else the
// reference's.
func (c Container) runs() string {
	if c.Running != "" {
		return c.Running
	}
	return c.Digest
}

// containers lists p's images with the digest learn finds, or the one the
// reference names, and the one each runs; a pod the review did not reach
// (an ungated namespace's) is known by the digests its references name and
// its containers run.
func containers(p *corev1.Pod, learn func(container, image string) string) []Container {
	running := map[string]string{}
	for _, ss := range [][]corev1.ContainerStatus{p.Status.InitContainerStatuses, p.Status.ContainerStatuses, p.Status.EphemeralContainerStatuses} {
		for _, st := range ss {
			running[st.Name] = runningDigest(st.ImageID)
		}
	}
	var out []Container
	add := func(name, image string) {
		d := ""
		if learn != nil {
			d = learn(name, image)
		}
		if d == "" {
			if i := strings.LastIndex(image, "@"); i >= 0 {
				d = image[i+1:]
			}
		}
		out = append(out, Container{Name: name, Image: image, Digest: d, Running: running[name]})
	}
	for _, cs := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for _, c := range cs {
			add(c.Name, c.Image)
		}
	}
	for _, c := range p.Spec.EphemeralContainers {
		add(c.Name, c.Image)
	}
	for _, v := range p.Spec.Volumes {
		if v.Image != nil {
			add(v.Name, v.Image.Reference)
		}
	}
	return out
}

// classify turns a review and its trace into a violation, nil when the pod
// would be admitted as it is.
func classify(s subject, stage string, resp *admissionv1.AdmissionResponse, tr *admission.Trace) *Violation {
	breakGlass := resp.Allowed && resp.AuditAnnotations[admission.AuditBreakGlass] != ""
	if resp.Allowed && !breakGlass && len(tr.Deny) == 0 {
		return nil
	}
	v := &Violation{Namespace: s.namespace, Pod: s.name, APIVersion: s.apiVersion, Kind: s.kind, UID: s.uid, Stage: stage, Owner: s.owner}
	if len(tr.Deny) > 0 {
		v.Message = strings.Join(tr.Deny, "; ")
	} else if resp.Result != nil {
		v.Message = resp.Result.Message
	}
	if ims := s.images(nil); len(ims) > 0 {
		v.Image = ims[0].Image
	}
	if tr.UnknownStage {
		v.Reason = ReasonUnknownStage
		return v
	}
	v.Reason = ReasonDenied
	// The first image the ledger does not back names the violation; an
	// image whose digest could not be learned leaves it "denied".
	for _, im := range tr.Images {
		if im.Error != "" {
			continue
		}
		if im.Found && im.State.Revoked {
			v.Image, v.Digest, v.Reason = im.Image, im.Digest, ReasonRevoked
			v.LedgerIndex, v.HasLedgerIndex = im.State.RevokedIndex, true
			v.Message = fmt.Sprintf("image %q (%s) revoked at %s by %s: %s", im.Image, im.Digest,
				im.State.RevokedAt.UTC().Format(time.RFC3339), im.State.RevokedBy, im.State.RevokeReason)
			break
		}
		if !im.Found || !im.State.Promoted {
			v.Image, v.Digest, v.Reason = im.Image, im.Digest, ReasonNotPromoted
			break
		}
	}
	if breakGlass {
		// The pod runs because someone broke the glass; what it runs
		// despite is the message.
		v.Reason = ReasonBreakGlass
	}
	return v
}

// owner is the pod's controller (a ReplicaSet, a StatefulSet, a Job), where
// people look, else the pod.
func owner(p *corev1.Pod) corev1.ObjectReference {
	for _, o := range p.OwnerReferences {
		if o.Controller != nil && *o.Controller {
			return corev1.ObjectReference{APIVersion: o.APIVersion, Kind: o.Kind, Namespace: p.Namespace, Name: o.Name, UID: o.UID}
		}
	}
	return corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: p.Namespace, Name: p.Name, UID: p.UID}
}
