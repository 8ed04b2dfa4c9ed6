package inventory

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/stagegate/stagegate/internal/admission"
	"github.com/stagegate/stagegate/internal/ledger"
)

// tags is a registry's answer to "what digest does this tag name now?",
// which a test moves, or takes down.
type tags struct {
	mu   sync.Mutex
	tags map[string]string
	down bool
}

func (r *tags) Digest(_ context.Context, ref string) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.down {
		return "", errors.New("registry unavailable")
	}
	if d, ok := r.tags[ref]; ok {
		return d, nil
	}
	return "", errors.New("no such tag")
}

func (r *tags) set(fn func(*tags)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fn(r)
}

// podRunning creates a pod named by tag and, as a kubelet would once its
// container started, reports the digest it runs (imageID), when given.
func (e *env) podRunning(t *testing.T, ns, name, img, imageID string) {
	t.Helper()
	p, err := e.cs.CoreV1().Pods(ns).Create(t.Context(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: img}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Status.Phase = corev1.PodRunning
	if imageID != "" {
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "app", Image: img, ImageID: imageID, Ready: true,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(e.clock.Now())}}}}
	}
	if _, err := e.cs.CoreV1().Pods(ns).UpdateStatus(t.Context(), p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// waitRunning polls Running(digests) until it reads want.
func (e *env) waitRunning(t *testing.T, digests []string, want string) {
	t.Helper()
	var last string
	err := wait.PollUntilContextTimeout(t.Context(), 20*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		pods, total, err := e.ctrl.Running(digests, "", 10)
		if err != nil {
			last = err.Error()
			return false, nil
		}
		last = runningString(pods, total)
		return last == want, nil
	})
	if err != nil {
		t.Fatalf("Running(%v): %v\n got %s\nwant %s", digests, err, last, want)
	}
}

// TestRunningByTag (issue 15): a pod that names its image by tag is found
// where the digest it runs is asked for: by the digest the kubelet says it
// runs, else by the one its tag names now. A moved tag does not move a
// started pod, and a registry that does not answer does not hide it; the
// review itself still asks the tag, as admission would now, and fails
// closed when it cannot learn the digest.
func TestRunningByTag(t *testing.T) {
	tagged := repo + ":v1"
	reg := &tags{tags: map[string]string{tagged: digestA}}
	// No cache: a moved tag is seen at the next evaluation, not after the
	// Reviewer's TTL, as admission would see it.
	e := newEnvWith(t, envConfig{reviewer: []admission.Option{admission.WithResolver(reg), admission.WithResolverCache(16, 0, 0)}})
	e.appendEntry(t, ledger.KindPromotion, digestA, "test", "")
	e.appendEntry(t, ledger.KindPromotion, digestB, "test", "")
	e.namespace(t, "tags", "test")
	// started runs A, as its kubelet reports; pending has not started.
	e.podRunning(t, "tags", "started", tagged, repo+"@"+digestA)
	e.podRunning(t, "tags", "pending", tagged, "")
	// A config ID names no manifest: this pod is known by its tag alone.
	e.podRunning(t, "tags", "local", tagged, "sha256:"+digestC[len("sha256:"):])
	e.start(t)

	t.Run("by tag, in running", func(t *testing.T) {
		e.waitReport(t, "tags", report{pass: 3})
		e.waitRunning(t, []string{digestA}, "tags/local Pod/local test [app]; tags/pending Pod/pending test [app]; tags/started Pod/started test [app]; total=3")
	})
	t.Run("a moved tag does not move a started pod", func(t *testing.T) {
		reg.set(func(r *tags) { r.tags[tagged] = digestB })
		// No event announces a moved tag: the sweep finds it.
		e.ctrl.InvalidateAll()
		e.waitRunning(t, []string{digestB}, "tags/local Pod/local test [app]; tags/pending Pod/pending test [app]; total=2")
		e.waitRunning(t, []string{digestA}, "tags/started Pod/started test [app]; total=1")
	})
	t.Run("a revocation of what it runs or what its tag names re-checks it", func(t *testing.T) {
		idx := e.appendEntry(t, ledger.KindRevocation, digestB, "test", "CVE-2026-0015")
		e.ctrl.Invalidate(digestB)
		b := strconv.FormatUint(idx, 10)
		e.waitReport(t, "tags", report{fail: 3, results: []result{
			{pod: "local", reason: "revoked", digest: digestB, ledgerIndex: b},
			{pod: "pending", reason: "revoked", digest: digestB, ledgerIndex: b},
			// It runs A, but a restart would pull B: admission would
			// refuse the pod as it is now.
			{pod: "started", reason: "revoked", digest: digestB, ledgerIndex: b},
		}})
	})
	t.Run("a tag that cannot be resolved", func(t *testing.T) {
		reg.set(func(r *tags) { r.down = true })
		e.ctrl.InvalidateAll()
		// Refused, as admission refuses what it cannot check...
		e.waitReport(t, "tags", report{fail: 3, results: []result{
			{pod: "local", reason: "denied"}, {pod: "pending", reason: "denied"}, {pod: "started", reason: "denied"},
		}})
		// ...and still found where the kubelet says what runs.
		e.waitRunning(t, []string{digestA}, "tags/started Pod/started test [app]; total=1")
		e.waitRunning(t, []string{digestB}, "total=0")
	})
}
