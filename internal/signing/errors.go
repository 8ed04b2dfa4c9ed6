package signing

import "errors"

// Sentinel errors returned (wrapped) by this package. Callers match them with
// errors.Is; the wrapping message carries the detail (path, field, values).
var (
	// ErrExists is returned by GenerateKeys when any of the key files already
	// exists: keys are never overwritten, because losing the cosign key would
	// orphan every attestation signed with it.
	ErrExists = errors.New("key file already exists")

	// ErrKeyPermissions is returned when a private key file is accessible by
	// group or others.
	ErrKeyPermissions = errors.New("private key file permissions too open")

	// ErrBadPassword is returned when the cosign private key cannot be
	// decrypted with the given password.
	ErrBadPassword = errors.New("wrong password for private key")

	// ErrInvalidKey is returned for a key file that is not a key of the
	// expected kind.
	ErrInvalidKey = errors.New("invalid key")

	// ErrInvalidDigest is returned for a digest that is not "sha256:<64 hex>".
	ErrInvalidDigest = errors.New("invalid digest")

	// ErrInvalidEnvelope is returned for bytes that are not a DSSE envelope
	// with the in-toto payload type.
	ErrInvalidEnvelope = errors.New("invalid DSSE envelope")

	// ErrBadSignature is returned when no signature of an envelope verifies
	// with the public key.
	ErrBadSignature = errors.New("signature verification failed")

	// ErrInvalidStatement is returned for a payload that is not a well-formed
	// in-toto Statement v1, or a statement NewStatement refuses to build.
	ErrInvalidStatement = errors.New("invalid in-toto statement")

	// ErrEntryMismatch is returned by the CheckEntry function when a verified
	// attestation does not describe the ledger entry it is stored with.
	ErrEntryMismatch = errors.New("attestation does not match ledger entry")
)
