package admission

import (
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// images are the digests the scenarios share.
type images struct {
	prod    string // promoted dev → test → stage → prod
	dev     string // promoted to dev only
	nowhere string // pushed, never promoted
	// artifact and artifactNowhere are Flux artifacts, not images: the
	// first promoted to prod, the second never.
	artifact, artifactNowhere string
}

// TestAdmission runs every scenario of issue 3 against one API server and
// one stagegate serve. Subtests run in order: the last ones rotate the
// certificates and stop serve.
func TestAdmission(t *testing.T) {
	s := newSuite(t)
	img := images{
		prod:    s.pushImage(t, "web"),
		dev:     s.pushImage(t, "dev-only"),
		nowhere: s.pushImage(t, "nowhere"),

		artifact:        s.reg.PushArtifact(t, "e2e/shop-config:v1", []byte("kind: ConfigMap\n")),
		artifactNowhere: s.reg.PushArtifact(t, "e2e/shop-config:v2", []byte("kind: Secret\n")),
	}
	s.promote(t, img.prod, toProd...)
	s.promote(t, img.artifact, toProd...)
	s.promote(t, img.dev, "dev")

	t.Run("prod namespace", func(t *testing.T) { s.testProdNamespace(t, img) })
	t.Run("workload kinds", func(t *testing.T) { s.testWorkloadKinds(t, img) })
	t.Run("init and ephemeral containers", func(t *testing.T) { s.testInitAndEphemeral(t, img) })
	t.Run("pod label within a namespace", func(t *testing.T) { s.testPodLabel(t, img) })
	t.Run("revocation", func(t *testing.T) { s.testRevocation(t) })
	t.Run("break-glass", func(t *testing.T) { s.testBreakGlass(t, img) })
	t.Run("break-glass groups and age", func(t *testing.T) { s.testBreakGlassGroups(t, img) })
	t.Run("unlabelled and system namespaces", func(t *testing.T) { s.testUntouched(t, img) })
	t.Run("kubectl apply", func(t *testing.T) { s.testKubectl(t, img) })
	t.Run("image volumes", func(t *testing.T) { s.testImageVolumes(t, img) })
	s.installRolloutCRD(t)
	t.Run("custom workloads", func(t *testing.T) { s.testCustomWorkloads(t, img) })
	s.installGitOpsCRDs(t)
	t.Run("gitops artifacts", func(t *testing.T) { s.testArtifacts(t, img) })
	t.Run("helm charts", func(t *testing.T) { s.testHelm(t) })
	t.Run("mislabelled namespaces", func(t *testing.T) { s.testMislabelled(t, img) })
	t.Run("forged review", func(t *testing.T) { s.testForgedReview(t, img) })
	chk := s.checkCases(t, img)
	t.Run("check agrees remotely", func(t *testing.T) { s.testCheck(t, chk, true) })
	t.Run("pin tags", func(t *testing.T) { s.testPinTags(t, img) })
	t.Run("certificate reload", func(t *testing.T) { s.testCertReload(t, img) })
	t.Run("fail closed", func(t *testing.T) { s.testFailClosed(t, img) })
	t.Run("check agrees offline", func(t *testing.T) { s.testCheck(t, chk, false) })
}

// decisions is a table of objects and whether stagegate should refuse
// them, with what the message must say.
type decisions map[string]struct {
	obj  runtime.Object
	deny []string // nil: created
}

func (s *suite) assertDecisions(t *testing.T, tests decisions, dryRun bool) {
	t.Helper()
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := create(t, s.api.Clientset, tc.obj, dryRun)
			if tc.deny == nil {
				wantAllowed(t, name, err)
				return
			}
			wantDenied(t, name, err, tc.deny...)
		})
	}
}

// Scenario 1: a namespace labelled prod admits only digests promoted to
// prod, and the refusal names the image and the stage.
func (s *suite) testProdNamespace(t *testing.T, img images) {
	ns := s.namespace(t, "prod-pods", "prod")
	s.assertDecisions(t, decisions{
		"promoted to prod":      {obj: pod(ns, "promoted", img.prod)},
		"never promoted":        {obj: pod(ns, "unpromoted", img.nowhere), deny: notPromoted(img.nowhere, "prod")},
		"promoted to dev only":  {obj: pod(ns, "dev-only", img.dev), deny: notPromoted(img.dev, "prod")},
		"one of two unpromoted": {obj: pod(ns, "mixed", img.prod, img.nowhere), deny: append(notPromoted(img.nowhere, "prod"), `container "app-1"`)},
	}, false)
	// The refused pods do not exist; the admitted one does.
	for name, want := range map[string]bool{"promoted": true, "unpromoted": false, "dev-only": false, "mixed": false} {
		_, err := s.api.Clientset.CoreV1().Pods(ns).Get(t.Context(), name, metav1.GetOptions{})
		if got := err == nil; got != want || (err != nil && !apierrors.IsNotFound(err)) {
			t.Errorf("pod %s exists = %v (err %v), want %v", name, got, err, want)
		}
	}
}

