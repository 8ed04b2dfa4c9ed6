package oci

import "errors"

// Errors of this package. A registry failure is wrapped with one of
// internal/registry's sentinels, the one set for every registry path, so
// that callers map it once: registry.ErrInvalidReference for a repository,
// digest or tag that does not parse, registry.ErrNotFound for a missing
// image, registry.ErrUnauthorized for refused credentials, and
// registry.ErrUnreachable for a registry that could not be asked or
// answered with an unexpected error (a registry that did not answer in
// time comes as the *registry.TimeoutError of the client's transport).
var (
	// ErrInvalidEnvelope means Attach or PutEnvelope was given something
	// that is not a DSSE envelope of an in-toto statement about the digest,
	// or GetEnvelope found an artifact of another shape.
	ErrInvalidEnvelope = errors.New("invalid attestation envelope")
)
