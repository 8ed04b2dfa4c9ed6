package api

import (
	"context"

	"github.com/stagegate/stagegate/internal/policy"
)

type authenticatedKey struct{}

// WithAuthenticated returns ctx carrying id as the request's authenticated
// caller, which the API then takes instead of authenticating the request
// itself. Only code sets it: the peer port (internal/forward) does, for a
// write a follower forwarded, after verifying the follower's member
// certificate. No header or body of a request on the public API can.
func WithAuthenticated(ctx context.Context, id policy.Identity) context.Context {
	return context.WithValue(ctx, authenticatedKey{}, id)
}

// authenticated is the identity WithAuthenticated stored, if any.
func authenticated(ctx context.Context) (policy.Identity, bool) {
	id, ok := ctx.Value(authenticatedKey{}).(policy.Identity)
	return id, ok && id.Subject != ""
}

// Authenticated is the identity WithAuthenticated stored in ctx, if any:
// for the forwarder, which must let a write the web view makes for its
// signed-in person through as that person.
func Authenticated(ctx context.Context) (policy.Identity, bool) { return authenticated(ctx) }
