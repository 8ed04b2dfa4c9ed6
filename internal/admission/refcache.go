package admission

import "sync"

// refCacheSize bounds the parsed-reference cache. A cluster runs far fewer
// distinct images than this; when a flood of new ones fills it, it starts
// over rather than tracking recency, which is cheaper on the hot path.
const refCacheSize = 8192

// refCache remembers parsed image references. Parsing with
// go-containerregistry was a sixth of a review, and the same few images
// come back in nearly every request. Errors are not cached: a malformed
// reference is rare and should not occupy room.
type refCache struct {
	mu   sync.RWMutex
	refs map[string]imageRef
}

func (c *refCache) parse(s string) (imageRef, error) {
	c.mu.RLock()
	r, ok := c.refs[s]
	c.mu.RUnlock()
	if ok {
		return r, nil
	}
	r, err := parseImage(s)
	if err != nil {
		return r, err
	}
	c.mu.Lock()
	if c.refs == nil || len(c.refs) >= refCacheSize {
		c.refs = make(map[string]imageRef, 64)
	}
	c.refs[s] = r
	c.mu.Unlock()
	return r, nil
}
