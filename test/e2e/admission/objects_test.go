package admission

import (
	"fmt"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/stagegate/stagegate/test/e2e/framework"
)

const (
	stageLabel           = "stagegate.dev/stage"
	breakGlassAnnotation = "stagegate.dev/break-glass"
)

// namespace creates a namespace labelled with stage (none when empty) and
// returns its name.
func (s *suite) namespace(t testing.TB, name, stage string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if stage != "" {
		ns.Labels = map[string]string{stageLabel: stage}
	}
	if _, err := s.api.Clientset.CoreV1().Namespaces().Create(t.Context(), ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
	return name
}

// podSpec has one container per image: "app", then "app-1", "app-2"...
func podSpec(restart corev1.RestartPolicy, images ...string) corev1.PodSpec {
	spec := corev1.PodSpec{RestartPolicy: restart}
	for i, img := range images {
		n := "app"
		if i > 0 {
			n = fmt.Sprintf("app-%d", i)
		}
		spec.Containers = append(spec.Containers, corev1.Container{Name: n, Image: img})
	}
	return spec
}

func pod(ns, name string, images ...string) *corev1.Pod {
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       podSpec("", images...),
	}
}

// stageLabelled labels p with a stage, as the single-namespace pattern does.
func stageLabelled(p *corev1.Pod, stage string) *corev1.Pod {
	p.Labels = map[string]string{stageLabel: stage}
	return p
}

func deployment(ns, name string, images ...string) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       podSpec("", images...),
			},
		},
	}
}

func job(ns, name string, images ...string) *batchv1.Job {
	return &batchv1.Job{
		TypeMeta:   metav1.TypeMeta{APIVersion: "batch/v1", Kind: "Job"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{
			Spec: podSpec(corev1.RestartPolicyNever, images...),
		}},
	}
}

func cronJob(ns, name string, images ...string) *batchv1.CronJob {
	return &batchv1.CronJob{
		TypeMeta:   metav1.TypeMeta{APIVersion: "batch/v1", Kind: "CronJob"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: batchv1.CronJobSpec{
			Schedule: "*/5 * * * *",
			JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{
				Spec: podSpec(corev1.RestartPolicyOnFailure, images...),
			}}},
		},
	}
}

// create creates obj through cs, as a server-side dry run when dryRun.
func create(t testing.TB, cs kubernetes.Interface, obj runtime.Object, dryRun bool) error {
	t.Helper()
	opts := metav1.CreateOptions{}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	ctx := t.Context()
	var err error
	switch o := obj.(type) {
	case *corev1.Pod:
		_, err = cs.CoreV1().Pods(o.Namespace).Create(ctx, o, opts)
	case *appsv1.Deployment:
		_, err = cs.AppsV1().Deployments(o.Namespace).Create(ctx, o, opts)
	case *batchv1.Job:
		_, err = cs.BatchV1().Jobs(o.Namespace).Create(ctx, o, opts)
	case *batchv1.CronJob:
		_, err = cs.BatchV1().CronJobs(o.Namespace).Create(ctx, o, opts)
	case *corev1.ConfigMap:
		_, err = cs.CoreV1().ConfigMaps(o.Namespace).Create(ctx, o, opts)
	default:
		t.Fatalf("create: unsupported %T", obj)
	}
	return err
}

func createDryRun(t testing.TB, cs kubernetes.Interface, obj runtime.Object) error {
	t.Helper()
	return create(t, cs, obj, true)
}

// wantAllowed and wantDenied are the framework's answers checks, by the
// names the scenarios use.
var (
	wantAllowed = framework.WantAllowed
	wantDenied  = framework.WantDenied
)

// notPromoted is the part of the policy's message that says why, as a
// user reads it.
func notPromoted(ref, stage string) []string {
	return []string{digestOf(ref), fmt.Sprintf("is not promoted to stage %q", stage), ref}
}

// digestOf returns the digest of a digest-pinned reference.
func digestOf(ref string) string {
	return ref[strings.LastIndexByte(ref, '@')+1:]
}

// manifest renders objects as a multi-document YAML.
func manifest(t testing.TB, objs ...runtime.Object) string {
	t.Helper()
	var b strings.Builder
	for _, o := range objs {
		y, err := yaml.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString("---\n")
		b.Write(y)
	}
	return b.String()
}
