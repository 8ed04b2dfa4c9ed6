package promotion

import (
	"context"
)

// Replicas says which replicas of a cluster have applied an entry: a
// revocation's answer names them, so that whoever revoked knows where it
// is already in force.
type Replicas struct {
	Applied []string `json:"applied"`
	// Pending are those that had not applied it when the bounded wait
	// ended, or could not be asked (out of contact).
	Pending []string `json:"pending"`
}

// ReplicaWaiter waits, bounded, until every replica in contact has
// applied the entry at index (internal/app's replica).
type ReplicaWaiter interface {
	WaitApplied(ctx context.Context, index uint64) Replicas
}

// WithReplicaWaiter makes Revoke answer only once every replica in
// contact has applied the revocation (bounded by w), and say which have.
func WithReplicaWaiter(w ReplicaWaiter) Option { return func(s *Service) { s.replicas = w } }

// waitReplicas fills res.Replicas when the Service has a waiter.
func (s *Service) waitReplicas(ctx context.Context, res *Result) {
	if s.replicas == nil {
		return
	}
	r := s.replicas.WaitApplied(ctx, res.Receipt.Entry.Index)
	res.Replicas = &r
}
