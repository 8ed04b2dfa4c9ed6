package promotion

import (
	"errors"
	"strings"
)

// Errors of the promotion use case. The API maps ErrInvalid to 400,
// *DeniedError to 403 and ErrNotPromoted to 409; registry errors pass
// through from internal/registry.
var (
	// ErrInvalid means the request itself is wrong; the message says how.
	ErrInvalid = errors.New("invalid request")
	// ErrNotPromoted means a revocation names a digest that is not promoted
	// where it says.
	ErrNotPromoted = errors.New("not promoted")
)

// DeniedError carries every violation the promotion policy reported.
type DeniedError struct {
	Stage      string
	Violations []string
}

func (e *DeniedError) Error() string {
	return "promotion to " + e.Stage + " denied by policy: " + strings.Join(e.Violations, "; ")
}
