package admission

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/policy"
	"github.com/stagegate/stagegate/internal/promotion"
)

// fakeStates is a ledger whose states are keyed by digest and stage.
type fakeStates struct {
	mu     sync.Mutex
	states map[[2]string]ledger.State
	err    error
	calls  int
}

func (f *fakeStates) State(digest, stage string) (ledger.State, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.err != nil {
		return ledger.State{}, false, f.err
	}
	s, ok := f.states[[2]string{digest, stage}]
	return s, ok, nil
}

// fakePolicy denies every image that is not active in the stage, unless
// decide is set; it keeps the last input.
type fakePolicy struct {
	mu     sync.Mutex
	decide func(policy.AdmissionInput) (policy.AdmissionDecision, error)
	last   policy.AdmissionInput
	calls  int
}

func (f *fakePolicy) Admission(_ context.Context, in policy.AdmissionInput) (policy.AdmissionDecision, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	f.last = in
	if f.decide != nil {
		return f.decide(in)
	}
	var d policy.AdmissionDecision
	for _, ci := range in.Images {
		if !ci.State.Promoted || ci.State.Revoked {
			d.Deny = append(d.Deny, "image "+ci.Reference+" is not promoted to "+in.Stage)
		}
	}
	return d, nil
}

type panicPolicy struct{}

func (panicPolicy) Admission(context.Context, policy.AdmissionInput) (policy.AdmissionDecision, error) {
	panic("boom")
}

type fakeResolver struct {
	mu      sync.Mutex
	digests map[string]string
	err     error
	calls   int
}

func (f *fakeResolver) Digest(_ context.Context, ref string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.err != nil {
		return "", f.err
	}
	d, ok := f.digests[ref]
	if !ok {
		return "", errors.New("manifest unknown")
	}
	return d, nil
}

type fakeRecorder struct {
	mu    sync.Mutex
	index uint64
	err   error
	got   []promotion.BreakGlass
}

func (f *fakeRecorder) RecordBreakGlass(_ context.Context, bg promotion.BreakGlass) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return 0, f.err
	}
	f.got = append(f.got, bg)
	return f.index, nil
}

type fakeMetrics struct {
	mu  sync.Mutex
	got []string
}

func (f *fakeMetrics) Decision(stage, result string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got = append(f.got, stage+":"+result)
}

// podRequest is a CREATE request for a pod "shop/web" running images.
func podRequest(t testing.TB, annotations map[string]string, images ...string) *admissionv1.AdmissionRequest {
	t.Helper()
	pod := corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", Annotations: annotations},
	}
	for i, img := range images {
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: "c" + string(rune('0'+i)), Image: img})
	}
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	return requestFor(t, raw, admissionv1.Create, "")
}

// fakeFallback is a registry source whose freshness is set by the test.
type fakeFallback struct {
	mu    sync.Mutex
	stale error
	asked []string // stages Fresh was asked about
}

func (f *fakeFallback) Lookup(context.Context, string, string) (bool, error) { return false, nil }
func (f *fakeFallback) Seen(string, string)                                  {}
func (f *fakeFallback) Fresh(stage string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, stage)
	return f.stale
}
