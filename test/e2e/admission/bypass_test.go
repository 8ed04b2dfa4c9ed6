package admission

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
)

// Issue 11: every image a pod runs, every kind that carries a pod template
// and every namespace that carries the stage label is checked, through the
// configuration `stagegate manifests` generates and the real API server.

// withImageVolume adds an image volume "models" of ref to spec.
func withImageVolume(spec *corev1.PodSpec, ref string) {
	spec.Volumes = append(spec.Volumes, corev1.Volume{Name: "models", VolumeSource: corev1.VolumeSource{
		Image: &corev1.ImageVolumeSource{Reference: ref, PullPolicy: corev1.PullIfNotPresent},
	}})
}

// testImageVolumes: an image volume is an image of the pod (the pod can
// execute from it), checked in pods and in every template.
func (s *suite) testImageVolumes(t *testing.T, img images) {
	ns := s.namespace(t, "prod-volumes", "prod")
	podVol := func(name, ref string) *corev1.Pod {
		p := pod(ns, name, img.prod)
		withImageVolume(&p.Spec, ref)
		return p
	}
	dep := deployment(ns, "dep-volume", img.prod)
	withImageVolume(&dep.Spec.Template.Spec, img.nowhere)
	cj := cronJob(ns, "cron-volume", img.prod)
	withImageVolume(&cj.Spec.JobTemplate.Spec.Template.Spec, img.nowhere)
	volume := `imageVolume "models"`
	s.assertDecisions(t, decisions{
		"promoted volume":                    {obj: podVol("vol-promoted", img.prod)},
		"unpromoted volume by digest":        {obj: podVol("vol-digest", img.nowhere), deny: append(notPromoted(img.nowhere, "prod"), volume)},
		"unpromoted volume by tag":           {obj: podVol("vol-tag", s.reg.Repo("e2e/nowhere:v1")), deny: []string{volume, "referenced by tag", "is not promoted"}},
		"deployment template with a volume":  {obj: dep, deny: append(notPromoted(img.nowhere, "prod"), volume)},
		"cronjob template with a volume":     {obj: cj, deny: append(notPromoted(img.nowhere, "prod"), volume)},
		"promoted digest, dev-only volume":   {obj: podVol("vol-dev", img.dev), deny: append(notPromoted(img.dev, "prod"), volume)},
		"volume does not hide behind others": {obj: podVol("vol-second", img.nowhere), deny: []string{volume}},
	}, true)
}

// rolloutCRD is a minimal stand-in for Argo Rollouts' CRD: the API server
// keeps whatever the object holds, as it does for many real CRDs.
const rolloutCRD = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: rollouts.argoproj.io}
spec:
  group: argoproj.io
  scope: Namespaced
  names: {plural: rollouts, singular: rollout, kind: Rollout}
  versions:
  - name: v1alpha1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
