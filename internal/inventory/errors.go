package inventory

import "errors"

// ErrNotSynced is returned by Run when the informers' caches never fill,
// e.g. because the API server refuses to list pods, by Lead when Run ended
// before they did, and by the answers (Running, Violations) until every
// namespace was evaluated once and after Run returned.
var ErrNotSynced = errors.New("inventory: the inventory of running pods is not synced with the cluster")
