package registry

import "errors"

// Errors returned by this package. Callers map them to HTTP statuses: a bad
// reference is the user's to fix (400), a missing image is 404, anything that
// kept us from asking the registry is 502.
var (
	// ErrInvalidReference means the image reference does not parse.
	ErrInvalidReference = errors.New("invalid image reference")
	// ErrNotFound means the registry answered that the image does not exist.
	ErrNotFound = errors.New("image not found in registry")
	// ErrUnauthorized means the registry refused our credentials.
	ErrUnauthorized = errors.New("registry refused the credentials")
	// ErrUnreachable means the registry could not be asked.
	ErrUnreachable = errors.New("registry unreachable")
)