`

var rolloutGVR = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "rollouts"}

// rollout is an Argo Rollout whose template runs image; containers, if not
// nil, replaces the template's containers field as it is.
func rollout(ns, name, image string, containers any) *unstructured.Unstructured {
	if containers == nil {
		containers = []any{map[string]any{"name": "app", "image": image}}
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1",
		"kind":       "Rollout",
		"metadata":   map[string]any{"name": name, "namespace": ns},
		"spec": map[string]any{
			"strategy": map[string]any{"canary": map[string]any{}},
			"template": map[string]any{"spec": map[string]any{"containers": containers}},
		},
	}}
}

// installRolloutCRD creates the CRD and waits until it is served.
func (s *suite) installRolloutCRD(t *testing.T) {
	t.Helper()
	p := filepath.Join(s.dir, "rollout-crd.yaml")
	writeFile(t, p, rolloutCRD, 0o644)
	if _, stderr, err := s.api.Kubectl(t, "apply", "-f", p); err != nil {
		t.Fatalf("kubectl apply CRD: %v\n%s", err, stderr)
	}
	if _, stderr, err := s.api.Kubectl(t, "wait", "--for=condition=Established", "--timeout=60s", "crd/rollouts.argoproj.io"); err != nil {
		t.Fatalf("CRD not established: %v\n%s", err, stderr)
	}
	// Discovery of a new CRD reaches the API server's handlers a moment
	// after Established.
	dc := s.dynamic(t)
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := dc.Resource(rolloutGVR).Namespace("default").List(t.Context(), metav1.ListOptions{})
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("rollouts not served: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (s *suite) dynamic(t testing.TB) dynamic.Interface {
	t.Helper()
	dc, err := dynamic.NewForConfig(s.api.Config)
	if err != nil {
		t.Fatal(err)
	}
	return dc
}

// createCustom creates u as a server-side dry run.
func (s *suite) createCustom(t testing.TB, gvr schema.GroupVersionResource, u *unstructured.Unstructured) error {
	t.Helper()
	_, err := s.dynamic(t).Resource(gvr).Namespace(u.GetNamespace()).Create(t.Context(), u, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	return err
}

// testCustomWorkloads: a kind stagegate has no typed shape for is checked
// wherever its pod template is; a kind without one passes; one whose pod
// spec cannot be read is refused with a way out.
func (s *suite) testCustomWorkloads(t *testing.T, img images) {
	ns := s.namespace(t, "prod-custom", "prod")
	tests := map[string]struct {
		obj  *unstructured.Unstructured
		deny []string
	}{
		"rollout of a promoted digest":    {obj: rollout(ns, "ok", img.prod, nil)},
		"rollout of an unpromoted digest": {obj: rollout(ns, "bad", img.nowhere, nil), deny: append(notPromoted(img.nowhere, "prod"), "prod-custom/Rollout/bad")},
		"rollout whose containers are not a list": {obj: rollout(ns, "odd", "", "nginx"),
			deny: []string{"cannot read the pod spec", "/spec/template/spec", "--skip-resource rollouts.argoproj.io"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := s.createCustom(t, rolloutGVR, tc.obj)
			if tc.deny == nil {
				wantAllowed(t, name, err)
				return
			}
			if err == nil || !strings.Contains(err.Error(), "denied the request") {
				t.Fatalf("%s: err = %v, want stagegate's refusal", name, err)
			}
			for _, w := range tc.deny {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%s: message %q does not contain %q", name, err, w)
				}
			}
		})
	}
	t.Run("core PodTemplate", func(t *testing.T) {
		pt := &corev1.PodTemplate{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "tmpl"},
			Template:   corev1.PodTemplateSpec{Spec: podSpec("", img.nowhere)},
		}
		_, err := s.api.Clientset.CoreV1().PodTemplates(ns).Create(t.Context(), pt, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		wantDenied(t, "PodTemplate", err, notPromoted(img.nowhere, "prod")...)
	})
	t.Run("secret and service pass", func(t *testing.T) {
		sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "s"}, StringData: map[string]string{"containers": "[]"}}
		_, err := s.api.Clientset.CoreV1().Secrets(ns).Create(t.Context(), sec, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		wantAllowed(t, "Secret", err)
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "svc"},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}
		_, err = s.api.Clientset.CoreV1().Services(ns).Create(t.Context(), svc, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		wantAllowed(t, "Service", err)
	})
}

// testMislabelled: a stage label whose value is no configured stage is
// enforced (every workload refused, naming the known stages), not skipped.
func (s *suite) testMislabelled(t *testing.T, img images) {
	upper := s.namespace(t, "mislabel-upper", "Prod")
	qa := s.namespace(t, "mislabel-qa", "qa")
	plain := s.namespace(t, "mislabel-plain", "")
	known := "known stages: dev, test, stage, prod"
	dep := deployment(qa, "web", img.prod)
	s.assertDecisions(t, decisions{
		"namespace Prod":                    {obj: pod(upper, "web", img.prod), deny: []string{"unknown stage", known, `namespace "mislabel-upper"`}},
		"namespace qa":                      {obj: pod(qa, "web", img.prod), deny: []string{"unknown stage", known}},
		"deployment in namespace qa":        {obj: dep, deny: []string{"unknown stage", known}},
		"pod label qa in a plain namespace": {obj: stageLabelled(pod(plain, "canary", img.prod), "qa"), deny: []string{`unknown stage "qa" in its label stagegate.dev/stage`, known}},
		"configmap in namespace qa": {obj: &corev1.ConfigMap{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
			ObjectMeta: metav1.ObjectMeta{Namespace: qa, Name: "settings"},
		}},
	}, true)
}

// testPinTags installs the opt-in mutating webhook for dev and checks that
// a pod created with a tag runs the digest stagegate resolved and checked.
func (s *suite) testPinTags(t *testing.T, img images) {
	s.installWebhook(t, s.namespace(t, "webhook-ready-pin", "prod"), "--pin-tags", "dev")
	ns := s.namespace(t, "dev-pin", "dev")
	tag := s.reg.Repo("e2e/web:v1") // pushed by pushImage as img.prod
	p := pod(ns, "pinned", tag)
	withImageVolume(&p.Spec, tag)
	p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "by-digest", Image: img.prod})
	got, err := s.api.Clientset.CoreV1().Pods(ns).Create(t.Context(), p, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pod with a tag in dev: %v", err)
	}
	want := tag + "@" + digestOf(img.prod)
	if c := got.Spec.Containers[0].Image; c != want {
		t.Errorf("container image = %q, want the tag pinned to the digest stagegate checked, %q", c, want)
	}
	if v := got.Spec.Volumes[len(got.Spec.Volumes)-1].Image; v == nil || v.Reference != want {
		t.Errorf("image volume = %+v, want %q", v, want)
	}
	if c := got.Spec.Containers[1].Image; c != img.prod {
		t.Errorf("digest reference rewritten to %q", c)
	}
	// A later update that leaves the images alone is not re-pinned, and an
	// unlabelled namespace is not mutated at all.
	other := s.namespace(t, "plain-pin", "")
	got2, err := s.api.Clientset.CoreV1().Pods(other).Create(t.Context(), pod(other, "untouched", tag), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if c := got2.Spec.Containers[0].Image; c != tag {
		t.Errorf("pod outside the pinned stages was mutated to %q", c)
	}
}
