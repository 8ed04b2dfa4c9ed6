package api

import (
	"context"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Reviewer is the admission decision, as `stagegate check --remote` asks
// for it.
type Reviewer interface {
	Review(ctx context.Context, stage string, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse
}

// WithReviewer serves POST /v1/reviews/{stage}: the webhook's decision for
// an AdmissionReview, for an authenticated client, as a dry run.
func WithReviewer(r Reviewer) Option { return func(a *API) { a.reviewer = r } }

// review answers an AdmissionReview sent by a client of the API rather than
// by the API server. The webhook's own listener takes reviews only from the
// API server (its client certificate); here the request is always a dry
// run, so nothing is recorded, and the user is the authenticated identity,
// never what the body claims, so that no decision can be asked for under a
// forged name.
func (a *API) review(w http.ResponseWriter, r *http.Request) {
	if a.reviewer == nil {
		a.fail(w, refuse(http.StatusNotFound, "no such endpoint"))
		return
	}
	var ar admissionv1.AdmissionReview
	b, err := readBody(r)
	if err != nil {
		a.fail(w, err)
		return
	}
	// Decoded as the webhook decodes what the API server sends:
	// case-sensitive, no field twice, unknown fields tolerated.
	if err := decodeJSON(b, &ar, strictReview); err != nil {
		a.fail(w, refuse(http.StatusBadRequest, "malformed AdmissionReview: %v", err))
		return
	}
	if ar.APIVersion != "admission.k8s.io/v1" || ar.Kind != "AdmissionReview" || ar.Request == nil || ar.Request.UID == "" {
		a.fail(w, refuse(http.StatusBadRequest, "body must be an admission.k8s.io/v1 AdmissionReview with a request and a uid"))
		return
	}
	id := identity(r)
	dry := true
	ar.Request.DryRun = &dry
	ar.Request.UserInfo = authenticationv1.UserInfo{Username: id.Subject, Groups: id.Groups}
	resp := a.reviewer.Review(r.Context(), r.PathValue("stage"), ar.Request)
	resp.UID = ar.Request.UID
	writeJSON(w, http.StatusOK, admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Response: resp,
	})
}
