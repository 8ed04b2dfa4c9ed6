package admission

import (
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Allowed admits the request, with optional warnings shown to the client.
func Allowed(uid types.UID, warnings ...string) *admissionv1.AdmissionResponse {
	return &admissionv1.AdmissionResponse{
		UID:      uid,
		Allowed:  true,
		Result:   &metav1.Status{Status: metav1.StatusSuccess, Code: http.StatusOK},
		Warnings: warnings,
	}
}

// Denied refuses the request with an HTTP status code and a message the API
// server passes on to the client.
func Denied(uid types.UID, code int32, msg string) *admissionv1.AdmissionResponse {
	return &admissionv1.AdmissionResponse{
		UID:     uid,
		Allowed: false,
		Result: &metav1.Status{
			Status:  metav1.StatusFailure,
			Code:    code,
			Reason:  reasonForCode(code),
			Message: msg,
		},
	}
}

// Errored refuses a request that stagegate could not decide: it fails closed,
// with status 500 and the error as the message.
func Errored(uid types.UID, err error) *admissionv1.AdmissionResponse {
	return Denied(uid, http.StatusInternalServerError, err.Error())
}

func reasonForCode(code int32) metav1.StatusReason {
	switch code {
	case http.StatusForbidden:
		return metav1.StatusReasonForbidden
	case http.StatusBadRequest:
		return metav1.StatusReasonBadRequest
	case http.StatusRequestEntityTooLarge:
		return metav1.StatusReasonRequestEntityTooLarge
	case http.StatusUnsupportedMediaType:
		return metav1.StatusReasonUnsupportedMediaType
	case http.StatusTooManyRequests:
		return metav1.StatusReasonTooManyRequests
	case http.StatusInternalServerError:
		return metav1.StatusReasonInternalError
	default:
		return metav1.StatusReasonUnknown
	}
}
