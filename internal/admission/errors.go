package admission

import "errors"

// Sentinel errors of package admission. Callers match them with errors.Is.
var (
	// ErrUnknownKind means the request names a kind whose images admission
	// cannot find; the webhook fails closed on it.
	ErrUnknownKind = errors.New("admission: unsupported kind")
	// ErrDecode means the object in a request or manifest could not be decoded.
	ErrDecode = errors.New("admission: cannot decode object")
	// ErrBadReference means an image reference does not parse, or names a
	// digest that is not a lowercase sha256 digest.
	ErrBadReference = errors.New("admission: invalid image reference")
	// ErrNoResolver means an image is referenced by tag and no registry
	// resolver is configured to learn its digest.
	ErrNoResolver = errors.New("admission: image not pinned by digest and no resolver configured")
	// ErrUnknownStage means the stage in the URL is not a configured stage.
	ErrUnknownStage = errors.New("admission: unknown stage")
	// ErrBadReview means an HTTP request did not carry a usable AdmissionReview v1.
	ErrBadReview = errors.New("admission: bad AdmissionReview")
)
