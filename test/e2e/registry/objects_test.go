package registry

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stagegate/stagegate/test/e2e/framework"
)

const stageLabel = "stagegate.dev/stage"

// namespace creates a namespace labelled with stage in the node's cluster
// and returns its name.
func (n *node) namespace(t testing.TB, name, stage string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{stageLabel: stage}}}
	if _, err := n.api.Clientset.CoreV1().Namespaces().Create(t.Context(), ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("%s: create namespace %s: %v", n.name, name, err)
	}
	return name
}

func pod(ns, name, image string) *corev1.Pod {
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}},
	}
}

// create creates p in the node's cluster, as a server-side dry run when
// dryRun.
func (n *node) create(t testing.TB, p *corev1.Pod, dryRun bool) error {
	t.Helper()
	opts := metav1.CreateOptions{}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	_, err := n.api.Clientset.CoreV1().Pods(p.Namespace).Create(t.Context(), p, opts)
	return err
}

// wantAllowed and wantDenied are the framework's answers checks, by the
// names the scenarios use.
var (
	wantAllowed = framework.WantAllowed
	wantDenied  = framework.WantDenied
)

// digestOf returns the digest of a digest-pinned reference.
func digestOf(ref string) string {
	return ref[strings.LastIndexByte(ref, '@')+1:]
}

// repoOf returns the repository of a digest-pinned reference.
func repoOf(ref string) string {
	return ref[:strings.LastIndexByte(ref, '@')]
}

// wantFailedClosed fails unless stagegate's webhook refused the request
// because it could not decide, with a message holding every one of want.
// The webhook then answers with a 500 status in its AdmissionReview, not a
// 403: the request was not judged, it was refused for safety.
func wantFailedClosed(t testing.TB, what string, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: created, want refused by stagegate", what)
		return
	}
	msg := err.Error()
	if !strings.Contains(msg, "denied the request") || !strings.Contains(msg, "stagegate could not decide") {
		t.Errorf("%s: err = %v; want a webhook refusal saying stagegate could not decide", what, err)
		return
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("%s: message %q does not contain %q", what, msg, w)
		}
	}
}
