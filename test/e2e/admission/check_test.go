package admission

import (
	"encoding/json"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// checkCases is a manifest and the API server's decision for each of its
// objects, keyed by "Kind/name".
type checkCases struct {
	file string
	// api is the API server's answer: "" for created, else its message.
	api map[string]string
}

// denialPrefix ends what the API server puts before a webhook's message.
const denialPrefix = "denied the request: "

// checkCases writes a manifest of workloads and records what the API server
// decides for each (as server-side dry runs, so that nothing is stored and
// the later offline check sees the same ledger).
func (s *suite) checkCases(t *testing.T, img images) checkCases {
	t.Helper()
	ns := s.namespace(t, "prod-check", "prod")
	withInit := deployment(ns, "with-init", img.prod)
	withInit.Spec.Template.Spec.InitContainers = []corev1.Container{{Name: "setup", Image: img.nowhere}}
	breakGlass := pod(ns, "break-glass", img.nowhere)
	breakGlass.Annotations = map[string]string{breakGlassAnnotation: "not in prod"}
	cm := &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "settings"},
		Data:       map[string]string{"k": "v"},
	}
	withVolume := pod(ns, "with-volume", img.prod)
	withImageVolume(&withVolume.Spec, img.nowhere)
	// What the API server must decide, as a sanity check of the table
	// itself: true means created.
	artifactRepo, artifactDigest, _ := strings.Cut(img.artifact, "@")
	_, nowhereDigest, _ := strings.Cut(img.artifactNowhere, "@")
	objs := []struct {
		obj     runtime.Object
		key     string
		created bool
	}{
		{pod(ns, "promoted", img.prod), "Pod/promoted", true},
		{pod(ns, "unpromoted", img.nowhere), "Pod/unpromoted", false},
		{pod(ns, "dev-only", img.dev), "Pod/dev-only", false},
		{pod(ns, "by-tag", s.reg.Repo("e2e/web:v1")), "Pod/by-tag", false},
		{breakGlass, "Pod/break-glass", false},
		{deployment(ns, "web", img.prod), "Deployment/web", true},
		{withInit, "Deployment/with-init", false},
		{job(ns, "migrate", img.nowhere), "Job/migrate", false},
		{cronJob(ns, "nightly", img.prod), "CronJob/nightly", true},
		{cm, "ConfigMap/settings", true},
		{withVolume, "Pod/with-volume", false},
		{rollout(ns, "canary", img.nowhere, nil), "Rollout/canary", false},
		{rollout(ns, "stable", img.prod, nil), "Rollout/stable", true},
		{ociRepository(ns, "config", artifactRepo, map[string]any{"digest": artifactDigest}), "OCIRepository/config", true},
		{ociRepository(ns, "config-v2", artifactRepo, map[string]any{"digest": nowhereDigest}), "OCIRepository/config-v2", false},
		// The HelmRepository is stored (below), for the webhook's
		// informer; check -f finds it in the manifest.
		{helmRepository(ns, "charts", "oci://"+s.reg.Repo("e2e/charts"), "oci"), "HelmRepository/charts", true},
		{helmChart(ns, "podinfo", "charts", "podinfo", "6.5.0"), "HelmChart/podinfo", false},
		{helmChart(ns, "podinfo-lost", "nowhere", "podinfo", "6.5.0"), "HelmChart/podinfo-lost", false},
		{helmRelease(ns, "web-range", map[string]any{"chart": map[string]any{"spec": map[string]any{"chart": "podinfo", "version": "~6",
			"sourceRef": map[string]any{"kind": "HelmRepository", "name": "charts"}}}}), "HelmRelease/web-range", false},
	}
	gvrs := map[string]schema.GroupVersionResource{"OCIRepository": ociRepositoryGVR, "HelmChart": helmChartGVR, "HelmRelease": helmReleaseGVR}
	c := checkCases{file: filepath.Join(s.dir, "check.yaml"), api: map[string]string{}}
	var all []runtime.Object
	for _, o := range objs {
		all = append(all, o.obj)
		var err error
		if u, ok := o.obj.(*unstructured.Unstructured); ok && u.GetKind() == "HelmRepository" {
			s.createStored(t, helmRepositoryGVR, u)
		} else if ok {
			gvr, known := gvrs[u.GetKind()]
			if !known {
				gvr = rolloutGVR
			}
			err = s.createCustom(t, gvr, u)
		} else {
			err = createDryRun(t, s.api.Clientset, o.obj)
		}
		switch {
		case err == nil:
			c.api[o.key] = ""
		case strings.Contains(err.Error(), denialPrefix):
			c.api[o.key] = err.Error()
		default:
			t.Fatalf("%s: the API server refused it for another reason than stagegate: %v", o.key, err)
		}
		if got := err == nil; got != o.created {
			t.Errorf("%s: API server created = %v, want %v (%v)", o.key, got, o.created, err)
		}
	}
	writeFile(t, c.file, manifest(t, all...), 0o644)
	return c
}

// testCheck runs `stagegate check` on the manifest, against the running
// server (--remote) or the ledger file (serve stopped), and compares each
// object's decision with the API server's.
func (s *suite) testCheck(t *testing.T, c checkCases, remote bool) {
	args := []string{"check", "-f", c.file, "--stage", "prod", "-o", "json"}
	if remote {
		args = s.client(append(args, "--remote")...)
	} else {
		args = append(args, "--config", s.configPath)
	}
	stdout, stderr, err := s.run(t, args...)
	// Some objects are refused, so check exits 1.
	if _, ok := errors.AsType[*exec.ExitError](err); !ok {
		t.Fatalf("stagegate check: err = %v, want exit status 1\n%s", err, stderr)
	}
	if !strings.Contains(stderr, "objects would be refused in stage prod") {
		t.Errorf("stagegate check stderr = %q, want the count of refused objects", stderr)
	}
	var results []struct {
		Kind, Name, Message string
		Allowed             bool
	}
	if err := json.Unmarshal([]byte(stdout), &results); err != nil {
		t.Fatalf("stagegate check -o json: %v\n%s\n%s", err, stdout, stderr)
	}
	seen := map[string]bool{}
	for _, r := range results {
		key := r.Kind + "/" + r.Name
		seen[key] = true
		apiMsg, ok := c.api[key]
		if !ok {
			t.Errorf("check reported %s, which is not in the manifest", key)
			continue
		}
		if apiAllowed := apiMsg == ""; r.Allowed != apiAllowed {
			t.Errorf("%s: check allowed = %v, the API server allowed = %v (check: %q, API server: %q)", key, r.Allowed, apiAllowed, r.Message, apiMsg)
			continue
		}
		// The same decision, for the same reasons, word for word.
		if !r.Allowed && !strings.HasSuffix(apiMsg, denialPrefix+r.Message) {
			t.Errorf("%s: check says %q, the API server said %q", key, r.Message, apiMsg)
		}
	}
	for key := range c.api {
		if !seen[key] {
			t.Errorf("check did not report %s", key)
		}
	}
}
