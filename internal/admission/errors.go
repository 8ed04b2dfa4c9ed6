package admission

import (
	"errors"

	"github.com/stagegate/stagegate/internal/registry"
)

// Sentinel errors of package admission. Callers match them with errors.Is.
var (
	// ErrUnreadable means an object holds a pod spec admission cannot
	// read (a field of the wrong type, or nesting beyond any real
	// workload's); the webhook fails closed on it.
	ErrUnreadable = errors.New("admission: cannot read the pod spec")
	// ErrTooManyImages means a workload names more images than one review
	// checks (WithMaxImages).
	ErrTooManyImages = errors.New("admission: too many images")
	// ErrDeadline means a review ran out of its time (WithReviewTimeout)
	// before every image was looked up.
	ErrDeadline = errors.New("admission: review deadline exceeded")
	// ErrDecode means the object in a request or manifest could not be decoded.
	ErrDecode = errors.New("admission: cannot decode object")
	// ErrBadReference means an image reference does not parse, or names a
	// digest that is not a lowercase sha256 digest. It is
	// registry.ErrInvalidReference: one parser, one error.
	ErrBadReference = registry.ErrInvalidReference
	// ErrNoResolver means an image is referenced by tag and no registry
	// resolver is configured to learn its digest.
	ErrNoResolver = errors.New("admission: image not pinned by digest and no resolver configured")
	// ErrUnknownStage means the stage in the URL, or the stage label of a
	// namespace or object, is not a configured stage.
	ErrUnknownStage = errors.New("admission: unknown stage")
	// ErrBadReview means an HTTP request did not carry a usable AdmissionReview v1.
	ErrBadReview = errors.New("admission: bad AdmissionReview")
)
