package admission

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestCachingResolver(t *testing.T) {
	type step struct {
		advance    time.Duration
		ref        string
		wantDigest string
		wantErr    bool
		wantCalls  int // upstream calls so far
	}
	tests := map[string]struct {
		size        int
		ttl, errTTL time.Duration
		failing     bool
		steps       []step
	}{
		"hit within ttl, miss after": {
			size: 10, ttl: time.Minute, errTTL: time.Second,
			steps: []step{
				{ref: "a", wantDigest: digestA, wantCalls: 1},
				{advance: 59 * time.Second, ref: "a", wantDigest: digestA, wantCalls: 1},
				{advance: time.Second, ref: "a", wantDigest: digestA, wantCalls: 2},
			},
		},
		"errors are cached briefly": {
			size: 10, ttl: time.Minute, errTTL: 10 * time.Second, failing: true,
			steps: []step{
				{ref: "a", wantErr: true, wantCalls: 1},
				{advance: 9 * time.Second, ref: "a", wantErr: true, wantCalls: 1},
				{advance: time.Second, ref: "a", wantErr: true, wantCalls: 2},
			},
		},
		"least recently used is evicted": {
			size: 2, ttl: time.Minute, errTTL: time.Second,
			steps: []step{
				{ref: "a", wantDigest: digestA, wantCalls: 1},
				{ref: "b", wantDigest: digestB, wantCalls: 2},
				{ref: "a", wantDigest: digestA, wantCalls: 2}, // a is now the most recent
				{ref: "c", wantDigest: digestC, wantCalls: 3}, // evicts b
				{ref: "a", wantDigest: digestA, wantCalls: 3},
				{ref: "b", wantDigest: digestB, wantCalls: 4},
			},
		},
		"zero ttl disables caching": {
			size: 10, ttl: 0, errTTL: 0,
			steps: []step{
				{ref: "a", wantDigest: digestA, wantCalls: 1},
				{ref: "a", wantDigest: digestA, wantCalls: 2},
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			up := &fakeResolver{digests: map[string]string{"a": digestA, "b": digestB, "c": digestC}}
			if tc.failing {
				up.err = errors.New("connection refused")
			}
			c := newCachingResolver(up, tc.size, tc.ttl, tc.errTTL, time.Second)
			now := time.Unix(1e9, 0)
			c.now = func() time.Time { return now }
			for i, s := range tc.steps {
				now = now.Add(s.advance)
				d, err := c.Digest(context.Background(), s.ref)
				if (err != nil) != s.wantErr || d != s.wantDigest {
					t.Fatalf("step %d: Digest(%q) = %q, %v; want %q, err %v", i, s.ref, d, err, s.wantDigest, s.wantErr)
				}
				if up.calls != s.wantCalls {
					t.Fatalf("step %d: %d upstream calls, want %d", i, up.calls, s.wantCalls)
				}
				if c.len() > tc.size {
					t.Fatalf("step %d: cache holds %d entries, bound %d", i, c.len(), tc.size)
				}
			}
		})
	}
}

// A canceled request does not poison the shared lookup: the registry call is
// detached from the caller's cancellation (but still bounded), so the next
// caller gets its answer without a second registry call. The canceled caller
// itself stops waiting at once: its review is over.
func TestCachingResolverDetachedContext(t *testing.T) {
	up := &ctxResolver{release: make(chan struct{})}
	c := newCachingResolver(up, 10, time.Minute, time.Second, time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Digest(ctx, "a"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Digest with a canceled caller = %v, want context.Canceled", err)
	}
	close(up.release)
	d, err := c.Digest(context.Background(), "a")
	if err != nil || d != digestA {
		t.Fatalf("Digest after the canceled caller = %q, %v", d, err)
	}
	up.mu.Lock()
	defer up.mu.Unlock()
	if up.calls != 1 {
		t.Errorf("registry calls = %d, want 1 (the canceled caller's, shared)", up.calls)
	}
	if !up.hadDeadline {
		t.Error("registry call has no deadline")
	}
}

type ctxResolver struct {
	release     chan struct{}
	mu          sync.Mutex
	calls       int
	hadDeadline bool
}

func (r *ctxResolver) Digest(ctx context.Context, _ string) (string, error) {
	<-r.release
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	_, r.hadDeadline = ctx.Deadline()
	return digestA, ctx.Err()
}
