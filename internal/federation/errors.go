package federation

import "errors"

// Errors returned (wrapped) by this package.
var (
	// ErrStale means a stage requires a fresh registry source and the
	// newest revocation list of a source is missing or older than its
	// bound: a revocation made there since could be hidden here by
	// whoever can write to the registry.
	ErrStale = errors.New("registry source not known to be fresh")
)
