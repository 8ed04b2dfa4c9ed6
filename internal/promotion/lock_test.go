package promotion

import (
	"context"
	"runtime"
	"sync"
	"testing"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/oci"
)

// holdingRegistry holds the first Attach of an image until release is
// closed, and notes whether two Attach calls of one image ever overlapped.
type holdingRegistry struct {
	entered chan struct{} // closed when the first Attach is inside
	release chan struct{}

	mu       sync.Mutex
	inflight map[string]int
	attached map[string]int
	overlap  bool
}

func (r *holdingRegistry) Attach(_ context.Context, repo, digest string, _ []byte) error {
	key := repo + "@" + digest
	r.mu.Lock()
	r.inflight[key]++
	r.overlap = r.overlap || r.inflight[key] > 1
	r.attached[key]++
	first := r.attached[key] == 1 && key == "reg.example/a@sha256:a"
	r.mu.Unlock()
	if first {
		close(r.entered)
		<-r.release
	}
	r.mu.Lock()
	r.inflight[key]--
	r.mu.Unlock()
	return nil
}

func (r *holdingRegistry) count(key string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.attached[key]
}

func (*holdingRegistry) MoveTag(context.Context, string, string, string) error { return nil }
func (*holdingRegistry) Copy(context.Context, string, string, string, oci.Progress) error {
	return nil
}
func (*holdingRegistry) Attestations(context.Context, string, string) ([][]byte, error) {
	return nil, nil
}

// TestPublicationsOfOneImageDoNotOverlap: attaching rewrites the image's
// .att tag (read, modify, write), so two publications of one image run one
// after the other, while another image is not held up; the locks are
// dropped once unused. The test inspects pubLocks to know that the second
// publication of the held image is waiting, instead of sleeping.
func TestPublicationsOfOneImageDoNotOverlap(t *testing.T) {
	reg := &holdingRegistry{entered: make(chan struct{}), release: make(chan struct{}),
		inflight: map[string]int{}, attached: map[string]int{}}
	s := New(nil, nil, nil, nil, []string{"dev"}, WithRegistry(reg, nil, nil))
	so := StageOptions{Attest: true}
	a := ledger.Entry{Repository: "reg.example/a", Digest: "sha256:a"}
	b := ledger.Entry{Repository: "reg.example/b", Digest: "sha256:b"}
	ctx := context.Background()

	var wg sync.WaitGroup
	errs := make([]error, 2)
	wg.Go(func() { errs[0] = s.publish(ctx, a, so, false) })
	<-reg.entered
	wg.Go(func() { errs[1] = s.publish(ctx, a, so, false) })
	users := func() int {
		s.pubMu.Lock()
		defer s.pubMu.Unlock()
		if l := s.pubLocks[a.Repository+"@"+a.Digest]; l != nil {
			return l.users
		}
		return 0
	}
	// Stop waiting, too, if the second publication got past where the
	// lock should be, so a missing lock fails rather than hangs.
	for users() < 2 && reg.count("reg.example/a@sha256:a") < 2 {
		runtime.Gosched()
	}
	// The second publication has taken its place behind the lock. Let it
	// run as far as it can: without the lock it would reach Attach now.
	for range 1000 {
		runtime.Gosched()
	}
	if n := reg.count("reg.example/a@sha256:a"); n != 1 {
		t.Errorf("second publication of a held image attached while the first was inside (%d attaches)", n)
	}
	// Another image is not held up by the first one's lock (a global lock
	// would deadlock here, as the first publication is still held).
	if err := s.publish(ctx, b, so, false); err != nil {
		t.Fatal(err)
	}
	close(reg.release)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("publication %d: %v", i, err)
		}
	}
	if reg.overlap {
		t.Error("two Attach calls of one image overlapped")
	}
	if n := reg.count("reg.example/a@sha256:a"); n != 2 {
		t.Errorf("%d attaches of the held image, want 2", n)
	}
	if len(s.pubLocks) != 0 {
		t.Errorf("%d image locks left after every publication ended", len(s.pubLocks))
	}
}
