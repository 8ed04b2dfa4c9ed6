package admission

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
)

// MutatePath is the route of the opt-in mutating webhook that pins tags.
const MutatePath = "/admission/mutate/{stage}"

// jsonPatchOp is one RFC 6902 operation.
type jsonPatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value string `json:"value"`
}

// Pin answers the mutating webhook: it rewrites each image referenced by
// tag to "reference@digest", with the digest the tag resolves to now,
// through the same cache the validating webhook reads. A tag is checked at
// admission but pulled by the kubelet later, so without this a tag moved in
// between runs an image that was never checked; pinned, the kubelet pulls
// exactly the digest the validating webhook then decides on (the API server
// calls mutating webhooks first). The same is done by sigstore
// policy-controller and Kyverno's mutateDigest.
//
// Pin never refuses: whatever it cannot pin (a registry down, a malformed
// reference) it leaves as it is, for the validating webhook to decide.
func (r *Reviewer) Pin(ctx context.Context, stage string, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	if req == nil {
		return Denied("", http.StatusBadRequest, fmt.Sprintf("stagegate could not decide: %v: no request", ErrBadReview))
	}
	if req.Operation != admissionv1.Create && req.Operation != admissionv1.Update {
		return Allowed(req.UID)
	}
	if r.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, r.timeout)
		defer cancel()
	}
	w, err := extractWorkload(req, nil)
	if err != nil || len(w.Images) == 0 || len(w.Images) > r.maxImages {
		return Allowed(req.UID)
	}
	// On an update, only images the update changes are pinned: pinning an
	// unchanged image of a running pod would change its spec, and the
	// kubelet would restart the container, maybe on another digest.
	var old map[string]string
	if req.Operation == admissionv1.Update && len(req.OldObject.Raw) > 0 {
		oreq := *req
		oreq.Object = req.OldObject
		if ow, err := extractWorkload(&oreq, nil); err == nil {
			old = make(map[string]string, len(ow.Images))
			for _, c := range ow.Images {
				old[c.Path] = c.Image
			}
		}
	}
	var ops []jsonPatchOp
	for _, c := range w.Images {
		if prev, ok := old[c.Path]; ok && prev == c.Image {
			continue
		}
		// An artifact kind's reference is no image string at c.Path (a
		// HelmChart's is its version, an OCIRepository's a bare tag):
		// writing "repo:tag@digest" there would break the object.
		if artifactType(c.Type) {
			continue
		}
		ref, err := r.refs.parse(c.Image)
		if err != nil || ref.Digest != "" {
			continue
		}
		d, errText := r.resolve(ctx, ref)
		if errText != "" {
			r.log.Info("admission: tag not pinned", "stage", stage, "workload", w.ID(), "image", c.Image, "reason", errText)
			continue
		}
		ops = append(ops, jsonPatchOp{Op: "replace", Path: c.Path, Value: c.Image + "@" + d})
	}
	resp := Allowed(req.UID)
	if len(ops) == 0 {
		return resp
	}
	patch, err := json.Marshal(ops)
	if err != nil {
		return resp
	}
	pt := admissionv1.PatchTypeJSONPatch
	resp.Patch, resp.PatchType = patch, &pt
	r.log.Debug("admission: pinned tags", "stage", stage, "workload", w.ID(), "images", len(ops))
	return resp
}