// Scenario 2: workloads with pod templates are checked at their own
// creation, not only when their pods are made.
func (s *suite) testWorkloadKinds(t *testing.T, img images) {
	ns := s.namespace(t, "prod-workloads", "prod")
	deny := func(kind, name string) []string {
		return append(notPromoted(img.nowhere, "prod"), fmt.Sprintf("%s/%s/%s", ns, kind, name))
	}
	s.assertDecisions(t, decisions{
		"deployment promoted":   {obj: deployment(ns, "web", img.prod)},
		"deployment unpromoted": {obj: deployment(ns, "web-bad", img.nowhere), deny: deny("Deployment", "web-bad")},
		"cronjob promoted":      {obj: cronJob(ns, "nightly", img.prod)},
		"cronjob unpromoted":    {obj: cronJob(ns, "nightly-bad", img.nowhere), deny: deny("CronJob", "nightly-bad")},
		"job promoted":          {obj: job(ns, "migrate", img.prod)},
		"job unpromoted":        {obj: job(ns, "migrate-bad", img.nowhere), deny: deny("Job", "migrate-bad")},
	}, false)
}

// Scenario 3: init containers and ephemeral containers (kubectl debug) are
// images too.
func (s *suite) testInitAndEphemeral(t *testing.T, img images) {
	ns := s.namespace(t, "prod-containers", "prod")
	cs := s.api.Clientset

	withInit := func(name, init string) *corev1.Pod {
		p := pod(ns, name, img.prod)
		p.Spec.InitContainers = []corev1.Container{{Name: "setup", Image: init}}
		return p
	}
	s.assertDecisions(t, decisions{
		"init container promoted":   {obj: withInit("init-ok", img.prod)},
		"init container unpromoted": {obj: withInit("init-bad", img.nowhere), deny: append(notPromoted(img.nowhere, "prod"), `initContainer "setup"`)},
	}, false)

	if err := create(t, cs, pod(ns, "running", img.prod), false); err != nil {
		t.Fatalf("create the pod to debug: %v", err)
	}
	debug := func(container, image string) error {
		p, err := cs.CoreV1().Pods(ns).Get(t.Context(), "running", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		p.Spec.EphemeralContainers = append(p.Spec.EphemeralContainers, corev1.EphemeralContainer{
			EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: container, Image: image},
			TargetContainerName:      "app",
		})
		_, err = cs.CoreV1().Pods(ns).UpdateEphemeralContainers(t.Context(), "running", p, metav1.UpdateOptions{})
		return err
	}
	wantDenied(t, "unpromoted ephemeral container", debug("debug-bad", img.nowhere),
		append(notPromoted(img.nowhere, "prod"), `ephemeralContainer "debug-bad"`)...)
	wantAllowed(t, "promoted ephemeral container", debug("debug", img.prod))

	p, err := cs.CoreV1().Pods(ns).Get(t.Context(), "running", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range p.Spec.EphemeralContainers {
		got = append(got, c.Name)
	}
	if strings.Join(got, ",") != "debug" {
		t.Errorf("ephemeral containers = %v, want only [debug]", got)
	}
}

// Scenario 4: in one namespace, the pod label adds a stage to check but
// never replaces the namespace's.
func (s *suite) testPodLabel(t *testing.T, img images) {
	dev := s.namespace(t, "dev-single", "dev")
	prod := s.namespace(t, "prod-single", "prod")
	labelled := func(ns, name, stage, image string) *corev1.Pod {
		return stageLabelled(pod(ns, name, image), stage)
	}
	s.assertDecisions(t, decisions{
		"dev namespace, prod label, dev-only digest": {obj: labelled(dev, "canary-dev-only", "prod", img.dev), deny: notPromoted(img.dev, "prod")},
		"dev namespace, prod label, prod digest":     {obj: labelled(dev, "canary-prod", "prod", img.prod)},
		"dev namespace, prod label, no promotion":    {obj: labelled(dev, "canary-nowhere", "prod", img.nowhere), deny: []string{digestOf(img.nowhere), "is not promoted"}},
		"dev namespace, no label, dev-only digest":   {obj: pod(dev, "plain-dev-only", img.dev)},
		"dev namespace, no label, no promotion":      {obj: pod(dev, "plain-nowhere", img.nowhere), deny: notPromoted(img.nowhere, "dev")},
		// A dev label on a pod in a prod namespace does not lower its bar.
		"prod namespace, dev label, dev-only digest": {obj: labelled(prod, "escape", "dev", img.dev), deny: notPromoted(img.dev, "prod")},
	}, false)

	// Updates of the admitted canary. The API server matches an UPDATE's
	// objectSelector against the old object too, so the update that drops
	// the label is still checked against prod; after it, only the
	// namespace's stage applies, and that one cannot be dropped.
	pods := s.api.Clientset.CoreV1().Pods(dev)
	update := func(image string, dropLabel bool) error {
		p, err := pods.Get(t.Context(), "canary-prod", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if dropLabel {
			delete(p.Labels, stageLabel)
		}
		p.Spec.Containers[0].Image = image
		_, err = pods.Update(t.Context(), p, metav1.UpdateOptions{})
		return err
	}
	wantDenied(t, "drop the label and swap to a dev-only image at once", update(img.dev, true), notPromoted(img.dev, "prod")...)
	wantAllowed(t, "drop the label", update(img.prod, true))
	wantAllowed(t, "unlabelled, swap to a dev-only image", update(img.dev, false))
	wantDenied(t, "unlabelled, swap to an image promoted nowhere", update(img.nowhere, false), notPromoted(img.nowhere, "dev")...)
}

// Scenario 7: namespaces without the label, and system namespaces even if
// labelled, are never sent to stagegate.
func (s *suite) testUntouched(t *testing.T, img images) {
	plain := s.namespace(t, "unlabelled", "")
	ks, err := s.api.Clientset.CoreV1().Namespaces().Get(t.Context(), "kube-system", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Even labelled as prod, kube-system is excluded by name.
	if ks.Labels == nil {
		ks.Labels = map[string]string{}
	}
	ks.Labels[stageLabel] = "prod"
	if _, err := s.api.Clientset.CoreV1().Namespaces().Update(t.Context(), ks, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	s.assertDecisions(t, decisions{
		"unlabelled namespace":   {obj: pod(plain, "anything", img.nowhere)},
		"kube-system":            {obj: pod("kube-system", "anything", img.nowhere)},
		"kube-system, pod label": {obj: stageLabelled(pod("kube-system", "labelled", img.nowhere), "prod")},
	}, false)
}

// The message a user of kubectl sees names the image, the stage, and says
// why.
func (s *suite) testKubectl(t *testing.T, img images) {
	ns := s.namespace(t, "prod-kubectl", "prod")
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	writeFile(t, bad, manifest(t, deployment(ns, "web", img.nowhere)), 0o644)
	_, stderr, err := s.api.Kubectl(t, "apply", "-f", bad)
	if _, ok := errors.AsType[*exec.ExitError](err); !ok {
		t.Fatalf("kubectl apply of an unpromoted Deployment: err = %v, want a non-zero exit\n%s", err, stderr)
	}
	for _, want := range append(notPromoted(img.nowhere, "prod"), "denied the request", "Error from server (Forbidden)") {
		if !strings.Contains(stderr, want) {
			t.Errorf("kubectl stderr does not contain %q:\n%s", want, stderr)
		}
	}
	t.Logf("what kubectl shows:\n%s", stderr)

	good := filepath.Join(dir, "good.yaml")
	writeFile(t, good, manifest(t, deployment(ns, "web", img.prod)), 0o644)
	if out, stderr, err := s.api.Kubectl(t, "apply", "-f", good); err != nil || !strings.Contains(out, "deployment.apps/web created") {
		t.Errorf("kubectl apply of a promoted Deployment: err = %v, stdout %q, stderr %q", err, out, stderr)
	}
}

// Scenario 8: with stagegate down, the API server refuses pods in gated
// namespaces (failurePolicy Fail), and only there.
func (s *suite) testFailClosed(t *testing.T, img images) {
	ns := s.namespace(t, "prod-outage", "prod")
	plain := s.namespace(t, "unlabelled-outage", "")
	_ = s.serve.Stop()

	err := create(t, s.api.Clientset, pod(ns, "during-outage", img.prod), false)
	if err == nil || !strings.Contains(err.Error(), "failed calling webhook") {
		t.Errorf("promoted pod while stagegate is down: err = %v, want a refusal saying the webhook call failed", err)
	}
	if _, err := s.api.Clientset.CoreV1().Pods(ns).Get(t.Context(), "during-outage", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("pod created during the outage: get err = %v, want NotFound", err)
	}
	wantAllowed(t, "unlabelled namespace during the outage", create(t, s.api.Clientset, pod(plain, "during-outage", img.nowhere), false))
}
