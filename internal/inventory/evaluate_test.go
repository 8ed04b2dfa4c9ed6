package inventory

import (
	"net/http"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stagegate/stagegate/internal/admission"
	"github.com/stagegate/stagegate/internal/ledger"
)

func TestClassify(t *testing.T) {
	revokedAt := time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web", UID: "u1"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "r.example/web:1"}}},
	}
	denied := admission.Denied("u1", http.StatusForbidden, "stagegate denied it")
	glass := admission.Allowed("u1")
	glass.AuditAnnotations = map[string]string{admission.AuditBreakGlass: "INC-1"}
	active := admission.TracedImage{Image: "r.example/sidecar@" + digestA, Digest: digestA, Found: true,
		State: ledger.State{Promoted: true}}
	tests := map[string]struct {
		resp  *admissionv1.AdmissionResponse
		trace admission.Trace
		want  *Violation // only the fields compared below
	}{
		"admitted": {resp: admission.Allowed("u1"), trace: admission.Trace{Images: []admission.TracedImage{active}}},
		"revoked": {resp: denied, trace: admission.Trace{Deny: []string{"revoked"}, Images: []admission.TracedImage{active, {
			Image: "r.example/web:1", Digest: digestB, Found: true,
			State: ledger.State{Promoted: true, Revoked: true, RevokedIndex: 9, RevokedAt: revokedAt, RevokedBy: "sec", RevokeReason: "CVE-1"},
		}}}, want: &Violation{Reason: ReasonRevoked, Image: "r.example/web:1", Digest: digestB, LedgerIndex: 9, HasLedgerIndex: true,
			Message: `image "r.example/web:1" (` + digestB + `) revoked at 2026-11-02T10:00:00Z by sec: CVE-1`}},
		"unknown to the ledger": {resp: denied, trace: admission.Trace{Deny: []string{"not promoted"}, Images: []admission.TracedImage{
			{Image: "r.example/web:1", Digest: digestC}}},
			want: &Violation{Reason: ReasonNotPromoted, Image: "r.example/web:1", Digest: digestC, Message: "not promoted"}},
		"warn mode admits, still reported": {resp: admission.Allowed("u1", "warned"), trace: admission.Trace{Deny: []string{"not promoted"},
			Images: []admission.TracedImage{{Image: "r.example/web:1", Digest: digestC, Found: true}}},
			want: &Violation{Reason: ReasonNotPromoted, Image: "r.example/web:1", Digest: digestC, Message: "not promoted"}},
		"break-glass": {resp: glass, trace: admission.Trace{Deny: []string{"not promoted"}, Images: []admission.TracedImage{
			{Image: "r.example/web:1", Digest: digestC}}},
			want: &Violation{Reason: ReasonBreakGlass, Image: "r.example/web:1", Digest: digestC, Message: "not promoted"}},
		"unknown stage": {resp: denied, trace: admission.Trace{UnknownStage: true},
			want: &Violation{Reason: ReasonUnknownStage, Image: "r.example/web:1", Message: "stagegate denied it"}},
		"digest not learned": {resp: denied, trace: admission.Trace{Deny: []string{"cannot resolve"}, Images: []admission.TracedImage{
			{Image: "r.example/web:1", Error: "registry down"}}},
			want: &Violation{Reason: ReasonDenied, Image: "r.example/web:1", Message: "cannot resolve"}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got := classify(podSubject(pod), "prod", tt.resp, &tt.trace)
			if (got == nil) != (tt.want == nil) {
				t.Fatalf("classify = %+v, want %+v", got, tt.want)
			}
			if got == nil {
				return
			}
			if got.Reason != tt.want.Reason || got.Image != tt.want.Image || got.Digest != tt.want.Digest ||
				got.LedgerIndex != tt.want.LedgerIndex || got.HasLedgerIndex != tt.want.HasLedgerIndex || got.Message != tt.want.Message {
				t.Errorf("classify = %+v\nwant %+v", got, tt.want)
			}
			if got.Stage != "prod" || got.Namespace != "shop" || got.Pod != "web" || got.Owner.Kind != "Pod" {
				t.Errorf("classify names %s/%s in %q, owner %v", got.Namespace, got.Pod, got.Stage, got.Owner)
			}
		})
	}
}

