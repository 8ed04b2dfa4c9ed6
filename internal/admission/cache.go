package admission

import (
	"container/list"
	"context"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// Defaults of the tag → digest cache.
const (
	DefaultResolverCacheSize = 1024
	// DefaultResolverTTL is short because a cached answer is a window in
	// which a moved tag is still admitted as the old digest; the kubelet
	// pulls the tag later anyway (see the mutating webhook, which pins it).
	DefaultResolverTTL = 30 * time.Second
	// DefaultResolverErrorTTL is short: long enough that a down registry is
	// not asked again by every pod of a rollout, short enough that admission
	// recovers soon after the registry does.
	DefaultResolverErrorTTL = 10 * time.Second
	DefaultResolverTimeout  = 5 * time.Second
	// DefaultReviewTimeout is below the webhook's default timeoutSeconds
	// (5), so that a slow registry ends in stagegate's own refusal.
	DefaultReviewTimeout = 4 * time.Second
	// DefaultMaxImages is far more than any real pod names (every
	// container, init and ephemeral container and image volume counts).
	DefaultMaxImages = 64
)

// cachingResolver is a bounded LRU of tag → digest answers with a TTL, errors
// included. Concurrent misses for one reference share one registry call.
type cachingResolver struct {
	next    Resolver
	size    int
	ttl     time.Duration
	errTTL  time.Duration
	timeout time.Duration
	now     func() time.Time
	group   singleflight.Group
	mu      sync.Mutex
	lru     *list.List // of *cacheEntry, most recent first
	entries map[string]*list.Element
}

type cacheEntry struct {
	ref     string
	digest  string
	err     error
	expires time.Time
}

func newCachingResolver(next Resolver, size int, ttl, errTTL, timeout time.Duration) *cachingResolver {
	if size <= 0 {
		size = DefaultResolverCacheSize
	}
	return &cachingResolver{
		next: next, size: size, ttl: ttl, errTTL: errTTL, timeout: timeout,
		now:     time.Now,
		lru:     list.New(),
		entries: make(map[string]*list.Element),
	}
}

// Digest answers from the cache, or asks the wrapped resolver.
func (c *cachingResolver) Digest(ctx context.Context, ref string) (string, error) {
	if d, err, ok := c.get(ref); ok {
		return d, err
	}
	ch := c.group.DoChan(ref, func() (any, error) {
		// The shared call must not die with the first caller's context, but
		// it is bounded so that a hung registry cannot hold admission.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout)
		defer cancel()
		d, err := c.next.Digest(cctx, ref)
		c.put(ref, d, err)
		return d, err
	})
	// Each caller waits only as long as its own review may: the shared call
	// goes on for the others and fills the cache.
	select {
	case res := <-ch:
		if res.Err != nil {
			return "", res.Err
		}
		return res.Val.(string), nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

func (c *cachingResolver) get(ref string) (string, error, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.entries[ref]
	if !ok {
		return "", nil, false
	}
	e := el.Value.(*cacheEntry)
	if !c.now().Before(e.expires) {
		c.lru.Remove(el)
		delete(c.entries, ref)
		return "", nil, false
	}
	c.lru.MoveToFront(el)
	return e.digest, e.err, true
}

func (c *cachingResolver) put(ref, digest string, err error) {
	ttl := c.ttl
	if err != nil {
		ttl = c.errTTL
	}
	if ttl <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e := &cacheEntry{ref: ref, digest: digest, err: err, expires: c.now().Add(ttl)}
	if el, ok := c.entries[ref]; ok {
		el.Value = e
		c.lru.MoveToFront(el)
		return
	}
	c.entries[ref] = c.lru.PushFront(e)
	for c.lru.Len() > c.size {
		last := c.lru.Back()
		c.lru.Remove(last)
		delete(c.entries, last.Value.(*cacheEntry).ref)
	}
}

// len reports the number of cached answers.
func (c *cachingResolver) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}
