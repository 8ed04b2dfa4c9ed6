package inventory

import "errors"

// ErrNotSynced is returned by Run when the informers' caches never fill,
// e.g. because the API server refuses to list pods.
var ErrNotSynced = errors.New("inventory: caches not synced")
