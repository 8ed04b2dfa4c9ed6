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
// runs only by break-glass.
type Violation struct {
	Namespace, Pod string
	UID            string
	Stage          string
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
	// Owner is the pod's controller, or the pod itself.
	Owner corev1.ObjectReference
}

// evaluate reviews p in stage as a dry-run CREATE and returns its violation,
// if any, and the images it runs with their digests (for Invalidate's index
// and the answers to "where does this digest run?").
func evaluate(ctx context.Context, r Reviewer, p *corev1.Pod, stage string) (*Violation, []Container, error) {
	raw, err := json.Marshal(p)
	if err != nil {
		return nil, nil, fmt.Errorf("inventory: encode pod %s/%s: %w", p.Namespace, p.Name, err)
	}
	req, err := admission.DryRunRequest(string(p.UID), raw)
	if err != nil {
		return nil, nil, fmt.Errorf("inventory: pod %s/%s: %w", p.Namespace, p.Name, err)
	}
	var tr admission.Trace
	resp := r.Review(admission.WithTrace(ctx, &tr), stage, req)
	learned := make(map[string]string, len(tr.Images))
	for _, im := range tr.Images {
		if im.Digest != "" {
			learned[im.Container+"\x00"+im.Image] = im.Digest
		}
	}
	cs := containers(p, func(c, image string) string { return learned[c+"\x00"+image] })
	return classify(p, stage, resp, &tr), cs, nil
}

// Container is one image a running pod runs, and its digest when known.
type Container struct {
	Name, Image, Digest string
}

// containers lists p's images with the digest learn finds, or the one the
// reference names; a pod the review did not reach (an ungated namespace's)
// is known by the digests its references name.
func containers(p *corev1.Pod, learn func(container, image string) string) []Container {
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
		out = append(out, Container{Name: name, Image: image, Digest: d})
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
func classify(p *corev1.Pod, stage string, resp *admissionv1.AdmissionResponse, tr *admission.Trace) *Violation {
	breakGlass := resp.Allowed && resp.AuditAnnotations[admission.AuditBreakGlass] != ""
	if resp.Allowed && !breakGlass && len(tr.Deny) == 0 {
		return nil
	}
	v := &Violation{Namespace: p.Namespace, Pod: p.Name, UID: string(p.UID), Stage: stage, Owner: owner(p)}
	if len(tr.Deny) > 0 {
		v.Message = strings.Join(tr.Deny, "; ")
	} else if resp.Result != nil {
		v.Message = resp.Result.Message
	}
	v.Image = firstImage(p)
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

func firstImage(p *corev1.Pod) string {
	for _, cs := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for _, c := range cs {
			return c.Image
		}
	}
	return ""
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
