// Package lru is a map bounded to a number of entries that drops the least
// recently used one: for every cache and index keyed by what clients send
// (digests, workloads), so that none grows without bound.
package lru

import "container/list"

// Map is a bounded map. It is not safe for concurrent use; callers lock.
type Map[K comparable, V any] struct {
	size  int
	order *list.List // of K, most recent first
	items map[K]*list.Element
	vals  map[K]V
}

// New returns a Map of at most size entries (at least 1).
func New[K comparable, V any](size int) *Map[K, V] {
	return &Map[K, V]{size: max(size, 1), order: list.New(), items: map[K]*list.Element{}, vals: map[K]V{}}
}

// Get returns the value of k and makes it the most recent.
func (c *Map[K, V]) Get(k K) (V, bool) {
	el, ok := c.items[k]
	if !ok {
		var zero V
		return zero, false
	}
	c.order.MoveToFront(el)
	return c.vals[k], true
}

// Put sets k, dropping the least recent entry when the map is full.
func (c *Map[K, V]) Put(k K, v V) {
	if el, ok := c.items[k]; ok {
		c.order.MoveToFront(el)
		c.vals[k] = v
		return
	}
	c.items[k] = c.order.PushFront(k)
	c.vals[k] = v
	for c.order.Len() > c.size {
		old := c.order.Remove(c.order.Back()).(K)
		delete(c.items, old)
		delete(c.vals, old)
	}
}

// Len is the number of entries.
func (c *Map[K, V]) Len() int { return c.order.Len() }
