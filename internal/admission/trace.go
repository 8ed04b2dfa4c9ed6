package admission

import (
	"context"

	"github.com/stagegate/stagegate/internal/ledger"
)

// Trace is what one review found, for callers that must explain a decision
// and not only pass it on (continuous validation says which image is
// revoked, and by which ledger entry). It never changes the decision nor
// the webhook's answer. Attach one with WithTrace.
type Trace struct {
	// UnknownStage is that the stage is not configured: every workload
	// with images was refused for that alone.
	UnknownStage bool
	// Images are the images the review checked, with what it learned.
	Images []TracedImage
	// Deny is what the policy (and the freshness check) refused the
	// workload for, before the stage's mode and break-glass: a stage in
	// warn or audit mode admits a workload that has Deny.
	Deny []string
}

// TracedImage is one image of a review.
type TracedImage struct {
	Container string
	Image     string
	// Digest is the image's digest, from the reference or the registry;
	// empty when it could not be learned (then Error says why).
	Digest string
	Error  string
	// Found is that the ledger knows Digest in the stage; State is then
	// its state there, with the indices of the entries in force.
	Found bool
	State ledger.State
}

type traceKey struct{}

// WithTrace returns a context under which Review fills t.
func WithTrace(ctx context.Context, t *Trace) context.Context {
	return context.WithValue(ctx, traceKey{}, t)
}

func traceFrom(ctx context.Context) *Trace {
	t, _ := ctx.Value(traceKey{}).(*Trace)
	return t
}