func TestStripPod(t *testing.T) {
	full := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web", UID: "u1", ResourceVersion: "7",
			Labels:        map[string]string{admission.StageLabel: "prod", "app": "web"},
			Annotations:   map[string]string{admission.BreakGlassAnnotation: "INC-1", "kubectl.kubernetes.io/last-applied-configuration": "{...}"},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}},
		Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{{Name: "init", Image: "r.example/init:1", Command: []string{"sh"}}},
			Containers:     []corev1.Container{{Name: "web", Image: "r.example/web:1", Env: []corev1.EnvVar{{Name: "A", Value: "b"}}}},
			EphemeralContainers: []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{
				Name: "debug", Image: "r.example/debug:1", Args: []string{"-x"}}}},
			Volumes: []corev1.Volume{
				{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				{Name: "model", VolumeSource: corev1.VolumeSource{Image: &corev1.ImageVolumeSource{Reference: "r.example/model:1"}}},
			},
			NodeName: "node-1",
		},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.1",
			InitContainerStatuses: []corev1.ContainerStatus{{Name: "init", Image: "r.example/init:1", ImageID: "sha256:" + strings.Repeat("9", 64)}},
			ContainerStatuses: []corev1.ContainerStatus{{Name: "web", Image: "r.example/web:1", ImageID: "r.example/web@" + digestA, Ready: true,
				RestartCount: 3}}},
	}
	obj, err := stripPod(full)
	if err != nil {
		t.Fatal(err)
	}
	p := obj.(*corev1.Pod)
	want := &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web", UID: "u1", ResourceVersion: "7",
			Labels:      map[string]string{admission.StageLabel: "prod"},
			Annotations: map[string]string{admission.BreakGlassAnnotation: "INC-1"}},
		Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{{Name: "init", Image: "r.example/init:1"}},
			Containers:     []corev1.Container{{Name: "web", Image: "r.example/web:1"}},
			EphemeralContainers: []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{
				Name: "debug", Image: "r.example/debug:1"}}},
			Volumes: []corev1.Volume{{Name: "model", VolumeSource: corev1.VolumeSource{Image: &corev1.ImageVolumeSource{Reference: "r.example/model:1"}}}},
		},
		// What the kubelet says a container runs, when it names a
		// manifest: a config ID does not.
		Status: corev1.PodStatus{Phase: corev1.PodRunning,
			ContainerStatuses: []corev1.ContainerStatus{{Name: "web", ImageID: "r.example/web@" + digestA}}},
	}
	if !equality.Semantic.DeepEqual(p, want) {
		t.Errorf("stripPod =\n%+v\nwant\n%+v", p, want)
	}
	if changed(p, p.DeepCopy()) {
		t.Error("a pod changed from itself")
	}
	moved := p.DeepCopy()
	moved.ResourceVersion = "8"
	if changed(p, moved) {
		t.Error("a resourceVersion alone counts as a change")
	}
	moved.Spec.Containers[0].Image = "r.example/web:2"
	if !changed(p, moved) {
		t.Error("a new image is not a change")
	}
}

func TestTruncate(t *testing.T) {
	tests := map[string]struct {
		in   string
		n    int
		want string
	}{
		"short":          {in: "abc", n: 5, want: "abc"},
		"exact":          {in: "abcde", n: 5, want: "abcde"},
		"long":           {in: "abcdefgh", n: 6, want: "abc…"},
		"cut in a rune":  {in: "aéééé", n: 7, want: "aé…"},
		"ellipsis bytes": {in: strings.Repeat("x", 2000), n: maxEventMessage, want: strings.Repeat("x", maxEventMessage-3) + "…"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got := truncate(tt.in, tt.n)
			if got != tt.want || len(got) > tt.n {
				t.Errorf("truncate(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
			}
		})
	}
}
