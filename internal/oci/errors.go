package oci

import "errors"

// Errors returned by this package, wrapped with the operation and the
// reference. Callers map them like the registry package's: a bad reference or
// envelope is the caller's to fix, a missing image is a 404, and anything
// that kept us from talking to the registry is a 502.
var (
	// ErrInvalidReference means a repository, digest or tag does not parse.
	ErrInvalidReference = errors.New("invalid reference")
	// ErrInvalidEnvelope means Attach was given something that is not a DSSE
	// envelope of an in-toto statement about the digest.
	ErrInvalidEnvelope = errors.New("invalid attestation envelope")
	// ErrNotFound means the registry answered that the image does not exist.
	ErrNotFound = errors.New("image not found in registry")
	// ErrUnauthorized means the registry refused our credentials (or asked
	// for some and we had none).
	ErrUnauthorized = errors.New("registry refused the credentials")
	// ErrRegistry means the registry could not be asked or answered with an
	// unexpected error.
	ErrRegistry = errors.New("registry request failed")
)
